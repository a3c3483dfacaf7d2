//! The control protocol over AF_VSOCK (`arje.vsock=PORT` on the kernel command line): a
//! VM's host drives the guest's arje with `shuma --vsock`, with every request it has.
//!
//! vsock carries no peer credentials. Who can reach the port is the host: whoever
//! started the VM, who also chose its kernel command line, its disk and its memory, and
//! so is root over the guest already. A vsock client therefore has full access, as root
//! on the control socket does (docs/SECURITY.md). The same connection limits apply.
//!
//! A vsock connection is a stream socket like the unix one; the server keeps it as a
//! `UnixStream`, which only reads, writes and shuts it down (peer credentials are never
//! asked of it: see `admit_client`'s `trusted`).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use nix::sys::socket::{
    bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, VsockAddr,
};
use rustix::io::Errno;
use rustix::net::SocketFlags;

use super::Server;
use crate::access::{Access, Peer};
use crate::runtime::reactor::{Interest, Reactor};
use crate::timers::Timers;
use crate::token::Token;

/// Any CID: the host reaches the guest at the guest's own CID.
const VMADDR_CID_ANY: u32 = u32::MAX;

/// A listening AF_VSOCK stream socket on `port`, non-blocking.
fn listen_on(port: u32) -> std::io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Vsock,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &VsockAddr::new(VMADDR_CID_ANY, port),
    )?;
    listen(&fd, Backlog::new(64).unwrap_or(Backlog::MAXCONN))?;
    Ok(fd)
}

impl Server {
    /// Listen on vsock `port` too.
    pub fn add_vsock(&mut self, reactor: &Reactor, port: u32) -> std::io::Result<()> {
        let fd = listen_on(port)?;
        reactor.add(fd.as_fd(), Token::VsockListener, Interest::Read)?;
        self.vsock = Some(fd);
        Ok(())
    }

    /// Accept every pending vsock client, with full access (see the module's doc).
    pub fn accept_vsock(&mut self, reactor: &Reactor, timers: &mut Timers, now: Instant) {
        loop {
            let Some(listener) = &self.vsock else { return };
            match rustix::net::accept_with(listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok(fd) => {
                    let peer = Peer {
                        uid: 0,
                        access: Access::Full,
                    };
                    self.admit_client(reactor, timers, now, UnixStream::from(fd), Some(peer));
                }
                Err(Errno::AGAIN) => return,
                Err(Errno::INTR | Errno::CONNABORTED) => continue,
                Err(e) => {
                    // Out of fds or memory: leave the clients waiting in the backlog and
                    // stop watching until a connection closes, as the unix listener does.
                    log::error!("control: vsock accept: {e}");
                    reactor.remove(listener.as_fd());
                    self.vsock_paused = true;
                    return;
                }
            }
        }
    }

    /// A connection closed: a vsock listener that rested may accept again.
    pub(super) fn vsock_resume(&mut self, reactor: &Reactor) {
        if let (Some(fd), true) = (&self.vsock, self.vsock_paused) {
            self.vsock_paused = reactor
                .add(fd.as_fd(), Token::VsockListener, Interest::Read)
                .is_err();
        }
    }
}
