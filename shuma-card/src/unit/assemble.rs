//! The planned units into one workspace: unique card names for their commands,
//! dependencies between units resolved to those names (or noted as dropped), the
//! limits onto the workspace, and the card's text, checked by loading it back.

use std::collections::{HashMap, HashSet};

use super::directives;
use super::emit::{self, Block};
use super::name::card_name;
use super::plan::{DepKind, Plan};
use super::{Conversion, ConvertError, Options, UnitReport};
use crate::card;
use crate::spec::{
    valid_name, DepRef, Limits, WorkspaceSpec, MAX_COMMANDS_PER_WORKSPACE, MAX_NAME_LEN,
};
use crate::units;

/// `base` + `suffix`, `base` cut so the whole is a valid name, made unique against
/// `used` with `-2`, `-3`, ...
fn unique(base: &str, suffix: &str, used: &mut HashSet<String>) -> String {
    for n in 1usize.. {
        let tail = if n == 1 {
            suffix.to_string()
        } else {
            format!("{suffix}-{n}")
        };
        let keep = MAX_NAME_LEN.saturating_sub(tail.len()).min(base.len());
        let name = format!("{}{tail}", &base[..keep]);
        if !used.contains(&name) {
            used.insert(name.clone());
            return name;
        }
    }
    unreachable!("some suffix is always free")
}

fn local(name: &str) -> DepRef {
    DepRef {
        workspace: None,
        name: name.to_string(),
    }
}

fn push_unique(list: &mut Vec<DepRef>, d: DepRef) {
    if !list.contains(&d) {
        list.push(d);
    }
}

