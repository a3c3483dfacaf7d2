//! Finding a unit's files on a machine the way systemd's system manager does
//! (systemd.unit(5), "Unit File Load Path"): the unit file from the first directory of
//! the search path that has it, an instance from its template, aliases (symlinks to
//! another unit file), masks (a symlink to /dev/null, or an empty file), and the drop-in
//! `*.conf` files of every `NAME.d/` directory, merged in file-name order.
//!
//! Every path here is a path on the converted machine ("/etc/systemd/system"); the
//! [`Machine`] maps it under its root directory. Symlinks met in the last component are
//! followed by the lookup itself, so an absolute link target ("/lib/systemd/system/x")
//! stays inside the root instead of reaching the converting host's files.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::fs::not_found;
pub use super::fs::{MemFs, OsFs, UnitFs};
use super::name::UnitName;
use super::syntax::{self, Parsed};

/// The system manager's unit search path, highest priority first (systemd 252 as built
/// by Debian 12: `/lib/systemd/system` comes before `/usr/lib/systemd/system`).
pub const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/run/systemd/generator.late",
];

/// Largest unit file or drop-in read, in bytes. systemd has no such cap, but a unit
/// file of megabytes is not a unit file; the converter refuses it rather than read it.
pub const MAX_UNIT_FILE: u64 = 4 << 20;

/// Symlinks followed in a row before giving up (the kernel's own limit is 40).
pub(super) const MAX_LINKS: usize = 32;

/// Where a symlink at `link` pointing to `target` leads, lexically (`..` removed).
pub(super) fn join_link(link: &Path, target: &Path) -> PathBuf {
    let joined = match link.parent() {
        Some(dir) if target.is_relative() => dir.join(target),
        _ => target.to_path_buf(),
    };
    normalize(&joined)
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The machine whose units are converted: a file system and the directory it is rooted
/// at ("/" for the converting host itself).
pub struct Machine<'a> {
    pub fs: &'a dyn UnitFs,
    pub root: PathBuf,
}

/// What a path on the machine turned out to be, symlinks followed.
enum Found {
    /// A file; its path on the machine after the links.
    File(PathBuf),
    /// A symlink to /dev/null (or an empty file, for a unit file).
    Masked,
}

