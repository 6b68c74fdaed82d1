//! The machine's IOMMU (QEMU's `-M q35 -device amd-iommu`) as the wall between devices and
//! the hypervisor: every device's DMA reaches the OS guest's RAM and nothing else, and the
//! guest's OS does not see the IOMMU in its ACPI tables. `vpr_hypervisor::iommu` builds the
//! structures; this module finds the IOMMU, owns its memory and writes its registers.
//!
//! Unsafe code is in two small rooms: [`Registers`] (volatile accesses of the IOMMU's MMIO
//! window, whose writes are `unsafe fn`: a wrong value lets devices reach any memory) and
//! [`Firmware`] (copies to and from the firmware's memory, where the ACPI tables are).

use crate::mem::{self, GuestLayout, OwnedFrames, PoolTables};
use alloc::format;
use alloc::string::String;
use core::mem::ManuallyDrop;
use core::sync::atomic::{fence, Ordering};
use vpr_hypervisor::apic::{IO_APIC, LOCAL_APIC};
use vpr_hypervisor::iommu::{
    self, acpi, control, devices, features, status, Command, DeviceTableEntry, IoPageTable,
    LeafCounts, Location, Register, COMMAND_BYTES, COMMAND_POINTER_MASK, IO_APIC_DEVICE_ID,
    MMIO_BYTES,
};
use vpr_hypervisor::memory::{Range, PAGE_SIZE};
use vpr_hypervisor::tpm::tis::{LOCALITY_STRIDE, TIS_BASE};

/// Device IDs the device table covers: all 65536, 2 MiB of entries. QEMU 7.2 does not check
/// a device ID against the table's size and passes DMA through for an entry with V=0, so a
/// table of bus 0's 256 IDs would leave any device behind a bridge (whose bus numbers the
/// guest's OS assigns) to whatever the frames after the table hold.
const DEVICE_IDS: u64 = 1 << 16;
/// Frames of the device table: 32 bytes per device ID.
const DEVICE_TABLE_FRAMES: u64 = DEVICE_IDS * DeviceTableEntry::BYTES as u64 / PAGE_SIZE;
/// Commands in the command buffer: the smallest buffer, one frame.
const COMMAND_ENTRIES: u64 = PAGE_SIZE / COMMAND_BYTES;
/// The domain of every device: one I/O page table, so one tag for its cached translations.
const DOMAIN: u16 = 1;
/// Register polls before a wait gives up (each an MMIO read: a QEMU exit, microseconds).
const MAX_POLLS: u32 = 1_000_000;
/// What COMPLETION_WAIT stores: any value the store word does not hold before.
const COMPLETION_MARK: u64 = 0x7670_725F_696F_6D75;
/// The identity map `boot.rs` builds covers the first 4 GiB.
const IDENTITY_MAPPED_END: u64 = 4 << 30;
/// The chipset's device window (I/O APIC, HPET, TPM, IOMMU, local APIC): never read as
/// memory, never reached by DMA.
const DEVICE_WINDOW: Range = Range::new(0xFEC0_0000, 0xFF00_0000);

/// Whether two ranges share an address.
fn overlap(a: Range, b: Range) -> bool {
    a.start < b.end && b.start < a.end
}

/// The IOMMU's MMIO window: 16 KiB at a base checked to be aligned, below 4 GiB (so
/// identity-mapped) and in no RAM (the guest's or the hypervisor's) and no other device's
/// registers that the hypervisor uses.
#[derive(Debug)]
struct Registers {
    base: u64,
}

impl Registers {
    /// The window at `base`, if it is one.
    fn new(base: u64, layout: &GuestLayout) -> Result<Registers, String> {
        let window = Range::sized(base, MMIO_BYTES);
        let mut taken = layout.ram.iter().chain(&layout.hypervisor).copied().chain([
            Range::sized(TIS_BASE, 5 * LOCALITY_STRIDE),
            Range::sized(LOCAL_APIC, PAGE_SIZE),
            Range::sized(IO_APIC, PAGE_SIZE),
        ]);
        let misplaced = base == 0
            || !base.is_multiple_of(MMIO_BYTES)
            || window.end > IDENTITY_MAPPED_END
            || taken.any(|r| overlap(r, window));
        if misplaced {
            return Err(format!("IOMMU: its registers at {window} are not a device window"));
        }
        Ok(Registers { base })
    }

    /// The window's physical range.
    fn window(&self) -> Range {
        Range::sized(self.base, MMIO_BYTES)
    }

