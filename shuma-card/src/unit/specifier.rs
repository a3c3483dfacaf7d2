//! Specifiers (systemd.unit(5), "Specifiers"): `%n`, `%i`, `%t`... in unit settings,
//! expanded at conversion time to what systemd's *system* manager would put there for
//! the unit. arje runs system services, so the manager-relative ones take the system
//! manager's values: `%t` is /run, `%S` /var/lib, `%C` /var/cache, `%L` /var/log, `%E`
//! /etc, and `%u`/`%U`/`%h`/`%s`/`%g`/`%G` are root's (root, 0, /root, /bin/sh, root,
//! 0) — systemd documents these as "not influenced by the User= setting".
//!
//! Those that depend on the machine at run time (`%H` host name, `%m` machine id, `%b`
//! boot id, `%v` kernel release, `%a` architecture, the os-release ones) are not
//! expanded: the directive that uses one is reported as not translated.

use super::name::{unescape, UnitName};

/// What the expansion of one unit's values needs.
pub struct Context<'a> {
    pub name: &'a UnitName,
    /// The unit file's path, for `%y` and `%Y`.
    pub fragment: &'a str,
}

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecifierError {
    /// A specifier whose value is known only on the running machine.
    RunTime(char, &'static str),
    /// Not a specifier systemd knows (systemd refuses the setting).
    Unknown(char),
    /// A lone `%` at the end.
    Trailing,
}

impl std::fmt::Display for SpecifierError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpecifierError::RunTime(c, what) => write!(
                f,
                "%{c} ({what}) is known only on the running machine, not at conversion"
            ),
            SpecifierError::Unknown(c) => {
                write!(
                    f,
                    "%{c} is not a specifier systemd knows (it refuses the setting)"
                )
            }
            SpecifierError::Trailing => f.write_str("a lone % at the end (write %% for a %)"),
        }
    }
}

/// Expand every specifier of `s`.
pub fn expand(s: &str, cx: &Context) -> Result<String, SpecifierError> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = chars.next().ok_or(SpecifierError::Trailing)?;
        out.push_str(&value(spec, cx)?);
    }
    Ok(out)
}

fn value(spec: char, cx: &Context) -> Result<String, SpecifierError> {
    let n = cx.name;
    let instance = n.instance.clone().unwrap_or_default();
    // %j: the last dash-separated part of the prefix.
    let last = n.prefix.rsplit('-').next().unwrap_or(&n.prefix).to_string();
    let runtime = |what| Err(SpecifierError::RunTime(spec, what));
    Ok(match spec {
        '%' => "%".into(),
        'n' => n.full.clone(),
        'N' => n.stem().to_string(),
        'p' => n.prefix.clone(),
        'P' => unescape(&n.prefix),
        'i' => instance,
        'I' => unescape(&instance),
        'j' => last,
        'J' => unescape(&last),
        'f' => {
            // "/" and the unescaped instance, or the unescaped prefix for a plain unit.
            let part = if n.instance.is_some() {
                unescape(&instance)
            } else {
                unescape(&n.prefix)
            };
            if part.starts_with('/') {
                part
            } else {
                format!("/{part}")
            }
        }
        't' => "/run".into(),
        'S' => "/var/lib".into(),
        'C' => "/var/cache".into(),
        'L' => "/var/log".into(),
        'E' => "/etc".into(),
        'T' => "/tmp".into(),
        'V' => "/var/tmp".into(),
        'u' | 'g' => "root".into(),
        'U' | 'G' => "0".into(),
        'h' => "/root".into(),
        's' => "/bin/sh".into(),
        'y' => cx.fragment.to_string(),
        'Y' => match cx.fragment.rsplit_once('/') {
            Some(("", _)) => "/".into(),
            Some((dir, _)) => dir.into(),
            None => ".".into(),
        },
        'H' => return runtime("the host name"),
        'l' => return runtime("the short host name"),
        'q' => return runtime("the pretty host name"),
        'm' => return runtime("the machine id"),
        'b' => return runtime("the boot id"),
        'v' => return runtime("the kernel release"),
        'a' => return runtime("the architecture"),
        'o' | 'w' | 'W' | 'B' | 'A' | 'M' => return runtime("a field of os-release"),
        'd' => return runtime("the credentials directory"),
        other => return Err(SpecifierError::Unknown(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx_expand(unit: &str, s: &str) -> Result<String, SpecifierError> {
        let name = UnitName::parse(unit).unwrap();
        let cx = Context {
            name: &name,
            fragment: "/lib/systemd/system/x@.service",
        };
        expand(s, &cx)
    }

    #[test]
    fn test_expand_instance_specifiers() {
        let r = cx_expand("getty@ttyS0.service", "%n %N %p %i %I %f").unwrap();

        assert_eq!(
            r,
            "getty@ttyS0.service getty@ttyS0 getty ttyS0 ttyS0 /ttyS0"
        );
    }

    #[test]
    fn test_expand_escaped_instance_unescaped_by_capital_i() {
        let r = cx_expand("fsck@dev-disk-by\\x2duuid-1.service", "%i|%I").unwrap();

        assert_eq!(r, "dev-disk-by\\x2duuid-1|dev/disk/by-uuid/1");
    }

    #[test]
    fn test_expand_manager_directories_and_root_user() {
        let r = cx_expand("a-b.service", "%t %S %C %L %h %u %U %j %%").unwrap();

        assert_eq!(r, "/run /var/lib /var/cache /var/log /root root 0 b %");
    }

    #[test]
    fn test_expand_runtime_and_unknown_refused() {
        assert_eq!(
            cx_expand("a.service", "%H"),
            Err(SpecifierError::RunTime('H', "the host name"))
        );
        assert_eq!(
            cx_expand("a.service", "%z"),
            Err(SpecifierError::Unknown('z'))
        );
        assert_eq!(cx_expand("a.service", "50%"), Err(SpecifierError::Trailing));
    }
}
