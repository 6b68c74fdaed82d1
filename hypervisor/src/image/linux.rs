//! Linux as the untrusted guest (`vpr.guest=linux` on the command line): module 0 is the
//! kernel (a bzImage), module 1 its initramfs, and the command line after ` -- ` is the
//! kernel's. The hypervisor loads them by the Linux/x86 boot protocol
//! (`vpr_hypervisor::linux`), gives the guest all RAM but its own (its image, heap, frame pool
//! and the loader's structures: reserved in the e820 map and left out of the nested page
//! table), and enters the kernel's 32-bit entry (`vpr_hypervisor::svm::guest_os`). It runs
//! Linux only on QEMU's `q35` machine with an AMD IOMMU, which it takes first (`iommu`):
//! devices' DMA then reaches the guest's RAM only.
//!
//! The guest keeps the processor: its interrupts, its devices, its idle HLT. It exits for
//! CPUID (SVM, x2APIC and machine checks hidden), every MSR but those it needs
//! (`guest_os::OS_MSRS`; EFER writes keep SVME; VM_CR reads 0; the rest is #GP, logged once
//! per MSR and kind), the SVM instructions (#UD, as on a processor without SVM), VMMCALL
//! (the hypercall), nested page faults (an access to the hypervisor's memory or the TPM gets
//! #GP(0), and the guest goes on), writes to its interrupt controllers (mapped read-only:
//! each write is decoded and done for it unless it would send an INIT, a start-up IPI or an
//! SMI: `vpr_hypervisor::apic`), INIT (the machine is turned off) and every I/O port but
//! those of the devices it needs (`guest_os::OS_PORTS`: the others read as no device, writes
//! are dropped). NMIs that arrive while a PAL runs are held and given to the guest after
//! the call.

use crate::mem::{self, OwnedFrames, PoolTables};
use crate::mmio;
use crate::pal::{CounterStore, GuestAccess, Pals};
use crate::svm::vcpu::SvmVcpu;
use crate::svm::Svm;
use crate::tcc::Tcc;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::arch::x86_64::__cpuid_count;
use vpr_hypervisor::apic::{self, IoApic, IoApicWrite, Refused, IO_APIC, LOCAL_APIC};
use vpr_hypervisor::decode::{self, Source, Store};
use vpr_hypervisor::linux::{self as boot, BzImage, BOOT_CS, BOOT_DS, GDT_LEN};
use vpr_hypervisor::memory::{Range, PAGE_SIZE};
use vpr_hypervisor::paging;
use vpr_hypervisor::svm::guest_os::{
    self, IoAccess, IoAction, IoPermissions, MessageInterrupts, MsrPermissions, PortAction,
    PortFilter, ProtectedModeGuest,
};
use vpr_hypervisor::svm::npt::{GuestPhysAddr, NestedPageTable, PageSize, Permissions};
use vpr_hypervisor::svm::os_policy::{Event, OsMachine, OsPolicy, CONTROLLERS};
use vpr_hypervisor::svm::{IOPM_BYTES, MSRPM_BYTES};
use vpr_hypervisor::vm::{self, KillReason, Outcome, Vcpu, VmExit};

/// The ASID of the OS guest (PALs use 2, test guests 1).
const OS_ASID: u32 = 3;
/// The TPM's register window (TIS, five localities): the hypervisor's alone.
const TIS_WINDOW: Range = Range::new(0xFED4_0000, 0xFED4_5000);
/// The local APIC's window past its register page: QEMU takes every write there as an MSI
/// (an INIT or SMI with the right value). Kept from the guest.
const LOCAL_APIC_MSI_WINDOW: Range = Range::new(LOCAL_APIC + PAGE_SIZE, 0xFEF0_0000);
/// Where the port map expects the ICH9's ACPI power-management registers.
const PM_BASE: u32 = 0x600;
/// What the canary holds: hypervisor memory whose address the guest is told
/// (`vpr.canary=`), for attacks to aim at and the hypervisor to check when the guest turns
/// the machine off.
const CANARY: &[u8; 64] = b"vpr canary: the hypervisor's memory, which no guest may change!!";

