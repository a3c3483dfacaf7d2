//! Readers of typed values out of the span tree: each checks the TOML type, converts
//! human units, and on failure returns a [`CardError`] at the value's own span.

use toml::Spanned;

use super::tree::{Entries, Node};
use super::{CardError, Loader};
use crate::units;

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
