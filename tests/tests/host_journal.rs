//! The event journal on disk (issue 13): events outlive the daemon, are read by the same
//! cursor afterwards, and a log damaged by a crash is repaired at start with a Warning
//! naming the damage.

use arje_tests::host::{err, out, Daemon};
use shuma_card::{Event, EventKind};

const CARD: &str = r#"
[workspace]
name = "j"

[[task]]
name = "hello"
argv = ["/bin/echo", "hello"]
"#;

/// Every event `shuma --json events --after AFTER` prints.
fn events_after(d: &Daemon, after: u64) -> Vec<Event> {
    let o = d.shuma(&["--json", "events", "--after", &after.to_string()]);
    assert!(o.status.success(), "{}", err(&o));
    out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A daemon on the durable directory `durable` with a fresh state directory (as after
/// a reboot), which creates workspace `j` from `CARD` and waits for its task's exit.
fn daemon_with_a_task(durable: &std::path::Path) -> Daemon {
    let d = Daemon::start_with(&[], &["--durable-dir", durable.to_str().unwrap()]);
    let created = d.ws_create("j.toml", CARD);
    assert!(created.status.success(), "{}", err(&created));
    d.events_until(
        1,
        |k| matches!(k, EventKind::CommandExited { command, .. } if command == "hello"),
    );
    d
}

#[test]
fn test_events_outlive_the_daemon_and_are_read_by_cursor_after_a_restart() {
    // Arrange: a first daemon's events, up to the task's exit.
    let state = tempfile::tempdir().unwrap();
    let durable = state.path().join("durable");
    let first = daemon_with_a_task(&durable);
    let before = events_after(&first, 0);
    let exited = before
        .iter()
        .find(|e| matches!(&e.kind, EventKind::CommandExited { command, .. } if command == "hello"))
        .expect("the task's exit")
        .clone();
    assert_eq!(first.stop(), Some(0));

    // Act: a second daemon on the same durable directory, a fresh /run.
    let second = Daemon::start_with(&[], &["--durable-dir", durable.to_str().unwrap()]);
    let all = events_after(&second, 0);
    let from_cursor = events_after(&second, exited.id - 1);

    // Assert: the first daemon's events, same ids and contents, then the second's.
    assert_eq!(&all[..before.len()], &before[..], "{all:#?}");
    assert_eq!(from_cursor.first(), Some(&exited));
    let last_before = before.last().unwrap().id;
    assert!(
        all[before.len()..].iter().all(|e| e.id > last_before),
        "ids reused after the restart: {all:#?}"
    );
    let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[test]
fn test_torn_tail_after_a_crash_is_truncated_with_a_warning_and_the_journal_reads() {
    // Arrange: a daemon's journal, then a record cut short appended to its newest
    // segment, as a power cut in the middle of a write leaves it.
    let state = tempfile::tempdir().unwrap();
    let durable = state.path().join("durable");
    let first = daemon_with_a_task(&durable);
    let before = events_after(&first, 0);
    let seg_dir = durable.join("events");
    let newest = || {
        let mut names: Vec<_> = std::fs::read_dir(&seg_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        names.sort();
        names.pop().expect("a segment")
    };
    assert_eq!(first.stop(), Some(0));
    let seg = newest();
    let whole = std::fs::metadata(&seg).unwrap().len();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        // A record header announcing 200 bytes, and only 5 of them.
        f.write_all(&200u32.to_le_bytes()).unwrap();
        f.write_all(&[0u8; 9]).unwrap();
    }

    // Act
    let second = Daemon::start_with(&[], &["--durable-dir", durable.to_str().unwrap()]);
    let all = events_after(&second, 0);

    // Assert: the old events read, the tail is gone, and a Warning says where it was.
    assert_eq!(&all[..before.len()], &before[..]);
    let warned = all.iter().any(|e| {
        matches!(&e.kind, EventKind::Warning { message }
            if message.contains("torn tail") && message.contains(&format!("offset {whole}")))
    });
    assert!(
        warned,
        "no torn-tail Warning naming offset {whole}: {all:#?}"
    );
}
