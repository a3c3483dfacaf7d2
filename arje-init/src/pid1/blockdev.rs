//! Block devices as an initramfs without udev sees them: the kernel's list in
//! /sys/class/block, the nodes devtmpfs makes in /dev, and the ids read straight from the
//! disks (the /dev/disk/by-* links are udev's work, and udev does not run here).
//!
//! Filesystem ids come from the superblock: ext2/3/4, XFS and btrfs. Partition ids
//! (PARTUUID) come from the GPT's partition entries, or an MBR's disk signature. Other
//! filesystems (vfat, f2fs, LVM, LUKS, md) are not probed: docs/HOST.md says so.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::root::RootSpec;

/// What a superblock says about a filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsId {
    /// The type to mount it as (ext2 and ext3 mount as ext4).
    pub fstype: &'static str,
    pub uuid: Option<String>,
    pub label: Option<String>,
}

/// How much of a device [`probe`] reads: up to the end of btrfs's superblock (64 KiB
/// in, 4 KiB long), the farthest of the three.
pub const PROBE_LEN: usize = 0x10000 + 0x1000;

/// ext2/3/4: the superblock starts 1024 bytes in; offsets below are from the device's
/// start (s_magic 0x38, s_uuid 0x68, s_volume_name 0x78 within the superblock).
const EXT_MAGIC_AT: usize = 1024 + 0x38;
const EXT_UUID_AT: usize = 1024 + 0x68;
const EXT_LABEL_AT: usize = 1024 + 0x78;
/// XFS: the superblock is sector 0; "XFSB", sb_uuid at 32, sb_fname (12 bytes) at 108.
const XFS_UUID_AT: usize = 32;
const XFS_LABEL_AT: usize = 108;
/// btrfs: the primary superblock is 64 KiB in; fsid at 0x20, magic at 0x40, label at
/// 0x12b (256 bytes).
const BTRFS_SB: usize = 0x10000;

/// Reads the filesystem id out of the first [`PROBE_LEN`] bytes of a device (a shorter
/// buffer is probed for what fits).
pub fn probe(buf: &[u8]) -> Option<FsId> {
    let at = |off: usize, len: usize| buf.get(off..off + len);
    if at(EXT_MAGIC_AT, 2) == Some(&[0x53, 0xEF]) {
        return Some(FsId {
            fstype: "ext4",
            uuid: at(EXT_UUID_AT, 16).and_then(uuid_text),
            label: at(EXT_LABEL_AT, 16).and_then(label_text),
        });
    }
    if at(0, 4) == Some(b"XFSB") {
        return Some(FsId {
            fstype: "xfs",
            uuid: at(XFS_UUID_AT, 16).and_then(uuid_text),
            label: at(XFS_LABEL_AT, 12).and_then(label_text),
        });
    }
    if at(BTRFS_SB + 0x40, 8) == Some(b"_BHRfS_M") {
        return Some(FsId {
            fstype: "btrfs",
            uuid: at(BTRFS_SB + 0x20, 16).and_then(uuid_text),
            label: at(BTRFS_SB + 0x12b, 256).and_then(label_text),
        });
    }
    None
}

/// 16 bytes as the usual 8-4-4-4-12 lowercase text (byte order as stored: these
/// filesystems keep their UUIDs big-endian). All zeros is no UUID.
fn uuid_text(b: &[u8]) -> Option<String> {
    if b.iter().all(|&x| x == 0) {
        return None;
    }
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A NUL-padded label; empty is no label.
fn label_text(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&x| x == 0).unwrap_or(b.len());
    (end > 0).then(|| String::from_utf8_lossy(&b[..end]).into_owned())
}

/// The PARTUUID of partition `partno` (1-based) of `disk`: the GPT entry's unique GUID
/// (mixed-endian, as the UEFI spec prints GUIDs), or on an MBR disk the kernel's
/// `SSSSSSSS-PP` form (disk signature at byte 440, partition number in hex).
pub fn partuuid(disk: &File, sector: u64, partno: u32) -> Option<String> {
    let mut mbr = [0u8; 512];
    disk.read_exact_at(&mut mbr, 0).ok()?;
    let mut hdr = [0u8; 92];
    if disk.read_exact_at(&mut hdr, sector).is_ok() && &hdr[0..8] == b"EFI PART" {
        let entries_lba = u64::from_le_bytes(hdr[72..80].try_into().ok()?);
        let count = u32::from_le_bytes(hdr[80..84].try_into().ok()?);
        let size = u32::from_le_bytes(hdr[84..88].try_into().ok()?);
        if partno == 0 || partno > count || size < 32 {
            return None;
        }
        let mut entry = [0u8; 32];
        let off = entries_lba * sector + u64::from(partno - 1) * u64::from(size);
        disk.read_exact_at(&mut entry, off).ok()?;
        return guid_text(&entry[16..32]);
    }
    if mbr[510..512] == [0x55, 0xAA] {
        let sig = u32::from_le_bytes(mbr[440..444].try_into().ok()?);
        return Some(format!("{sig:08x}-{partno:02x}"));
    }
    None
}

