//! The loopback interface up, as systemd does itself at boot: the kernel gives `lo`
//! 127.0.0.1/8 and ::1 once it is up, and nothing listening on localhost works before.

pub fn up() {
    match arje_runtime::interface_up("lo") {
        Ok(true) => log::info!("loopback lo up"),
        Ok(false) => log::info!("loopback lo was up already"),
        Err(e) => log::error!("loopback lo: SIOCSIFFLAGS: {e}"),
    }
}
