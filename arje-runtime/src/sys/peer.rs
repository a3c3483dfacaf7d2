//! Who is on the other end of a unix socket.

use std::os::fd::{AsRawFd, BorrowedFd};

/// `getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS)`: the supplementary groups the peer had
/// when it connected (Linux 4.13), as SO_PEERCRED gives its uid and primary gid. Taken
/// by the kernel at connect time, so unlike `/proc/<pid>/status` it cannot name another
/// process that reused the peer's pid. See socket(7).
///
/// rustix and nix do not wrap this option.
pub fn peer_groups(fd: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    // NGROUPS_MAX is 65536; most peers have a handful. Grow once if the kernel says so.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is `len` bytes of writable gid_t; the kernel writes at most
        // `len` bytes and stores the size it needed (or wrote) back in `len`.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return Ok(groups);
        }
        let err = std::io::Error::last_os_error();
        // ERANGE: the buffer was too small; `len` now holds the size needed.
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() {
            groups.resize(n, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn test_peer_groups_of_own_socket_pair_are_ours() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();

        let groups = peer_groups(a.as_fd()).unwrap();

        let mut ours: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        let mut got = groups.clone();
        ours.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, ours);
    }
}
