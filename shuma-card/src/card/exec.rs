//! The readers of a command's host fields: `rlimits` and the directory modes.

use toml::Spanned;

use super::tree::Node;
use super::{CardError, Loader};
use crate::spec::{Rlimit, RLIMIT_NAMES};

impl Loader<'_> {
    /// A permission mode: an octal string ("0750") or an integer (TOML's `0o750`).
    pub(super) fn mode(&self, node: &Spanned<Node>, field: &str) -> Result<u32, CardError> {
        let bad = || {
            self.error(
                node.span(),
                field,
                "expected a mode from \"0000\" to \"7777\" (octal)",
            )
        };
        let mode = match node.get_ref() {
            Node::Int(n) => u32::try_from(*n).map_err(|_| bad())?,
            Node::Str(s) => u32::from_str_radix(s, 8).map_err(|_| bad())?,
            other => return Err(self.type_error(node, field, other, "an octal mode string")),
        };
        if mode > 0o7777 {
            return Err(bad());
        }
        Ok(mode)
    }

    /// `rlimits = { nofile = 65536, core = "infinity", nproc = "1024:4096" }`: one value
    /// sets both limits; `SOFT:HARD` each; `infinity` is no limit.
    pub(super) fn rlimits(
        &self,
        node: &Spanned<Node>,
        field: &str,
    ) -> Result<Vec<Rlimit>, CardError> {
        let mut out = Vec::new();
        for (key, value) in self.table(node, field)? {
            let name = key.get_ref().as_str();
            let f = format!("{field}.{name}");
            if !RLIMIT_NAMES.contains(&name) {
                let msg = format!(
                    "unknown resource {name:?}; one of {}",
                    RLIMIT_NAMES.join(", ")
                );
                return Err(self.error(key.span(), &f, msg));
            }
            let one = |s: &str| -> Result<Option<u64>, CardError> {
                match s.trim() {
                    "infinity" | "unlimited" => Ok(None),
                    n => n.parse().map(Some).map_err(|_| {
                        self.error(
                            value.span(),
                            &f,
                            format!("{n:?} is not a number or \"infinity\""),
                        )
                    }),
                }
            };
            let (soft, hard) = match value.get_ref() {
                Node::Int(n) if *n >= 0 => (Some(*n as u64), Some(*n as u64)),
                Node::Str(s) => match s.split_once(':') {
                    Some((a, b)) => (one(a)?, one(b)?),
                    None => {
                        let v = one(s)?;
                        (v, v)
                    }
                },
                other => {
                    return Err(self.type_error(
                        value,
                        &f,
                        other,
                        "a number, \"SOFT:HARD\" or \"infinity\"",
                    ))
                }
            };
            if let (Some(s), h) = (soft, hard) {
                if h.is_some_and(|h| s > h) {
                    return Err(self.error(
                        value.span(),
                        &f,
                        "the soft limit is above the hard one",
                    ));
                }
            }
            if soft.is_none() && hard.is_some() {
                return Err(self.error(value.span(), &f, "the soft limit is above the hard one"));
            }
            out.push(Rlimit {
                resource: name.to_string(),
                soft,
                hard,
            });
        }
        Ok(out)
    }
}
