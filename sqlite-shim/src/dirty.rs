//! The set of byte ranges written to the main database file since the last capture.

use alloc::vec::Vec;

/// Granularity of tracking: the smallest SQLite page size. Pages are whole multiples of it.
pub(crate) const SECTOR: u64 = 512;

/// A bitmap of written 512-byte sectors.
#[derive(Debug, Default)]
pub(crate) struct DirtySet {
    words: Vec<u64>,
}

impl DirtySet {
    /// Marks the sectors overlapping `[offset, offset + len)` as written.
    ///
    /// Returns `false` (and marks nothing) if the bitmap cannot grow.
    pub(crate) fn mark(&mut self, offset: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        let first = offset / SECTOR;
        let last = (offset + len - 1) / SECTOR;
        let Ok(need) = usize::try_from(last / 64 + 1) else { return false };
        if need > self.words.len() {
            if self.words.try_reserve(need - self.words.len()).is_err() {
                return false;
            }
            self.words.resize(need, 0);
        }
        for sector in first..=last {
            // `sector / 64 < need <= words.len()`, checked above.
            let word = (sector / 64) as usize;
            self.words[word] |= 1 << (sector % 64);
        }
        true
    }

    /// Whether nothing was written.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// The page indices (for `page_size`) that contain a written sector, ascending, and below
    /// `page_limit`.
    pub(crate) fn pages(&self, page_size: u64, page_limit: u64) -> Vec<u32> {
        let sectors_per_page = page_size / SECTOR;
        let mut pages: Vec<u32> = Vec::new();
        for (w, word) in self.words.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let bit = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                let sector = w as u64 * 64 + bit;
                let page = sector / sectors_per_page;
                if page >= page_limit {
                    continue;
                }
                let Ok(page) = u32::try_from(page) else { continue };
                if pages.last() != Some(&page) {
                    pages.push(page);
                }
            }
        }
        pages
    }

    /// Forgets every mark.
    pub(crate) fn clear(&mut self) {
        self.words.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_map_to_covering_pages() {
        let mut d = DirtySet::default();
        assert!(d.is_empty());
        assert!(d.mark(0, 4096));
        assert!(d.mark(3 * 4096 + 100, 10));
        assert!(d.mark(10 * 4096, 1));
        assert!(!d.is_empty());
        assert_eq!(d.pages(4096, 8), [0, 3]);
        d.clear();
        assert!(d.is_empty());
    }

    #[test]
    fn one_write_spanning_pages_marks_each() {
        let mut d = DirtySet::default();
        assert!(d.mark(1000, 2 * 1024));
        assert_eq!(d.pages(1024, u64::MAX), [0, 1, 2]);
        d.clear();
        assert!(d.mark(65536, 65536));
        assert_eq!(d.pages(65536, 100), [1]);
    }
}
