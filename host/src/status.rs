//! A replica's status as its host reports it, in a small TOML file next to its data. This is
//! the untrusted host's account, for launchers and people; a TCC-authenticated status query
//! comes with fault tolerance (`vpr status`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::tcc::Status;

/// The status file's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    /// Whether the group is formed at this replica.
    pub ready: bool,
    /// Its view.
    pub view: u64,
    /// The primary of that view.
    pub primary: u16,
    /// The last committed or applied update.
    pub committed: u64,
    /// SHA-256 of its database file, hex.
    pub digest: String,
}

/// Writes `status` to `path` (through a temporary file and a rename).
pub fn write(path: &Path, status: &Status) -> std::io::Result<()> {
    let reported = Reported {
        ready: status.ready,
        view: status.view,
        primary: status.primary,
        committed: status.committed,
        digest: status.digest.to_string(),
    };
    let text = toml::to_string(&reported).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// Reads a status file.
pub fn read(path: &Path) -> std::io::Result<Reported> {
    let text = std::fs::read_to_string(path)?;
    toml::from_str(&text).map_err(std::io::Error::other)
}
