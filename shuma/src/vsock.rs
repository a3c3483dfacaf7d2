//! `--vsock`: reach the arje of a VM from its host (`arje.vsock=PORT` in the guest).
//!
//! Two ways in, one stream after them:
//! - `CID:PORT`: an AF_VSOCK connection, where the host kernel has vsock (vhost-vsock,
//!   the usual QEMU `-device vhost-vsock-pci,guest-cid=CID`);
//! - `unix:PATH:PORT`: a "hybrid" vsock, the unix socket a user-space vsock device
//!   offers the host (Firecracker's, cloud-hypervisor's, rust-vmm's
//!   `vhost-device-vsock --uds-path PATH`): connect to PATH, send `CONNECT PORT\n`,
//!   read `OK <host port>\n`, and the stream goes to the guest's PORT.
//!
//! Either way the control protocol then runs unchanged over the stream.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// Where `--vsock` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vsock {
    Cid { cid: u32, port: u32 },
    Hybrid { path: PathBuf, port: u32 },
}

/// Parse `CID:PORT` or `unix:PATH:PORT` (the port after the last `:`).
pub fn parse(s: &str) -> Result<Vsock, String> {
    let bad = || format!("{s:?}: expected CID:PORT or unix:PATH:PORT");
    let (head, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u32 = port.parse().map_err(|_| bad())?;
    match head.strip_prefix("unix:") {
        Some(path) if !path.is_empty() => Ok(Vsock::Hybrid {
            path: path.into(),
            port,
        }),
        Some(_) => Err(bad()),
        None => Ok(Vsock::Cid {
            cid: head.parse().map_err(|_| bad())?,
            port,
        }),
    }
}

impl std::fmt::Display for Vsock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Vsock::Cid { cid, port } => write!(f, "vsock {cid}:{port}"),
            Vsock::Hybrid { path, port } => write!(f, "vsock {}:{port}", path.display()),
        }
    }
}

/// A connected stream to the guest's port. (An AF_VSOCK socket is kept as a
/// `UnixStream`, which only reads and writes it.)
pub fn connect(to: &Vsock) -> io::Result<UnixStream> {
    match to {
        Vsock::Cid { cid, port } => {
            use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, VsockAddr};
            let fd = socket(
                AddressFamily::Vsock,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            connect(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &VsockAddr::new(*cid, *port),
            )?;
            Ok(UnixStream::from(fd))
        }
        Vsock::Hybrid { path, port } => {
            let mut s = UnixStream::connect(path)?;
            s.write_all(format!("CONNECT {port}\n").as_bytes())?;
            // Byte by byte: what follows the line is the daemon's, not ours to buffer.
            let mut line = Vec::new();
            let mut b = [0u8; 1];
            while line.len() < 64 {
                if s.read(&mut b)? == 0 {
                    break;
                }
                if b[0] == b'\n' {
                    break;
                }
                line.push(b[0]);
            }
            if !line.starts_with(b"OK ") {
                let got = String::from_utf8_lossy(&line).into_owned();
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("the vsock device refused CONNECT {port}: {got:?} (is arje.vsock={port} on the guest's command line?)"),
                ));
            }
            Ok(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_cid_and_hybrid_forms() {
        assert_eq!(parse("3:1024"), Ok(Vsock::Cid { cid: 3, port: 1024 }));
        assert_eq!(
            parse("unix:/tmp/vm:a.sock:52"),
            Ok(Vsock::Hybrid {
                path: "/tmp/vm:a.sock".into(),
                port: 52
            })
        );
        assert!(parse("3").is_err());
        assert!(parse("unix::5").is_err());
        assert!(parse("x:5").is_err());
    }

    #[test]
    fn test_hybrid_connect_sends_connect_and_takes_ok() {
        // Arrange: a fake device that answers OK and then echoes.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let device = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = [0u8; 13];
            s.read_exact(&mut got).unwrap();
            s.write_all(b"OK 1073741824\nhello").unwrap();
            got
        });

        // Act
        let mut s = connect(&Vsock::Hybrid { path, port: 1024 }).unwrap();
        let mut rest = [0u8; 5];
        s.read_exact(&mut rest).unwrap();

        // Assert: the request line, and nothing of what followed OK was eaten.
        assert_eq!(&device.join().unwrap(), b"CONNECT 1024\n");
        assert_eq!(&rest, b"hello");
    }
}
