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

const SECRET: &str = r#"
[workspace]
name = "sec"

[[service]]
name = "svc"
argv = ["/bin/sleep", "1000"]
env = { TOKEN = "hunter2-secret-value" }
"#;

/// The control group of these tests: nobody is in it only as a supplementary group.
const CONTROL_GID: &str = "4242";

/// How a client is a member of the socket's group.
#[derive(Clone, Copy)]
enum Member {
    /// Its primary gid (what SO_PEERCRED reports).
    Primary,
    /// Only a supplementary group (SO_PEERGROUPS).
    Supplementary,
}

/// `shuma` as nobody (uid 65534), a member of the socket's group.
fn shuma_as(member: Member, d: &Daemon, args: &[&str]) -> std::process::Output {
    let (gid, groups) = match member {
        Member::Primary => (CONTROL_GID, "65534"),
        Member::Supplementary => ("65534", CONTROL_GID),
    };
    std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid", "65534", "--regid", gid, "--groups", groups, "--"])
        .arg(arje_tests::host::bin_dir().join("shuma"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run shuma through setpriv")
}

#[test]
fn test_socket_group_supplementary_member_reads_but_cannot_change_anything() {
    member_reads_but_cannot_change_anything(Member::Supplementary);
}

#[test]
fn test_socket_group_primary_member_reads_but_cannot_change_anything() {
    member_reads_but_cannot_change_anything(Member::Primary);
}

fn member_reads_but_cannot_change_anything(member: Member) {
    let shuma_as_member = |d: &Daemon, args: &[&str]| shuma_as(member, d, args);
    let d = Daemon::start_with(&[("sec.toml", SECRET)], &["--socket-group", CONTROL_GID]);
    d.events_until(
        1,
        |k| matches!(k, EventKind::CommandStarted { command, .. } if command == "svc"),
    );
    let card = d.dir.path().join("other.toml");
    std::fs::write(&card, "[workspace]\nname = \"other\"\n").unwrap();

    let ping = shuma_as_member(&d, &["ping"]);
    let ps = shuma_as_member(&d, &["ps"]);
    let show = shuma_as_member(&d, &["ws", "show", "sec"]);
    let show_json = shuma_as_member(&d, &["--json", "ws", "show", "sec"]);
    let events = shuma_as_member(&d, &["events"]);
    let create = shuma_as_member(&d, &["ws", "create", card.to_str().unwrap()]);
    let stop = shuma_as_member(&d, &["ws", "stop", "sec"]);
    let run = shuma_as_member(&d, &["run", "sec", "--", "/bin/true"]);
    let reexec = shuma_as_member(&d, &["daemon-reexec"]);
    let root_ls = out(&d.shuma(&["ws", "ls"]));
    let root_show = out(&d.shuma(&["--json", "ws", "show", "sec"]));

    assert_eq!(out(&ping).trim(), "pong", "{}", err(&ping));
    assert!(
        ps.status.success() && out(&ps).contains("svc"),
        "{}",
        err(&ps)
    );
    assert!(events.status.success(), "{}", err(&events));
    for shown in [&show, &show_json] {
        assert!(shown.status.success(), "{}", err(shown));
        assert!(!out(shown).contains("hunter2"), "{}", out(shown));
    }
    // The name stays, the value is replaced.
    let compact: String = out(&show_json).split_whitespace().collect();
    assert!(compact.contains(r#"["TOKEN","<hidden>"]"#), "{compact}");
    for refused in [&create, &stop, &run, &reexec] {
        assert_eq!(refused.status.code(), Some(1), "{}", out(refused));
        assert!(err(refused).contains("may only read"), "{}", err(refused));
    }
    assert!(!root_ls.contains("other"), "{root_ls}");
    assert!(root_ls.contains("sec"), "{root_ls}");
    // Root sees the value.
    assert!(root_show.contains("hunter2-secret-value"), "{root_show}");
}
