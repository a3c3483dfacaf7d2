//! Readers of typed values out of the span tree: each checks the TOML type, converts
//! human units, and on failure returns a [`CardError`] at the value's own span.

use toml::Spanned;

use super::tree::{Entries, Node};
use super::validate::name_message;
use super::{CardError, Loader};
use crate::spec::{
    DepRef, HealthCheck, Probe, Readiness, HEALTH_INTERVAL_MS, HEALTH_RETRIES, HEALTH_TIMEOUT_MS,
};
use crate::units;

/// The keys of a `ready = { .. }` table, of which exactly one is given.
const READY_KEYS: &[&str] = &["fd", "line", "exec", "tcp", "unix"];
/// The probe keys of a health check, of which exactly one is given.
const PROBE_KEYS: &[&str] = &["exec", "tcp", "unix"];
/// Every key of a health check.
const HEALTH_KEYS: &[&str] = &["exec", "tcp", "unix", "interval", "timeout", "retries"];

impl Loader<'_> {
    /// Every key of `table` must be in `allowed`; `prefix` is the table's card path.
    pub(super) fn check_keys(
        &self,
        table: &Entries,
        allowed: &[&str],
        prefix: &str,
    ) -> Result<(), CardError> {
        for (key, _) in table {
            if !allowed.contains(&key.get_ref().as_str()) {
                let field = join(prefix, key.get_ref());
                let msg = format!(
                    "unknown field {:?}, expected one of {}",
                    key.get_ref(),
                    allowed.join(", ")
                );
                return Err(self.error(key.span(), &field, msg));
            }
        }
        Ok(())
    }

    pub(super) fn table<'n>(
        &self,
        node: &'n Spanned<Node>,
        field: &str,
    ) -> Result<&'n Entries, CardError> {
        match node.get_ref() {
            Node::Table(t) => Ok(t),
            other => Err(self.type_error(node, field, other, "a table")),
        }
    }

    pub(super) fn type_error(
        &self,
        node: &Spanned<Node>,
        field: &str,
        got: &Node,
        expected: &str,
    ) -> CardError {
        self.error(
            node.span(),
            field,
            format!("expected {expected}, got {}", got.type_name()),
        )
    }

    pub(super) fn string(&self, node: &Spanned<Node>, field: &str) -> Result<String, CardError> {
        match node.get_ref() {
            Node::Str(s) => Ok(s.clone()),
            other => Err(self.type_error(node, field, other, "a string")),
        }
    }

    /// One of `choices`, as an index into it.
    pub(super) fn choice(
        &self,
        node: &Spanned<Node>,
        field: &str,
        choices: &[&str],
    ) -> Result<usize, CardError> {
        let s = self.string(node, field)?;
        choices.iter().position(|c| *c == s).ok_or_else(|| {
            self.error(
                node.span(),
                field,
                format!("expected one of {}, got {s:?}", choices.join(", ")),
            )
        })
    }

    pub(super) fn int(
        &self,
        node: &Spanned<Node>,
        field: &str,
        max: u64,
    ) -> Result<u64, CardError> {
        match node.get_ref() {
            Node::Int(n) if *n >= 0 && (*n as u64) <= max => Ok(*n as u64),
            Node::Int(n) => {
                Err(self.error(node.span(), field, format!("{n} is outside 0..={max}")))
            }
            other => Err(self.type_error(node, field, other, "an integer")),
        }
    }

    /// A size: integer bytes, a string with a unit, or "max" (no limit, `None`).
    pub(super) fn size(&self, node: &Spanned<Node>, field: &str) -> Result<Option<u64>, CardError> {
        match node.get_ref() {
            Node::Str(s) if s == "max" => Ok(None),
            Node::Str(s) => units::parse_size(s)
                .map(Some)
                .map_err(|e| self.error(node.span(), field, e.to_string())),
            Node::Int(_) => self.int(node, field, u64::MAX).map(Some),
            other => Err(self.type_error(
                node,
                field,
                other,
                "a size such as \"64M\", an integer or \"max\"",
            )),
        }
    }

    /// A duration: a string with a unit, or the integer 0.
    pub(super) fn duration(&self, node: &Spanned<Node>, field: &str) -> Result<u64, CardError> {
        match node.get_ref() {
            Node::Str(s) => units::parse_duration_ms(s)
                .map_err(|e| self.error(node.span(), field, e.to_string())),
            Node::Int(0) => Ok(0),
            Node::Int(n) => Err(self.error(
                node.span(),
                field,
                format!("a duration needs a unit: write \"{n}s\" or \"{n}ms\""),
            )),
            other => Err(self.type_error(node, field, other, "a duration such as \"5s\"")),
        }
    }

    /// A user or group: a name, or a numeric id written either way.
    pub(super) fn id(&self, node: &Spanned<Node>, field: &str) -> Result<String, CardError> {
        match node.get_ref() {
            Node::Int(_) => self
                .int(node, field, u64::from(u32::MAX))
                .map(|n| n.to_string()),
            _ => self.string(node, field),
        }
    }
}

