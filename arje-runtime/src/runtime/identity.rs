//! Who a binary is, read from the file without running it: every arje-init carries an
//! ELF note, `.note.arje` ([`ArjeNote`]), that says which snapshot and handover versions
//! it reads. Before a re-exec the running image reads the note of the binary it is asked
//! to exec ([`read_identity`]) and refuses a binary without one, or one that cannot read
//! what this image is about to write (`reexec.rs`). Running the binary to ask
//! (`--version`) would run an arbitrary program as root.
//!
//! The note is an ordinary ELF note (`namesz`, `descsz`, `type`, name, descriptor), so
//! `readelf -n arje-init` shows it. The linker puts a section whose name starts with
//! `.note` (section type `SHT_NOTE`) in a `PT_NOTE` segment, and the reader looks only at
//! program headers: they are what the kernel itself reads, and `strip` keeps them.
//!
//! The descriptor's layout is a contract between releases: fields are only ever appended
//! (a reader takes the prefix it knows and ignores the rest), and `layout` counts the
//! revisions. Layout 1:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `ARJEINIT` |
//! | 8 | 4 | `layout` (1) |
//! | 12 | 4 | oldest snapshot format version read |
//! | 16 | 4 | newest snapshot format version read (the one written) |
//! | 20 | 4 | oldest handover version read |
//! | 24 | 4 | newest handover version read (the one written) |
//! | 28 | 16 | the crate version, NUL-padded (for messages only) |
//!
//! Integers are in the file's byte order, as every ELF note's are.
//!
//! The parser is bounded: at most [`MAX_PHDRS`] program headers and [`MAX_NOTE_BYTES`]
//! of note segments are read, every offset and length is checked before use, and a
//! malformed file is refused with the reason, never a panic.

use std::io;
use std::os::unix::fs::FileExt;

/// The note's owner name, NUL-terminated and padded to four bytes.
pub const NOTE_NAME: [u8; 8] = *b"arje\0\0\0\0";
/// `namesz`: "arje" and its NUL.
const NOTE_NAMESZ: u32 = 5;
/// The note type, in the "arje" owner's own namespace.
pub const NT_ARJE_IDENTITY: u32 = 1;
/// The descriptor's first bytes.
pub const IDENTITY_MAGIC: [u8; 8] = *b"ARJEINIT";
/// The descriptor layout this build writes and reads (see the module's table).
pub const IDENTITY_LAYOUT: u32 = 1;

/// Most program headers looked at. A real executable has about a dozen; `PN_XNUM`
/// (0xffff, the count kept elsewhere) is refused along with everything above this.
pub const MAX_PHDRS: usize = 128;
/// Most bytes of `PT_NOTE` segments read, all segments together. arje-init's notes are
/// under 200 bytes.
pub const MAX_NOTE_BYTES: u64 = 64 << 10;

/// The descriptor of the arje note (layout 1). `#[repr(C)]` with only 4-byte fields
/// after the magic: no padding, 44 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IdentityDesc {
    pub magic: [u8; 8],
    pub layout: u32,
    pub snapshot_min: u32,
    pub snapshot_max: u32,
    pub handover_min: u32,
    pub handover_max: u32,
    pub version: [u8; 16],
}

/// The whole note as it lies in `.note.arje`: header, padded name, descriptor.
/// `arje-init` places [`ArjeNote::THIS_BUILD`] in that section.
#[repr(C, align(4))]
#[derive(Debug, Clone, Copy)]
pub struct ArjeNote {
    pub namesz: u32,
    pub descsz: u32,
    pub kind: u32,
    pub name: [u8; 8],
    pub desc: IdentityDesc,
}

impl ArjeNote {
    /// What this build reads: every snapshot version from 1 to the one it writes (each
    /// version that ever shipped stays readable, docs/STATE.md), and the handover
    /// versions its `handover.rs` accepts.
    pub const THIS_BUILD: ArjeNote = ArjeNote {
        namesz: NOTE_NAMESZ,
        descsz: std::mem::size_of::<IdentityDesc>() as u32,
        kind: NT_ARJE_IDENTITY,
        name: NOTE_NAME,
        desc: IdentityDesc {
            magic: IDENTITY_MAGIC,
            layout: IDENTITY_LAYOUT,
            snapshot_min: 1,
            snapshot_max: shuma_card::snapshot::SNAPSHOT_VERSION,
            handover_min: super::handover::HANDOVER_VERSION,
            handover_max: super::handover::HANDOVER_VERSION,
            version: padded(env!("CARGO_PKG_VERSION")),
        },
    };
}

