//! Kernel module loading, in the order the initramfs builder computed from the modules'
//! `depends=` (initramfs/modules.sh): one path per line, dependencies first.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use rustix::io::Errno;

/// What happened to one module, for the log and the boot tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadResult {
    Loaded,
    /// Built in or loaded earlier (EEXIST): fine.
    AlreadyThere,
    Failed(String),
}

/// Reads the order file and loads each module with finit_module(2). A missing order
/// file means there is nothing to load; a module that fails is logged and skipped (a
/// module that depended on it will then fail too, and say so).
pub fn load_listed(order_file: &Path) -> Vec<(String, LoadResult)> {
    let text = match std::fs::read_to_string(order_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::debug!("no module list at {}", order_file.display());
            return Vec::new();
        }
        Err(e) => {
            log::error!("read module list {}: {e}", order_file.display());
            return Vec::new();
        }
    };
    let start = Instant::now();
    let mut results = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let outcome = load_one(Path::new(line));
        match &outcome {
            LoadResult::Loaded => log::debug!("module {line} loaded"),
            LoadResult::AlreadyThere => log::debug!("module {line} already loaded"),
            LoadResult::Failed(e) => log::error!("module {line}: {e}"),
        }
        results.push((line.to_string(), outcome));
    }
    let ok = results
        .iter()
        .filter(|(_, r)| !matches!(r, LoadResult::Failed(_)))
        .count();
    log::info!(
        "modules: {ok} of {} loaded from {} in {} ms",
        results.len(),
        order_file.display(),
        start.elapsed().as_millis()
    );
    results
}

fn load_one(path: &Path) -> LoadResult {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) => return LoadResult::Failed(format!("open: {e}")),
    };
    // No parameters, no flags: the builder stores modules uncompressed, so the kernel
    // need not support MODULE_INIT_COMPRESSED_FILE.
    match rustix::system::finit_module(&file, c"", 0) {
        Ok(()) => LoadResult::Loaded,
        Err(Errno::EXIST) => LoadResult::AlreadyThere,
        Err(e) => LoadResult::Failed(format!("finit_module: {e}")),
    }
}