impl<'a> Machine<'a> {
    /// The host path of `path` on the machine.
    pub fn host(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// Follow the symlinks at `path`, each target taken on the machine. `Ok(None)` when
    /// nothing is there.
    fn find(&self, path: &Path) -> io::Result<Option<Found>> {
        let mut p = normalize(path);
        for _ in 0..MAX_LINKS {
            match self.fs.link(&self.host(&p)) {
                Ok(Some(target)) if target == Path::new("/dev/null") => {
                    return Ok(Some(Found::Masked))
                }
                Ok(Some(target)) => p = join_link(&p, &target),
                Ok(None) => return Ok(Some(Found::File(p))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("too many levels of symbolic links"))
    }

    /// The contents of the machine file at `path` (links followed inside the machine).
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.find(path)? {
            Some(Found::File(p)) => self.fs.read(&self.host(&p)),
            Some(Found::Masked) => Ok(Vec::new()),
            None => Err(not_found()),
        }
    }

    /// Is `path` an executable file on the machine?
    pub fn executable(&self, path: &Path) -> bool {
        match self.find(path) {
            Ok(Some(Found::File(p))) => self.fs.executable(&self.host(&p)),
            _ => false,
        }
    }
}

/// One file of a unit, parsed: the unit file or a drop-in.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The name notes use: `ssh.service`, or `ssh.service.d/override.conf`.
    pub label: String,
    /// Its path, on the machine or as given.
    pub path: String,
    pub parsed: Parsed,
}

/// A unit and its files, in the order systemd applies them.
#[derive(Debug, Clone)]
pub struct LoadedUnit {
    /// The unit's own name: an alias resolved, the instance kept.
    pub name: UnitName,
    /// The name or path the user gave.
    pub requested: String,
    /// The unit file's path (systemd's `%y`).
    pub fragment: String,
    /// The unit file, then its drop-ins.
    pub files: Vec<SourceFile>,
    /// What the lookup found worth telling: an alias followed, a masked drop-in.
    pub comments: Vec<String>,
}

/// Why a unit could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// Not `NAME.TYPE` with a type systemd knows.
    BadName(String),
    /// No unit file in any directory of the search path.
    NotFound { name: String, root: String },
    /// Masked: a symlink to /dev/null, or an empty unit file.
    Masked { name: String, path: String },
    /// A template cannot run without an instance.
    Template(String),
    /// A file that could not be read.
    Read { path: String, message: String },
    /// A file systemd would refuse as a whole.
    Syntax {
        path: String,
        line: usize,
        message: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::BadName(n) => write!(
                f,
                "{n}: not a unit name (NAME.service, NAME@INSTANCE.service) nor a path"
            ),
            LoadError::NotFound { name, root } => write!(
                f,
                "{name}: no such unit in the search path under {root} (/etc/systemd/system, /lib/systemd/system, ...)"
            ),
            LoadError::Masked { name, path } => write!(f, "{name}: masked ({path})"),
            LoadError::Template(n) => write!(
                f,
                "{n}: a template runs only as an instance: name it like {}",
                n.replacen("@.", "@INSTANCE.", 1)
            ),
            LoadError::Read { path, message } => write!(f, "{path}: cannot read: {message}"),
            LoadError::Syntax {
                path,
                line,
                message,
            } => write!(f, "{path}:{line}: {message}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Load a unit by name from the machine's search path, or from a path given directly
/// (anything with a `/`): then its drop-ins are read from `PATH.d/` beside it only.
pub fn load(machine: &Machine, arg: &str) -> Result<LoadedUnit, LoadError> {
    if arg.contains('/') {
        return load_path(machine, arg);
    }
    let name = UnitName::parse(arg).ok_or_else(|| LoadError::BadName(arg.into()))?;
    if name.is_template() {
        return Err(LoadError::Template(arg.into()));
    }
    let (fragment_path, found_as) = find_fragment(machine, &name)?;
    // An alias: the file a symlink leads to names the unit. An instance keeps its
    // instance (autovt@tty1 -> getty@.service is getty@tty1).
    let mut comments = Vec::new();
    let real = real_name(&fragment_path, &name).unwrap_or_else(|| name.clone());
    if real.full != name.full {
        comments.push(format!("{} is an alias of {}", name.full, real.full));
    }
    let mut names = vec![real.clone()];
    if real.full != name.full {
        names.push(name.clone());
    }
    let bytes = machine.read(&fragment_path).map_err(|e| LoadError::Read {
        path: found_as.clone(),
        message: e.to_string(),
    })?;
    if bytes.is_empty() {
        // systemd.unit(5): an empty unit file is masked, as a link to /dev/null is.
        return Err(LoadError::Masked {
            name: name.full,
            path: format!("{found_as} is empty"),
        });
    }
    let mut files = vec![parse_source(bytes, &real.full, &found_as)?];
    for (label, path) in dropins(machine, &names, &mut comments)? {
        files.push(read_source(
            machine,
            &path,
            &label,
            &path.display().to_string(),
        )?);
    }
    Ok(LoadedUnit {
        name: real,
        requested: arg.into(),
        fragment: fragment_path.display().to_string(),
        files,
        comments,
    })
}

/// The unit file of `name`: the first directory with the exact name wins, then (for an
/// instance) the first with its template. A mask there ends the search.
fn find_fragment(machine: &Machine, name: &UnitName) -> Result<(PathBuf, String), LoadError> {
    let mut candidates = vec![name.full.clone()];
    candidates.extend(name.template());
    for candidate in &candidates {
        for dir in UNIT_DIRS {
            let path = Path::new(dir).join(candidate);
            let shown = path.display().to_string();
            let found = machine.find(&path).map_err(|e| LoadError::Read {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            match found {
                None => continue,
                Some(Found::Masked) => {
                    return Err(LoadError::Masked {
                        name: name.full.clone(),
                        path: format!("{shown} -> /dev/null"),
                    })
                }
                Some(Found::File(p)) => return Ok((p, shown)),
            }
        }
    }
    Err(LoadError::NotFound {
        name: name.full.clone(),
        root: machine.root.display().to_string(),
    })
}

/// The unit name a fragment's own file name gives, with `name`'s instance.
fn real_name(fragment: &Path, name: &UnitName) -> Option<UnitName> {
    let file = UnitName::parse(fragment.file_name()?.to_str()?)?;
    if file.kind != name.kind {
        return None;
    }
    match (&file.instance, &name.instance) {
        (Some(i), Some(inst)) if i.is_empty() => {
            UnitName::parse(&format!("{}@{inst}.{}", file.prefix, file.kind))
        }
        (None, None) => Some(file),
        _ => Some(file).filter(|f| f.full == name.full),
    }
}

/// The drop-in directory names of a unit, in systemd's order: `NAME.d`, the template's
/// `PREFIX@.TYPE.d`, each dash-prefix `a-b-.TYPE.d`, `a-.TYPE.d`, and `TYPE.d`.
fn dropin_dirs(names: &[UnitName]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for n in names {
        push(format!("{}.d", n.full));
        if let Some(t) = n.template() {
            push(format!("{t}.d"));
        }
        let stem = match &n.instance {
            Some(_) => format!("{}@", n.prefix),
            None => n.prefix.clone(),
        };
        let mut cut = stem.len();
        while let Some(dash) = stem[..cut].rfind('-') {
            push(format!("{}.{}.d", &stem[..=dash], n.kind));
            cut = dash;
        }
        push(format!("{}.d", n.kind));
    }
    out
}

/// Every drop-in `*.conf` of the unit: by file name, the first directory in search
/// order that has a name wins (so /etc masks /lib), then all are applied sorted by
/// file name. A drop-in that is a symlink to /dev/null is masked: skipped.
fn dropins(
    machine: &Machine,
    names: &[UnitName],
    comments: &mut Vec<String>,
) -> Result<Vec<(String, PathBuf)>, LoadError> {
    let mut chosen: BTreeMap<String, (String, PathBuf)> = BTreeMap::new();
    for dir in UNIT_DIRS {
        for d in dropin_dirs(names) {
            let dir_path = Path::new(dir).join(&d);
            let Ok(entries) = machine.fs.list(&machine.host(&dir_path)) else {
                continue;
            };
            for file in entries.into_iter().filter(|f| f.ends_with(".conf")) {
                chosen
                    .entry(file.clone())
                    .or_insert_with(|| (format!("{d}/{file}"), dir_path.join(&file)));
            }
        }
    }
    let mut out = Vec::new();
    for (label, path) in chosen.into_values() {
        match machine.find(&path) {
            Ok(Some(Found::Masked)) => comments.push(format!(
                "drop-in {} is masked (-> /dev/null)",
                path.display()
            )),
            _ => out.push((label, path)),
        }
    }
    Ok(out)
}

fn read_source(
    machine: &Machine,
    path: &Path,
    label: &str,
    shown: &str,
) -> Result<SourceFile, LoadError> {
    let bytes = machine.read(path).map_err(|e| LoadError::Read {
        path: shown.into(),
        message: e.to_string(),
    })?;
    parse_source(bytes, label, shown)
}

fn parse_source(bytes: Vec<u8>, label: &str, shown: &str) -> Result<SourceFile, LoadError> {
    let parsed = syntax::parse(&bytes).map_err(|e| LoadError::Syntax {
        path: shown.into(),
        line: e.line,
        message: e.message,
    })?;
    Ok(SourceFile {
        label: label.into(),
        path: shown.into(),
        parsed,
    })
}

/// A unit file named by its path on the converting host. Its drop-ins are the
/// `*.conf` of `PATH.d/`, sorted by name. An instance whose file does not exist is read
/// from its template beside it (`dir/getty@ttyS0.service` from `dir/getty@.service`).
fn load_path(machine: &Machine, arg: &str) -> Result<LoadedUnit, LoadError> {
    let given = Path::new(arg);
    let file_name = given.file_name().and_then(|f| f.to_str()).unwrap_or("");
    let name = UnitName::parse(file_name).ok_or_else(|| LoadError::BadName(arg.into()))?;
    if name.is_template() {
        return Err(LoadError::Template(arg.into()));
    }
    let fs = machine.fs;
    let mut path = given.to_path_buf();
    if fs.link(&path).is_err() {
        if let Some(t) = name.template() {
            path = given.with_file_name(t);
        }
    }
    if let Ok(Some(target)) = fs.link(&path) {
        if target == Path::new("/dev/null") {
            return Err(LoadError::Masked {
                name: name.full,
                path: format!("{} -> /dev/null", path.display()),
            });
        }
    }
    let shown = path.display().to_string();
    let bytes = fs.read(&path).map_err(|e| LoadError::Read {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    if bytes.is_empty() {
        return Err(LoadError::Masked {
            name: name.full,
            path: format!("{shown} is empty"),
        });
    }
    let mut files = vec![parse_source(bytes, &name.full, &shown)?];
    let dir = path.with_file_name(format!("{file_name}.d"));
    let mut confs: Vec<String> = fs
        .list(&dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.ends_with(".conf"))
        .collect();
    confs.sort();
    let mut comments = Vec::new();
    for conf in confs {
        let p = dir.join(&conf);
        if matches!(fs.link(&p), Ok(Some(t)) if t == Path::new("/dev/null")) {
            comments.push(format!("drop-in {} is masked (-> /dev/null)", p.display()));
            continue;
        }
        let shown = p.display().to_string();
        let bytes = fs.read(&p).map_err(|e| LoadError::Read {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        files.push(parse_source(
            bytes,
            &format!("{file_name}.d/{conf}"),
            &shown,
        )?);
    }
    Ok(LoadedUnit {
        name,
        requested: arg.into(),
        fragment: shown,
        files,
        comments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(fs: &MemFs) -> Machine<'_> {
        Machine {
            fs,
            root: "/".into(),
        }
    }

    #[test]
    fn test_dropin_dirs_in_systemd_order() {
        let n = UnitName::parse("a-b-c@x.service").unwrap();

        assert_eq!(
            dropin_dirs(&[n]),
            [
                "a-b-c@x.service.d",
                "a-b-c@.service.d",
                "a-b-.service.d",
                "a-.service.d",
                "service.d"
            ]
        );
    }

    #[test]
    fn test_load_etc_masks_lib_and_instance_file_beats_template() {
        let fs = MemFs::new()
            .file(
                "/lib/systemd/system/x.service",
                "[Service]\nExecStart=/lib\n",
            )
            .file(
                "/etc/systemd/system/x.service",
                "[Service]\nExecStart=/etc\n",
            )
            .file(
                "/lib/systemd/system/t@.service",
                "[Service]\nExecStart=/t\n",
            )
            .file(
                "/lib/systemd/system/t@one.service",
                "[Service]\nExecStart=/one\n",
            );
        let m = machine(&fs);

        let x = load(&m, "x.service").unwrap();
        let one = load(&m, "t@one.service").unwrap();
        let two = load(&m, "t@two.service").unwrap();

        assert_eq!(x.fragment, "/etc/systemd/system/x.service");
        assert_eq!(one.fragment, "/lib/systemd/system/t@one.service");
        assert_eq!(two.fragment, "/lib/systemd/system/t@.service");
        assert_eq!(two.name.full, "t@two.service");
    }

    #[test]
    fn test_load_empty_file_and_dev_null_are_masks() {
        let fs = MemFs::new()
            .file("/lib/systemd/system/e.service", "")
            .symlink("/lib/systemd/system/n.service", "/dev/null");
        let m = machine(&fs);

        assert!(matches!(
            load(&m, "e.service"),
            Err(LoadError::Masked { .. })
        ));
        assert!(matches!(
            load(&m, "n.service"),
            Err(LoadError::Masked { .. })
        ));
    }

    #[test]
    fn test_load_absolute_link_stays_in_the_root() {
        let fs = MemFs::new()
            .symlink(
                "/r/etc/systemd/system/a.service",
                "/lib/systemd/system/b.service",
            )
            .file(
                "/r/lib/systemd/system/b.service",
                "[Service]\nExecStart=/b\n",
            );
        let m = Machine {
            fs: &fs,
            root: "/r".into(),
        };

        let u = load(&m, "a.service").unwrap();

        assert_eq!(u.name.full, "b.service");
        assert_eq!(u.fragment, "/lib/systemd/system/b.service");
        assert_eq!(u.comments, ["a.service is an alias of b.service"]);
    }
}