/// `s` in 16 NUL-padded bytes (cut if longer).
const fn padded(s: &str) -> [u8; 16] {
    let bytes = s.as_bytes();
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < bytes.len() && i < out.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// What a binary's arje note says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub layout: u32,
    pub snapshots: std::ops::RangeInclusive<u32>,
    pub handovers: std::ops::RangeInclusive<u32>,
    /// The crate version it was built as ("0.1.0"), for messages.
    pub version: String,
}

impl Identity {
    /// This build's own identity.
    pub fn this_build() -> Identity {
        decode_desc(&desc_bytes(&ArjeNote::THIS_BUILD.desc), Endian::native())
            .expect("this build's own note decodes")
    }
}

/// Why a file's arje note could not be read.
#[derive(Debug)]
pub enum NoteError {
    /// Reading the file failed.
    Read(io::Error),
    /// The ELF header or a table it points to is malformed or out of the file; the text
    /// says which.
    Malformed(&'static str),
    /// The program headers announce more than [`MAX_PHDRS`] entries or notes above
    /// [`MAX_NOTE_BYTES`].
    TooLarge(&'static str),
    /// A well-formed ELF with no arje note: not arje-init (or one built before notes).
    Missing,
    /// An arje note whose descriptor is not one this build understands.
    BadDesc(&'static str),
}

impl std::fmt::Display for NoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoteError::Read(e) => write!(f, "reading its ELF notes: {e}"),
            NoteError::Malformed(what) => write!(f, "malformed ELF: {what}"),
            NoteError::TooLarge(what) => write!(f, "ELF too large to check: {what}"),
            NoteError::Missing => write!(f, "it carries no arje identity note (.note.arje)"),
            NoteError::BadDesc(what) => write!(f, "its arje identity note is invalid: {what}"),
        }
    }
}

impl std::error::Error for NoteError {}

#[derive(Debug, Clone, Copy)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn native() -> Endian {
        if cfg!(target_endian = "big") {
            Endian::Big
        } else {
            Endian::Little
        }
    }

    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let a: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        })
    }

    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        })
    }

    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let a: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
        Some(match self {
            Endian::Little => u64::from_le_bytes(a),
            Endian::Big => u64::from_be_bytes(a),
        })
    }
}

/// Where the fields sit in the ELF header and in a program header, for one class.
struct Layout {
    header_len: usize,
    phoff: usize,
    phentsize_at: usize,
    phnum_at: usize,
    phentsize: usize,
    p_offset: usize,
    p_filesz: usize,
    p_align: usize,
    wide: bool,
}

const ELF32: Layout = Layout {
    header_len: 52,
    phoff: 28,
    phentsize_at: 42,
    phnum_at: 44,
    phentsize: 32,
    p_offset: 4,
    p_filesz: 16,
    p_align: 28,
    wide: false,
};

const ELF64: Layout = Layout {
    header_len: 64,
    phoff: 32,
    phentsize_at: 54,
    phnum_at: 56,
    phentsize: 56,
    p_offset: 8,
    p_filesz: 32,
    p_align: 48,
    wide: true,
};

const PT_NOTE: u32 = 4;

impl Layout {
    /// An address-sized field (`Elf32_Off` or `Elf64_Off`).
    fn word(&self, e: Endian, b: &[u8], at: usize) -> Option<u64> {
        if self.wide {
            e.u64(b, at)
        } else {
            e.u32(b, at).map(u64::from)
        }
    }
}

