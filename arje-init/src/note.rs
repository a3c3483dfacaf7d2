//! This binary's identity, for an arje that is asked to re-exec into it: an ELF note
//! (`.note.arje`) saying which snapshot and handover versions this build reads. The
//! running image reads it from the file, never by running it (`arje-runtime`'s
//! `identity.rs` has the layout, `reexec.rs` the check); `readelf -n arje-init` shows it.

/// `#[used]` keeps the compiler from dropping an unreferenced static, and a section
/// named `.note*` is `SHT_NOTE`, which the linker keeps (its garbage collection spares
/// note sections) and maps into a `PT_NOTE` segment that `strip` leaves alone.
// Naming the section is the only "unsafe" here: a `link_section` static could be placed
// over code or other data. `.note.arje` holds nothing else, and the note is plain data
// that is never read through this static.
#[allow(unsafe_code)]
#[used]
#[link_section = ".note.arje"]
static ARJE_NOTE: arje_runtime::ArjeNote = arje_runtime::ArjeNote::THIS_BUILD;