    /// The address of `register` (8-byte aligned, in the window).
    fn address(&self, register: Register) -> usize {
        mem::usize_of(self.base + register.offset())
    }

    /// Reads `register`.
    fn read(&self, register: Register) -> u64 {
        // SAFETY: the address is an 8-byte aligned register in the IOMMU's window (the
        // offsets of `Register` lie in its first 16 KiB), which `new` checked is below 4 GiB,
        // identity-mapped by boot.rs, and no memory; reading a register changes nothing.
        unsafe { core::ptr::read_volatile(self.address(register) as *const u64) }
    }

    /// Writes `value` to `register`.
    ///
    /// # Safety
    /// The IOMMU decides with these registers what devices may reach: the value must leave
    /// no device able to reach memory but the guest's RAM, once the IOMMU is enabled. Bases
    /// must be frames the caller owns for good, filled as [`protect`] fills them; turning
    /// translation off (Control) or on an exclusion range is only for before the guest runs.
    unsafe fn write(&self, register: Register, value: u64) {
        // SAFETY: as in `read`, for an aligned register of the window; the caller answers for
        // what the IOMMU does with the value.
        unsafe { core::ptr::write_volatile(self.address(register) as *mut u64, value) }
    }
}

/// The IOMMU, enabled: every device's DMA goes through an identity map of the guest's RAM.
///
/// It holds the IOMMU's memory (device table, I/O page tables, command buffer, completion
/// word) for the machine's life: dropping it leaves the IOMMU as it is and that memory
/// reserved, never back in the pool, where the IOMMU would read what a PAL wrote.
#[derive(Debug)]
pub struct Iommu {
    /// Its PCI function and capability.
    location: Location,
    /// Its MMIO window.
    registers: Registers,
    /// The leaves of its I/O page table.
    leaves: LeafCounts,
    /// The device table: an entry for every device ID.
    device_table: ManuallyDrop<OwnedFrames>,
    /// The I/O page table's frames.
    #[expect(dead_code, reason = "held, never read: the IOMMU walks these tables")]
    tables: ManuallyDrop<PoolTables>,
    /// The command buffer.
    command_buffer: ManuallyDrop<OwnedFrames>,
    /// The word COMPLETION_WAIT stores to.
    completion: ManuallyDrop<OwnedFrames>,
    /// Byte offset in the command buffer where the next command goes.
    tail: u64,
}

impl Iommu {
    /// The physical range of the IOMMU's registers: never the guest's.
    pub fn registers(&self) -> Range {
        self.registers.window()
    }

    /// The IOMMU's PCI function on bus 0 (device, function): hidden from the guest.
    pub fn function(&self) -> (u8, u8) {
        (self.location.device, self.location.function)
    }

    /// Points the IOMMU at its tables, enables it and flushes whatever it cached before.
    fn start(&mut self) -> Result<(), String> {
        let error = |e: iommu::IommuError| format!("{e}");
        let device_table = iommu::device_table_base(self.device_table.first(), DEVICE_TABLE_FRAMES)
            .map_err(error)?;
        let command_buffer =
            iommu::command_buffer_base(self.command_buffer.first(), COMMAND_ENTRIES)
                .map_err(error)?;
        // The tables' contents before the IOMMU can read them.
        fence(Ordering::SeqCst);
        let r = &self.registers;
        // SAFETY: translation is off from the first write until the last, and no guest has
        // run yet: the hypervisor alone runs, on one processor, and gave no device work. The
        // bases are frames this value holds for good (`ManuallyDrop`), filled by `protect`:
        // every device ID translated through the identity map of the guest's RAM. No
        // exclusion range; translation and the command buffer on last (the base registers
        // change only while the IOMMU is off: IOMMU spec, "IOMMU Control Register").
        unsafe {
            r.write(Register::Control, 0);
            r.write(Register::ExclusionBase, 0);
            r.write(Register::ExclusionLimit, 0);
            r.write(Register::DeviceTableBase, device_table);
            r.write(Register::CommandBufferBase, command_buffer);
            r.write(Register::CommandHead, 0);
            r.write(Register::CommandTail, 0);
            fence(Ordering::SeqCst);
            r.write(
                Register::Control,
                control::IOMMU_ENABLE | control::COHERENT | control::COMMAND_BUFFER_ENABLE,
            );
        }
        self.tail = 0;
        let stored = r.read(Register::DeviceTableBase);
        if stored != device_table {
            return Err(format!(
                "IOMMU: its device table base reads {stored:#x}, not {device_table:#x}"
            ));
        }
        self.poll("the command buffer to run", |r| {
            r.read(Register::Status) & status::COMMAND_BUFFER_RUNNING != 0
        })?;
        let invalidate_all = self.location.has_extended_features()
            && self.registers.read(Register::ExtendedFeatures) & features::INVALIDATE_ALL != 0;
        if invalidate_all {
            self.submit(Command::invalidate_all())?;
        } else {
            for id in 0..=u16::MAX {
                self.submit(Command::invalidate_device_table_entry(id))?;
                self.submit(Command::invalidate_interrupt_table(id))?;
            }
        }
        self.submit(Command::invalidate_iommu_pages(DOMAIN))?;
        self.complete()
    }

