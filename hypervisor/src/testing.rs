//! Helpers shared by the library's unit tests.

use crate::svm::npt::{NptEntry, NptTable};

/// A deterministic xorshift64 generator (Marsaglia, 2003): the mutation tests' source of
/// "random" inputs, the same on every run.
pub struct XorShift(pub u64);

impl XorShift {
    /// The next value.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value below `n` (which must not be 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

impl NptTable {
    /// A table with no valid entry.
    pub const fn zeroed() -> Self {
        NptTable { entries: [NptEntry::from_raw(0); 512] }
    }
}
