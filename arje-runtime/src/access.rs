//! Who may do what over the control socket.
//!
//! Root and arje's own user have full access. Members of `--socket-group` (by primary
//! gid, or by a supplementary group the peer had when it connected) may only read: the
//! requests that change nothing, and `ws show` with the commands' environment values
//! hidden. Everyone else is refused at accept. The rule is one `match` over every
//! request ([`Access::may`]) with no wildcard arm, so a new request must be classified.
//!
//! Why read-only: a request that creates a workspace or runs a command picks the
//! command's user (root included), its log file (appended to as arje's user), and its
//! environment; `ws stop`, `ws set`, shutdown and re-exec stop or replace what runs. A
//! group member with any of them would be root in all but name.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use shuma_card::protocol::{CmdAction, Request, Response};

/// What a connection's peer may do, decided once at accept from its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Root, or arje's own user: every request.
    Full,
    /// A member of the socket's group: requests that change nothing.
    ReadOnly,
}

/// The peer of a connection: its uid (SO_PEERCRED) and what that allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub access: Access,
}

/// Shown instead of an environment value to a read-only peer.
pub const HIDDEN: &str = "<hidden>";

/// May this peer use the socket, and how? Root or arje's own user: full. A member of
/// `group`, by its primary gid or by a supplementary group: read-only. Anyone else is
/// refused with the reason.
///
/// Both the credentials (SO_PEERCRED) and the supplementary groups (SO_PEERGROUPS) are
/// the ones the kernel recorded when the peer called connect(2): a process that changes
/// its groups later, or exits and leaves its pid to another, changes nothing here.
pub fn peer_access(stream: &UnixStream, group: Option<u32>) -> Result<Peer, String> {
    let cred =
        rustix::net::sockopt::socket_peercred(stream).map_err(|e| format!("SO_PEERCRED: {e}"))?;
    let uid = cred.uid.as_raw();
    let gid = cred.gid.as_raw();
    if uid == 0 || uid == rustix::process::geteuid().as_raw() {
        return Ok(Peer {
            uid,
            access: Access::Full,
        });
    }
    let Some(group) = group else {
        return Err(format!("uid {uid} is not allowed on this socket"));
    };
    let member = gid == group
        || crate::sys::peer::peer_groups(stream.as_fd())
            .map_err(|e| format!("SO_PEERGROUPS: {e}"))?
            .contains(&group);
    if member {
        Ok(Peer {
            uid,
            access: Access::ReadOnly,
        })
    } else {
        Err(format!(
            "uid {uid} gid {gid} is not allowed on this socket (not in group {group})"
        ))
    }
}

impl Access {
    /// May a peer with this access make `req`?
    pub fn may(self, req: &Request) -> bool {
        self == Access::Full || !changes_something(req)
    }
}

/// Does `req` change what runs or how (everything a read-only peer may not do)?
fn changes_something(req: &Request) -> bool {
    match req {
        Request::Hello { .. }
        | Request::Ping
        | Request::Status
        | Request::WsList
        | Request::WsShow { .. }
        | Request::WsStats { .. }
        | Request::Ps { .. }
        | Request::Logs { .. }
        | Request::Events { .. }
        | Request::WaitReady { .. }
        | Request::PipelineList
        | Request::PipelineShow { .. }
        | Request::PipelinePs { .. }
        | Request::Caps => false,
        Request::WsCreate { .. }
        | Request::WsStop { .. }
        | Request::WsSet { .. }
        | Request::Run { .. }
        | Request::Shutdown { .. }
        | Request::DaemonReexec { .. }
        | Request::TestPanic
        | Request::Control { .. }
        | Request::PipelineSave { .. }
        | Request::PipelineRemove { .. }
        | Request::PipelineRun { .. }
        | Request::PipelineStop { .. } => true,
    }
}

