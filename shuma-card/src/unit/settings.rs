//! A unit's settings as systemd merges them from the unit file and its drop-ins, in
//! order: for a single-valued setting the last assignment wins and an empty one
//! restores the default; a list setting grows with each assignment and an empty one
//! empties it (systemd.unit(5), "an empty assignment resets the list").

use std::collections::{BTreeMap, HashMap};

use super::directives;
use super::lookup::LoadedUnit;
use super::Note;

/// One assignment, where it came from.
#[derive(Debug, Clone)]
pub struct Src {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub value: String,
}

impl Src {
    pub(super) fn note(&self, text: impl Into<String>) -> Note {
        let mut directive = format!("{}={}", self.key, self.value);
        if directive.chars().count() > 100 {
            directive = directive.chars().take(99).collect::<String>() + "…";
        }
        Note {
            file: self.file.clone(),
            line: self.line,
            directive: directive.replace(|c: char| c.is_control(), "?"),
            text: text.into(),
        }
    }
}

/// Settings of the unit after merging its files: single values (the last wins, an
/// empty one resets) and lists (an empty assignment empties them).
#[derive(Default)]
pub struct Settings {
    pub single: HashMap<String, Src>,
    pub lists: BTreeMap<String, Vec<Src>>,
    /// Directives not translated, in file order.
    pub other: Vec<Src>,
}

/// The settings this module reads; `true` for list settings.
const KNOWN: &[(&str, &str, bool)] = &[
    ("Unit", "After", true),
    ("Unit", "Before", true),
    ("Unit", "Requires", true),
    ("Unit", "Wants", true),
    ("Unit", "BindsTo", true),
    ("Unit", "Conflicts", true),
    ("Unit", "StartLimitIntervalSec", false),
    ("Unit", "StartLimitInterval", false),
    ("Unit", "StartLimitBurst", false),
    ("Unit", "Description", false),
    ("Service", "StartLimitInterval", false),
    ("Service", "StartLimitBurst", false),
    ("Service", "Type", false),
    ("Service", "ExecStart", true),
    ("Service", "ExecStartPre", true),
    ("Service", "ExecStartPost", true),
    ("Service", "Restart", false),
    ("Service", "RestartSec", false),
    ("Service", "TimeoutStartSec", false),
    ("Service", "TimeoutStopSec", false),
    ("Service", "TimeoutSec", false),
    ("Service", "WatchdogSec", false),
    ("Service", "User", false),
    ("Service", "Group", false),
    ("Service", "Environment", true),
    ("Service", "EnvironmentFile", true),
    ("Service", "WorkingDirectory", false),
    ("Service", "KillSignal", false),
    ("Service", "KillMode", false),
    ("Service", "StandardOutput", false),
    ("Service", "StandardError", false),
    ("Service", "StandardInput", false),
    ("Service", "RemainAfterExit", false),
    ("Service", "IgnoreSIGPIPE", false),
    ("Service", "NotifyAccess", false),
    ("Service", "BusName", false),
    ("Service", "PIDFile", false),
    ("Service", "RuntimeDirectory", true),
    ("Service", "StateDirectory", true),
    ("Service", "CacheDirectory", true),
    ("Service", "LogsDirectory", true),
    ("Service", "ConfigurationDirectory", true),
    ("Service", "RuntimeDirectoryMode", false),
    ("Service", "StateDirectoryMode", false),
    ("Service", "CacheDirectoryMode", false),
    ("Service", "LogsDirectoryMode", false),
    ("Service", "ConfigurationDirectoryMode", false),
    ("Service", "RuntimeDirectoryPreserve", false),
    ("Service", "MemoryMax", false),
    ("Service", "MemoryLimit", false),
    ("Service", "MemoryHigh", false),
    ("Service", "MemorySwapMax", false),
    ("Service", "TasksMax", false),
    ("Service", "CPUQuota", false),
    ("Service", "CPUQuotaPeriodSec", false),
    ("Service", "CPUWeight", false),
    ("Service", "IOWeight", false),
];

/// Whether `key` of `section` is a setting this module reads; `true` for a list.
fn known(section: &str, key: &str) -> Option<bool> {
    if section == "Service" && super::rlimits::keys().any(|k| k == key) {
        return Some(false);
    }
    KNOWN
        .iter()
        .find(|(sec, k, _)| *sec == section && *k == key)
        .map(|(_, _, list)| *list)
}

pub fn gather(unit: &LoadedUnit, notes: &mut Vec<Note>, comments: &mut Vec<String>) -> Settings {
    let mut s = Settings::default();
    let mut install = false;
    for file in &unit.files {
        for issue in &file.parsed.issues {
            comments.push(format!("{}:{}: {}", file.label, issue.line, issue.message));
        }
        for d in &file.parsed.directives {
            let src = Src {
                file: file.label.clone(),
                line: d.line,
                key: d.key.clone(),
                value: d.value.clone(),
            };
            let section = d.section.as_str();
            if section == "Install" {
                install = true;
                continue;
            }
            if section.starts_with("X-")
                || directives::silent(section, &d.key) && d.key != "Description"
            {
                continue;
            }
            if section != "Unit" && section != "Service" {
                notes.push(src.note(format!(
                    "not translated: section [{section}] does not belong in a service unit"
                )));
                continue;
            }
            match known(section, &d.key) {
                Some(true) => {
                    let list = s.lists.entry(d.key.clone()).or_default();
                    if d.value.is_empty() {
                        list.clear();
                    } else {
                        list.push(src);
                    }
                }
                Some(false) => {
                    // Aliases of the same setting: the last assignment wins.
                    let keys: Vec<&str> = match d.key.as_str() {
                        "TimeoutSec" => vec!["TimeoutStartSec", "TimeoutStopSec"],
                        "StartLimitInterval" => vec!["StartLimitIntervalSec"],
                        "MemoryLimit" => vec!["MemoryMax"],
                        k => vec![k],
                    };
                    for k in keys {
                        if d.value.is_empty() {
                            s.single.remove(k);
                        } else {
                            s.single.insert(k.to_string(), src.clone());
                        }
                    }
                }
                None => {
                    // Unknown to the converter: an empty assignment resets, like a list.
                    if d.value.is_empty() {
                        s.other.retain(|o| o.key != d.key);
                    } else {
                        s.other.push(src);
                    }
                }
            }
        }
    }
    if install {
        comments.push(
            "[Install] is not translated: a card in arje's cards directory is started when arje starts"
                .into(),
        );
    }
    s
}