/// The legacy video window, where QEMU's q35 puts its compatible SMRAM (the firmware's SMM
/// code and the state an SMI saves: in QEMU the guest read the save area of SMIs the
/// hypervisor took). Kept from the guest.
const SMRAM_WINDOW: Range = Range::new(0xA_0000, 0xC_0000);
/// The signature at the start of QEMU's kvmvapic ROM state (`GuestROMState`).
const KVMVAPIC_SIGNATURE: &[u8] = b"kvm aPiC";
/// The guest-physical window the nested page table covers: the first 4 GiB.
const WINDOW_END: u64 = 4 << 30;
/// Large-page size of the nested page table.
const LARGE_PAGE: u64 = 2 << 20;
/// EFER.LMA (bit 10) and the L bit of CS's attributes (descriptor bit 53, bit 9 packed):
/// 64-bit mode.
const EFER_LMA: u64 = 1 << 10;
const CS_LONG: u16 = 1 << 9;

/// The GDT's limit (its length - 1).
const GDT_LIMIT: u16 = 31;
const _: () = assert!(GDT_LIMIT as usize + 1 == GDT_LEN);

/// The low 32 bits of a register (CPUID's leaf in EAX, an MSR number in ECX).
#[allow(clippy::cast_possible_truncation, reason = "the low half is what is asked for")]
const fn low32(value: u64) -> u32 {
    value as u32
}

/// The kernel's command line: what follows ` -- ` on the hypervisor's.
fn kernel_command_line(line: &str) -> &str {
    line.split_once(" -- ").map_or("", |(_, kernel)| kernel.trim())
}

