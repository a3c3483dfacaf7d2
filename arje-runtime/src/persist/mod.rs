//! Snapshots in /run and the durable copy.