    /// Polls the registers until `done` (bounded).
    fn poll(&self, what: &str, done: impl Fn(&Registers) -> bool) -> Result<(), String> {
        for _ in 0..MAX_POLLS {
            if done(&self.registers) {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(format!("IOMMU: gave up waiting for {what}"))
    }

    /// Puts `command` in the command buffer and moves the tail past it (QEMU runs it then).
    fn submit(&mut self, command: Command) -> Result<(), String> {
        let buffer_bytes = COMMAND_ENTRIES * COMMAND_BYTES;
        let next = iommu::next_command_offset(self.tail, buffer_bytes);
        // The buffer is full while the head is where the tail would go. (QEMU 7.2 may show
        // the buffer's length for 0 right after wrapping.)
        self.poll("room in the command buffer", |r| {
            (r.read(Register::CommandHead) & COMMAND_POINTER_MASK) % buffer_bytes != next
        })?;
        let at = mem::usize_of(self.tail);
        let slot = at
            .checked_add(command.to_bytes().len())
            .and_then(|end| self.command_buffer.bytes_mut().get_mut(at..end))
            .ok_or("IOMMU: command buffer offset out of range")?;
        slot.copy_from_slice(&command.to_bytes());
        // The command before the tail that announces it.
        fence(Ordering::SeqCst);
        // SAFETY: the tail moves one command on, to a 16-byte offset inside the buffer
        // (`next_command_offset`); the command before it is one of the invalidations or the
        // completion wait this module makes, which change no mapping.
        unsafe { self.registers.write(Register::CommandTail, next) };
        self.tail = next;
        Ok(())
    }

    /// Waits until every command so far is done: COMPLETION_WAIT stores a mark in a word of
    /// the hypervisor's, checked with a bounded spin.
    fn complete(&mut self) -> Result<(), String> {
        self.completion.bytes_mut().fill(0);
        let store = self.completion.first();
        let wait = Command::completion_wait(store, COMPLETION_MARK).map_err(|e| format!("{e}"))?;
        self.submit(wait)?;
        for _ in 0..MAX_POLLS {
            let word = self.completion.bytes_mut().as_ptr().cast::<u64>();
            // SAFETY: `word` is the first 8 bytes of a frame this value owns (page-aligned,
            // so aligned for a u64); the read is volatile because the IOMMU writes it.
            if unsafe { core::ptr::read_volatile(word) } == COMPLETION_MARK {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(String::from("IOMMU: its COMPLETION_WAIT store never arrived"))
    }
}

/// Finds the IOMMU and makes it the wall between devices and the hypervisor: every device
/// ID's DMA is translated through one I/O page table that maps `allowed` (the guest's RAM)
/// to itself and nothing else. Refuses if there is no IOMMU, if `allowed` touches the
/// hypervisor's memory or a device window, or if the IOMMU does not answer.
pub fn protect(allowed: &[Range]) -> Result<Iommu, String> {
    let layout = mem::guest_layout().ok_or("IOMMU: no OS guest (vpr.guest=linux)")?;
    let location = iommu::find(crate::ports::config_read).ok_or(
        "no AMD IOMMU on PCI bus 0 (start QEMU with -machine q35 -device amd-iommu): \
         without one any device's DMA reaches the hypervisor",
    )?;
    let registers = Registers::new(location.base, layout)?;
    if registers.read(Register::ExtendedFeatures) == u64::MAX {
        return Err(format!("IOMMU: no registers answer at {}", registers.window()));
    }
    let never = layout.hypervisor.iter().copied().chain([registers.window(), DEVICE_WINDOW]);
    for range in allowed {
        if let Some(taken) = never.clone().find(|&n| overlap(n, *range)) {
            return Err(format!("IOMMU: DMA to {range} asked for, which overlaps {taken}"));
        }
    }
    let mut tables = PoolTables::default();
    let (page_table, leaves) =
        IoPageTable::identity(&mut tables, allowed).map_err(|e| format!("{e}"))?;
    let mut device_table = OwnedFrames::allocate(DEVICE_TABLE_FRAMES)
        .ok_or("IOMMU: no frames for the device table")?;
    let blocking = DeviceTableEntry::blocking_interrupts(&page_table, DOMAIN).to_bytes();
    // The I/O APIC's entry lets interrupts pass. QEMU 7.2 checks the I/O APIC's messages,
    // and devices' DMA writes to 0xFEE0_0000-0xFEEF_FFFF, against this entry; remapping
    // there would turn the guest's level-triggered INTx lines into edge-triggered ones.
    let passing = DeviceTableEntry::passing_interrupts(&page_table, DOMAIN).to_bytes();
    let entries = device_table.bytes_mut().chunks_exact_mut(DeviceTableEntry::BYTES);
    for (id, entry) in (0u16..=u16::MAX).zip(entries) {
        entry.copy_from_slice(if id == IO_APIC_DEVICE_ID { &passing } else { &blocking });
    }
    let command_buffer = OwnedFrames::allocate(COMMAND_ENTRIES * COMMAND_BYTES / PAGE_SIZE)
        .ok_or("IOMMU: no frame for the command buffer")?;
    let completion = OwnedFrames::allocate(1).ok_or("IOMMU: no frame for completion waits")?;
    // From here the memory is held for good, whatever happens: the IOMMU may use it.
    let mut iommu = Iommu {
        location,
        registers,
        leaves,
        device_table: ManuallyDrop::new(device_table),
        tables: ManuallyDrop::new(tables),
        command_buffer: ManuallyDrop::new(command_buffer),
        completion: ManuallyDrop::new(completion),
        tail: 0,
    };
    iommu.start()?;
    log::info!(
        "hv: iommu 00:{:02x}.{} registers {}: all {DEVICE_IDS} device IDs' DMA translated to \
         guest RAM only ({} 2 MiB and {} 4 KiB pages), interrupts blocked but the I/O APIC's",
        iommu.location.device,
        iommu.location.function,
        iommu.registers(),
        iommu.leaves.pages_2m,
        iommu.leaves.pages_4k
    );
    Ok(iommu)
}

/// Takes the IOMMU's ACPI table (IVRS) out of the RSDT and the XSDT, so that the guest's OS
/// does not try to drive it; how many entries went. The tables stay where the firmware put
/// them (its reserved memory below 4 GiB).
pub fn hide_from_acpi() -> Result<usize, String> {
    let layout = mem::guest_layout().ok_or("IOMMU: no OS guest (vpr.guest=linux)")?;
    let mut firmware = Firmware { layout };
    let error = |e: acpi::AcpiError| format!("hiding the IOMMU: {e}");
    let removed = acpi::remove_tables(&mut firmware, acpi::IVRS).map_err(error)?;
    // Writes to memory that turned out read-only (a shadowed ROM) are dropped silently.
    match acpi::remove_tables(&mut firmware, acpi::IVRS).map_err(error)? {
        0 => Ok(removed),
        left => Err(format!("hiding the IOMMU: {left} IVRS entries did not go (read-only?)")),
    }
}

/// Physical memory as the ACPI tables are reached: below 4 GiB, never the hypervisor's and
/// never the chipset's device window; reads in the first MiB or in one range the firmware's
/// map lists (reserved or RAM), writes only in one firmware-reserved range.
#[derive(Debug)]
struct Firmware<'a> {
    layout: &'a GuestLayout,
}

impl Firmware<'_> {
    /// `len` bytes from `addr`, if they avoid what is never touched.
    fn range(&self, addr: u64, len: usize) -> Option<Range> {
        let range = Range::new(addr, addr.checked_add(u64::try_from(len).ok()?)?);
        let never = self.layout.hypervisor.iter().copied().chain([DEVICE_WINDOW]);
        let fine = range.end <= IDENTITY_MAPPED_END && !never.clone().any(|n| overlap(n, range));
        fine.then_some(range)
    }

    /// Whether `range` lies in one of `ranges`.
    fn inside(range: Range, ranges: &[Range]) -> bool {
        ranges.iter().any(|r| r.start <= range.start && range.end <= r.end)
    }
}

impl acpi::PhysicalMemory for Firmware<'_> {
    fn read(&mut self, addr: u64, out: &mut [u8]) -> bool {
        let Some(range) = self.range(addr, out.len()) else { return false };
        let listed = [&[Range::new(0, 1 << 20)][..], &self.layout.firmware, &self.layout.ram];
        if !listed.iter().any(|ranges| Self::inside(range, ranges)) {
            return false;
        }
        // SAFETY: the range lies below 4 GiB (identity-mapped by boot.rs), in the legacy
        // first MiB or in one range the firmware's map lists: RAM, ROM or (the q35's ECAM
        // window is a reserved range) configuration space, whose reading has no side effect;
        // device registers (the device window, BARs: not listed) are not read. It holds no
        // Rust object (none of the hypervisor's memory), and nothing writes it meanwhile: one
        // processor, no guest yet.
        unsafe {
            core::ptr::copy_nonoverlapping(
                mem::usize_of(addr) as *const u8,
                out.as_mut_ptr(),
                out.len(),
            )
        };
        true
    }

    fn write(&mut self, addr: u64, bytes: &[u8]) -> bool {
        let Some(range) = self.range(addr, bytes.len()) else { return false };
        if !Self::inside(range, &self.layout.firmware) {
            return false;
        }
        // SAFETY: the range lies below 4 GiB (identity-mapped), in one range the firmware
        // reserved (where it keeps its ACPI tables), none of the hypervisor's memory and not
        // the device window: it holds no Rust object, and no guest has run yet to read it
        // meanwhile. (`acpi::remove_tables` writes only where it read a root table with a
        // valid signature and checksum, so never device registers.)
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                mem::usize_of(addr) as *mut u8,
                bytes.len(),
            )
        };
        true
    }
}