/// Loads Linux and runs it until it stops (a power-off ends QEMU before this returns); why
/// it stopped otherwise.
pub fn run(svm: &Svm, tcc: &Tcc) -> Result<(), String> {
    let layout = mem::guest_layout().ok_or("no guest memory: boot with vpr.guest=linux")?;
    // QEMU's kvmvapic: an option ROM whose state lives in guest memory and makes QEMU write
    // any physical address on the guest's say (its TPR-access fix-ups). Start QEMU with
    // `-global apic-common.vapic=off`.
    if mem::option_roms_contain(KVMVAPIC_SIGNATURE) {
        return Err(String::from(
            "QEMU's kvmvapic option ROM is present (it lets the guest write any physical \
             address): refusing to run Linux; start QEMU with -global apic-common.vapic=off",
        ));
    }
    // The chipset filter (`guest_os::PortFilter`) and the I/O port map know the q35's
    // chipset, and only the q35 has QEMU's IOMMU, without which any device's DMA goes around
    // the nested page table.
    if !crate::qemu::is_q35() {
        return Err(String::from(
            "not QEMU's q35 machine: Linux runs only where the hypervisor owns an IOMMU \
             (start QEMU with -machine q35 -device amd-iommu)",
        ));
    }
    // The port map (`guest_os::OS_PORTS`, `FILTERED_PORTS`) places the ACPI registers where
    // the firmware puts the ICH9's PM base (LPC 0x40, bits 15:7; Intel ICH9 datasheet,
    // 316972, §13.1.10): a machine set up otherwise would give the guest other ports.
    let pm_base = crate::ports::config_read(31, 0, 0x40) & 0xFF80;
    if pm_base != PM_BASE {
        return Err(format!(
            "the ICH9's power-management base is {pm_base:#x}, not {PM_BASE:#x} as the \
             hypervisor's port map has it: refusing to run Linux"
        ));
    }
    let hidden = crate::iommu::hide_from_acpi()?;
    let iommu = crate::iommu::protect(&layout.ram)?;
    let virtio = crate::iommu::check_devices(&iommu)?;
    log::info!(
        "hv: IOMMU protects the hypervisor from DMA; {hidden} ACPI table(s) hide it; \
         {virtio} virtio function(s) send their DMA through it"
    );
    let kernel = mem::module(0).ok_or("no module 0: the Linux kernel (a bzImage)")?;
    let initrd = mem::module(1).unwrap_or(&[]);
    // The kernel's command line, and where the hypervisor's memory is (`vpr.hv=`), for the
    // guest to know where it must not go (and for tests that it cannot).
    let ranges: Vec<String> =
        layout.hypervisor.iter().map(|r| format!("{:#x}-{:#x}", r.start, r.end)).collect();
    // The canary: on the hypervisor's heap (below 256 MiB, where every DMA engine reaches).
    let canary = alloc::boxed::Box::new(*CANARY);
    let canary_at = core::ptr::addr_of!(*canary) as u64;
    // `pci=nomsi`: the hypervisor keeps every MSI and MSI-X enable bit clear
    // (`guest_os::MessageInterrupts`), so the guest's devices interrupt on their INTx lines;
    // `hpet=disable`: the HPET is not the guest's (`os_policy::HPET_PAGE`); `pci=nommconf`: the ECAM
    // window is not the guest's (`ecam_window`), configuration goes through 0xCF8/0xCFC.
    let command_line = format!(
        "{} pci=nomsi pci=nommconf hpet=disable vpr.hv={} vpr.canary={canary_at:#x}",
        kernel_command_line(mem::command_line()),
        ranges.join(",")
    );
    let command_line = command_line.trim_start();
    let image = BzImage::parse(kernel).map_err(|e| format!("module 0: {e}"))?;
    let (initrd_len, cmdline_len) = (initrd.len() as u64, command_line.len() as u64);
    let mut taken = layout.hypervisor.clone();
    taken.extend(mem::module_ranges());
    let placement = boot::place(&image, initrd_len, cmdline_len, &layout.ram, &taken)
        .map_err(|e| format!("placing Linux: {e}"))?;
    let mut reserved = layout.hypervisor.clone();
    reserved.extend_from_slice(&layout.firmware);
    reserved.push(TIS_WINDOW);
    let e820 = boot::e820(&layout.ram, &reserved).map_err(|e| format!("e820: {e}"))?;
    let params = boot::boot_params(&image, &placement, initrd_len, cmdline_len, &e820)
        .map_err(|e| format!("boot parameters: {e}"))?;
    let mut line = Vec::from(command_line.as_bytes());
    line.push(0);
    let copies: [(&str, u64, &[u8]); 5] = [
        ("the initramfs", placement.initrd, initrd),
        ("the kernel", placement.kernel, image.protected_mode()),
        ("the boot parameters", placement.boot_params, &params),
        ("the command line", placement.cmdline, &line),
        ("the GDT", placement.gdt, &boot::gdt()),
    ];
    for (what, addr, bytes) in copies {
        if !mem::write_guest(addr, bytes) {
            return Err(format!("cannot write {what} at {addr:#x}: not the guest's RAM"));
        }
    }
    log::info!(
        "hv: Linux (boot protocol {:#x}): kernel {} KiB at {:#x}, initramfs {} KiB at {:#x}, \
         command line {command_line:?}",
        image.version(),
        image.protected_mode().len() / 1024,
        placement.kernel,
        initrd.len() / 1024,
        placement.initrd
    );
    for entry in &e820 {
        log::info!("hv:   e820 {entry}");
    }

    let mut tables = PoolTables::default();
    let mut npt = NestedPageTable::new(&mut tables).map_err(|e| format!("NPT: {e:?}"))?;
    let chipset = [Some(iommu.registers()), ecam_window(), root_complex_block()];
    let denied: Vec<Range> = layout
        .hypervisor
        .iter()
        .copied()
        .chain([TIS_WINDOW, LOCAL_APIC_MSI_WINDOW, SMRAM_WINDOW])
        .chain(chipset.into_iter().flatten())
        .collect();
    let pages = identity_map(&mut npt, &mut tables, &denied, &CONTROLLERS)?;
    let mut msrpm = OwnedFrames::allocate(MSRPM_BYTES / PAGE_SIZE).ok_or("no frames")?;
    msrpm.bytes_mut().copy_from_slice(MsrPermissions::for_os().as_bytes());
    let mut iopm = OwnedFrames::allocate(IOPM_BYTES.div_ceil(PAGE_SIZE)).ok_or("no frames")?;
    iopm.bytes_mut().copy_from_slice(IoPermissions::for_os().as_bytes());
    let setup = ProtectedModeGuest {
        asid: OS_ASID,
        entry: placement.kernel,
        gdt: (placement.gdt, GDT_LIMIT),
        selectors: (BOOT_CS, BOOT_DS),
        nested_root: npt.root(),
        iopm: iopm.first(),
        msrpm: msrpm.first(),
    };
    let mut vcpu = SvmVcpu::with_setup(svm, |vmcb| setup.write_to(vmcb)).ok_or("no frames")?;
    vcpu.registers().rsi = placement.boot_params;
    log::info!(
        "hv: entering Linux at {:#x} (nested page table: {} 2 MiB and {} 4 KiB pages)",
        placement.kernel,
        pages.0,
        pages.1
    );
    // ACPI mode now: the guest then never needs the SMI command port (guest_os::OS_PORTS).
    crate::qemu::acpi_enable();
    mem::start_guest();
    // The PALs of this machine's TCC: their counters in the TPM when there is one.
    let counters =
        if tcc.has_tpm() { CounterStore::Tpm } else { CounterStore::Memory(Default::default()) };
    let mut pals = Pals::with_counters(svm, tcc, counters);
    let result = exits(&mut vcpu, &mut pals, iommu.function(), &canary);
    drop((npt, tables, msrpm, iopm, iommu));
    result
}