/// The readers of the readiness, health and dependency fields. `path` is the command's
/// card path ("service[0]") and `at` its index, under which each span is recorded for
/// the rules of `validate` ("ready.fd", "health.exec[0]", "after[1]").
impl Loader<'_> {
    /// An array of strings, each element's span recorded as `field[i]`.
    pub(super) fn strings(
        &mut self,
        node: &Spanned<Node>,
        path: &str,
        field: &str,
        at: Option<usize>,
    ) -> Result<Vec<String>, CardError> {
        let f = join(path, field);
        let Node::Array(items) = node.get_ref() else {
            return Err(self.type_error(node, &f, node.get_ref(), "an array of strings"));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(self.string(item, &format!("{f}[{i}]"))?);
            self.record(at, &format!("{field}[{i}]"), item.span());
        }
        Ok(out)
    }

    /// `ready`: "started", "notify", or a table with exactly one of fd, line, exec, tcp,
    /// unix.
    pub(super) fn readiness(
        &mut self,
        node: &Spanned<Node>,
        path: &str,
        at: Option<usize>,
    ) -> Result<Readiness, CardError> {
        let f = join(path, "ready");
        let table = match node.get_ref() {
            Node::Str(_) => {
                return Ok(match self.choice(node, &f, &["started", "notify"])? {
                    0 => Readiness::Started,
                    _ => Readiness::Notify,
                })
            }
            Node::Table(table) => table,
            other => {
                let expected = "\"started\", \"notify\" or a table such as { fd = 3 }";
                return Err(self.type_error(node, &f, other, expected));
            }
        };
        self.check_keys(table, READY_KEYS, &f)?;
        let (key, value) = self.only_one(node, table, READY_KEYS, &f)?;
        let sub = format!("ready.{key}");
        self.record(at, &sub, value.span());
        let field = join(path, &sub);
        Ok(match key {
            "fd" => Readiness::Fd(self.int(value, &field, u64::from(u32::MAX))? as u32),
            "line" => Readiness::Line(self.string(value, &field)?),
            _ => Readiness::Probe(self.probe(key, value, path, "ready", at)?),
        })
    }

    /// `health`: a table (`[service.health]` or inline) with exactly one of exec, tcp,
    /// unix, and optionally interval, timeout and retries.
    pub(super) fn health(
        &mut self,
        node: &Spanned<Node>,
        path: &str,
        at: Option<usize>,
    ) -> Result<HealthCheck, CardError> {
        let f = join(path, "health");
        let table = self.table(node, &f)?;
        self.check_keys(table, HEALTH_KEYS, &f)?;
        let (probe_key, probe_node) = self.only_one(node, table, PROBE_KEYS, &f)?;
        let (mut interval_ms, mut timeout_ms, mut retries) =
            (HEALTH_INTERVAL_MS, HEALTH_TIMEOUT_MS, HEALTH_RETRIES);
        // Document order, so the first fault in the card is the one reported.
        let mut probe = None;
        for (k, v) in table {
            let sub = format!("health.{}", k.get_ref());
            self.record(at, &sub, v.span());
            let field = join(path, &sub);
            match k.get_ref().as_str() {
                "interval" => interval_ms = self.duration(v, &field)?,
                "timeout" => timeout_ms = self.duration(v, &field)?,
                "retries" => retries = self.int(v, &field, u64::from(u32::MAX))? as u32,
                _ => probe = Some(self.probe(probe_key, probe_node, path, "health", at)?),
            }
        }
        let Some(probe) = probe else {
            // Unreachable: `only_one` found the probe's key in this very table.
            return Err(self.error(node.span(), &f, "missing its probe"));
        };
        Ok(HealthCheck {
            probe,
            interval_ms,
            timeout_ms,
            retries,
        })
    }

    /// The probe written as `key = value` in the table of `prefix` ("ready" or "health").
    fn probe(
        &mut self,
        key: &str,
        value: &Spanned<Node>,
        path: &str,
        prefix: &str,
        at: Option<usize>,
    ) -> Result<Probe, CardError> {
        let sub = format!("{prefix}.{key}");
        let field = join(path, &sub);
        Ok(match key {
            "exec" => Probe::Exec(self.strings(value, path, &sub, at)?),
            "tcp" => Probe::Tcp(self.string(value, &field)?),
            _ => Probe::Unix(self.string(value, &field)?),
        })
    }

    /// The one entry of `table` whose key is in `keys`: none, or two, is an error (at
    /// the table, or at the second key).
    fn only_one<'n>(
        &self,
        node: &Spanned<Node>,
        table: &'n Entries,
        keys: &[&str],
        field: &str,
    ) -> Result<(&'n str, &'n Spanned<Node>), CardError> {
        let mut found = table
            .iter()
            .filter(|(k, _)| keys.contains(&k.get_ref().as_str()));
        let Some((first, value)) = found.next() else {
            let msg = format!("needs exactly one of {}", keys.join(", "));
            return Err(self.error(node.span(), field, msg));
        };
        if let Some((second, _)) = found.next() {
            let msg = format!(
                "{:?} and {:?} are both set: give exactly one of {}",
                first.get_ref(),
                second.get_ref(),
                keys.join(", ")
            );
            return Err(self.error(second.span(), &join(field, second.get_ref()), msg));
        }
        Ok((first.get_ref().as_str(), value))
    }

    /// `after`, `requires` or `wants` (the `key`): an array of `name` or
    /// `workspace/name`, each element's span recorded as `key[i]`.
    pub(super) fn deps(
        &mut self,
        node: &Spanned<Node>,
        path: &str,
        key: &str,
        at: Option<usize>,
    ) -> Result<Vec<DepRef>, CardError> {
        let f = join(path, key);
        let Node::Array(items) = node.get_ref() else {
            return Err(self.type_error(node, &f, node.get_ref(), "an array of strings"));
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field = format!("{f}[{i}]");
            let text = self.string(item, &field)?;
            self.record(at, &format!("{key}[{i}]"), item.span());
            let Some(dep) = DepRef::parse(&text) else {
                let msg = if text.matches('/').count() > 1 {
                    format!("{text:?} is not name or workspace/name: it has more than one '/'")
                } else {
                    let bad = text
                        .split('/')
                        .find(|part| !crate::spec::valid_name(part))
                        .unwrap_or(&text);
                    format!(
                        "{text:?} is not name or workspace/name: {}",
                        name_message(bad)
                    )
                };
                return Err(self.error(item.span(), &field, msg));
            };
            out.push(dep);
        }
        Ok(out)
    }
}

pub(super) fn get<'n>(table: &'n Entries, key: &str) -> Option<&'n Spanned<Node>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}
