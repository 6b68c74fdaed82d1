//! The set of byte ranges written to the main database file since the last capture.
//!
//! A bitmap of 512-byte sectors that keeps its words allocated between captures and remembers
//! which words it touched, so marking, capturing and clearing cost in proportion to what a
//! transaction wrote, not to the size of the file.

use alloc::vec::Vec;

/// Granularity of tracking: the smallest SQLite page size. Pages are whole multiples of it.
pub(crate) const SECTOR: u64 = 512;

/// A bitmap of written 512-byte sectors.
#[derive(Debug, Default)]
pub(crate) struct DirtySet {
    words: Vec<u64>,
    /// Indices of the non-zero words, in the order they became non-zero.
    touched: Vec<usize>,
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
        let (Ok(first_word), Ok(last_word)) =
            (usize::try_from(first / 64), usize::try_from(last / 64))
        else {
            return false;
        };
        if last_word >= self.words.len() {
            let grow = last_word + 1 - self.words.len();
            if self.words.try_reserve(grow).is_err() {
                return false;
            }
            self.words.resize(last_word + 1, 0);
        }
        if self.touched.try_reserve(last_word - first_word + 1).is_err() {
            return false;
        }
        for w in first_word..=last_word {
            let lo = if w == first_word { first % 64 } else { 0 };
            let hi = if w == last_word { last % 64 } else { 63 };
            let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            if self.words[w] == 0 {
                self.touched.push(w);
            }
            self.words[w] |= mask;
        }
        true
    }

    /// Whether nothing was written.
    pub(crate) fn is_empty(&self) -> bool {
        self.touched.is_empty()
    }

    /// The page indices (for `page_size`) that contain a written sector, ascending, and below
    /// `page_limit`; `None` if out of memory.
    pub(crate) fn pages(&mut self, page_size: u64, page_limit: u64) -> Option<Vec<u32>> {
        let sectors_per_page = page_size / SECTOR;
        self.touched.sort_unstable();
        let mut pages: Vec<u32> = Vec::new();
        for &w in &self.touched {
            let mut bits = self.words[w];
            while bits != 0 {
                let sector = w as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                let page = sector / sectors_per_page;
                if page >= page_limit {
                    break;
                }
                let Ok(page) = u32::try_from(page) else { break };
                if pages.last() != Some(&page) {
                    pages.try_reserve(1).ok()?;
                    pages.push(page);
                }
            }
        }
        Some(pages)
    }

    /// Forgets every mark.
    pub(crate) fn clear(&mut self) {
        for &w in &self.touched {
            self.words[w] = 0;
        }
        self.touched.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_map_to_covering_pages() {
        let mut d = DirtySet::default();
        assert!(d.is_empty());
        assert!(d.mark(10 * 4096, 1));
        assert!(d.mark(3 * 4096 + 100, 10));
        assert!(d.mark(0, 4096));
        assert!(!d.is_empty());
        assert_eq!(d.pages(4096, 8).unwrap(), [0, 3]);
        d.clear();
        assert!(d.is_empty());
        assert_eq!(d.pages(4096, 100).unwrap(), [] as [u32; 0]);
    }

    #[test]
    fn one_write_spanning_pages_marks_each() {
        let mut d = DirtySet::default();
        assert!(d.mark(1000, 2 * 1024));
        assert_eq!(d.pages(1024, u64::MAX).unwrap(), [0, 1, 2]);
        d.clear();
        assert!(d.mark(65536, 65536));
        assert_eq!(d.pages(65536, 100).unwrap(), [1]);
        d.clear();
        // A write spanning several bitmap words (64 sectors = 32 KiB each).
        assert!(d.mark(30_000, 100_000));
        assert_eq!(d.pages(4096, u64::MAX).unwrap(), (7..=31).collect::<Vec<u32>>());
    }

    #[test]
    fn every_sector_of_a_range_is_marked_exactly() {
        for (offset, len) in [(0u64, 512u64), (511, 2), (512 * 63, 512 * 3), (100, 512 * 200)] {
            let mut d = DirtySet::default();
            assert!(d.mark(offset, len));
            let want: Vec<u32> = ((offset / 512)..=((offset + len - 1) / 512))
                .map(|s| u32::try_from(s).unwrap())
                .collect();
            assert_eq!(d.pages(512, u64::MAX).unwrap(), want, "offset {offset} len {len}");
        }
    }
}
