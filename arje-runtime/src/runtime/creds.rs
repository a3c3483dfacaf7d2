//! A command's credentials: the card's `user` and `group` resolved to a uid, a gid and
//! the supplementary groups, in the parent (the child, between clone and exec, can read
//! no file: it may not allocate or take a lock).
//!
//! The rules, as docs/CARDS.md states them:
//! - `user` is a name, or a number (a string of digits, or a TOML integer). A number
//!   with a passwd entry is that user, exactly as by name; a number without one is that
//!   uid, its group the same number unless `group` is set, and no other groups.
//! - `group` is a name or a number, and replaces the user's primary group.
//! - The supplementary groups are those of initgroups(3): every group of /etc/group
//!   that lists the user, plus the primary group. A command without `user` but with
//!   `group` keeps arje's uid and gets that one group alone.
//!
//! Names are looked up in /etc/passwd and /etc/group by arje itself (`crate::userdb`
//! says why not through the C library).

use crate::userdb;
use shuma_card::CommandSpec;

/// What the spawner applies: uid, gid, supplementary groups.
pub type Creds = (u32, u32, Vec<u32>);

/// A user or group field: a number, or a name to look up.
#[derive(Debug, PartialEq, Eq)]
enum Id<'a> {
    Number(u32),
    Name(&'a str),
}

/// A string of digits is a number; everything else a name. u32::MAX is (uid_t)-1,
/// which setuid(2) takes for "leave unchanged": refused, never silently kept as root.
fn parse_id<'a>(field: &str, text: &'a str) -> Result<Id<'a>, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Id::Name(text));
    }
    match text.parse::<u32>() {
        Ok(n) if n != u32::MAX => Ok(Id::Number(n)),
        _ => Err(format!("{field} {text}: not a valid id (0 to 4294967294)")),
    }
}

/// The card's user and group, resolved now. `None`: neither is set, the command runs
/// with arje's own credentials.
pub fn resolve(spec: &CommandSpec) -> Result<Option<Creds>, String> {
    if spec.user.is_none() && spec.group.is_none() {
        return Ok(None);
    }
    // (uid, its passwd entry if any)
    let user = match &spec.user {
        None => None,
        Some(text) => Some(match parse_id("user", text)? {
            Id::Number(uid) => {
                let entry =
                    userdb::user_by_uid(uid).map_err(|e| format!("look up uid {uid}: {e}"))?;
                (uid, entry)
            }
            Id::Name(name) => {
                let entry = userdb::user_by_name(name)
                    .map_err(|e| format!("look up user {name}: {e}"))?
                    .ok_or_else(|| format!("no such user {name}"))?;
                (entry.uid, Some(entry))
            }
        }),
    };
    let group = match &spec.group {
        None => None,
        Some(text) => Some(match parse_id("group", text)? {
            Id::Number(gid) => gid,
            Id::Name(name) => userdb::group_by_name(name)
                .map_err(|e| format!("look up group {name}: {e}"))?
                .ok_or_else(|| format!("no such group {name}"))?,
        }),
    };
    let Some((uid, entry)) = user else {
        // `group` alone: arje's uid, that one group.
        let gid = group.unwrap_or(0);
        return Ok(Some((rustix::process::geteuid().as_raw(), gid, vec![gid])));
    };
    let Some(entry) = entry else {
        // A uid nobody named: its group is the same number unless `group` says.
        let gid = group.unwrap_or(uid);
        return Ok(Some((uid, gid, vec![gid])));
    };
    let gid = group.unwrap_or(entry.gid);
    let groups = userdb::group_list(&entry.name, gid)
        .map_err(|e| format!("groups of user {}: {e}", entry.name))?;
    Ok(Some((uid, gid, groups)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_id_digits_are_a_number() {
        assert_eq!(parse_id("user", "0"), Ok(Id::Number(0)));
        assert_eq!(parse_id("user", "1001"), Ok(Id::Number(1001)));
        assert_eq!(
            parse_id("user", "4294967294"),
            Ok(Id::Number(4_294_967_294))
        );
    }

    #[test]
    fn test_parse_id_names_stay_names() {
        assert_eq!(parse_id("user", "nobody"), Ok(Id::Name("nobody")));
        assert_eq!(parse_id("user", "user1"), Ok(Id::Name("user1")));
        assert_eq!(parse_id("user", "-1"), Ok(Id::Name("-1")));
    }

    #[test]
    fn test_parse_id_minus_one_and_overflow_refused() {
        assert!(parse_id("user", "4294967295").is_err());
        assert!(parse_id("group", "99999999999").is_err());
    }

    #[test]
    fn test_resolve_numeric_uid_without_entry_gets_same_gid() {
        // 4294967294 has no passwd entry on any sane machine.
        let mut spec = CommandSpec::new("t", shuma_card::CommandKind::Task, Vec::new());
        spec.user = Some("4294967294".into());

        let creds = resolve(&spec).unwrap();

        assert_eq!(
            creds,
            Some((4_294_967_294, 4_294_967_294, vec![4_294_967_294]))
        );
    }

    #[test]
    fn test_resolve_numeric_group_alone_keeps_our_uid() {
        let mut spec = CommandSpec::new("t", shuma_card::CommandKind::Task, Vec::new());
        spec.group = Some("4242".into());

        let creds = resolve(&spec).unwrap();

        let uid = rustix::process::geteuid().as_raw();
        assert_eq!(creds, Some((uid, 4242, vec![4242])));
    }

    #[test]
    fn test_resolve_unknown_name_is_an_error_naming_it() {
        let mut spec = CommandSpec::new("t", shuma_card::CommandKind::Task, Vec::new());
        spec.user = Some("no-such-user-here".into());

        let err = resolve(&spec).unwrap_err();

        assert_eq!(err, "no such user no-such-user-here");
    }
}