/// The MCH's PCI Express configuration window (ECAM; PCIEXBAR at 0:0.0 0x60, enable bit 0,
/// length bits 2:1; Intel 3 Series Chipset datasheet, 316966, §5.1.11): every function's
/// configuration space by memory, around the filter on 0xCF8/0xCFC. Kept from the guest
/// (which the guest cannot move: `guest_os::PortFilter` refuses the MCH's writes).
fn ecam_window() -> Option<Range> {
    let (low, high) =
        (crate::ports::config_read(0, 0, 0x60), crate::ports::config_read(0, 0, 0x64));
    if low & 1 == 0 {
        return None;
    }
    let size: u64 = match (low >> 1) & 0b11 {
        1 => 128 << 20,
        2 => 64 << 20,
        _ => 256 << 20,
    };
    let base = (u64::from(high) << 32 | u64::from(low)) & !(size - 1) & ((1 << 36) - 1);
    Some(Range::sized(base, size))
}

/// The ICH9's root complex register block (RCBA at 0:31.0 0xF0, enable bit 0, 16 KiB; Intel
/// ICH9 datasheet, 316972, §13.1.35): interrupt routing and function disables. Kept from the
/// guest.
fn root_complex_block() -> Option<Range> {
    let rcba = crate::ports::config_read(31, 0, 0xF0);
    (rcba & 1 == 1).then(|| Range::sized(u64::from(rcba & 0xFFFF_C000), 16 << 10))
}

/// Maps guest-physical = host-physical over the first 4 GiB, but for `denied` (left out) and
/// `read_only` (mapped read-only): 2 MiB pages where neither touches them, 4 KiB pages around
/// what does. The numbers of both.
fn identity_map(
    npt: &mut NestedPageTable,
    tables: &mut PoolTables,
    denied: &[Range],
    read_only: &[Range],
) -> Result<(u64, u64), String> {
    let touches =
        |r: Range, list: &[Range]| list.iter().any(|d| d.start < r.end && r.start < d.end);
    let mut counts = (0, 0);
    let mut map = |gpa: u64, size: PageSize, permissions: Permissions| {
        npt.map(tables, GuestPhysAddr::new(gpa), x86_64::PhysAddr::new(gpa), size, permissions)
            .map(drop)
            .map_err(|e| format!("NPT map {gpa:#x}: {e:?}"))
    };
    for chunk in (0..WINDOW_END).step_by(mem::usize_of(LARGE_PAGE)) {
        let whole = Range::sized(chunk, LARGE_PAGE);
        if !touches(whole, denied) && !touches(whole, read_only) {
            map(chunk, PageSize::Size2M, Permissions::ALL)?;
            counts.0 += 1;
            continue;
        }
        for page in (chunk..chunk + LARGE_PAGE).step_by(mem::usize_of(PAGE_SIZE)) {
            let one = Range::sized(page, PAGE_SIZE);
            if touches(one, denied) {
                continue;
            }
            let permissions =
                if touches(one, read_only) { Permissions::READ_ONLY } else { Permissions::ALL };
            map(page, PageSize::Size4K, permissions)?;
            counts.1 += 1;
        }
    }
    Ok(counts)
}

