//! Physical memory: address ranges, the boot-time plan (heap and frame pool) and the pool of
//! 4 KiB frames that VMCBs, bitmaps, nested page tables and guest memory come from.

use alloc::vec::Vec;
use core::fmt;
use x86_64::PhysAddr;

/// Size of a frame (a 4 KiB page).
pub const PAGE_SIZE: u64 = 4096;

/// A half-open range of physical addresses, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Range {
    /// First address in the range.
    pub start: u64,
    /// First address past the range.
    pub end: u64,
}

impl Range {
    /// The range `[start, end)`; empty if `end <= start`.
    pub const fn new(start: u64, end: u64) -> Self {
        Range { start, end }
    }

    /// The range of `len` bytes from `start` (saturating at the top of the address space).
    pub const fn sized(start: u64, len: u64) -> Self {
        Range { start, end: start.saturating_add(len) }
    }

    /// Its length in bytes.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether it holds no address.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether `addr` lies in it.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// The part of it that lies in `other`.
    pub fn intersect(&self, other: Range) -> Range {
        Range { start: self.start.max(other.start), end: self.end.min(other.end) }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start, self.end)
    }
}

/// Rounds `value` up to a multiple of `align` (a power of two).
pub const fn align_up(value: u64, align: u64) -> u64 {
    (value + align - 1) & !(align - 1)
}

/// Rounds `value` down to a multiple of `align` (a power of two).
pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Errors of the memory bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryError {
    /// A range set holds at most [`RangeSet::CAPACITY`] ranges.
    TooManyRanges,
    /// No usable range is large enough for the heap plus at least one frame; carries the
    /// bytes needed.
    NotEnoughMemory(u64),
    /// A frame given back was not 4 KiB aligned or never came from this pool.
    ForeignFrame(u64),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::TooManyRanges => write!(f, "too many memory ranges"),
            MemoryError::NotEnoughMemory(n) => write!(f, "no usable range of {n:#x} bytes"),
            MemoryError::ForeignFrame(a) => write!(f, "frame {a:#x} is not from this pool"),
        }
    }
}

/// A set of disjoint ranges with a fixed capacity, usable before there is a heap.
#[derive(Debug, Clone)]
pub struct RangeSet {
    ranges: [Range; RangeSet::CAPACITY],
    len: usize,
}

impl Default for RangeSet {
    fn default() -> Self {
        RangeSet { ranges: [Range::default(); RangeSet::CAPACITY], len: 0 }
    }
}

impl RangeSet {
    /// How many disjoint ranges the set holds at most.
    pub const CAPACITY: usize = 32;

    /// The ranges, in the order they were added or split.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges[..self.len]
    }

    /// Adds `range` (empty ranges are ignored). The caller keeps the ranges disjoint.
    pub fn add(&mut self, range: Range) -> Result<(), MemoryError> {
        if range.is_empty() {
            return Ok(());
        }
        let slot = self.ranges.get_mut(self.len).ok_or(MemoryError::TooManyRanges)?;
        *slot = range;
        self.len += 1;
        Ok(())
    }

    /// Removes every address of `hole` from the set, splitting ranges as needed.
    pub fn remove(&mut self, hole: Range) -> Result<(), MemoryError> {
        if hole.is_empty() {
            return Ok(());
        }
        let old = core::mem::take(self);
        for range in old.ranges() {
            if range.intersect(hole).is_empty() {
                self.add(*range)?;
            } else {
                self.add(Range::new(range.start, hole.start))?;
                self.add(Range::new(hole.end, range.end))?;
            }
        }
        Ok(())
    }

    /// The largest range, if any.
    pub fn largest(&self) -> Option<Range> {
        self.ranges().iter().copied().max_by_key(Range::len)
    }
}

/// Where the hypervisor's heap and frame pool go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The heap (for `alloc`), page-aligned.
    pub heap: Range,
    /// The frames handed out by the [`FramePool`], page-aligned.
    pub frames: Range,
}

/// Chooses the heap and the frame pool: both come from the largest usable range, the heap
/// (`heap_bytes`, rounded up to pages) at its page-aligned start and the frames after it.
pub fn plan(usable: &RangeSet, heap_bytes: u64) -> Result<Plan, MemoryError> {
    let heap_bytes = align_up(heap_bytes, PAGE_SIZE);
    let needed = heap_bytes + PAGE_SIZE;
    let largest = usable.largest().ok_or(MemoryError::NotEnoughMemory(needed))?;
    let start = align_up(largest.start, PAGE_SIZE);
    let end = align_down(largest.end, PAGE_SIZE);
    if end < start || end - start < needed {
        return Err(MemoryError::NotEnoughMemory(needed));
    }
    let heap = Range::sized(start, heap_bytes);
    Ok(Plan { heap, frames: Range::new(heap.end, end) })
}

