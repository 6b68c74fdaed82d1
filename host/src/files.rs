//! Files the host keeps for its replica that must survive a crash whole: written to a
//! temporary file beside them, flushed to the disk, renamed over the old one, and the rename
//! flushed too (the folder's entry), so that after a process crash or a power loss the file
//! holds either the old or the new contents, never a mix or nothing.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path`'s contents with `bytes` durably (see the module's documentation). The
/// temporary file is `path` with the extension `tmp`.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    sync_folder(path)
}

/// Flushes the folder that holds `path` (its entries: a rename or a new file in it).
pub fn sync_folder(path: &Path) -> io::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("group.sealed");
        write_durably(&path, b"first").unwrap();
        write_durably(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn a_missing_folder_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("file");
        assert!(write_durably(&path, b"x").is_err());
    }
}