/// The general-purpose register numbered `n` in an instruction's encoding (RAX, RCX, RDX,
/// RBX, RSP, RBP, RSI, RDI, R8-R15).
fn register(vcpu: &mut SvmVcpu, n: u8) -> u64 {
    if n == 4 {
        return vcpu.vmcb().save.rsp;
    }
    let r = vcpu.registers();
    match n {
        0 => r.rax,
        1 => r.rcx,
        2 => r.rdx,
        3 => r.rbx,
        5 => r.rbp,
        6 => r.rsi,
        7 => r.rdi,
        8 => r.r8,
        9 => r.r9,
        10 => r.r10,
        11 => r.r11,
        12 => r.r12,
        13 => r.r13,
        14 => r.r14,
        _ => r.r15,
    }
}

/// The store at the guest's RIP: its kernel's instruction bytes, fetched through its page
/// tables as a supervisor read (64-bit mode with 4-level paging only).
fn fetch_store(vcpu: &mut SvmVcpu) -> Result<Store, String> {
    let save = &vcpu.vmcb().save;
    if save.efer & EFER_LMA == 0 || save.cs.attrib & CS_LONG == 0 || !four_level(save.cr4) {
        return Err(String::from("not in 64-bit mode with 4-level paging"));
    }
    let (cr3, rip) = (save.cr3, save.rip);
    let entry = |pa: u64| {
        let mut e = [0u8; 8];
        mem::read_guest_physical(pa, &mut e).then(|| u64::from_le_bytes(e))
    };
    let mut bytes = [0u8; decode::MAX_LEN];
    let mut got = 0usize;
    // Page by page; the decoder says if it needed bytes from a page that did not translate.
    while got < decode::MAX_LEN {
        let va = rip.wrapping_add(got as u64);
        let Ok(pa) = paging::translate_supervisor(cr3, va, entry) else { break };
        let n = (decode::MAX_LEN - got).min(mem::usize_of(PAGE_SIZE - va % PAGE_SIZE));
        if !mem::read_guest_physical(pa, &mut bytes[got..got + n]) {
            break;
        }
        got += n;
    }
    decode::store64(&bytes[..got]).map_err(|e| format!("{e}"))
}

/// Does the guest's write to its local APIC or I/O APIC at `gpa` if `vpr_hypervisor::apic`
/// allows it (a write to the HPET never), and moves the guest past the instruction either
/// way; a write that cannot be decoded gets #GP. `Err` says why a write was refused.
fn controller_write(vcpu: &mut SvmVcpu, ioapic: &mut IoApic, gpa: u64) -> Result<(), String> {
    let store = match fetch_store(vcpu) {
        Ok(store) => store,
        Err(why) => {
            vcpu.inject(guest_os::general_protection());
            return Err(why);
        }
    };
    let value = match store.source {
        Source::Register(n) => low32(register(vcpu, n)),
        Source::Immediate(value) => value,
    };
    vcpu.vmcb().save.rip += u64::from(store.len);
    let offset = low32(gpa & (PAGE_SIZE - 1));
    let register = mmio::Register::at(gpa).ok_or(Refused::Misaligned);
    let page = gpa & !(PAGE_SIZE - 1);
    let done = if page == LOCAL_APIC {
        apic::local_apic_write(offset, value).and(register).map(|r| r.write(value))
    } else if page != IO_APIC {
        Err(Refused::NotWritable) // the HPET
    } else {
        let at = |offset: u32| mmio::Register::at(IO_APIC + u64::from(offset));
        ioapic.write(offset, value).and_then(|write| {
            match write {
                IoApicWrite::Select(index) => at(0).map(|r| r.write(index.into())),
                IoApicWrite::Data(index, value) => at(0).zip(at(0x10)).map(|(select, data)| {
                    select.write(index.into());
                    data.write(value);
                }),
                IoApicWrite::Eoi(value) => at(0x40).map(|r| r.write(value)),
            }
            .ok_or(Refused::Misaligned)
        })
    };
    done.map_err(|why| format!("{value:#x} at {gpa:#x}: {why}"))
}

