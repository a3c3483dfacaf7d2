//! Privilege at both ends: the credentials a card's `user`/`group` give a command, and
//! what a member of `--socket-group` may do over the socket.

use arje_tests::host::{err, out, Daemon};
use shuma_card::EventKind;

/// Users and groups of these tests, seen only inside the daemon's mount namespace.
const PASSWD: &str = "arjetest:x:4601:4601::/nonexistent:/usr/sbin/nologin\n";
const GROUP: &str = "\
arjetest:x:4601:
arjeextra:x:4602:arjetest
arjeother:x:4603:somebodyelse
arjealso:x:4604:root,arjetest
";

/// A task printing its uid, gid and groups, as numbers.
fn id_task(name: &str, creds: &str) -> String {
    format!(
        "[[task]]\nname = \"{name}\"\nargv = [\"/bin/sh\", \"-c\", \"echo $(id -u) $(id -g) $(id -G)\"]\n{creds}\n"
    )
}

/// Create a workspace of `id_task`s and return each task's output line.
fn ids_of(d: &Daemon, tasks: &[(&str, &str)]) -> Vec<String> {
    let mut card = String::from("[workspace]\nname = \"ids\"\n");
    for (name, creds) in tasks {
        card.push_str(&id_task(name, creds));
    }
    let path = d.dir.path().join("ids.toml");
    std::fs::write(&path, card).unwrap();
    let created = d.shuma(&["ws", "create", path.to_str().unwrap()]);
    assert!(created.status.success(), "{}", err(&created));
    let seen = d.events_until(tasks.len(), |k| {
        matches!(
            k,
            EventKind::CommandExited { .. } | EventKind::SpawnFailed { .. }
        )
    });
    let failed: Vec<_> = seen
        .iter()
        .filter(|e| matches!(e.kind, EventKind::SpawnFailed { .. }))
        .map(|e| e.kind.to_string())
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    tasks
        .iter()
        .map(|(name, _)| out(&d.shuma(&["logs", "ids", name])).trim().to_string())
        .collect()
}

#[test]
fn test_numeric_user_and_group_run_with_those_ids() {
    let d = Daemon::start_with_users(PASSWD, GROUP, &[], &[]);

    let ids = ids_of(
        &d,
        &[
            // A uid with a passwd entry: its group and its groups, as by name.
            ("known", "user = \"4601\""),
            // A uid without one: gid the same number, no other groups.
            ("unknown", "user = 4321"),
            ("unknown-group", "user = \"4321\"\ngroup = \"4322\""),
            ("root", "user = 0\ngroup = 0"),
        ],
    );

    assert_eq!(ids[0], "4601 4601 4601 4602 4604");
    assert_eq!(ids[1], "4321 4321 4321");
    assert_eq!(ids[2], "4321 4322 4322");
    assert_eq!(ids[3], "0 0 0 4604");
}

#[test]
fn test_named_user_gets_supplementary_groups_of_etc_group() {
    let d = Daemon::start_with_users(PASSWD, GROUP, &[], &[]);

    let ids = ids_of(
        &d,
        &[
            ("named", "user = \"arjetest\""),
            // `group` replaces the primary group (initgroups with that group): the
            // groups that list the user stay, the passwd entry's group does not.
            ("regrouped", "user = \"arjetest\"\ngroup = \"arjeother\""),
        ],
    );

    assert_eq!(ids[0], "4601 4601 4601 4602 4604");
    assert_eq!(ids[1], "4601 4603 4603 4602 4604");
}
