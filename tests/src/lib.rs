//! Test fixtures: run arje-init in subreaper mode (this build's or the previous
//! release's), boot QEMU guests.
pub mod client;
pub mod host;
pub mod prev;
pub mod vm;
