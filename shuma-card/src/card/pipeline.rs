//! `[[pipeline]]` tables of a card: a pipeline's settings, its `[[pipeline.node]]`
//! commands and its `edges`.
//!
//! ```toml
//! [[pipeline]]
//! name = "etl"
//! edges = ["extract -> transform", "transform -> load", "extract:stderr -> errors"]
//! restart_max = 5
//!
//! [[pipeline.node]]
//! name = "extract"
//! argv = ["/usr/bin/extract"]
//! ```
//!
//! Without `edges` the nodes form a chain in card order. A node is a `[[task]]` in all
//! but restarts: the pipeline restarts as a whole.

use toml::Spanned;

use super::fields::{get, join};
use super::tree::Node;
use super::{CardError, Loader, SpecError};
use crate::pipeline::{Edge, PipelineSpec};
use crate::spec::CommandKind;

const PIPELINE_KEYS: &[&str] = &[
    "name",
    "node",
    "edges",
    "restart",
    "backoff",
    "restart_max",
    "fanout_buffer",
];

/// Where the spans of pipeline fields are recorded: the command index they are keyed by
/// is `None` and the field is the pipeline's path (`pipeline[0].edges`).
impl Loader<'_> {
    pub(super) fn pipelines(
        &mut self,
        node: &Spanned<Node>,
    ) -> Result<Vec<PipelineSpec>, CardError> {
        let Node::Array(items) = node.get_ref() else {
            let msg = format!(
                "expected an array of tables ([[pipeline]]), got {}",
                node.get_ref().type_name()
            );
            return Err(self.error(node.span(), "pipeline", msg));
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            out.push(self.pipeline(item, &format!("pipeline[{i}]"))?);
        }
        Ok(out)
    }

    fn pipeline(&mut self, node: &Spanned<Node>, path: &str) -> Result<PipelineSpec, CardError> {
        let table = self.table(node, path)?;
        self.check_keys(table, PIPELINE_KEYS, path)?;
        self.record(None, path, node.span());
        let Some(name) = get(table, "name") else {
            return Err(self.error(node.span(), &join(path, "name"), "missing required field"));
        };
        let mut p = PipelineSpec::new(self.string(name, &join(path, "name"))?);
        let mut edges_given = false;
        for (key, value) in table {
            let key = key.get_ref().as_str();
            let field = join(path, key);
            let f = field.as_str();
            self.record(None, f, value.span());
            match key {
                "name" => {}
                "node" => p.nodes = self.nodes(value, path)?,
                "edges" => {
                    edges_given = true;
                    let Node::Array(items) = value.get_ref() else {
                        return Err(self.type_error(
                            value,
                            f,
                            value.get_ref(),
                            "an array of \"FROM -> TO\" strings",
                        ));
                    };
                    for (j, item) in items.iter().enumerate() {
                        let fj = format!("{f}[{j}]");
                        self.record(None, &fj, item.span());
                        let text = self.string(item, &fj)?;
                        p.edges
                            .push(Edge::parse(&text).map_err(|e| self.error(item.span(), &fj, e))?);
                    }
                }
                "restart" => p.restart = self.restart_policy(value, f)?,
                "backoff" => {
                    let backoff = self.table(value, f)?;
                    self.check_keys(backoff, &["initial", "max"], f)?;
                    for (k, v) in backoff {
                        let sub = join(f, k.get_ref());
                        let ms = self.duration(v, &sub)?;
                        match k.get_ref().as_str() {
                            "initial" => p.backoff_initial_ms = ms,
                            _ => p.backoff_max_ms = ms,
                        }
                    }
                }
                "restart_max" => p.restart_max = self.int(value, f, u64::from(u32::MAX))? as u32,
                _ => {
                    p.fanout_buffer = self
                        .size(value, f)?
                        .ok_or_else(|| self.error(value.span(), f, "a size, not \"max\""))?
                }
            }
        }
        if !edges_given {
            p.edges = p.chain();
        }
        Ok(p)
    }

    fn nodes(
        &mut self,
        node: &Spanned<Node>,
        path: &str,
    ) -> Result<Vec<crate::spec::CommandSpec>, CardError> {
        let Node::Array(items) = node.get_ref() else {
            let msg = format!(
                "expected an array of tables ([[pipeline.node]]), got {}",
                node.get_ref().type_name()
            );
            return Err(self.error(node.span(), &join(path, "node"), msg));
        };
        let mut out = Vec::new();
        for (j, item) in items.iter().enumerate() {
            let npath = format!("{path}.node[{j}]");
            self.record(None, &npath, item.span());
            // Spans of a node's own fields are keyed by an index no command has.
            let cmd = self.command(item, &npath, usize::MAX - j, CommandKind::Task)?;
            out.push(cmd);
        }
        Ok(out)
    }

    /// A file of `[[pipeline]]` tables only (`shuma pipeline save`).
    pub(super) fn load_pipelines(mut self) -> Result<Vec<PipelineSpec>, CardError> {
        let root = self.parse_root()?;
        self.check_keys(&root, &["pipeline"], "")?;
        let Some(node) = get(&root, "pipeline") else {
            return Err(self.error(0..0, "pipeline", "no [[pipeline]] table"));
        };
        let pipelines = self.pipelines(node)?;
        let spec = crate::spec::WorkspaceSpec {
            name: "saved".into(),
            pipelines: pipelines.clone(),
            ..Default::default()
        };
        super::validate::check(&spec).map_err(|e| self.pipeline_error(e))?;
        Ok(pipelines)
    }

    /// Place a pipeline's semantic error at the most precise span recorded for its field
    /// (`pipeline[0].node[1].argv` falls back to the node's table).
    pub(super) fn pipeline_error(&self, e: SpecError) -> CardError {
        let mut field = e.field.as_str();
        let span = loop {
            if let Some(span) = self.spans.get(&(None, field.to_string())) {
                break span.clone();
            }
            match field.rfind('.') {
                Some(dot) => field = &field[..dot],
                None => break 0..0,
            }
        };
        self.error(span, &e.field, e.message)
    }
}
