//! The image's memory: the layout from the multiboot memory map, the heap, and frames.
//!
//! Layout: the image occupies `[1 MiB, __bss_end)`; the loader's structures (information,
//! memory map, module table, command line) and the modules' contents are kept out of reach; of the usable RAM between
//! 1 MiB and 4 GiB (the identity-mapped window `boot.rs` sets up), the largest range holds the
//! heap (`HEAP_BYTES`, at its start) and then the frame pool (the rest). Physical addresses
//! are their own virtual addresses.

use alloc::vec::Vec;
use core::fmt;
use linked_list_allocator::LockedHeap;
use spin::Mutex;
use vpr_hypervisor::memory::{self, FramePool, MemoryError, Range, PAGE_SIZE};
use vpr_hypervisor::multiboot::{
    self, BootInfo, BootInfoError, MemoryMap, INFO_LEN, MAX_MODULES, MODULE_ENTRY_LEN,
};
use vpr_hypervisor::svm::npt::{NptTable, TableMemory};
use x86_64::PhysAddr;

/// Bytes of heap: enough for the bookkeeping of this slice (frame free lists, log strings).
const HEAP_BYTES: u64 = 8 << 20;
/// Physical memory below 1 MiB (BIOS data, the EBDA, option ROMs) is never used.
const LOW_MEMORY_END: u64 = 1 << 20;
/// The identity map `boot.rs` builds covers the first 4 GiB.
const IDENTITY_MAPPED_END: u64 = 4 << 30;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

static FRAMES: Mutex<Option<FramePool>> = Mutex::new(None);

/// The loader's command line (QEMU: the kernel's file name, then `-append`), set once at boot.
static COMMAND_LINE: spin::Once<&'static str> = spin::Once::new();

/// The loader's modules (physical ranges), set once at boot; their memory is never reused.
static MODULES: spin::Once<Vec<Range>> = spin::Once::new();

/// The memory of an OS guest, when the command line asks for one (`vpr.guest=linux`).
static GUEST: spin::Once<GuestLayout> = spin::Once::new();

/// Bytes of the frame pool when an OS guest gets the rest of memory: PALs (the SQL PAL takes
/// 42 MiB per registration), nested page tables and vCPUs. A 2 MiB multiple, so that the
/// guest's nested page table maps around it with large pages.
const OS_POOL_BYTES: u64 = 160 << 20;
/// Large-page size of the guest's nested page table.
const LARGE_PAGE: u64 = 2 << 20;

/// Where an OS guest's memory is: guest-physical addresses are host-physical ones (an
/// identity map), minus what the hypervisor keeps.
#[derive(Debug, Clone)]
pub struct GuestLayout {
    /// RAM the guest gets (page-aligned, disjoint): the firmware's usable RAM below 4 GiB
    /// without the hypervisor's.
    pub ram: Vec<Range>,
    /// The hypervisor's memory: its image, the loader's structures, the heap and the frame
    /// pool (page-aligned). The loader's modules are the guest's: the OS loader copies out
    /// what it needs first.
    pub hypervisor: Vec<Range>,
    /// What the firmware's map does not call usable RAM (ROMs, ACPI tables, holes it lists),
    /// below 4 GiB.
    pub firmware: Vec<Range>,
}

/// Whether the command line asks for an OS guest.
fn wants_os_guest(command_line: &str) -> bool {
    command_line.split_whitespace().any(|w| w == "vpr.guest=linux")
}

/// The OS guest's memory, if this boot runs one.
pub fn guest_layout() -> Option<&'static GuestLayout> {
    GUEST.get()
}

unsafe extern "C" {
    /// First byte of the image (linker.ld).
    static __image_start: u8;
    /// First byte past the image's .bss (linker.ld).
    static __bss_end: u8;
    /// First byte of the image's writable data: code and read-only data lie before it.
    static __data_start: u8;
    /// First byte past the loaded image (its `.data`).
    static __load_end: u8;
    /// boot.rs's copy of `.data` as loaded.
    static boot_data_copy: u8;
}

/// Why the memory set-up failed.
#[derive(Debug)]
pub enum SetupError {
    /// The boot information is missing or malformed.
    BootInfo(BootInfoError),
    /// The memory map leaves no room.
    Memory(MemoryError),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::BootInfo(e) => write!(f, "{e}"),
            SetupError::Memory(e) => write!(f, "{e}"),
        }
    }
}

impl From<BootInfoError> for SetupError {
    fn from(e: BootInfoError) -> Self {
        SetupError::BootInfo(e)
    }
}

