//! Undo records: the bytes a stretch of writes overwrote, so the writes can be taken back.
//!
//! A primary applies its updates to its database before they commit. If it loses its view
//! first, it puts back what those updates overwrote (newest first) and holds them like a
//! backup; and it can always produce its committed state for state transfer by reverting a
//! copy. Recording happens at the VFS, one 512-byte sector at a time, the first time a sector
//! that existed when recording began is overwritten or cut off.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::dirty::SECTOR;

/// What to put back to undo a stretch of writes to one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Undo {
    /// The file's size when recording began.
    file_size: u64,
    /// Old contents by sector index (the last sector of the old file may be partial).
    sectors: BTreeMap<u64, Vec<u8>>,
}

impl Undo {
    /// Starts recording for a file of `file_size` bytes.
    pub(crate) fn new(file_size: u64) -> Self {
        Undo { file_size, sectors: BTreeMap::new() }
    }

    /// Saves the old contents of the sectors of `file` overlapping `[offset, offset + len)`
    /// that existed when recording began and are not saved yet. `false` if out of memory.
    pub(crate) fn record(&mut self, file: &[u8], offset: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        let end = offset.saturating_add(len).min(self.file_size);
        if offset >= end {
            return true;
        }
        for sector in offset / SECTOR..end.div_ceil(SECTOR) {
            if self.sectors.contains_key(&sector) {
                continue;
            }
            let start = sector * SECTOR;
            let stop = (start + SECTOR).min(self.file_size);
            let (Ok(start), Ok(stop)) = (usize::try_from(start), usize::try_from(stop)) else {
                return false;
            };
            // Sectors past the current end were cut off earlier, and saved then.
            let Some(old) = file.get(start..stop.min(file.len())) else { continue };
            let mut copy = Vec::new();
            if copy.try_reserve_exact(old.len()).is_err() {
                return false;
            }
            copy.extend_from_slice(old);
            self.sectors.insert(sector, copy);
        }
        true
    }

    /// Puts the saved bytes back into `file` and restores its size. `false` if out of memory
    /// (then `file` may be partly restored).
    pub fn revert(&self, file: &mut Vec<u8>) -> bool {
        let Ok(size) = usize::try_from(self.file_size) else { return false };
        if size > file.len() && !crate::vfs::reserve_file(file, size - file.len()) {
            return false;
        }
        file.resize(size.max(file.len()), 0);
        for (sector, old) in &self.sectors {
            let Ok(start) = usize::try_from(sector * SECTOR) else { return false };
            if let Some(dst) = file.get_mut(start..start + old.len()) {
                dst.copy_from_slice(old);
            }
        }
        file.truncate(size);
        true
    }

    /// The byte ranges [`Undo::revert`] writes back (besides restoring the size).
    pub(crate) fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.sectors.iter().map(|(sector, old)| (sector * SECTOR, old.len() as u64))
    }

    /// Whether nothing was overwritten and the size did not change.
    pub fn is_empty(&self) -> bool {
        self.sectors.is_empty()
    }

    /// Bytes of saved contents.
    pub fn saved_bytes(&self) -> usize {
        self.sectors.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverting_restores_overwritten_grown_and_cut_bytes() {
        let original: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
        let mut file = original.clone();
        let mut undo = Undo::new(file.len() as u64);
        // Overwrite across a sector boundary, grow, then cut.
        assert!(undo.record(&file, 500, 30));
        file[500..530].fill(0xAA);
        assert!(undo.record(&file, 1990, 100));
        file.resize(2090, 0xBB);
        assert!(undo.record(&file, 1024, 2090 - 1024));
        file.truncate(1024);
        assert!(undo.record(&file, 0, 10));
        file[0..10].fill(0xCC);
        assert!(undo.revert(&mut file));
        assert_eq!(file, original);
    }

    #[test]
    fn the_first_old_contents_win() {
        let mut file = vec![1u8; 1024];
        let mut undo = Undo::new(1024);
        assert!(undo.record(&file, 0, 512));
        file[..512].fill(2);
        assert!(undo.record(&file, 0, 512));
        file[..512].fill(3);
        assert!(undo.revert(&mut file));
        assert_eq!(file, vec![1u8; 1024]);
        assert_eq!(undo.saved_bytes(), 512);
    }
}