/// Reads the arje note of the ELF file `file` through its program headers.
pub fn read_identity(file: &std::fs::File) -> Result<Identity, NoteError> {
    let file_len = file.metadata().map_err(NoteError::Read)?.len();
    let mut ident = [0u8; 64];
    let got = read_at_most(file, &mut ident, 0)?;
    let ident = &ident[..got];
    if ident.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(NoteError::Malformed("no ELF magic"));
    }
    let layout = match ident.get(4) {
        Some(1) => &ELF32,
        Some(2) => &ELF64,
        _ => return Err(NoteError::Malformed("unknown ELF class")),
    };
    let e = match ident.get(5) {
        Some(1) => Endian::Little,
        Some(2) => Endian::Big,
        _ => return Err(NoteError::Malformed("unknown ELF byte order")),
    };
    if ident.len() < layout.header_len {
        return Err(NoteError::Malformed("ELF header truncated"));
    }
    let phoff = layout
        .word(e, ident, layout.phoff)
        .ok_or(NoteError::Malformed("ELF header truncated"))?;
    let phentsize = e.u16(ident, layout.phentsize_at).unwrap_or(0) as usize;
    let phnum = e.u16(ident, layout.phnum_at).unwrap_or(0) as usize;
    if phnum == 0 {
        return Err(NoteError::Missing);
    }
    if phentsize != layout.phentsize {
        return Err(NoteError::Malformed("program header size"));
    }
    if phnum > MAX_PHDRS {
        return Err(NoteError::TooLarge("program header count"));
    }
    let table_len = (phnum * phentsize) as u64;
    if !matches!(phoff.checked_add(table_len), Some(end) if end <= file_len) {
        return Err(NoteError::Malformed("program headers outside the file"));
    }
    let mut table = vec![0u8; table_len as usize];
    read_exact(file, &mut table, phoff)?;
    let mut budget = MAX_NOTE_BYTES;
    for ph in table.chunks_exact(phentsize) {
        if e.u32(ph, 0) != Some(PT_NOTE) {
            continue;
        }
        let field = |at| layout.word(e, ph, at).unwrap_or(0);
        let (offset, size, align) = (
            field(layout.p_offset),
            field(layout.p_filesz),
            field(layout.p_align),
        );
        if size > budget {
            return Err(NoteError::TooLarge("note segments"));
        }
        budget -= size;
        if !matches!(offset.checked_add(size), Some(end) if end <= file_len) {
            return Err(NoteError::Malformed("note segment outside the file"));
        }
        let mut notes = vec![0u8; size as usize];
        read_exact(file, &mut notes, offset)?;
        if let Some(desc) = find_note(&notes, e, align)? {
            return decode_desc(desc, e);
        }
    }
    Err(NoteError::Missing)
}

/// The arje identity note's descriptor in one `PT_NOTE` segment's bytes, if there. Notes
/// are padded to 4 bytes, or 8 in a segment aligned to 8 (`.note.gnu.property`).
fn find_note(notes: &[u8], e: Endian, align: u64) -> Result<Option<&[u8]>, NoteError> {
    let pad = if align == 8 { 8 } else { 4 };
    let up = |n: usize| n.checked_add(pad - 1).map(|n| n & !(pad - 1));
    let past = || NoteError::Malformed("note runs past its segment");
    let mut at = 0usize;
    while notes.len().saturating_sub(at) >= 12 {
        let word = |off: usize| e.u32(notes, at + off).unwrap_or(0);
        let (namesz, descsz, kind) = (word(0) as usize, word(4) as usize, word(8));
        let name_at = at + 12;
        let desc_at = name_at.checked_add(namesz).and_then(up).ok_or_else(past)?;
        let desc_end = desc_at.checked_add(descsz).ok_or_else(past)?;
        if desc_end > notes.len() {
            return Err(past());
        }
        let name = &notes[name_at..name_at + namesz];
        if name == &NOTE_NAME[..NOTE_NAMESZ as usize] && kind == NT_ARJE_IDENTITY {
            return Ok(Some(&notes[desc_at..desc_end]));
        }
        match up(desc_end) {
            Some(next) => at = next,
            None => break,
        }
    }
    Ok(None)
}

/// Layout 1's fields from a descriptor of at least its size; later layouts append.
fn decode_desc(d: &[u8], e: Endian) -> Result<Identity, NoteError> {
    if d.len() < std::mem::size_of::<IdentityDesc>() {
        return Err(NoteError::BadDesc("shorter than layout 1"));
    }
    if d[..8] != IDENTITY_MAGIC {
        return Err(NoteError::BadDesc("wrong magic"));
    }
    let word = |at| e.u32(d, at).unwrap_or(0);
    let layout = word(8);
    if layout == 0 {
        return Err(NoteError::BadDesc("layout 0"));
    }
    let (smin, smax, hmin, hmax) = (word(12), word(16), word(20), word(24));
    if smin == 0 || smin > smax || hmin == 0 || hmin > hmax {
        return Err(NoteError::BadDesc("an empty version range"));
    }
    let version = &d[28..44];
    let version = &version[..version.iter().position(|&b| b == 0).unwrap_or(16)];
    Ok(Identity {
        layout,
        snapshots: smin..=smax,
        handovers: hmin..=hmax,
        version: String::from_utf8_lossy(version).into_owned(),
    })
}