impl From<MemoryError> for SetupError {
    fn from(e: MemoryError) -> Self {
        SetupError::Memory(e)
    }
}

/// The bytes at physical address `addr`.
///
/// # Safety
/// `[addr, addr + len)` must be identity-mapped memory that nothing writes while the slice
/// lives.
unsafe fn physical_bytes<'a>(addr: u32, len: usize) -> &'a [u8] {
    // SAFETY: the caller guarantees the range is mapped and not written meanwhile.
    unsafe { core::slice::from_raw_parts(addr as usize as *const u8, len) }
}

/// The image's own physical range.
pub fn image_range() -> Range {
    let start = core::ptr::addr_of!(__image_start) as u64;
    let end = core::ptr::addr_of!(__bss_end) as u64;
    Range::new(start, end)
}

/// The image as the loader wrote it, in two parts: its multiboot header, code and read-only
/// data (`[__image_start, __data_start)`: bytes that never change once loaded), and the copy
/// of its `.data` (`[__data_start, __load_end)`, with the GOT and `.data.rel.ro`: the
/// pointers the code calls through) that boot.rs took before any code ran. Together they are
/// every byte the loader loaded, and their hash identifies the hypervisor that runs.
pub fn image_loaded() -> [&'static [u8]; 2] {
    let start = core::ptr::addr_of!(__image_start);
    let len = core::ptr::addr_of!(__data_start) as usize - start as usize;
    let data_len =
        core::ptr::addr_of!(__load_end) as usize - core::ptr::addr_of!(__data_start) as usize;
    // SAFETY: the linker script puts `__data_start` after `__image_start` in the one loaded
    // segment; the bytes between them are the header, code and read-only data, which
    // nothing writes. `boot_data_copy` holds `data_len` bytes (linker.ld asserts they fit in
    // it) that boot.rs wrote before Rust ran and nothing writes since.
    unsafe {
        [
            core::slice::from_raw_parts(start, len),
            core::slice::from_raw_parts(core::ptr::addr_of!(boot_data_copy), data_len),
        ]
    }
}

/// The hypervisor's measurement: the SHA-256 of every byte the loader loaded
/// ([`image_loaded`]), as `vpr_host::machine::hypervisor_measurement` computes it from the
/// image file.
pub fn image_measurement() -> vpr_proto::Digest {
    vpr_proto::crypto::hash(&image_loaded())
}

