//! The snapshot's own copies of the pipeline types (format v4 on), with lossless
//! conversions to and from [`PipelineSpec`], as `saved.rs` has for the card's types.

use serde::{Deserialize, Serialize};

use super::saved::{SavedCommandSpec, SavedRestartPolicy};
use crate::pipeline::{Edge, OutStream, PipelineSpec};

/// [`PipelineSpec`] as saved: a card's `[[pipeline]]`, or one saved with `shuma
/// pipeline save`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedPipelineSpec {
    pub name: String,
    pub nodes: Vec<SavedCommandSpec>,
    pub edges: Vec<SavedEdge>,
    pub restart: SavedRestartPolicy,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub restart_max: u32,
    pub fanout_buffer: u64,
}

/// [`Edge`] as saved.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SavedEdge {
    pub from: String,
    pub stream: SavedOutStream,
    pub to: String,
}

/// [`OutStream`] as saved. Variant order is part of the format.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedOutStream {
    Stdout,
    Stderr,
}

impl From<&PipelineSpec> for SavedPipelineSpec {
    fn from(p: &PipelineSpec) -> Self {
        let PipelineSpec {
            name,
            nodes,
            edges,
            restart,
            backoff_initial_ms,
            backoff_max_ms,
            restart_max,
            fanout_buffer,
        } = p;
        SavedPipelineSpec {
            name: name.clone(),
            nodes: nodes.iter().map(SavedCommandSpec::from).collect(),
            edges: edges.iter().map(SavedEdge::from).collect(),
            restart: (*restart).into(),
            backoff_initial_ms: *backoff_initial_ms,
            backoff_max_ms: *backoff_max_ms,
            restart_max: *restart_max,
            fanout_buffer: *fanout_buffer,
        }
    }
}

impl SavedPipelineSpec {
    /// The card's form of this pipeline.
    pub fn into_card(self) -> PipelineSpec {
        let SavedPipelineSpec {
            name,
            nodes,
            edges,
            restart,
            backoff_initial_ms,
            backoff_max_ms,
            restart_max,
            fanout_buffer,
        } = self;
        PipelineSpec {
            name,
            nodes: nodes.into_iter().map(SavedCommandSpec::into_card).collect(),
            edges: edges.into_iter().map(SavedEdge::into_card).collect(),
            restart: restart.into_card(),
            backoff_initial_ms,
            backoff_max_ms,
            restart_max,
            fanout_buffer,
        }
    }
}

impl From<&Edge> for SavedEdge {
    fn from(e: &Edge) -> Self {
        let Edge { from, stream, to } = e;
        SavedEdge {
            from: from.clone(),
            stream: match stream {
                OutStream::Stdout => SavedOutStream::Stdout,
                OutStream::Stderr => SavedOutStream::Stderr,
            },
            to: to.clone(),
        }
    }
}

impl SavedEdge {
    /// The card's form of this edge.
    pub fn into_card(self) -> Edge {
        let SavedEdge { from, stream, to } = self;
        Edge {
            from,
            stream: match stream {
                SavedOutStream::Stdout => OutStream::Stdout,
                SavedOutStream::Stderr => OutStream::Stderr,
            },
            to,
        }
    }
}
