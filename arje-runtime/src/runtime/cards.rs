//! The cards directory: every `*.toml` in it becomes a workspace at start.

use std::os::fd::AsFd;

use rustix::fs::OFlags;

use super::Runtime;

impl Runtime {
    /// Load every `*.toml` card of the cards directory and make its workspace, its
    /// commands pending: [`Runtime::start_cards`] starts them, after the ready line (the
    /// first spawn is not on the path to ready). A bad card is logged with its file,
    /// line and field and skipped; the others still load.
    ///
    /// Each card is read through the directory's fd and only if it is a regular file
    /// (`persist::read_regular_at`: no symlink followed, nothing else opened): a FIFO
    /// named like a card blocked boot forever in open(2).
    pub(crate) fn load_cards(&mut self) -> Held {
        let mut pipelines = Vec::new();
        let Some(dir) = self.cfg.cards_dir.clone() else {
            return Held(pipelines);
        };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let opened = rustix::fs::open(&dir, flags, rustix::fs::Mode::empty())
            .map_err(std::io::Error::from)
            .and_then(|fd| Ok((crate::persist::names_at(fd.as_fd())?, fd)));
        let (names, dir_fd) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                log::warn!("cards directory {}: {e}", dir.display());
                return Held(pipelines);
            }
        };
        let mut names: Vec<String> = names
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .filter(|n| {
                std::path::Path::new(n)
                    .extension()
                    .is_some_and(|x| x == "toml")
            })
            .collect();
        names.sort();
        let cap = shuma_card::card::MAX_CARD_BYTES;
        for name in names {
            let file = dir.join(&name);
            let src = match crate::persist::read_regular_at(dir_fd.as_fd(), &name, cap) {
                Ok(Some(bytes)) => String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string()),
                Ok(None) => continue,
                Err(crate::persist::ReadError::TooLarge(_)) => {
                    Err(format!("card is larger than {cap} bytes"))
                }
                Err(e) => Err(e.to_string()),
            };
            let src = match src {
                Ok(src) => src,
                Err(why) => {
                    log::error!("card {}: {why}; skipped", file.display());
                    continue;
                }
            };
            match shuma_card::card::load_str(&src, &file.display().to_string()) {
                Ok(spec) => match self.add_workspace(spec) {
                    Ok(added) => {
                        for w in &added.created.warnings {
                            log::warn!("{}: {w}", file.display());
                        }
                        pipelines.extend(added.pipelines);
                    }
                    Err((_, msg)) => log::error!("{}: {msg}", file.display()),
                },
                Err(e) => log::error!("bad card: {e}"),
            }
        }
        Held(pipelines)
    }

    /// Start what the boot cards hold, in dependency order across all of them.
    pub(crate) fn start_cards(&mut self, held: Held) {
        for (id, why) in self.start_pending(held.0) {
            log::error!("{}: did not start: {why}", self.command_label(id, true));
        }
    }
}

/// The boot cards' workspaces are in the table and their commands pending:
/// [`Runtime::start_cards`] starts them.
#[must_use = "nothing of the boot cards runs until start_cards"]
pub(crate) struct Held(pub(super) Vec<crate::ids::PipelineId>);