/// Reads the boot information, then sets up the heap and the frame pool.
pub fn init(magic: u32, info_addr: u32) -> Result<(), SetupError> {
    // SAFETY: the loader put INFO_LEN bytes of information at `info_addr`, below 4 GiB (it is
    // a 32-bit address), which is identity-mapped; nothing writes it during boot.
    let info = BootInfo::parse(magic, unsafe { physical_bytes(info_addr, INFO_LEN) })?;
    let (map_addr, map_len) = info.memory_map.ok_or(BootInfoError::NoMemoryMap)?;
    // SAFETY: as above, for the memory map the information structure points to.
    let map = MemoryMap::new(unsafe { physical_bytes(map_addr, map_len as usize) });

    log::info!("hv: memory map (from the loader):");
    for region in map.clone() {
        let region = region?;
        if !region.range.is_empty() {
            log::info!("hv:   {} {:?}", region.range, region.kind);
        }
    }
    let mut usable = map.clone().usable(Range::new(LOW_MEMORY_END, IDENTITY_MAPPED_END))?;
    let image = image_range();
    usable.remove(Range::new(memory::align_down(image.start, PAGE_SIZE), image.end))?;
    for structure in info.structures(info_addr) {
        let start = memory::align_down(structure.start, PAGE_SIZE);
        usable.remove(Range::new(start, memory::align_up(structure.end, PAGE_SIZE)))?;
    }
    let mut modules = [Range::default(); MAX_MODULES];
    let mut module_count = 0;
    if let Some((table, count)) = info.modules {
        let len = (count as usize).min(MAX_MODULES) * MODULE_ENTRY_LEN;
        // SAFETY: as above, for the module table (its entries up to MAX_MODULES).
        let table = unsafe { physical_bytes(table, len) };
        (modules, module_count) = multiboot::modules(table, count)?;
    }
    for module in &modules[..module_count] {
        if module.end > IDENTITY_MAPPED_END {
            return Err(SetupError::BootInfo(BootInfoError::ModuleOutOfReach));
        }
        let start = memory::align_down(module.start, PAGE_SIZE);
        usable.remove(Range::new(start, memory::align_up(module.end, PAGE_SIZE)))?;
        log::info!("hv: module {module} ({} KiB)", module.len() / 1024);
    }
    // The command line: NUL-terminated within the page `structures` keeps out of the pools.
    // No copy (the heap does not exist yet): the page is never reused, so the text stays.
    let command_line = info.cmdline.map_or("", |addr| {
        // SAFETY: as above, for the page at the command line's address, which `structures`
        // keeps out of the heap and the pool for good.
        let page: &'static [u8] = unsafe { physical_bytes(addr, usize_of(PAGE_SIZE)) };
        let end = page.iter().position(|&b| b == 0).unwrap_or(page.len());
        core::str::from_utf8(&page[..end]).unwrap_or("")
    });
    let mut plan = memory::plan(&usable, HEAP_BYTES)?;
    let os_guest = wants_os_guest(command_line);
    if os_guest {
        // The pool is the top OS_POOL_BYTES of the range: the rest goes to the guest.
        let start = memory::align_down(plan.frames.end.saturating_sub(OS_POOL_BYTES), LARGE_PAGE);
        if start <= plan.frames.start {
            return Err(SetupError::Memory(MemoryError::NotEnoughMemory(OS_POOL_BYTES)));
        }
        plan.frames = Range::new(start, plan.frames.end);
    }

    // SAFETY: the heap range is usable RAM per the memory map, identity-mapped, outside the
    // image and the loader's structures, and given to nothing else; this runs once.
    unsafe { HEAP.lock().init(usize_of(plan.heap.start) as *mut u8, usize_of(plan.heap.len())) };
    let pool = FramePool::new(plan.frames);
    log::info!(
        "hv: image {image} ({} KiB), heap {} ({} MiB), frames {} ({} frames)",
        image.len() / 1024,
        plan.heap,
        plan.heap.len() >> 20,
        pool.range(),
        pool.available()
    );
    *FRAMES.lock() = Some(pool);
    MODULES.call_once(|| modules[..module_count].to_vec());
    COMMAND_LINE.call_once(|| command_line);
    if os_guest {
        let mut hypervisor = Vec::from([
            Range::new(memory::align_down(image.start, PAGE_SIZE), image.end),
            plan.heap,
            plan.frames,
        ]);
        for structure in info.structures(info_addr) {
            let start = memory::align_down(structure.start, PAGE_SIZE);
            hypervisor.push(Range::new(start, memory::align_up(structure.end, PAGE_SIZE)));
        }
        hypervisor.sort_by_key(|r| (r.start, r.end));
        hypervisor.dedup();
        let mut ram = map.clone().usable(Range::new(0, IDENTITY_MAPPED_END))?;
        for range in &hypervisor {
            ram.remove(*range)?;
        }
        let mut firmware = Vec::new();
        for region in map.clone() {
            let region = region?;
            let below = region.range.intersect(Range::new(0, IDENTITY_MAPPED_END));
            if region.kind != multiboot::RegionKind::Available && !below.is_empty() {
                firmware.push(below);
            }
        }
        let ram = ram
            .ranges()
            .iter()
            .map(|r| {
                Range::new(
                    memory::align_up(r.start, PAGE_SIZE),
                    memory::align_down(r.end, PAGE_SIZE),
                )
            })
            .filter(|r| r.start < r.end)
            .collect();
        GUEST.call_once(|| GuestLayout { ram, hypervisor, firmware });
    }
    Ok(())
}

/// The loader's command line (empty if it passed none).
pub fn command_line() -> &'static str {
    COMMAND_LINE.get().copied().unwrap_or("")
}

/// Set when an OS guest starts: from then on the modules are its memory, and gone.
static GUEST_STARTED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The contents of the loader's module `index` (QEMU: the files of `-initrd a,b`), if
/// there is one (and no OS guest started, which owns their memory then).
pub fn module(index: usize) -> Option<&'static [u8]> {
    if GUEST_STARTED.load(core::sync::atomic::Ordering::Acquire) {
        return None;
    }
    let range = *MODULES.get()?.get(index)?;
    let len = usize::try_from(range.len()).ok()?;
    // SAFETY: the module lies below 4 GiB (checked at boot), so it is identity-mapped; its
    // pages were removed from the usable memory before the heap and the pool were made, so
    // nothing ever writes them.
    Some(unsafe { core::slice::from_raw_parts(usize_of(range.start) as *const u8, len) })
}

/// The physical ranges of the loader's modules.
pub fn module_ranges() -> Vec<Range> {
    MODULES.get().cloned().unwrap_or_default()
}