/// CR4.LA57 (bit 12): 5-level paging, which the walk does not do (the guest boots with
/// `no5lvl`).
fn four_level(cr4: u64) -> bool {
    cr4 & 1 << 12 == 0
}

/// A guest process's memory, reached through the page tables at `cr3` as a user-mode access
/// of that process would be, page by page; every table and page must be the guest's RAM.
struct UserMemory {
    cr3: u64,
    /// Whether the guest uses 4-level paging (the only kind walked).
    paging_ok: bool,
}

impl UserMemory {
    /// `f(guest-physical address, offset in the buffer, length)` for each page-sized piece of
    /// `[va, va + len)`; `false` at the first piece that does not translate or copy.
    fn pieces(
        &self,
        va: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(u64, usize, usize) -> bool,
    ) -> bool {
        if !self.paging_ok {
            return false;
        }
        let entry = |pa: u64| {
            let mut e = [0u8; 8];
            mem::read_guest_physical(pa, &mut e).then(|| u64::from_le_bytes(e))
        };
        let mut done = 0usize;
        while done < len {
            let Some(at) = va.checked_add(done as u64) else { return false };
            let room = mem::usize_of(PAGE_SIZE - at % PAGE_SIZE).min(len - done);
            match paging::translate(self.cr3, at, write, entry) {
                Ok(pa) if f(pa, done, room) => done += room,
                _ => return false,
            }
        }
        true
    }
}

impl GuestAccess for UserMemory {
    fn window(&self) -> Range {
        Range::new(PAGE_SIZE, paging::USER_END)
    }

    /// The process's page-table root: CR3 without the PCID (bits 11:0) and the no-flush bit
    /// (63) (AMD APM Vol. 2 §3.1.2, §5.5.1).
    fn owner(&self) -> u64 {
        self.cr3 & 0x000F_FFFF_FFFF_F000
    }

    fn read(&mut self, addr: u64, out: &mut [u8]) -> bool {
        self.pieces(addr, out.len(), false, |pa, at, n| {
            mem::read_guest_physical(pa, &mut out[at..at + n])
        })
    }

    fn write(&mut self, addr: u64, bytes: &[u8]) -> bool {
        self.pieces(addr, bytes.len(), true, |pa, at, n| {
            mem::write_guest_physical(pa, &bytes[at..at + n])
        })
    }
}

/// The ports whose refused reads and writes were logged (one bit a port and kind: each kind
/// of access to a port is logged once).
struct PortLog([[u64; 1024]; 2]);

impl PortLog {
    /// Whether this kind of access to `port` is seen for the first time (and marks it).
    fn first(&mut self, port: u16, write: bool) -> bool {
        let (word, bit) = (usize::from(port / 64), port % 64);
        let seen = &mut self.0[usize::from(write)][word];
        let new = *seen & 1 << bit == 0;
        *seen |= 1 << bit;
        new
    }
}

/// Puts an IN's `value` of `size` bytes in RAX: AL or AX keep the rest of RAX, a 32-bit IN
/// clears the upper half (APM Vol. 3, IN).
fn set_in_value(vcpu: &mut SvmVcpu, size: u8, value: u32) {
    let r = vcpu.registers();
    let bits = u64::MAX >> (64 - 8 * u32::from(size));
    r.rax = match size {
        4 => u64::from(value),
        _ => (r.rax & !bits) | (u64::from(value) & bits),
    };
}

