//! The device an fstab source names. Without udev there are no /dev/disk/by-* links,
//! so `UUID=`, `LABEL=` and `PARTUUID=` are looked up on the disks themselves, as for
//! the kernel's `root=` (pid1/blockdev.rs).

use std::path::Path;

use crate::pid1::blockdev;
use crate::pid1::root::RootSpec;

/// What an fstab source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Given as it is to mount(2): a path, or a name such as `tmpfs` or `server:/x`.
    Plain(String),
    /// A filesystem or partition id, to look up on the disks.
    Id(RootSpec),
    /// A form this reader does not look up (`PARTLABEL=`, `ID=`).
    Unsupported(String),
}

pub fn classify(spec: &str) -> Source {
    if spec.starts_with("PARTLABEL=") || spec.starts_with("ID=") {
        return Source::Unsupported(spec.to_string());
    }
    match RootSpec::parse(spec) {
        None | Some(RootSpec::Path(_)) => Source::Plain(spec.to_string()),
        Some(id) => Source::Id(id),
    }
}

/// The source to give mount(2), swapon(2) or fsck: the device node of an id, else the
/// spec itself.
pub fn resolve(spec: &str) -> Result<String, String> {
    match classify(spec) {
        Source::Plain(s) => Ok(s),
        Source::Id(id) => blockdev::find(&id)
            .map(|p| p.to_string_lossy().into_owned())
            .ok_or_else(|| {
                format!(
                    "no device has {id}; block devices: {}",
                    blockdev::describe_all()
                )
            }),
        Source::Unsupported(s) => Err(format!(
            "{s}: not a form arje looks up (UUID=, LABEL=, PARTUUID= or a path)"
        )),
    }
}

/// Is `source` a block device node (something fsck can check)?
pub fn is_block_device(source: &str) -> bool {
    use std::os::unix::fs::FileTypeExt;
    source.starts_with('/')
        && std::fs::metadata(Path::new(source)).is_ok_and(|m| m.file_type().is_block_device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_classify_ids_paths_names_and_unsupported() {
        // Arrange + Act + Assert
        assert_eq!(
            classify("UUID=ABCD-1234"),
            Source::Id(RootSpec::Uuid("abcd-1234".into()))
        );
        assert_eq!(
            classify("LABEL=data"),
            Source::Id(RootSpec::Label("data".into()))
        );
        assert_eq!(
            classify("/dev/disk/by-partuuid/0a0b0c0d-01"),
            Source::Id(RootSpec::PartUuid("0a0b0c0d-01".into()))
        );
        assert_eq!(classify("/dev/vdb"), Source::Plain("/dev/vdb".into()));
        assert_eq!(classify("tmpfs"), Source::Plain("tmpfs".into()));
        assert_eq!(
            classify("PARTLABEL=home"),
            Source::Unsupported("PARTLABEL=home".into())
        );
    }

    #[test]
    fn test_resolve_unsupported_says_why() {
        // Arrange + Act
        let r = resolve("PARTLABEL=home");

        // Assert
        assert!(r.unwrap_err().contains("not a form arje looks up"));
    }
}
