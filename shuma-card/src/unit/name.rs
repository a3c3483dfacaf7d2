//! Unit names (systemd.unit(5)): `prefix[@instance].type`, systemd's escaping of paths
//! and instances, and the card name a unit becomes.

use crate::spec::{valid_name, MAX_NAME_LEN};

/// The unit types systemd knows; only `service` is converted.
pub const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "path",
    "timer",
    "slice",
    "scope",
];

/// A unit name taken apart: `getty@ttyS0.service` is prefix `getty`, instance `ttyS0`,
/// type `service`; a template `getty@.service` has the empty instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitName {
    pub full: String,
    pub prefix: String,
    pub instance: Option<String>,
    pub kind: String,
}

impl UnitName {
    /// `None` when `s` is not `NAME.TYPE` with a known type, or has more than one `@`,
    /// or characters systemd does not allow in unit names.
    pub fn parse(s: &str) -> Option<UnitName> {
        let (stem, kind) = s.rsplit_once('.')?;
        if !UNIT_TYPES.contains(&kind) || stem.is_empty() || s.len() > 255 {
            return None;
        }
        // systemd's VALID_CHARS: alphanumerics and ":-_.\", plus "@" once.
        let allowed = |c: char| c.is_ascii_alphanumeric() || ":-_.\\".contains(c);
        let (prefix, instance) = match stem.split_once('@') {
            Some((p, i)) => (p, Some(i)),
            None => (stem, None),
        };
        if prefix.is_empty()
            || !prefix.chars().all(allowed)
            || instance.is_some_and(|i| !i.chars().all(allowed))
        {
            return None;
        }
        Some(UnitName {
            full: s.to_string(),
            prefix: prefix.to_string(),
            instance: instance.map(str::to_string),
            kind: kind.to_string(),
        })
    }

    /// `getty@.service` for `getty@ttyS0.service`; `None` for a unit that is not an
    /// instance of a template.
    pub fn template(&self) -> Option<String> {
        match &self.instance {
            Some(i) if !i.is_empty() => Some(format!("{}@.{}", self.prefix, self.kind)),
            _ => None,
        }
    }

    /// A template itself (`getty@.service`), which cannot run without an instance.
    pub fn is_template(&self) -> bool {
        self.instance.as_deref() == Some("")
    }

    /// The name without its type: `getty@ttyS0`.
    pub fn stem(&self) -> &str {
        &self.full[..self.full.len() - self.kind.len() - 1]
    }
}

/// systemd's `unit_name_unescape`: `\xNN` is the byte NN and `-` is `/`.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'-' => out.push(b'/'),
            b'\\' if b.get(i + 1) == Some(&b'x') => {
                let hex = b
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => out.push(b'\\'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The card name for a unit stem: lower case, every character outside `[a-z0-9._-]`
/// as `-`, cut to the card's 63 bytes, and a leading character that is not a letter or
/// digit dropped. `getty@ttyS0` becomes `getty-ttys0`.
pub fn card_name(stem: &str) -> String {
    let mut name: String = stem
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while name.starts_with(['.', '_', '-']) {
        name.remove(0);
    }
    name.truncate(MAX_NAME_LEN);
    if name.is_empty() {
        name.push_str("unit");
    }
    debug_assert!(valid_name(&name));
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_unit_name_parse_instance_and_template() {
        let n = UnitName::parse("getty@ttyS0.service").unwrap();
        let t = UnitName::parse("getty@.service").unwrap();

        assert_eq!(n.prefix, "getty");
        assert_eq!(n.instance.as_deref(), Some("ttyS0"));
        assert_eq!(n.template().as_deref(), Some("getty@.service"));
        assert_eq!(n.stem(), "getty@ttyS0");
        assert!(t.is_template());
        assert_eq!(t.template(), None);
    }

    #[test]
    fn test_unit_name_parse_refuses_bad_names() {
        assert!(UnitName::parse("ssh").is_none());
        assert!(UnitName::parse("ssh.conf").is_none());
        assert!(UnitName::parse(".service").is_none());
        assert!(UnitName::parse("a b.service").is_none());
        assert!(UnitName::parse("a@b@c.service").is_none());
    }

    #[test]
    fn test_unescape_dashes_and_hex() {
        assert_eq!(unescape("dev-ttyS0"), "dev/ttyS0");
        assert_eq!(unescape("a\\x2db"), "a-b");
        assert_eq!(unescape("bad\\xZZ"), "bad\\xZZ");
    }

    #[test]
    fn test_card_name_sanitised() {
        assert_eq!(card_name("getty@ttyS0"), "getty-ttys0");
        assert_eq!(card_name("systemd-udevd"), "systemd-udevd");
        assert_eq!(card_name("-x"), "x");
        assert_eq!(card_name("@@"), "unit");
        assert_eq!(card_name(&"a".repeat(80)).len(), 63);
    }
}