/// The descriptor's bytes, in this machine's byte order (as the note lies in the file).
fn desc_bytes(d: &IdentityDesc) -> Vec<u8> {
    let mut b = Vec::with_capacity(std::mem::size_of::<IdentityDesc>());
    b.extend_from_slice(&d.magic);
    for w in [
        d.layout,
        d.snapshot_min,
        d.snapshot_max,
        d.handover_min,
        d.handover_max,
    ] {
        b.extend_from_slice(&w.to_ne_bytes());
    }
    b.extend_from_slice(&d.version);
    b
}

/// The whole note's bytes as they lie in the file (tests build ELF files from them).
#[cfg(test)]
pub(super) fn note_bytes(n: &ArjeNote) -> Vec<u8> {
    let mut b = Vec::new();
    for w in [n.namesz, n.descsz, n.kind] {
        b.extend_from_slice(&w.to_ne_bytes());
    }
    b.extend_from_slice(&n.name);
    b.extend_from_slice(&desc_bytes(&n.desc));
    b
}

fn read_at_most(file: &std::fs::File, buf: &mut [u8], offset: u64) -> Result<usize, NoteError> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(NoteError::Read(e)),
        }
    }
    Ok(got)
}

fn read_exact(file: &std::fs::File, buf: &mut [u8], offset: u64) -> Result<(), NoteError> {
    if read_at_most(file, buf, offset)? < buf.len() {
        return Err(NoteError::Malformed("file shorter than its headers say"));
    }
    Ok(())
}

/// ELF files for tests: this machine's ELF header with one `PT_NOTE` segment.
#[cfg(test)]
pub(super) mod fixture {
    /// This test binary's own ELF header (64 bytes, ELF64 on every machine arje runs
    /// on), pointing at one program header, a `PT_NOTE` holding `notes`, aligned `align`.
    pub fn elf_with_notes(notes: &[u8], align: u64) -> Vec<u8> {
        let mut elf = std::fs::read("/proc/self/exe").unwrap();
        elf.truncate(64);
        assert_eq!(elf[4], 2, "an ELF64 host");
        elf[32..40].copy_from_slice(&64u64.to_ne_bytes()); // e_phoff
        elf[40..48].copy_from_slice(&0u64.to_ne_bytes()); // e_shoff: no sections
        elf[54..56].copy_from_slice(&56u16.to_ne_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&1u16.to_ne_bytes()); // e_phnum
        elf[60..62].copy_from_slice(&0u16.to_ne_bytes()); // e_shnum
        let mut ph = [0u8; 56];
        ph[0..4].copy_from_slice(&super::PT_NOTE.to_ne_bytes());
        ph[8..16].copy_from_slice(&120u64.to_ne_bytes()); // p_offset
        ph[32..40].copy_from_slice(&(notes.len() as u64).to_ne_bytes()); // p_filesz
        ph[40..48].copy_from_slice(&(notes.len() as u64).to_ne_bytes()); // p_memsz
        ph[48..56].copy_from_slice(&align.to_ne_bytes()); // p_align
        elf.extend_from_slice(&ph);
        elf.extend_from_slice(notes);
        elf
    }

