//! The user and group databases, read from `/etc/passwd` and `/etc/group` (passwd(5),
//! group(5)) by arje itself, not through the C library's getpwnam(3) and kin.
//!
//! Why not the C library: the shipped PID-1 binary is static, and a static glibc looks
//! a name up through NSS, which dlopens the modules `/etc/nsswitch.conf` lists. On a
//! host whose nsswitch.conf says `passwd: files systemd`, a lookup that the files do not
//! answer (a user that does not exist) loads `libnss_systemd.so.2` into the static
//! binary: the static glibc build of arje-init died of SIGSEGV there (observed on this
//! project's Debian 12 machines), and PID 1 must never die of a card's typo. musl never
//! used NSS: its getpwnam reads these two files. So every build answers from the files,
//! as docs/CARDS.md has always said, and the same code runs in the tests.
//!
//! The rules are those of glibc's `files` backend: the first entry that matches wins,
//! a line that does not parse is skipped (as are NIS's `+` and `-` lines), and a
//! missing file is an empty database.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// The password database's path.
pub const PASSWD: &str = "/etc/passwd";
/// The group database's path.
pub const GROUP: &str = "/etc/group";

/// One passwd entry: what arje needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// One group entry: its name, gid and member names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// A numeric id field; (uid_t)-1 is no id (setuid(2)'s "unchanged").
fn id(field: &str) -> Option<u32> {
    field.parse().ok().filter(|&n| n != u32::MAX)
}

fn parse_user(line: &str) -> Option<User> {
    let mut f = line.split(':');
    let name = f.next()?;
    let _password = f.next()?;
    let uid = id(f.next()?)?;
    let gid = id(f.next()?)?;
    (!name.is_empty() && !name.starts_with(['+', '-', '#'])).then(|| User {
        name: name.to_string(),
        uid,
        gid,
    })
}

fn parse_group(line: &str) -> Option<GroupEntry> {
    let mut f = line.split(':');
    let name = f.next()?;
    let _password = f.next()?;
    let gid = id(f.next()?)?;
    let members = f
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    (!name.is_empty() && !name.starts_with(['+', '-', '#'])).then(|| GroupEntry {
        name: name.to_string(),
        gid,
        members,
    })
}

/// The first entry of `db` that `parse` reads and `want` accepts. Lines that are not
/// UTF-8 are skipped like any other line that does not parse.
fn find<T>(
    db: impl BufRead,
    parse: fn(&str) -> Option<T>,
    mut want: impl FnMut(&T) -> bool,
) -> std::io::Result<Option<T>> {
    for line in db.split(b'\n') {
        let line = line?;
        let Ok(line) = std::str::from_utf8(&line) else {
            continue;
        };
        if let Some(entry) = parse(line.trim_end_matches('\r')) {
            if want(&entry) {
                return Ok(Some(entry));
            }
        }
    }
    Ok(None)
}