/// Checks that every function on bus 0 sends its DMA through `iommu`
/// (`vpr_hypervisor::iommu::devices`: known functions only, no bridges, virtio devices
/// modern-only and offering VIRTIO_F_ACCESS_PLATFORM); how many virtio functions there are.
/// The QEMU command line is the host's: a virtio device started without `iommu_platform=on`
/// would reach the hypervisor's memory, so Linux does not run with one.
pub fn check_devices(iommu: &Iommu) -> Result<usize, String> {
    let layout = mem::guest_layout().ok_or("IOMMU: no OS guest (vpr.guest=linux)")?;
    devices::check(&mut DeviceBus { layout }, iommu.function()).map_err(|e| format!("{e}"))
}

/// Bus 0 for the device check: configuration through ports 0xCF8/0xCFC, and 32-bit
/// registers of the devices' memory windows — aligned, below the chipset's device window,
/// and in nothing the firmware's map lists (RAM, reserved ranges such as the ECAM window) or
/// the hypervisor holds.
#[derive(Debug)]
struct DeviceBus<'a> {
    layout: &'a GuestLayout,
}

impl DeviceBus<'_> {
    /// Whether the register at `address` lies in a device's window as above.
    fn device_register(&self, address: u64) -> bool {
        let register = Range::sized(address, 4);
        let listed =
            self.layout.ram.iter().chain(&self.layout.hypervisor).chain(&self.layout.firmware);
        address.is_multiple_of(4)
            && register.end <= DEVICE_WINDOW.start
            && !listed.copied().any(|r| overlap(r, register))
    }
}

impl devices::Bus for DeviceBus<'_> {
    fn config_read(&mut self, device: u8, function: u8, register: u8) -> u32 {
        crate::ports::config_read(device, function, register)
    }

    fn mmio_read(&mut self, address: u64) -> Option<u32> {
        if !self.device_register(address) {
            return None;
        }
        // SAFETY: an aligned 32-bit register below 4 GiB (identity-mapped by boot.rs) in no
        // memory the firmware's map lists or the hypervisor holds: a device's register, no
        // Rust object. Reading a virtio common configuration register has no side effect.
        Some(unsafe { core::ptr::read_volatile(mem::usize_of(address) as *const u32) })
    }

    fn mmio_write(&mut self, address: u64, value: u32) -> bool {
        if !self.device_register(address) {
            return false;
        }
        // SAFETY: as in `mmio_read`; the check writes only a virtio device's feature select
        // register, before the guest runs.
        unsafe { core::ptr::write_volatile(mem::usize_of(address) as *mut u32, value) };
        true
    }
}