/// A pool of 4 KiB frames over one range. Frames given back are kept as sorted, merged free
/// runs and reused first (first fit, single frames and contiguous runs alike); then the pool
/// bumps through the range it has not handed out yet. It does not zero frames: that needs
/// access to the memory, which the image has and this bookkeeping does not.
#[derive(Debug)]
pub struct FramePool {
    range: Range,
    next: u64,
    /// Free runs below `next`: sorted, disjoint, never adjacent (merged on free).
    free: Vec<Range>,
}

impl FramePool {
    /// A pool of the whole pages inside `range`.
    pub fn new(range: Range) -> Self {
        let start = align_up(range.start, PAGE_SIZE);
        let end = align_down(range.end, PAGE_SIZE).max(start);
        FramePool { range: Range::new(start, end), next: start, free: Vec::new() }
    }

    /// The page-aligned range the pool manages.
    pub fn range(&self) -> Range {
        self.range
    }

    /// How many frames can still be allocated.
    pub fn available(&self) -> u64 {
        let freed: u64 = self.free.iter().map(|r| r.len() / PAGE_SIZE).sum();
        (self.range.end - self.next) / PAGE_SIZE + freed
    }

    /// One frame, or `None` if the pool is exhausted.
    pub fn allocate(&mut self) -> Option<PhysAddr> {
        self.allocate_contiguous(1)
    }

    /// `count` physically contiguous frames (the start of the first): from the first free
    /// run large enough, else from the part of the range never handed out; `None` if neither
    /// has room.
    pub fn allocate_contiguous(&mut self, count: u64) -> Option<PhysAddr> {
        let bytes = count.checked_mul(PAGE_SIZE)?;
        if count == 0 {
            return None;
        }
        if let Some(i) = self.free.iter().position(|r| r.len() >= bytes) {
            let run = self.free[i];
            if run.len() == bytes {
                self.free.remove(i);
            } else {
                self.free[i] = Range::new(run.start + bytes, run.end);
            }
            return Some(PhysAddr::new(run.start));
        }
        if self.range.end - self.next < bytes {
            return None;
        }
        let first = self.next;
        self.next += bytes;
        Some(PhysAddr::new(first))
    }

