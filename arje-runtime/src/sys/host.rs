//! The three calls a host's PID 1 needs that neither rustix nor nix wraps safely:
//! bringing a network interface up (the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls), swapon(2)
//! and swapoff(2), and getrandom(2) (rustix has it only behind a feature arje does not enable).

use std::ffi::{c_int, c_short, CStr};
use std::io;
use std::os::fd::AsRawFd;

use rustix::net::{AddressFamily, SocketType};

/// The kernel's `struct ifreq` as the flag ioctls use it: the name, then `ifr_flags` at
/// the start of the union. The union is 24 bytes on 64-bit (a `struct ifmap`), so the
/// whole is 40 bytes; declared here rather than taken from libc, whose glibc and musl
/// definitions differ in shape.
#[repr(C)]
struct IfreqFlags {
    name: [u8; IFNAMSIZ],
    flags: c_short,
    _rest: [u8; 22],
}

const IFNAMSIZ: usize = 16;

/// Brings the interface `name` up (IFF_UP), as `ip link set NAME up` does, keeping its
/// other flags. Returns `false` if it was up already. [netdevice(7)]
///
/// [netdevice(7)]: https://man7.org/linux/man-pages/man7/netdevice.7.html
pub fn interface_up(name: &str) -> io::Result<bool> {
    if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // Any socket will do for the interface ioctls; a datagram one needs no address.
    let sock = rustix::net::socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    let mut req = IfreqFlags {
        name: [0; IFNAMSIZ],
        flags: 0,
        _rest: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: `req` is a live, writable ifreq-shaped buffer of the kernel's size (40
    // bytes) with a NUL-terminated name; SIOCGIFFLAGS writes only `ifr_flags` into it.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if req.flags & libc::IFF_UP as c_short != 0 {
        return Ok(false);
    }
    req.flags |= libc::IFF_UP as c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads the buffer.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// [swapon(2)]: starts swapping to the device or file at `path` with `flags`
/// (priority and discard bits, as the caller computed them from fstab).
///
/// [swapon(2)]: https://man7.org/linux/man-pages/man2/swapon.2.html
pub fn swapon(path: &CStr, flags: c_int) -> io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call; the
    // kernel only reads it.
    let rc = unsafe { libc::swapon(path.as_ptr(), flags) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// [swapoff(2)]: stops swapping to `path`, paging what it holds back into memory.
///
/// [swapoff(2)]: https://man7.org/linux/man-pages/man2/swapoff.2.html
pub fn swapoff(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call; the
    // kernel only reads it.
    let rc = unsafe { libc::swapoff(path.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// [getrandom(2)]: fills `buf` from the kernel's generator. Early in a boot the
/// generator may not be initialised yet (under QEMU's TCG, about a second after arje
/// starts): `wait` then waits for it; without it the call fails with `WouldBlock`
/// (GRND_NONBLOCK).
///
/// [getrandom(2)]: https://man7.org/linux/man-pages/man2/getrandom.2.html
pub fn getrandom(buf: &mut [u8], wait: bool) -> io::Result<()> {
    let flags = if wait { 0 } else { libc::GRND_NONBLOCK };
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: `rest` is a live, writable buffer of `rest.len()` bytes; the kernel
        // writes at most that many.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ifreq_flags_has_the_kernels_size() {
        assert_eq!(std::mem::size_of::<IfreqFlags>(), 40);
    }

    #[test]
    fn test_interface_up_long_name_is_refused() {
        // Arrange
        let name = "a-name-longer-than-15";

        // Act
        let r = interface_up(name);

        // Assert
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn test_getrandom_fills_the_buffer() {
        // Arrange
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];

        // Act
        getrandom(&mut a, true).unwrap();
        getrandom(&mut b, true).unwrap();

        // Assert: two draws of 512 bits are equal, or all zero, with negligible odds.
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 64]);
    }
}