/// A GUID as stored by UEFI: the first three fields little-endian, the rest in order.
fn guid_text(b: &[u8]) -> Option<String> {
    let mut swapped = [0u8; 16];
    swapped.copy_from_slice(b);
    swapped[0..4].reverse();
    swapped[4..6].reverse();
    swapped[6..8].reverse();
    uuid_text(&swapped)
}

/// One entry of /sys/class/block.
#[derive(Debug, Clone)]
pub struct BlockDev {
    /// The kernel's name (`vda`, `vda1`, `nvme0n1p2`).
    pub name: String,
    /// Its node: devtmpfs names it after the kernel (a `!` in the name is a `/`).
    pub node: PathBuf,
    pub size_bytes: u64,
    /// For a partition: its number and its disk's name.
    pub partition: Option<(u32, String)>,
}

const SYS_BLOCK: &str = "/sys/class/block";

/// Every block device the kernel knows, sorted by name.
pub fn list() -> Vec<BlockDev> {
    let Ok(dir) = std::fs::read_dir(SYS_BLOCK) else {
        return Vec::new();
    };
    let mut devs: Vec<BlockDev> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let sys = e.path();
            let read = |f: &str| std::fs::read_to_string(sys.join(f)).ok();
            let sectors: u64 = read("size")?.trim().parse().ok()?;
            // A partition's sysfs directory sits inside its disk's.
            let partition = read("partition")
                .and_then(|n| n.trim().parse().ok())
                .and_then(|n| {
                    let real = std::fs::canonicalize(&sys).ok()?;
                    let disk = real.parent()?.file_name()?.to_string_lossy().into_owned();
                    Some((n, disk))
                });
            Some(BlockDev {
                node: PathBuf::from("/dev").join(name.replace('!', "/")),
                name,
                size_bytes: sectors * 512,
                partition,
            })
        })
        .collect();
    devs.sort_by(|a, b| a.name.cmp(&b.name));
    devs
}

/// The first [`PROBE_LEN`] bytes of a device (fewer if it is smaller).
fn read_head(node: &Path) -> Option<Vec<u8>> {
    let f = File::open(node).ok()?;
    let mut buf = vec![0u8; PROBE_LEN];
    let mut got = 0;
    while got < buf.len() {
        match f.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return (got > 0).then(|| buf[..got].to_vec()),
        }
    }
    buf.truncate(got);
    Some(buf)
}

/// The filesystem id of the device at `node`, if it holds a filesystem [`probe`] knows.
pub fn probe_node(node: &Path) -> Option<FsId> {
    probe(&read_head(node)?)
}

