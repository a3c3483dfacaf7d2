//! The file system the unit lookup reads: the host's ([`OsFs`], std::fs) or one in
//! memory for tests ([`MemFs`]).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::lookup::{join_link, MAX_LINKS, MAX_UNIT_FILE};

/// The file-system operations the lookup needs, so tests can give it a machine in
/// memory ([`MemFs`]) and the CLI the real one ([`OsFs`]).
pub trait UnitFs {
    /// The whole file at `path`, following symlinks.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The names in the directory at `path`.
    fn list(&self, path: &Path) -> io::Result<Vec<String>>;
    /// The target when `path` is a symlink, `None` when it is something else; an error
    /// when it does not exist.
    fn link(&self, path: &Path) -> io::Result<Option<PathBuf>>;
    /// Is `path` an executable regular file (following symlinks)?
    fn executable(&self, path: &Path) -> bool;
}

/// The host's file system, through std::fs.
pub struct OsFs;

impl UnitFs for OsFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = std::fs::File::open(path)?;
        if !f.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        let mut buf = Vec::new();
        // One byte past the cap tells an oversized file from one of exactly the cap.
        f.take(MAX_UNIT_FILE + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX_UNIT_FILE {
            return Err(io::Error::other(format!(
                "larger than {MAX_UNIT_FILE} bytes"
            )));
        }
        Ok(buf)
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn link(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            std::fs::read_link(path).map(Some)
        } else {
            Ok(None)
        }
    }

    fn executable(&self, path: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
}

/// A machine in memory: files, symlinks and executables by absolute path. Directories
/// exist implicitly, as the parents of what is added.
#[derive(Debug, Default, Clone)]
pub struct MemFs {
    nodes: BTreeMap<PathBuf, MemNode>,
}

#[derive(Debug, Clone)]
enum MemNode {
    File { data: Vec<u8>, exec: bool },
    Link(PathBuf),
}

impl MemFs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn file(mut self, path: &str, text: &str) -> Self {
        let data = text.as_bytes().to_vec();
        self.nodes
            .insert(path.into(), MemNode::File { data, exec: false });
        self
    }

    pub fn bytes(mut self, path: &str, data: &[u8]) -> Self {
        let data = data.to_vec();
        self.nodes
            .insert(path.into(), MemNode::File { data, exec: false });
        self
    }

    pub fn executable(mut self, path: &str) -> Self {
        let node = MemNode::File {
            data: Vec::new(),
            exec: true,
        };
        self.nodes.insert(path.into(), node);
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.nodes.insert(path.into(), MemNode::Link(target.into()));
        self
    }

    /// Follow symlinks from `path` to a file; `None` if there is none.
    fn follow(&self, path: &Path) -> Option<&MemNode> {
        let mut p = path.to_path_buf();
        for _ in 0..MAX_LINKS {
            match self.nodes.get(&p)? {
                MemNode::Link(t) => p = join_link(&p, t),
                node => return Some(node),
            }
        }
        None
    }
}

pub(super) fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

impl UnitFs for MemFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        match self.follow(path) {
            Some(MemNode::File { data, .. }) => Ok(data.clone()),
            _ => Err(not_found()),
        }
    }

    fn list(&self, path: &Path) -> io::Result<Vec<String>> {
        let names: Vec<String> = self
            .nodes
            .keys()
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        if names.is_empty() {
            Err(not_found())
        } else {
            Ok(names)
        }
    }

    fn link(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        match self.nodes.get(path) {
            Some(MemNode::Link(t)) => Ok(Some(t.clone())),
            Some(_) => Ok(None),
            None => Err(not_found()),
        }
    }

    fn executable(&self, path: &Path) -> bool {
        matches!(self.follow(path), Some(MemNode::File { exec: true, .. }))
    }
}