/// Copies `bytes` to guest-physical (= host-physical) `addr` of the OS guest, before it runs;
/// `false` (nothing written) unless the whole range is the guest's RAM and no loader module
/// overlaps it (the copies come from the modules).
pub fn write_guest(addr: u64, bytes: &[u8]) -> bool {
    let Some(layout) = GUEST.get() else { return false };
    let Some(end) = addr.checked_add(bytes.len() as u64) else { return false };
    let target = Range::new(addr, end);
    let in_ram = layout.ram.iter().any(|r| r.start <= addr && end <= r.end);
    let on_module = module_ranges().iter().any(|m| m.start < end && addr < m.end);
    if !in_ram || on_module || GUEST_STARTED.load(core::sync::atomic::Ordering::Acquire) {
        return false;
    }
    // SAFETY: the range is guest RAM (checked): identity-mapped memory below 4 GiB that holds
    // no Rust object (the image, heap, pool and loader structures are not guest RAM), that no
    // module slice covers (checked), and that no guest writes yet (none started).
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            usize_of(target.start) as *mut u8,
            bytes.len(),
        )
    };
    true
}

/// Whether `[addr, addr + len)` lies in one of the OS guest's RAM ranges.
fn in_guest_ram(addr: u64, len: usize) -> bool {
    let Some(layout) = GUEST.get() else { return false };
    let Some(end) = addr.checked_add(len as u64) else { return false };
    layout.ram.iter().any(|r| r.start <= addr && end <= r.end)
}

/// Copies the OS guest's physical memory at `addr` into `out` while the guest is stopped at an
/// exit; `false` (nothing read) unless the whole range is its RAM (never the hypervisor's).
pub fn read_guest_physical(addr: u64, out: &mut [u8]) -> bool {
    if !in_guest_ram(addr, out.len()) {
        return false;
    }
    // SAFETY: the range is the guest's RAM (checked): identity-mapped, holding no Rust object
    // (the hypervisor's memory is never guest RAM), and the guest is stopped while the
    // hypervisor handles its exit on this, the only, processor.
    unsafe {
        core::ptr::copy_nonoverlapping(usize_of(addr) as *const u8, out.as_mut_ptr(), out.len())
    };
    true
}

/// Copies `bytes` into the OS guest's physical memory at `addr` while it is stopped at an
/// exit; `false` (nothing written) unless the whole range is its RAM.
pub fn write_guest_physical(addr: u64, bytes: &[u8]) -> bool {
    if !in_guest_ram(addr, bytes.len()) {
        return false;
    }
    // SAFETY: as in `read_guest_physical`.
    unsafe {
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), usize_of(addr) as *mut u8, bytes.len())
    };
    true
}

/// Whether `needle` occurs in the legacy option-ROM area [0xC0000, 0x100000) as the firmware
/// left it (read before the guest runs).
pub fn option_roms_contain(needle: &[u8]) -> bool {
    const AREA: (usize, usize) = (0xC_0000, 0x4_0000);
    // SAFETY: the area lies in the identity-mapped first 4 GiB, below the hypervisor's image
    // (1 MiB), and holds no Rust object; it is RAM or ROM in QEMU's machines (reading has
    // no side effect), and nothing writes it while this runs: the guest has not started and
    // this is the only processor.
    let area = unsafe { core::slice::from_raw_parts(AREA.0 as *const u8, AREA.1) };
    !needle.is_empty() && area.windows(needle.len()).any(|w| w == needle)
}

/// The OS guest is about to run: the modules' memory is its own from now on.
pub fn start_guest() {
    GUEST_STARTED.store(true, core::sync::atomic::Ordering::Release);
}

/// Contiguous zeroed frames owned by their holder: wiped and given back when dropped.
#[derive(Debug)]
pub struct OwnedFrames {
    first: PhysAddr,
    count: u64,
}

impl OwnedFrames {
    /// `count` contiguous zeroed frames, if the pool has them.
    pub fn allocate(count: u64) -> Option<OwnedFrames> {
        Some(OwnedFrames { first: allocate_zeroed(count)?, count })
    }

    /// The first frame.
    pub fn first(&self) -> PhysAddr {
        self.first
    }

    #[cfg(feature = "selftest")]
    /// How many frames.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the frames came from the pool and belong to this value alone (the pool
        // hands a frame out once, and they go back only in `drop`); they are identity-mapped,
        // and `&mut self` makes this the only reference.
        unsafe {
            core::slice::from_raw_parts_mut(
                usize_of(self.first.as_u64()) as *mut u8,
                usize_of(self.count * PAGE_SIZE),
            )
        }
    }
}

impl Drop for OwnedFrames {
    fn drop(&mut self) {
        self.bytes_mut().fill(0);
        free(self.first, self.count);
    }
}