/// Answers an intercepted port access: a port the hypervisor filters
/// (`guest_os::PortFilter`) is forwarded to the device once allowed, or emulated; any other,
/// and a refused one, behaves as a port with no device (`guest_os::io_access`), logged once
/// per port and kind.
fn port_exit(vcpu: &mut SvmVcpu, filter: &mut PortFilter, log: &mut PortLog) {
    let (info1, next_rip) = (vcpu.vmcb().control.exit_info1, vcpu.vmcb().control.exit_info2);
    let Some(access) = IoAccess::from_exit_info(info1) else {
        vcpu.inject(guest_os::general_protection());
        return;
    };
    let value = low32(vcpu.registers().rax) & (u32::MAX >> (32 - 8 * u32::from(access.size)));
    let action = if !guest_os::filtered(access.port) {
        PortAction::Refuse("not its port")
    } else {
        match filter.access(access, value) {
            PortAction::SizeBar { select } => {
                let (kind, mask) = crate::ports::size_bar(select);
                if guest_os::bar_write_allowed(kind, value, mask) {
                    PortAction::Forward { select: Some(select) }
                } else {
                    PortAction::Refuse("a BAR over the platform's registers or ports")
                }
            }
            other => other,
        }
    };
    match action {
        PortAction::Rewrite { select, value: kept } => {
            if log.first(access.port, true) {
                log::warn!(
                    "hv: guest wrote {value:#x} to PCI configuration {select:#x} (port {:#x}): \
                     a message-interrupt enable bit, cleared",
                    access.port
                );
            }
            crate::ports::select(select);
            crate::ports::write(access.port, access.size, kept);
            vcpu.vmcb().save.rip = next_rip;
        }
        PortAction::Forward { select } => {
            if let Some(address) = select {
                crate::ports::select(address);
            }
            if access.write {
                crate::ports::write(access.port, access.size, value);
            } else {
                let read = crate::ports::read(access.port, access.size);
                set_in_value(vcpu, access.size, read);
            }
            vcpu.vmcb().save.rip = next_rip;
        }
        PortAction::Emulate(answer) => {
            if !access.write {
                set_in_value(vcpu, access.size, answer);
            }
            vcpu.vmcb().save.rip = next_rip;
        }
        // (A BAR write was resolved above.)
        PortAction::Refuse(_) | PortAction::SizeBar { .. } => {
            let why = if let PortAction::Refuse(why) = action { why } else { "a BAR write" };
            if log.first(access.port, access.write) {
                let rip = vcpu.vmcb().save.rip;
                log::warn!(
                    "hv: guest {} port {:#x} ({} bytes, value {value:#x}, rip {rip:#x}): {why}, \
                     refused",
                    if access.write { "wrote" } else { "read" },
                    access.port,
                    access.size
                );
            }
            match guest_os::io_access(access) {
                IoAction::Read { value, size } => {
                    set_in_value(vcpu, size, value);
                    vcpu.vmcb().save.rip = next_rip;
                }
                IoAction::Drop => vcpu.vmcb().save.rip = next_rip,
                IoAction::Fault => vcpu.inject(guest_os::general_protection()),
            }
        }
    }
}

/// The machine the Linux guest's policy (`vpr_hypervisor::svm::os_policy`) runs on: the
/// ports, the PALs, the interrupt controllers, NMIs and power.
struct Machine<'a, 'p> {
    pals: &'a mut Pals<'p>,
    filter: PortFilter,
    ports: alloc::boxed::Box<PortLog>,
    ioapic: IoApic,
    canary: &'a [u8; 64],
}

impl OsMachine<SvmVcpu> for Machine<'_, '_> {
    fn port(&mut self, vcpu: &mut SvmVcpu, port: u16, write: bool) {
        if write && (0x604..=0x605).contains(&port) {
            // PM1a control: the guest is turning the machine off (or asking for a sleep
            // state): say whether the canary survived it.
            // SAFETY: `canary` is a live, aligned borrow of 64 initialized bytes; the read is
            // volatile so that the compiler does not assume what they hold (a device's DMA is
            // what this checks for).
            let now = unsafe { core::ptr::read_volatile(self.canary) };
            let state = if now == *CANARY { "intact" } else { "OVERWRITTEN" };
            log::info!("hv: the canary at {:#x} is {state}", self.canary.as_ptr() as u64);
        }
        port_exit(vcpu, &mut self.filter, &mut self.ports);
    }

