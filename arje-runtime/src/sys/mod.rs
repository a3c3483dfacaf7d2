//! Every `unsafe` block of arje lives below this module.
//!
//! rustix and nix are used first; libc only where they have nothing: clone3 (with a
//! separate stack, so the child shares no page tables with a large parent), the few
//! calls the child makes between clone and exec, signal masks that must reach the
//! real-time signals the C library keeps for itself (`signals.rs`), and a host's
//! interface flags, swapon(2) and getrandom(2) (`host.rs`).
#![allow(unsafe_code)]

pub mod fd;
pub mod host;
pub mod peer;
pub mod pidfd;
pub mod signals;
pub mod spawn;
