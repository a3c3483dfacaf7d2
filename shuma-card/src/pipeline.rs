//! Pipelines: a named graph of commands in one workspace whose output feeds the next
//! one's input, supervised as one unit.
//!
//! A pipeline's nodes are commands with everything a command has, and its edges say
//! which node's stdout (or stderr) goes to which node's stdin. arje creates the pipes and
//! hands them over at spawn: an output with one edge is the reader's pipe itself (the
//! kernel's backpressure, no copy), several sources of one reader share its pipe (fan-in,
//! interleaved by the writes), and an output with several edges is read by arje and
//! copied to each reader (fan-out, bounded per edge). The runtime runs node `n` of
//! pipeline `p` as the command `p.n`.

use serde::{Deserialize, Serialize};

use crate::spec::{valid_name, CommandSpec, RestartPolicy, MAX_NAME_LEN};

/// Most pipelines one workspace may declare.
pub const MAX_PIPELINES_PER_WORKSPACE: usize = 64;
/// Most nodes one pipeline may have.
pub const MAX_NODES: usize = 64;
/// Most edges one pipeline may have.
pub const MAX_EDGES: usize = 256;
/// Default bound of a fan-out edge's buffer in arje: beyond it, bytes for a reader that
/// falls behind are dropped and counted.
pub const FANOUT_BUFFER: u64 = 1 << 20;

/// A pipeline as declared: `[[pipeline]]` in a card, or saved with `shuma pipeline save`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PipelineSpec {
    pub name: String,
    /// The nodes, in card order. Their `restart` is the pipeline's, not theirs: a node
    /// is run once per run of the pipeline.
    pub nodes: Vec<CommandSpec>,
    /// Which output feeds which input. An empty list in a card means the nodes form a
    /// chain in card order (`a | b | c`).
    pub edges: Vec<Edge>,
    /// When the whole pipeline runs again after every node has ended.
    pub restart: RestartPolicy,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Restarts before the pipeline is marked failed (0: no limit).
    pub restart_max: u32,
    /// Bytes arje holds per fan-out edge for a reader that is behind.
    pub fanout_buffer: u64,
}

/// One edge: `from`'s `stream` is written into `to`'s stdin.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub stream: OutStream,
    pub to: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutStream {
    Stdout,
    Stderr,
}

impl PipelineSpec {
    /// A pipeline with the defaults of every optional key and no nodes yet.
    pub fn new(name: impl Into<String>) -> PipelineSpec {
        PipelineSpec {
            name: name.into(),
            nodes: Vec::new(),
            edges: Vec::new(),
            restart: RestartPolicy::OnFailure,
            backoff_initial_ms: 100,
            backoff_max_ms: 30_000,
            restart_max: 10,
            fanout_buffer: FANOUT_BUFFER,
        }
    }

    /// The edges of a chain through the nodes in order.
    pub fn chain(&self) -> Vec<Edge> {
        self.nodes
            .windows(2)
            .map(|w| Edge {
                from: w[0].name.clone(),
                stream: OutStream::Stdout,
                to: w[1].name.clone(),
            })
            .collect()
    }

