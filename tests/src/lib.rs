//! Test fixtures: run arje-init in subreaper mode (this build's or the previous
//! release's), inject faults into it, boot QEMU guests.
pub mod client;
pub mod faults;
pub mod host;
pub mod prev;
pub mod vm;