    /// A GNU build-id note (20 bytes of id), as linkers put before others.
    pub fn build_id_note() -> Vec<u8> {
        let mut n = Vec::new();
        for w in [4u32, 20, 3] {
            n.extend_from_slice(&w.to_ne_bytes());
        }
        n.extend_from_slice(b"GNU\0");
        n.extend_from_slice(&[0xab; 20]);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{build_id_note, elf_with_notes};
    use super::*;

    fn identity_of(bytes: &[u8]) -> Result<Identity, NoteError> {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        read_identity(&file)
    }

    fn this_note() -> Vec<u8> {
        note_bytes(&ArjeNote::THIS_BUILD)
    }

    #[test]
    fn test_this_build_identity_reads_every_snapshot_version_and_its_handover() {
        let id = Identity::this_build();

        assert_eq!(id.layout, IDENTITY_LAYOUT);
        assert_eq!(id.snapshots, 1..=shuma_card::snapshot::SNAPSHOT_VERSION);
        assert_eq!(
            id.handovers,
            super::super::handover::HANDOVER_VERSION..=super::super::handover::HANDOVER_VERSION
        );
        assert_eq!(id.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(std::mem::size_of::<ArjeNote>(), 12 + 8 + 44);
    }

    #[test]
    fn test_read_identity_after_another_note_found() {
        let mut notes = build_id_note();
        notes.extend(this_note());

        let id = identity_of(&elf_with_notes(&notes, 4)).unwrap();

        assert_eq!(id, Identity::this_build());
    }

    #[test]
    fn test_read_identity_in_8_aligned_segment_found() {
        // As `.note.gnu.property` lies: name and descriptor each padded to 8 bytes.
        let mut notes = Vec::new();
        for w in [4u32, 16, 5] {
            notes.extend_from_slice(&w.to_ne_bytes());
        }
        notes.extend_from_slice(b"GNU\0");
        notes.extend_from_slice(&[0; 16]);
        let ours = this_note();
        notes.extend_from_slice(&ours[..17]); // header and "arje\0"
        notes.extend_from_slice(&[0; 7]); // name padded to 24
        notes.extend_from_slice(&ours[20..]); // the descriptor, 44 bytes
        notes.extend_from_slice(&[0; 4]); // padded to 48

        let id = identity_of(&elf_with_notes(&notes, 8)).unwrap();

        assert_eq!(id, Identity::this_build());
    }

    #[test]
    fn test_read_identity_later_layout_with_more_fields_read() {
        let mut note = ArjeNote::THIS_BUILD;
        note.descsz += 8;
        note.desc.layout = 2;
        let mut notes = note_bytes(&note);
        notes.extend_from_slice(&[7; 8]);

        let id = identity_of(&elf_with_notes(&notes, 4)).unwrap();

        assert_eq!(id.layout, 2);
        assert_eq!(id.snapshots, Identity::this_build().snapshots);
    }

    #[test]
    fn test_read_identity_without_arje_note_missing() {
        let other = identity_of(&elf_with_notes(&build_id_note(), 4));
        let own_test_binary = read_identity(&std::fs::File::open("/proc/self/exe").unwrap());

        assert!(matches!(other, Err(NoteError::Missing)), "{other:?}");
        assert!(
            matches!(own_test_binary, Err(NoteError::Missing)),
            "{own_test_binary:?}"
        );
    }

    #[test]
    fn test_read_identity_malformed_files_refused_with_reason() {
        let good = elf_with_notes(&this_note(), 4);
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            b
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated header", good[..40].to_vec()),
            ("cut inside the note", good[..good.len() - 10].to_vec()),
            (
                "phnum 0xffff",
                with(&|b| b[56..58].copy_from_slice(&0xffffu16.to_ne_bytes())),
            ),
            (
                "phentsize 40",
                with(&|b| b[54..56].copy_from_slice(&40u16.to_ne_bytes())),
            ),
            (
                "phoff far",
                with(&|b| b[32..40].copy_from_slice(&u64::MAX.to_ne_bytes())),
            ),
            (
                "filesz huge",
                with(&|b| b[96..104].copy_from_slice(&(1u64 << 40).to_ne_bytes())),
            ),
            (
                "namesz huge",
                with(&|b| b[120..124].copy_from_slice(&u32::MAX.to_ne_bytes())),
            ),
            (
                "descsz short",
                with(&|b| {
                    b[124..128].copy_from_slice(&8u32.to_ne_bytes());
                }),
            ),
            ("bad magic", with(&|b| b[140] = b'X')),
            (
                "empty range",
                with(&|b| b[152..156].copy_from_slice(&9u32.to_ne_bytes())),
            ),
        ];

        let results: Vec<_> = cases.iter().map(|(_, b)| identity_of(b)).collect();

        let expect = |i: usize, pred: fn(&NoteError) -> bool| {
            let r = &results[i];
            assert!(matches!(r, Err(e) if pred(e)), "{}: {r:?}", cases[i].0);
        };
        expect(0, |e| matches!(e, NoteError::Malformed(_)));
        expect(1, |e| matches!(e, NoteError::Malformed(_)));
        expect(2, |e| matches!(e, NoteError::TooLarge(_)));
        expect(3, |e| {
            matches!(e, NoteError::Malformed("program header size"))
        });
        expect(4, |e| matches!(e, NoteError::Malformed(_)));
        expect(5, |e| matches!(e, NoteError::TooLarge("note segments")));
        expect(6, |e| matches!(e, NoteError::Malformed(_)));
        expect(7, |e| matches!(e, NoteError::BadDesc(_)));
        expect(8, |e| matches!(e, NoteError::BadDesc("wrong magic")));
        expect(9, |e| matches!(e, NoteError::BadDesc(_)));
    }

    #[test]
    fn test_read_identity_every_byte_flipped_never_panics() {
        let good = elf_with_notes(&this_note(), 4);

        for at in 0..good.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = good.clone();
                b[at] ^= bit;
                // Any answer will do; a panic or a hang fails the test.
                let _ = identity_of(&b);
            }
        }
    }
}