    /// Gives back `count` frames starting at `first` (as from
    /// [`FramePool::allocate_contiguous`]); refuses the whole run, changing nothing, if any
    /// of it is unaligned, outside what was handed out, or already free.
    pub fn free_contiguous(&mut self, first: PhysAddr, count: u64) -> Result<(), MemoryError> {
        let start = first.as_u64();
        let foreign = MemoryError::ForeignFrame(start);
        let len = count.checked_mul(PAGE_SIZE).ok_or(foreign)?;
        let end = start.checked_add(len).ok_or(foreign)?;
        if count == 0
            || !start.is_multiple_of(PAGE_SIZE)
            || start < self.range.start
            || end > self.next
        {
            return Err(foreign);
        }
        // The first free run that ends after `start`; runs before it end at or before it.
        let i = self.free.partition_point(|r| r.end <= start);
        if self.free.get(i).is_some_and(|r| r.start < end) {
            return Err(foreign);
        }
        let mut run = Range::new(start, end);
        if let Some(next) = self.free.get(i).filter(|r| r.start == end) {
            run.end = next.end;
            self.free.remove(i);
        }
        if let Some(prev) = i.checked_sub(1).and_then(|p| self.free.get_mut(p)) {
            if prev.end == start {
                prev.end = run.end;
                return Ok(());
            }
        }
        self.free.insert(i, run);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RangeSet {
        /// Keeps only the addresses inside `window`.
        fn clip(&mut self, window: Range) {
            let old = core::mem::take(self);
            for range in old.ranges() {
                // Clipping never adds ranges, so this cannot overflow the capacity.
                let _ = self.add(range.intersect(window));
            }
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn removing_holes_splits_ranges() {
        let mut set = RangeSet::default();
        set.add(Range::new(0, 0x9f000)).unwrap();
        set.add(Range::new(MIB, 256 * MIB)).unwrap();
        set.remove(Range::new(MIB, 3 * MIB)).unwrap(); // the image
        set.remove(Range::new(10 * MIB, 10 * MIB + 0x1000)).unwrap(); // a module
        set.clip(Range::new(MIB, 4 << 30));
        assert_eq!(
            set.ranges(),
            [Range::new(3 * MIB, 10 * MIB), Range::new(10 * MIB + 0x1000, 256 * MIB)]
        );
        assert_eq!(set.largest(), Some(Range::new(10 * MIB + 0x1000, 256 * MIB)));
    }

    #[test]
    fn range_set_capacity_is_enforced() {
        let mut set = RangeSet::default();
        for i in 0..RangeSet::CAPACITY as u64 {
            set.add(Range::sized(i * 0x10000, 0x1000)).unwrap();
        }
        assert_eq!(set.add(Range::sized(1 << 40, 1)), Err(MemoryError::TooManyRanges));
        set.add(Range::new(5, 5)).unwrap(); // empty: ignored
    }

    #[test]
    fn plan_puts_heap_first_in_largest_range() {
        let mut set = RangeSet::default();
        set.add(Range::new(0x1000, 0x9f000)).unwrap();
        set.add(Range::new(MIB + 0x234, 128 * MIB + 0x10)).unwrap();
        let plan = plan(&set, 8 * MIB - 5).unwrap();
        assert_eq!(plan.heap, Range::new(MIB + 0x1000, 9 * MIB + 0x1000));
        assert_eq!(plan.frames, Range::new(9 * MIB + 0x1000, 128 * MIB));
        assert_eq!(
            super::plan(&set, 200 * MIB),
            Err(MemoryError::NotEnoughMemory(200 * MIB + 0x1000))
        );
        assert!(super::plan(&RangeSet::default(), 1).is_err());
    }

    #[test]
    fn frames_are_reused_and_checked() {
        let mut pool = FramePool::new(Range::new(0x10_0800, 0x10_8000));
        assert_eq!(pool.range(), Range::new(0x10_1000, 0x10_8000));
        assert_eq!(pool.available(), 7);
        let a = pool.allocate().unwrap();
        let run = pool.allocate_contiguous(3).unwrap();
        assert_eq!((a.as_u64(), run.as_u64()), (0x10_1000, 0x10_2000));
        assert_eq!(pool.available(), 3);
        pool.free_contiguous(a, 1).unwrap();
        assert_eq!(
            pool.free_contiguous(a, 1),
            Err(MemoryError::ForeignFrame(0x10_1000)),
            "double free"
        );
        assert_eq!(
            pool.free_contiguous(PhysAddr::new(0x10_6000), 1),
            Err(MemoryError::ForeignFrame(0x10_6000))
        );
        assert_eq!(
            pool.free_contiguous(PhysAddr::new(0x10_2008), 1),
            Err(MemoryError::ForeignFrame(0x10_2008))
        );
        assert_eq!(pool.allocate(), Some(a), "a freed frame is reused first");
        assert_eq!(pool.allocate_contiguous(4), None);
        pool.free_contiguous(run, 3).unwrap();
        assert_eq!(pool.available(), 6);
        assert_eq!(pool.allocate_contiguous(0), None);
    }

    #[test]
    fn freed_runs_merge_and_are_reused_whole() {
        let mut pool = FramePool::new(Range::new(0, 0x20_000));
        let runs: Vec<PhysAddr> = (0..4).map(|_| pool.allocate_contiguous(4).unwrap()).collect();
        assert_eq!(pool.available(), 16);
        // Free the 1st and 3rd, then the 2nd: one run of 12 frames.
        pool.free_contiguous(runs[0], 4).unwrap();
        pool.free_contiguous(runs[2], 4).unwrap();
        assert_eq!(pool.allocate_contiguous(8), Some(PhysAddr::new(0x10_000)), "bumped");
        pool.free_contiguous(PhysAddr::new(0x10_000), 8).unwrap();
        pool.free_contiguous(runs[1], 4).unwrap();
        assert_eq!(pool.free.len(), 2);
        assert_eq!(pool.allocate_contiguous(12), Some(runs[0]), "merged and reused");
        assert_eq!(pool.available(), 32 - 12 - 4);
        // A run overlapping a free one, or reaching past what was handed out, is refused whole.
        pool.free_contiguous(runs[0], 2).unwrap();
        let before = pool.available();
        assert!(pool.free_contiguous(PhysAddr::new(0x1000), 2).is_err());
        assert!(pool.free_contiguous(runs[3], 0x100).is_err());
        assert!(pool.free_contiguous(runs[3], u64::MAX).is_err());
        assert_eq!(pool.available(), before);
        // Single frames come from free runs first.
        assert_eq!(pool.allocate(), Some(runs[0]));
    }
}