fn logical_sector(disk: &str) -> u64 {
    std::fs::read_to_string(format!("{SYS_BLOCK}/{disk}/queue/logical_block_size"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(512)
}

/// The node of the device `spec` names, if it is there now.
pub fn find(spec: &RootSpec) -> Option<PathBuf> {
    match spec {
        RootSpec::Path(p) => p.exists().then(|| p.clone()),
        RootSpec::Uuid(u) => find_fs(|id| id.uuid.as_deref() == Some(u)),
        RootSpec::Label(l) => find_fs(|id| id.label.as_deref() == Some(l)),
        RootSpec::PartUuid(u) => list().into_iter().find_map(|d| {
            let (n, disk) = d.partition.as_ref()?;
            let f = File::open(Path::new("/dev").join(disk.replace('!', "/"))).ok()?;
            let found = partuuid(&f, logical_sector(disk), *n)?;
            (found == *u && d.node.exists()).then_some(d.node)
        }),
    }
}

fn find_fs(matches: impl Fn(&FsId) -> bool) -> Option<PathBuf> {
    list()
        .into_iter()
        .filter(|d| d.size_bytes > 0)
        .find(|d| probe_node(&d.node).is_some_and(|id| matches(&id)))
        .map(|d| d.node)
}

/// Every block device with its size and what it holds, for a message naming what
/// exists when the root does not: `vda (64 MiB, ext4 LABEL=root UUID=...)`.
pub fn describe_all() -> String {
    let devs = list();
    if devs.is_empty() {
        return "none".into();
    }
    devs.iter()
        .map(|d| {
            let mut s = format!("{} ({} MiB", d.name, d.size_bytes >> 20);
            if let Some(id) = (d.size_bytes > 0).then(|| probe_node(&d.node)).flatten() {
                s.push_str(&format!(", {}", id.fstype));
                if let Some(l) = &id.label {
                    s.push_str(&format!(" LABEL={l}"));
                }
                if let Some(u) = &id.uuid {
                    s.push_str(&format!(" UUID={u}"));
                }
            }
            s.push(')');
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext4_head(uuid: [u8; 16], label: &str) -> Vec<u8> {
        let mut b = vec![0u8; PROBE_LEN];
        b[EXT_MAGIC_AT..EXT_MAGIC_AT + 2].copy_from_slice(&[0x53, 0xEF]);
        b[EXT_UUID_AT..EXT_UUID_AT + 16].copy_from_slice(&uuid);
        b[EXT_LABEL_AT..EXT_LABEL_AT + label.len()].copy_from_slice(label.as_bytes());
        b
    }

    #[test]
    fn test_probe_ext4_reads_uuid_and_label() {
        // Arrange
        let uuid = [
            0x0b, 0x4d, 0x3c, 0x9e, 0x1f, 0x2a, 0x4b, 0x5c, 0x8d, 0x6e, 0x7f, 0x80, 0x91, 0xa2,
            0xb3, 0xc4,
        ];
        let head = ext4_head(uuid, "arje-root");

        // Act
        let id = probe(&head);

        // Assert
        assert_eq!(
            id,
            Some(FsId {
                fstype: "ext4",
                uuid: Some("0b4d3c9e-1f2a-4b5c-8d6e-7f8091a2b3c4".into()),
                label: Some("arje-root".into()),
            })
        );
    }

    #[test]
    fn test_probe_unknown_or_short_buffer_is_none() {
        // Arrange
        let zeros = vec![0u8; PROBE_LEN];
        let short = vec![0u8; 100];

        // Act + Assert
        assert_eq!(probe(&zeros), None);
        assert_eq!(probe(&short), None);
    }

    #[test]
    fn test_probe_xfs_and_btrfs_are_recognised() {
        // Arrange
        let mut xfs = vec![0u8; PROBE_LEN];
        xfs[0..4].copy_from_slice(b"XFSB");
        xfs[XFS_UUID_AT] = 0xab;
        xfs[XFS_LABEL_AT..XFS_LABEL_AT + 4].copy_from_slice(b"data");
        let mut btrfs = vec![0u8; PROBE_LEN];
        btrfs[BTRFS_SB + 0x40..BTRFS_SB + 0x48].copy_from_slice(b"_BHRfS_M");

        // Act
        let (x, b) = (probe(&xfs).unwrap(), probe(&btrfs).unwrap());

        // Assert
        assert_eq!(x.fstype, "xfs");
        assert_eq!(x.label.as_deref(), Some("data"));
        assert!(x.uuid.unwrap().starts_with("ab000000-"));
        assert_eq!((b.fstype, b.uuid, b.label), ("btrfs", None, None));
    }

    #[test]
    fn test_partuuid_gpt_entry_guid_is_mixed_endian() {
        // Arrange: a GPT header at LBA 1 pointing at entries from LBA 2, entry 2 set.
        let mut disk = vec![0u8; 512 * 4];
        disk[510] = 0x55;
        disk[511] = 0xAA;
        let h = 512;
        disk[h..h + 8].copy_from_slice(b"EFI PART");
        disk[h + 72..h + 80].copy_from_slice(&2u64.to_le_bytes());
        disk[h + 80..h + 84].copy_from_slice(&4u32.to_le_bytes());
        disk[h + 84..h + 88].copy_from_slice(&128u32.to_le_bytes());
        let e = 1024 + 128 + 16;
        disk[e..e + 16].copy_from_slice(&[
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::write(&path, &disk).unwrap();
        let f = File::open(&path).unwrap();

        // Act
        let second = partuuid(&f, 512, 2);
        let beyond = partuuid(&f, 512, 5);

        // Assert
        assert_eq!(
            second.as_deref(),
            Some("00112233-4455-6677-8899-aabbccddeeff")
        );
        assert_eq!(beyond, None);
    }

    #[test]
    fn test_partuuid_mbr_is_signature_and_number() {
        // Arrange
        let mut disk = vec![0u8; 1024];
        disk[440..444].copy_from_slice(&0x0a0b0c0du32.to_le_bytes());
        disk[510] = 0x55;
        disk[511] = 0xAA;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::write(&path, &disk).unwrap();
        let f = File::open(&path).unwrap();

        // Act
        let id = partuuid(&f, 512, 3);

        // Assert
        assert_eq!(id.as_deref(), Some("0a0b0c0d-03"));
    }
}