    fn hypercall(&mut self, vcpu: &mut SvmVcpu) {
        // The caller's buffers are guest-virtual: its page tables say where they are.
        let save = &vcpu.vmcb().save;
        let mut memory = UserMemory { cr3: save.cr3, paging_ok: four_level(save.cr4) };
        let _ = self.pals.hypercall(vcpu.registers(), &mut memory);
    }

    fn take_held_nmis(&mut self) -> u64 {
        crate::exceptions::take_held_nmis()
    }

    fn send_nmi(&mut self) {
        // Through this processor's local APIC, not injected: it stays pending while GIF is
        // clear and reaches the guest as a real NMI, which blocks further NMIs until the
        // guest's IRET (QEMU does not block them after an NMI injected by EVENTINJ, and
        // Linux's NMI handler, nested by the next one, overflowed its stack under an NMI
        // storm).
        crate::mmio::self_nmi();
    }

    fn host_cpuid(&mut self, leaf: u32, subleaf: u32) -> [u32; 4] {
        let host = __cpuid_count(leaf, subleaf);
        [host.eax, host.ebx, host.ecx, host.edx]
    }

    fn controller_write(&mut self, vcpu: &mut SvmVcpu, gpa: u64) -> Result<(), String> {
        controller_write(vcpu, &mut self.ioapic, gpa)
    }

    fn power_off(&mut self) -> ! {
        crate::qemu::power_off()
    }

    fn note(&mut self, event: Event) {
        match event {
            Event::RefusedMsr { msr, write, rip } => log::warn!(
                "hv: guest {} MSR {msr:#x} (rip {rip:#x}): not its MSR, #GP injected",
                if write { "wrote" } else { "read" }
            ),
            Event::Fault { gpa, error, rip } => log::warn!(
                "hv: guest touched {gpa:#x} (error {error:#x}, rip {rip:#x}): #GP injected"
            ),
            Event::RefusedControllerWrite { why, rip } => log::warn!(
                "hv: guest interrupt-controller write refused (rip after {rip:#x}): {why}"
            ),
            Event::Smi { rip } => log::warn!(
                "hv: an SMI came while the guest ran (rip {rip:#x}): taken outside the guest"
            ),
            Event::HeldNmis => log::info!(
                "hv: an NMI came while a PAL ran: held, and given to the guest after the call"
            ),
            Event::Init { rip } => {
                log::error!(
                    "hv: an INIT reached the guest (rip {rip:#x}): turning the machine off"
                );
            }
        }
    }
}

/// Runs the guest under its policy until it stops.
fn exits(
    vcpu: &mut SvmVcpu,
    pals: &mut Pals<'_>,
    iommu: (u8, u8),
    canary: &[u8; 64],
) -> Result<(), String> {
    let messages = MessageInterrupts::find(crate::ports::config_read);
    log::info!("hv: PCI bus 0: {} MSI/MSI-X capabilities, kept disabled", messages.len());
    let machine = Machine {
        pals,
        filter: PortFilter::new(messages).hiding(iommu.0, iommu.1),
        ports: alloc::boxed::Box::new(PortLog([[0; 1024]; 2])),
        ioapic: IoApic::default(),
        canary,
    };
    let mut policy = OsPolicy::new(machine);
    let outcome = vm::run(vcpu, &mut policy);
    let c = policy.counts;
    match outcome {
        Outcome::Killed(KillReason::UnhandledExit(VmExit::Shutdown)) => Err(format!(
            "the guest shut down (triple fault) after {} CPUID, {} MSR, {} hypercall, {} #UD and \
             {} refused port exits, {} nested page faults, {} refused interrupt-controller \
             writes and {} held NMIs",
            c.cpuid,
            c.msr,
            c.hypercalls,
            c.invalid_opcodes,
            c.refused_ports,
            c.faults,
            c.refused_controller_writes,
            c.held_nmis
        )),
        Outcome::Killed(KillReason::UnhandledExit(other)) => {
            Err(format!("the guest stopped: {other}"))
        }
        other => Err(format!("the guest stopped: {other:?}")),
    }
}
