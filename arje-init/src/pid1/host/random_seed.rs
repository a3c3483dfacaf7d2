//! A random seed carried from one boot to the next, as systemd-random-seed does: at
//! boot the saved bytes are written into /dev/urandom (mixed into the pool, not
//! credited as entropy, so a copied image cannot weaken it), and a fresh seed is saved
//! at once if the kernel's generator is ready (so that a machine that never shuts down
//! cleanly does not mix the same seed in twice), else only at shutdown: waiting for it
//! would hold the boot for a second under TCG, and mixing a seed in twice costs
//! nothing but the fresh entropy it did not add.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

const DIR: &str = "/var/lib/arje";
const SEED: &str = "/var/lib/arje/random-seed";
/// The kernel's pool is 256 bits; 512 bytes is what systemd saves.
const SEED_LEN: usize = 512;

/// Mixes the saved seed in and saves a fresh one; one console line.
pub fn carry_over() {
    let loaded = match std::fs::read(SEED) {
        Ok(bytes) if !bytes.is_empty() => {
            let bytes = &bytes[..bytes.len().min(4 * SEED_LEN)];
            match std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/urandom")
                .and_then(|mut u| u.write_all(bytes))
            {
                Ok(()) => format!("{} bytes from {SEED} mixed into /dev/urandom", bytes.len()),
                Err(e) => format!("writing {SEED} into /dev/urandom: {e}"),
            }
        }
        Ok(_) | Err(_) => format!("no saved seed at {SEED} (a first boot)"),
    };
    match save(false) {
        Ok(()) => log::info!("random seed: {loaded}; a fresh one saved"),
        Err(e) => log::info!("random seed: {loaded}; none saved now: {e}"),
    }
}

/// Saves a fresh seed (at shutdown, while the root is still writable).
pub fn save_at_shutdown() {
    match save(true) {
        Ok(()) => log::info!("random seed saved to {SEED} for the next boot"),
        Err(e) => log::info!("random seed: none saved: {e}"),
    }
}

/// Saves a fresh seed; `wait` waits for the kernel's generator to be ready.
fn save(wait: bool) -> Result<(), String> {
    let mut seed = [0u8; SEED_LEN];
    arje_runtime::getrandom(&mut seed, wait).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            "the kernel's generator is not ready yet (one is saved at shutdown)".to_string()
        } else {
            format!("getrandom: {e}")
        }
    })?;
    std::fs::create_dir_all(DIR).map_err(|e| {
        if e.raw_os_error() == Some(libc::EROFS) {
            "the root is read-only".to_string()
        } else {
            format!("mkdir {DIR}: {e}")
        }
    })?;
    let tmp = format!("{SEED}.new");
    let r = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&seed)?;
        f.sync_all()?;
        std::fs::rename(&tmp, SEED)
    })();
    r.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        if e.raw_os_error() == Some(libc::EROFS) {
            "the root is read-only".to_string()
        } else {
            format!("write {SEED}: {e}")
        }
    })
}
