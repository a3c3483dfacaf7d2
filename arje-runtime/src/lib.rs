//! arje runtime.
