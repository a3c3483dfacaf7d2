//! The previous release's `arje-init` and `shuma`, built from git once per machine.
//!
//! `tests/prev-release` names the commit. Its tree is exported with `git archive` into
//! `<target>/prev-<commit>/src` and built there with `--target-dir <target>/prev-<commit>`,
//! so the binaries land in `<target>/prev-<commit>/debug/`. A `complete` marker written
//! after a successful build makes every later call free; a lock file serialises the
//! build between test processes (cargo runs each test binary as its own process, and
//! two of them may want the old binaries at once).
//!
//! Nothing here skips: without git, or with a clone that lacks the commit (a shallow
//! one), the caller panics with what is missing and how to get it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use crate::host::bin_dir;

/// The previous release's binaries.
#[derive(Debug)]
pub struct Release {
    /// The full commit hash from `tests/prev-release`.
    pub commit: String,
    pub arje_init: PathBuf,
    pub shuma: PathBuf,
}

/// Builds (or finds, already built) the previous release's binaries. The first caller
/// in a process does the work; the others wait for it.
pub fn previous_release() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(build)
}

/// The repository this test crate belongs to.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The first line of `tests/prev-release` that is neither blank nor a `#` comment.
fn commit_from_file() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("prev-release");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("{} names no commit", path.display()))
        .to_owned()
}

/// The full hash of `commit`, which must be in this clone.
fn resolve(root: &Path, commit: &str) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{commit}^{{commit}}"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "git is needed to build the previous release ({commit}, from tests/prev-release) \
                 but cannot be run: {e}"
            )
        });
    assert!(
        out.status.success(),
        "the previous release's commit {commit} (tests/prev-release) is not in the clone at {}: \
         a shallow clone? Fetch the history (`git fetch --unshallow`) and run again",
        root.display()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn build() -> Release {
    let root = repo_root();
    let commit = resolve(&root, &commit_from_file());
    // `bin_dir()` is `<target>/debug` (or `release`): the old build sits beside it, so it
    // follows CARGO_TARGET_DIR like everything else.
    let target = bin_dir()
        .parent()
        .expect("the target directory")
        .to_path_buf();
    let dir = target.join(format!("prev-{commit}"));
    let release = Release {
        arje_init: dir.join("debug/arje-init"),
        shuma: dir.join("debug/shuma"),
        commit,
    };
    let complete = dir.join("complete");
    if complete.exists() {
        return release;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let lock_path = dir.join("lock");
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("create {}: {e}", lock_path.display()));
    // Held until `lock` is dropped at the end of this function; the kernel drops it if
    // the process dies, so a killed build never leaves the directory locked.
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .unwrap_or_else(|e| panic!("flock {}: {e}", lock_path.display()));
    // Another process may have finished the build while this one waited for the lock.
    if complete.exists() {
        return release;
    }
    let src = dir.join("src");
    if !src.exists() {
        export(&root, &release.commit, &dir, &src);
    }
    eprintln!(
        "building the previous release {} (once per machine) in {}",
        release.commit,
        dir.display()
    );
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // `--locked`: the release's own lockfile, as it shipped. Not `--offline`: a fresh
    // machine may still have to download crates that the current tree no longer uses.
    let status = Command::new(cargo)
        .current_dir(&src)
        .args(["build", "--locked", "-p", "arje-init", "-p", "shuma"])
        .arg("--manifest-path")
        .arg(src.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| panic!("run cargo to build {}: {e}", src.display()));
    assert!(
        status.success(),
        "cargo build of the previous release {} in {} failed ({status})",
        release.commit,
        src.display()
    );
    eprintln!(
        "built the previous release {} in {:.1?}",
        release.commit,
        started.elapsed()
    );
    for bin in [&release.arje_init, &release.shuma] {
        assert!(bin.is_file(), "cargo built no {}", bin.display());
    }
    std::fs::write(&complete, b"").unwrap_or_else(|e| panic!("write {}: {e}", complete.display()));
    release
}

/// `git archive <commit> | tar -x` into `src`, through a temporary directory renamed at
/// the end: a half-extracted tree (a killed test) is never taken for a whole one.
fn export(root: &Path, commit: &str, dir: &Path, src: &Path) {
    let tmp = dir.join("src.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).unwrap_or_else(|e| panic!("remove {}: {e}", tmp.display()));
    }
    std::fs::create_dir(&tmp).unwrap_or_else(|e| panic!("create {}: {e}", tmp.display()));
    let mut git = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["archive", "--format=tar", commit])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run git archive {commit}: {e}"));
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&tmp)
        .stdin(git.stdout.take().expect("git's stdout"))
        .status()
        .unwrap_or_else(|e| panic!("run tar to extract {commit}: {e}"));
    let git = git.wait().expect("wait for git archive");
    assert!(git.success(), "git archive {commit} failed ({git})");
    assert!(
        tar.success(),
        "tar -x of {commit} into {} failed ({tar})",
        tmp.display()
    );
    std::fs::rename(&tmp, src)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), src.display()));
}