/// The request's name as `shuma` spells it, for the refusal.
pub fn request_name(req: &Request) -> &'static str {
    match req {
        Request::Hello { .. } => "hello",
        Request::Ping => "ping",
        Request::Status => "status",
        Request::WsCreate { .. } => "ws create",
        Request::WsList => "ws ls",
        Request::WsShow { .. } => "ws show",
        Request::WsStop { .. } => "ws stop",
        Request::WsSet { .. } => "ws set",
        Request::WsStats { .. } => "ws stats",
        Request::Run { .. } => "run",
        Request::Ps { .. } => "ps",
        Request::Logs { .. } => "logs",
        Request::Events { .. } => "events",
        Request::Caps => "caps",
        Request::Shutdown { .. } => "shutdown",
        Request::DaemonReexec { .. } => "daemon-reexec",
        Request::TestPanic => "test-panic",
        Request::WaitReady { .. } => "wait-ready",
        Request::PipelineSave { .. } => "pipeline save",
        Request::PipelineList => "pipeline ls",
        Request::PipelineShow { .. } => "pipeline show",
        Request::PipelineRemove { .. } => "pipeline rm",
        Request::PipelineRun { .. } => "pipeline run",
        Request::PipelineStop { .. } => "pipeline stop",
        Request::PipelinePs { .. } => "pipeline ps",
        Request::Control { action, .. } => match action {
            CmdAction::Start => "start",
            CmdAction::Stop => "stop",
            CmdAction::Restart => "restart",
            CmdAction::Reload => "reload",
            CmdAction::Kill { .. } => "kill",
        },
    }
}

/// What a read-only peer may see of an answer: environment values are hidden (they
/// hold tokens and passwords more often than not), their names stay.
pub fn redact(resp: &mut Response) {
    if let Response::Workspace(detail) = resp {
        for cmd in &mut detail.spec.commands {
            for (_, value) in &mut cmd.env {
                *value = HIDDEN.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shuma_card::protocol::{ShutdownKind, WorkspaceDetail, WorkspaceInfo, WsState};
    use shuma_card::{CommandKind, CommandSpec, WorkspaceSpec};

    fn every_request() -> Vec<Request> {
        let cmd = CommandSpec::new("c", CommandKind::Task, vec!["/bin/true".into()]);
        vec![
            Request::Hello {
                version: 2,
                client: "t".into(),
            },
            Request::Ping,
            Request::Status,
            Request::WsCreate {
                spec: WorkspaceSpec {
                    name: "w".into(),
                    ..Default::default()
                },
            },
            Request::WsList,
            Request::WsShow { name: "w".into() },
            Request::WsStop {
                name: "w".into(),
                grace_ms: None,
            },
            Request::WsSet {
                name: "w".into(),
                key: "pids_max".into(),
                value: "5".into(),
            },
            Request::WsStats { name: "w".into() },
            Request::Run {
                workspace: "w".into(),
                command: cmd,
                wait: false,
            },
            Request::Ps { workspace: None },
            Request::Logs {
                workspace: "w".into(),
                command: "c".into(),
                stream: shuma_card::protocol::Stream::Both,
                follow: false,
            },
            Request::Events {
                after: None,
                follow: true,
            },
            Request::Caps,
            Request::Shutdown {
                kind: ShutdownKind::Poweroff,
            },
            Request::DaemonReexec { binary: None },
            Request::TestPanic,
            Request::Control {
                workspace: "w".into(),
                command: "c".into(),
                action: shuma_card::protocol::CmdAction::Stop,
            },
            Request::Control {
                workspace: "w".into(),
                command: "c".into(),
                action: shuma_card::protocol::CmdAction::Kill { signal: 9 },
            },
        ]
    }

    #[test]
    fn test_read_only_may_read_and_nothing_else() {
        let allowed: Vec<&str> = every_request()
            .iter()
            .filter(|r| Access::ReadOnly.may(r))
            .map(request_name)
            .collect();

        assert_eq!(
            allowed,
            [
                "hello", "ping", "status", "ws ls", "ws show", "ws stats", "ps", "logs", "events",
                "caps"
            ]
        );
    }

    #[test]
    fn test_full_may_do_everything() {
        assert!(every_request().iter().all(|r| Access::Full.may(r)));
    }

    #[test]
    fn test_redact_hides_env_values_keeps_names() {
        let mut spec = WorkspaceSpec {
            name: "w".into(),
            ..Default::default()
        };
        let mut cmd = CommandSpec::new("c", CommandKind::Service, vec!["/bin/x".into()]);
        cmd.env = vec![("TOKEN".into(), "s3cret".into())];
        spec.commands.push(cmd);
        let mut resp = Response::Workspace(Box::new(WorkspaceDetail {
            info: WorkspaceInfo {
                name: "w".into(),
                state: WsState::Running,
                commands: 1,
                running: 1,
                limits: Default::default(),
                cgroup: None,
                created_unix_ms: 0,
            },
            spec,
            unenforced: Vec::new(),
        }));

        redact(&mut resp);

        let Response::Workspace(detail) = resp else {
            unreachable!()
        };
        assert_eq!(
            detail.spec.commands[0].env,
            [("TOKEN".to_string(), HIDDEN.to_string())]
        );
    }
}
