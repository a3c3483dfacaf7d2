//! Test fixtures: run arje-init in subreaper mode, boot QEMU guests.
pub mod client;
pub mod host;
pub mod vm;