/// `path` opened for reading, `None` if it does not exist.
fn open(path: &Path) -> std::io::Result<Option<BufReader<File>>> {
    match File::open(path) {
        Ok(f) => Ok(Some(BufReader::new(f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The user named `name` in `/etc/passwd` (getpwnam(3)).
pub fn user_by_name(name: &str) -> std::io::Result<Option<User>> {
    match open(Path::new(PASSWD))? {
        Some(db) => find(db, parse_user, |u| u.name == name),
        None => Ok(None),
    }
}

/// The first user with `uid` in `/etc/passwd` (getpwuid(3)).
pub fn user_by_uid(uid: u32) -> std::io::Result<Option<User>> {
    match open(Path::new(PASSWD))? {
        Some(db) => find(db, parse_user, |u| u.uid == uid),
        None => Ok(None),
    }
}

/// The gid of the group named `name` in `/etc/group` (getgrnam(3)).
pub fn group_by_name(name: &str) -> std::io::Result<Option<u32>> {
    match open(Path::new(GROUP))? {
        Some(db) => Ok(find(db, parse_group, |g| g.name == name)?.map(|g| g.gid)),
        None => Ok(None),
    }
}

/// `gid` and then the gid of every group of `/etc/group` that lists `user` as a member,
/// each once (getgrouplist(3), as initgroups(3) uses it).
pub fn group_list(user: &str, gid: u32) -> std::io::Result<Vec<u32>> {
    match open(Path::new(GROUP))? {
        Some(db) => groups_of(db, user, gid),
        None => Ok(vec![gid]),
    }
}

fn groups_of(db: impl BufRead, user: &str, gid: u32) -> std::io::Result<Vec<u32>> {
    let mut out = vec![gid];
    find(db, parse_group, |g| {
        if g.members.iter().any(|m| m == user) && !out.contains(&g.gid) {
            out.push(g.gid);
        }
        false
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD_TEXT: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # a comment\n\
        +nis::::::\n\
        broken line\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        bad:x:notanumber:1:::\n\
        alias:x:1000:5::/:/bin/sh\n\
        minus:x:4294967295:1::/:/bin/sh\n";

    const GROUP_TEXT: &str = "root:x:0:\n\
        alice:x:1000:\n\
        audio:x:29:bob, alice\n\
        video:x:44:alice\n\
        again:x:44:alice\n\
        other:x:50:alicex,xalice\n\
        nomembers:x:60\n";

    fn user(db: &str, want: impl FnMut(&User) -> bool) -> Option<User> {
        find(db.as_bytes(), parse_user, want).unwrap()
    }

    #[test]
    fn test_user_by_name_found_returns_its_ids() {
        // Arrange, Act
        let u = user(PASSWD_TEXT, |u| u.name == "alice");
        // Assert
        assert_eq!(
            u,
            Some(User {
                name: "alice".into(),
                uid: 1000,
                gid: 1000
            })
        );
    }

    #[test]
    fn test_user_by_uid_two_entries_first_wins() {
        let u = user(PASSWD_TEXT, |u| u.uid == 1000);
        assert_eq!(u.map(|u| u.name), Some("alice".to_string()));
    }

    #[test]
    fn test_user_lines_that_do_not_parse_are_skipped() {
        for name in ["broken line", "bad", "+nis", "# a comment", "minus"] {
            assert_eq!(user(PASSWD_TEXT, |u| u.name == name), None, "{name}");
        }
        assert_eq!(user(PASSWD_TEXT, |u| u.uid == u32::MAX), None);
    }

    #[test]
    fn test_user_not_utf8_line_is_skipped_not_an_error() {
        let db: &[u8] = b"\xff\xfe:x:1:1::/:/bin/sh\r\nbob:x:2:3::/:/bin/sh\r\n";
        let u = find(db, parse_user, |u| u.name == "bob").unwrap();
        assert_eq!(u.map(|u| (u.uid, u.gid)), Some((2, 3)));
    }

    #[test]
    fn test_group_by_name_found_returns_its_gid() {
        let g = find(GROUP_TEXT.as_bytes(), parse_group, |g| g.name == "audio").unwrap();
        assert_eq!(g.map(|g| g.gid), Some(29));
        let none = find(GROUP_TEXT.as_bytes(), parse_group, |g| {
            g.name == "nomembers"
        });
        assert_eq!(none.unwrap().map(|g| g.gid), Some(60));
    }

    #[test]
    fn test_groups_of_member_lists_primary_first_each_once() {
        // Arrange: alice is in audio (listed second, after a space), video and again
        // (both gid 44), not in other (names that only contain hers).
        // Act
        let groups = groups_of(GROUP_TEXT.as_bytes(), "alice", 1000).unwrap();
        // Assert
        assert_eq!(groups, vec![1000, 29, 44]);
    }

    #[test]
    fn test_groups_of_primary_also_listed_is_not_repeated() {
        let groups = groups_of(GROUP_TEXT.as_bytes(), "alice", 29).unwrap();
        assert_eq!(groups, vec![29, 44]);
    }

    #[test]
    fn test_groups_of_unlisted_user_is_primary_alone() {
        let groups = groups_of(GROUP_TEXT.as_bytes(), "carol", 7).unwrap();
        assert_eq!(groups, vec![7]);
    }
}