    /// The index of the node called `name`.
    pub fn node(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The name the runtime gives node `node` of this pipeline: `pipeline.node`.
    pub fn command_name(&self, node: &str) -> String {
        command_name(&self.name, node)
    }

    /// Node indices with sources first: each node after every node that feeds it.
    /// `None` if the edges have a cycle (or name a node that does not exist).
    pub fn order(&self) -> Option<Vec<usize>> {
        let n = self.nodes.len();
        let mut indegree = vec![0usize; n];
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
        for e in &self.edges {
            let (f, t) = (self.node(&e.from)?, self.node(&e.to)?);
            out[f].push(t);
            indegree[t] += 1;
        }
        let mut ready: Vec<usize> = (0..n).rev().filter(|i| indegree[*i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop() {
            order.push(i);
            for &t in &out[i] {
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    ready.push(t);
                }
            }
        }
        (order.len() == n).then_some(order)
    }
}

/// `pipeline.node`, the command name of a pipeline's node.
pub fn command_name(pipeline: &str, node: &str) -> String {
    format!("{pipeline}.{node}")
}

impl Edge {
    /// Parse `from -> to` or `from:stderr -> to` (`:stdout` is the default).
    pub fn parse(text: &str) -> Result<Edge, String> {
        let Some((from, to)) = text.split_once("->") else {
            return Err(format!(
                "{text:?}: expected \"FROM -> TO\" or \"FROM:stderr -> TO\""
            ));
        };
        let (from, to) = (from.trim(), to.trim());
        let (from, stream) = match from.split_once(':') {
            None => (from, OutStream::Stdout),
            Some((f, "stdout")) => (f, OutStream::Stdout),
            Some((f, "stderr")) => (f, OutStream::Stderr),
            Some((_, s)) => return Err(format!("{text:?}: stream {s:?} is not stdout or stderr")),
        };
        for name in [from, to] {
            if !valid_name(name) {
                return Err(format!("{text:?}: {name:?} is not a node name"));
            }
        }
        Ok(Edge {
            from: from.to_string(),
            stream,
            to: to.to_string(),
        })
    }
}

impl core::fmt::Display for Edge {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.stream {
            OutStream::Stdout => write!(f, "{} -> {}", self.from, self.to),
            OutStream::Stderr => write!(f, "{}:stderr -> {}", self.from, self.to),
        }
    }
}

/// The rules of a pipeline beyond each node's own (which are a command's): as
/// `(field, message)`, the field relative to the pipeline.
pub fn check(p: &PipelineSpec) -> Result<(), (String, String)> {
    let err = |field: &str, message: String| Err((field.to_string(), message));
    if !valid_name(&p.name) {
        return err("name", format!("{:?} is not a valid pipeline name", p.name));
    }
    if p.nodes.is_empty() {
        return err(
            "node",
            "a pipeline needs at least one [[pipeline.node]]".into(),
        );
    }
    if p.nodes.len() > MAX_NODES {
        return err("node", format!("at most {MAX_NODES} nodes"));
    }
    if p.edges.len() > MAX_EDGES {
        return err("edges", format!("at most {MAX_EDGES} edges"));
    }
    for (i, n) in p.nodes.iter().enumerate() {
        let full = p.command_name(&n.name);
        if full.len() > MAX_NAME_LEN {
            return err(
                &format!("node[{i}].name"),
                format!("{full:?} (pipeline.node) is longer than {MAX_NAME_LEN} bytes"),
            );
        }
        if p.nodes[..i].iter().any(|m| m.name == n.name) {
            return err(
                &format!("node[{i}].name"),
                format!("two nodes are called {:?}", n.name),
            );
        }
        let node_only = |what: &str| {
            err(
                &format!("node[{i}]"),
                format!("{what} is not for a pipeline node: the pipeline starts, restarts and orders its nodes as one"),
            )
        };
        if !n.after.is_empty() || !n.requires.is_empty() || !n.wants.is_empty() {
            return node_only("after/requires/wants");
        }
        if n.health.is_some() || n.watchdog_ms.is_some() || n.ready != Default::default() {
            return node_only("ready/health/watchdog");
        }
    }
    let mut seen = std::collections::HashSet::new();
    for e in &p.edges {
        for end in [&e.from, &e.to] {
            if p.node(end).is_none() {
                return err("edges", format!("{e}: no node called {end:?}"));
            }
        }
        if e.from == e.to {
            return err("edges", format!("{e}: a node cannot feed itself"));
        }
        if !seen.insert(e) {
            return err("edges", format!("{e}: the same edge twice"));
        }
    }
    if p.order().is_none() {
        return err("edges", "the edges form a cycle".into());
    }
    if p.backoff_initial_ms == 0 || p.backoff_initial_ms > p.backoff_max_ms {
        return err(
            "backoff",
            format!(
                "initial ({} ms) must be above 0 and at most max ({} ms)",
                p.backoff_initial_ms, p.backoff_max_ms
            ),
        );
    }
    if p.fanout_buffer == 0 || p.fanout_buffer > 64 << 20 {
        return err("fanout_buffer", "must be between 1 byte and 64M".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::CommandKind;

    fn pipeline(nodes: &[&str], edges: &[&str]) -> PipelineSpec {
        let mut p = PipelineSpec::new("p");
        for n in nodes {
            p.nodes.push(CommandSpec::new(
                *n,
                CommandKind::Task,
                vec!["/bin/true".into()],
            ));
        }
        p.edges = edges.iter().map(|e| Edge::parse(e).unwrap()).collect();
        p
    }

    #[test]
    fn test_edge_parse_streams_and_errors() {
        assert_eq!(
            Edge::parse(" a:stderr ->b ").unwrap(),
            Edge {
                from: "a".into(),
                stream: OutStream::Stderr,
                to: "b".into()
            }
        );
        assert_eq!(Edge::parse("a -> b").unwrap().stream, OutStream::Stdout);
        assert!(Edge::parse("a b").is_err());
        assert!(Edge::parse("a:stdin -> b").is_err());
        assert!(Edge::parse("A -> b").is_err());
    }

    #[test]
    fn test_order_sources_first_and_cycle_refused() {
        let p = pipeline(&["sink", "src", "mid"], &["src -> mid", "mid -> sink"]);
        assert_eq!(p.order().unwrap(), vec![1, 2, 0]);
        let fan = pipeline(&["a", "b", "c"], &["a -> b", "a -> c", "b -> c"]);
        assert_eq!(fan.order().unwrap(), vec![0, 1, 2]);
        let cyc = pipeline(&["a", "b"], &["a -> b", "b -> a"]);
        assert!(cyc.order().is_none());
        assert!(check(&cyc).unwrap_err().1.contains("cycle"));
    }

    #[test]
    fn test_check_refuses_unknown_node_self_edge_and_node_deps() {
        assert!(check(&pipeline(&["a"], &["a -> x"])).is_err());
        assert!(check(&pipeline(&["a"], &["a -> a"])).is_err());
        let mut p = pipeline(&["a", "b"], &[]);
        p.nodes[1].after = vec![crate::spec::DepRef::parse("a").unwrap()];
        assert!(check(&p).unwrap_err().1.contains("not for a pipeline node"));
        assert!(check(&pipeline(&["a", "b"], &["a -> b"])).is_ok());
    }

    #[test]
    fn test_chain_links_nodes_in_order() {
        let p = pipeline(&["a", "b", "c"], &[]);
        let chain: Vec<String> = p.chain().iter().map(|e| e.to_string()).collect();
        assert_eq!(chain, vec!["a -> b", "b -> c"]);
    }
}