/// A physical address or length as a `usize`; the image only runs on 64-bit processors.
#[allow(clippy::cast_possible_truncation, reason = "usize is 64 bits on x86_64")]
pub const fn usize_of(value: u64) -> usize {
    value as usize
}

fn with_pool<T>(f: impl FnOnce(&mut FramePool) -> T) -> Option<T> {
    FRAMES.lock().as_mut().map(f)
}

#[cfg(feature = "selftest")]
/// Frames left in the pool.
pub fn available_frames() -> u64 {
    with_pool(|pool| pool.available()).unwrap_or(0)
}

/// `count` contiguous zeroed frames.
pub fn allocate_zeroed(count: u64) -> Option<PhysAddr> {
    let first =
        with_pool(
            |pool| {
                if count == 1 {
                    pool.allocate()
                } else {
                    pool.allocate_contiguous(count)
                }
            },
        )??;
    // SAFETY: the frames were just handed out by the pool, so nothing else refers to them;
    // they are usable RAM inside the identity-mapped window.
    unsafe {
        core::ptr::write_bytes(usize_of(first.as_u64()) as *mut u8, 0, usize_of(count * PAGE_SIZE))
    };
    Some(first)
}

/// Gives back `count` contiguous frames. Giving back a frame the pool does not know is a bug
/// in the hypervisor, not in a guest, so it is reported loudly.
pub fn free(first: PhysAddr, count: u64) {
    if let Some(Err(e)) = with_pool(|pool| pool.free_contiguous(first, count)) {
        log::error!("hv: frame pool: {e}");
    }
}

#[cfg(feature = "selftest")]
/// Whether `count` frames from `first` hold only zeroes. For checking that freed frames were
/// wiped: the frames must be in the pool (nobody else writing them) or owned by the caller.
pub fn frames_zeroed(first: PhysAddr, count: u64) -> bool {
    // SAFETY: the frames are pool memory, identity-mapped; the hypervisor runs on one
    // processor and no guest runs while this reads, so nothing writes them meanwhile.
    let bytes = unsafe {
        core::slice::from_raw_parts(
            usize_of(first.as_u64()) as *const u8,
            usize_of(count * PAGE_SIZE),
        )
    };
    bytes.iter().all(|&b| b == 0)
}

/// A frame's memory as a typed value.
///
/// # Safety
/// `frame` must come from [`allocate_zeroed`], be owned by the caller (not freed, no other
/// reference to it alive), and `T` must be valid when all-zero or have been initialized
/// there, and fit in the frames allocated.
pub unsafe fn frame_mut<'a, T>(frame: PhysAddr) -> &'a mut T {
    // SAFETY: the caller guarantees ownership, size and validity; the frame is identity-mapped
    // and page-aligned, which satisfies any alignment up to 4 KiB.
    unsafe { &mut *(usize_of(frame.as_u64()) as *mut T) }
}

/// The table frames of one nested page table, from the pool. Each backend owns the frames it
/// allocated (the pool hands a frame out once), so no two backends reach the same frame, and
/// `&mut self` makes accesses one at a time. Frames still owned when it is dropped go back.
#[derive(Debug, Default)]
pub struct PoolTables {
    /// Few per table (a handful for a test guest): a list is enough and keeps the image small.
    owned: Vec<u64>,
}

impl TableMemory for PoolTables {
    fn allocate_table(&mut self) -> Option<PhysAddr> {
        let table = allocate_zeroed(1)?;
        self.owned.push(table.as_u64());
        Some(table)
    }

    fn free_table(&mut self, table: PhysAddr) {
        if let Some(i) = self.owned.iter().position(|&owned| owned == table.as_u64()) {
            self.owned.swap_remove(i);
            free(table, 1);
        } else {
            log::error!("hv: nested page table frame {table:?} freed twice or not ours");
        }
    }

    fn table_mut(&mut self, table: PhysAddr) -> &mut NptTable {
        // The nested page table only follows addresses it stored itself: anything else is a
        // bug in the hypervisor, never something a guest can cause (it cannot reach tables).
        assert!(self.owned.contains(&table.as_u64()), "frame {table:?} is not this table's");
        // SAFETY: this backend allocated the frame zeroed (an all-zero NptTable is valid: no
        // entry present) and owns it alone; the borrow of `self` keeps accesses exclusive.
        unsafe { frame_mut(table) }
    }
}

impl Drop for PoolTables {
    fn drop(&mut self) {
        for table in core::mem::take(&mut self.owned) {
            free(PhysAddr::new(table), 1);
        }
    }
}