pub fn assemble(mut plans: Vec<Plan>, options: &Options) -> Result<Conversion, ConvertError> {
    let workspace = match &options.workspace {
        Some(w) if valid_name(w) => w.clone(),
        Some(w) => return Err(ConvertError::Workspace(w.clone())),
        None => card_name(plans[0].name.stem()),
    };
    let total: usize = plans.iter().map(|p| p.cmds.len()).sum();
    if total > MAX_COMMANDS_PER_WORKSPACE {
        return Err(ConvertError::TooMany(total));
    }
    // Names: each unit's commands are its card name plus their suffix.
    let mut used = HashSet::new();
    let mut names: Vec<Vec<String>> = Vec::new();
    for plan in &plans {
        let base = card_name(plan.name.stem());
        names.push(
            plan.cmds
                .iter()
                .map(|c| unique(&base, &c.suffix, &mut used))
                .collect(),
        );
    }
    for (plan, names) in plans.iter_mut().zip(&names) {
        for i in 0..plan.cmds.len() {
            let (after, requires) = (plan.cmds[i].after.clone(), plan.cmds[i].requires.clone());
            let spec = &mut plan.cmds[i].spec;
            spec.name = names[i].clone();
            for j in after {
                push_unique(&mut spec.after, local(&names[j]));
            }
            for j in requires {
                push_unique(&mut spec.requires, local(&names[j]));
            }
        }
    }
    // What the card would refuse is refused here, naming the unit: the notes should
    // have caught it, so this is a safety net.
    for plan in &plans {
        for c in &plan.cmds {
            if let Err((field, message)) = card::check_command(&c.spec) {
                return Err(ConvertError::Refused {
                    unit: plan.name.full.clone(),
                    at: None,
                    reason: format!("the card cannot hold its {field}: {message}"),
                });
            }
        }
    }
    // Dependencies between the converted units, by unit name or the name asked for.
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, plan) in plans.iter().enumerate() {
        index.insert(plan.name.full.clone(), i);
        index.entry(plan.requested.clone()).or_insert(i);
    }
    // A unit that is not converted still orders those that are, when some are
    // After= it and others Before= it (network.target between networking.service
    // and ssh.service): that much of it is kept, as an `after` between them.
    let mut sides: HashMap<(String, DepKind), Vec<usize>> = HashMap::new();
    for (i, plan) in plans.iter().enumerate() {
        for dep in &plan.deps {
            if !index.contains_key(&dep.target)
                && matches!(dep.kind, DepKind::After | DepKind::Before)
            {
                let side = sides.entry((dep.target.clone(), dep.kind)).or_default();
                if !side.contains(&i) {
                    side.push(i);
                }
            }
        }
    }
    for i in 0..plans.len() {
        for dep in plans[i].deps.clone() {
            if dep.target == plans[i].name.full {
                continue;
            }
            // After= a socket of a converted service: after that service, which opens
            // the socket itself (systemd orders the socket, and buffers what arrives
            // on it before the service runs; under arje the service must be up).
            if dep.kind == DepKind::After && !index.contains_key(&dep.target) {
                if let Some(j) = plans.iter().position(|p| p.sockets.contains(&dep.target)) {
                    if j != i {
                        let last_j = names[j][plans[j].last].clone();
                        for e in plans[i].entry() {
                            push_unique(&mut plans[i].cmds[e].spec.after, local(&last_j));
                        }
                        let text = format!(
                            "partly translated: after {}, which opens {} itself under arje (no socket activation)",
                            plans[j].name.full, dep.target
                        );
                        plans[i].notes.push(dep.src.note(text));
                        continue;
                    }
                }
            }
            let Some(&j) = index.get(&dep.target) else {
                let opposite = match dep.kind {
                    DepKind::After => Some(DepKind::Before),
                    DepKind::Before => Some(DepKind::After),
                    _ => None,
                };
                let others: Vec<usize> = opposite
                    .and_then(|o| sides.get(&(dep.target.clone(), o)))
                    .map(|v| v.iter().copied().filter(|&k| k != i).collect())
                    .unwrap_or_default();
                if !others.is_empty() {
                    // This unit is after (or before) each of the others through it.
                    let mut kept = Vec::new();
                    for k in others {
                        let (first, then) = if dep.kind == DepKind::After {
                            (k, i)
                        } else {
                            (i, k)
                        };
                        let last = names[first][plans[first].last].clone();
                        for e in plans[then].entry() {
                            push_unique(&mut plans[then].cmds[e].spec.after, local(&last));
                        }
                        kept.push(plans[k].name.full.clone());
                    }
                    let text = format!(
                        "partly translated: kept as the order between this unit and {} (the other side of {}); {}",
                        kept.join(", "),
                        dep.target,
                        directives::dropped_dependency(&dep.target)
                    );
                    plans[i].notes.push(dep.src.note(text));
                } else if !directives::implicit_unit(&dep.target) {
                    let text = format!(
                        "not translated: {}",
                        directives::dropped_dependency(&dep.target)
                    );
                    plans[i].notes.push(dep.src.note(text));
                }
                continue;
            };
            let (main_j, last_j) = (
                names[j][plans[j].main].clone(),
                names[j][plans[j].last].clone(),
            );
            let last_i = names[i][plans[i].last].clone();
            match dep.kind {
                DepKind::After => {
                    for e in plans[i].entry() {
                        push_unique(&mut plans[i].cmds[e].spec.after, local(&last_j));
                    }
                }
                DepKind::Before => {
                    for e in plans[j].entry() {
                        push_unique(&mut plans[j].cmds[e].spec.after, local(&last_i));
                    }
                }
                DepKind::Requires | DepKind::BindsTo => {
                    let m = plans[i].main;
                    push_unique(&mut plans[i].cmds[m].spec.requires, local(&main_j));
                }
                DepKind::Wants => {
                    let m = plans[i].main;
                    push_unique(&mut plans[i].cmds[m].spec.wants, local(&main_j));
                }
            }
        }
    }
    // Limits: a workspace's limits are shared by all its commands, so a unit's limit
    // is the workspace's only when it is the card's one unit.
    let mut limits = Limits::default();
    let single = plans.len() == 1;
    for plan in plans.iter_mut() {
        for limit in std::mem::take(&mut plan.limits) {
            if !single {
                plan.notes.push(limit.src.note("not translated: the units of this card share one workspace and its limits; convert this unit into a card of its own to keep it"));
                continue;
            }
            let before = limits.clone();
            if let Err(e) = units::parse_limit(limit.key, &limit.value, &mut limits) {
                plan.notes
                    .push(limit.src.note(format!("not translated: {e}")));
                continue;
            }
            if let Err(e) = card::check_limits(&limits) {
                limits = before;
                plan.notes
                    .push(limit.src.note(format!("not translated: {}", e.1)));
            }
        }
    }
    // Notes in file order: the unit file first, then its drop-ins.
    for plan in plans.iter_mut() {
        let unit = plan.name.full.clone();
        plan.notes.sort_by(|a, b| {
            (a.file != unit, &a.file, a.line).cmp(&(b.file != unit, &b.file, b.line))
        });
    }
    let mut spec = WorkspaceSpec {
        name: workspace,
        limits,
        ..WorkspaceSpec::default()
    };
    let mut blocks = Vec::new();
    let mut reports = Vec::new();
    for plan in plans {
        let mut cmds = Vec::new();
        for c in &plan.cmds {
            spec.commands.push(c.spec.clone());
            cmds.push((c.spec.clone(), c.comment.clone()));
        }
        blocks.push(Block {
            unit: plan.name.full.clone(),
            description: plan.description.clone(),
            comments: plan.comments.clone(),
            notes: plan.notes.iter().map(ToString::to_string).collect(),
            cmds,
        });
        reports.push(UnitReport {
            unit: plan.name.full,
            fragment: plan.fragment,
            commands: plan.cmds.iter().map(|c| c.spec.name.clone()).collect(),
            notes: plan.notes,
            comments: plan.comments,
        });
    }
    let text = emit::card(&spec, &blocks);
    let loaded = card::load_str(&text, "converted card").map_err(ConvertError::Card)?;
    Ok(Conversion {
        card: text,
        spec: loaded,
        units: reports,
    })
}
