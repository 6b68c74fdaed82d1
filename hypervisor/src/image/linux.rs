//! Linux as the untrusted guest (`vpr.guest=linux` on the command line): module 0 is the
//! kernel (a bzImage), module 1 its initramfs, and the command line after ` -- ` is the
//! kernel's. The hypervisor loads them by the Linux/x86 boot protocol
//! (`vpr_hypervisor::linux`), gives the guest all RAM but its own (its image, heap, frame pool
//! and the loader's structures: reserved in the e820 map and left out of the nested page
//! table), and enters the kernel's 32-bit entry (`vpr_hypervisor::svm::guest_os`).
//!
//! The guest keeps the processor: its interrupts, its devices, its idle HLT. It exits for
//! CPUID (SVM, x2APIC and machine checks hidden), every MSR but those it needs
//! (`guest_os::OS_MSRS`; EFER writes keep SVME; VM_CR reads 0; the rest is #GP, logged once
//! per MSR and kind), the SVM instructions (#UD, as on a processor without SVM), VMMCALL
//! (the hypercall), nested page faults (an access to the hypervisor's memory or the TPM gets
//! #GP(0), and the guest goes on) and every I/O port but those of the devices it needs
//! (`guest_os::OS_PORTS`: the others read as no device, writes are dropped).

use crate::mem::{self, OwnedFrames, PoolTables};
use crate::pal::{GuestAccess, Pals, Tcc};
use crate::svm::vcpu::SvmVcpu;
use crate::svm::Svm;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::arch::x86_64::__cpuid_count;
use vpr_hypervisor::linux::{self as boot, BzImage, BOOT_CS, BOOT_DS, GDT_LEN};
use vpr_hypervisor::memory::{Range, PAGE_SIZE};
use vpr_hypervisor::paging;
use vpr_hypervisor::svm::exit::code;
use vpr_hypervisor::svm::guest_os::{
    self, IoAccess, IoAction, IoPermissions, MsrAction, MsrPermissions, PortAction, PortFilter,
    ProtectedModeGuest,
};
use vpr_hypervisor::svm::npt::{GuestPhysAddr, NestedPageTable, PageSize, Permissions};
use vpr_hypervisor::svm::{IOPM_BYTES, MSRPM_BYTES};
use vpr_hypervisor::vm::{Vcpu, VmExit};

/// The ASID of the OS guest (PALs use 2, test guests 1).
const OS_ASID: u32 = 3;
/// The TPM's register window (TIS, five localities): the hypervisor's alone.
const TIS_WINDOW: Range = Range::new(0xFED4_0000, 0xFED4_5000);
/// The guest-physical window the nested page table covers: the first 4 GiB.
const WINDOW_END: u64 = 4 << 30;
/// Large-page size of the nested page table.
const LARGE_PAGE: u64 = 2 << 20;
/// Bytes of CPUID, RDMSR and WRMSR (0F A2, 0F 32, 0F 30), for guests without nRIP.
const TWO_BYTE_INSTRUCTION: u64 = 2;
/// Nested page faults logged in full; later ones are only counted.
const LOGGED_FAULTS: u64 = 16;
/// Refused MSRs (and kinds of access) logged; later ones are only counted.
const LOGGED_MSRS: usize = 64;

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
pub fn run(svm: &Svm) -> Result<(), String> {
    let layout = mem::guest_layout().ok_or("no guest memory: boot with vpr.guest=linux")?;
    let kernel = mem::module(0).ok_or("no module 0: the Linux kernel (a bzImage)")?;
    let initrd = mem::module(1).unwrap_or(&[]);
    // The kernel's command line, and where the hypervisor's memory is (`vpr.hv=`), for the
    // guest to know where it must not go (and for tests that it cannot).
    let ranges: Vec<String> =
        layout.hypervisor.iter().map(|r| format!("{:#x}-{:#x}", r.start, r.end)).collect();
    let command_line =
        format!("{} vpr.hv={}", kernel_command_line(mem::command_line()), ranges.join(","));
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
    let denied: Vec<Range> = layout.hypervisor.iter().copied().chain([TIS_WINDOW]).collect();
    let pages = identity_map(&mut npt, &mut tables, &denied)?;
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
    let tcc =
        if crate::tpm::TPM.lock().is_some() { Tcc::Tpm } else { Tcc::Memory(Default::default()) };
    let mut pals = Pals::with_tcc(svm, tcc);
    let result = exits(&mut vcpu, &mut pals);
    drop((npt, tables, msrpm, iopm));
    result
}

/// Maps guest-physical = host-physical over the first 4 GiB, but for `denied`: 2 MiB pages
/// where nothing denied touches them, 4 KiB pages around what does. The numbers of both.
fn identity_map(
    npt: &mut NestedPageTable,
    tables: &mut PoolTables,
    denied: &[Range],
) -> Result<(u64, u64), String> {
    let touches = |r: Range| denied.iter().any(|d| d.start < r.end && r.start < d.end);
    let mut counts = (0, 0);
    let mut map = |gpa: u64, size: PageSize| {
        npt.map(tables, GuestPhysAddr::new(gpa), x86_64::PhysAddr::new(gpa), size, Permissions::ALL)
            .map(drop)
            .map_err(|e| format!("NPT map {gpa:#x}: {e:?}"))
    };
    for chunk in (0..WINDOW_END).step_by(mem::usize_of(LARGE_PAGE)) {
        if !touches(Range::sized(chunk, LARGE_PAGE)) {
            map(chunk, PageSize::Size2M)?;
            counts.0 += 1;
            continue;
        }
        for page in (chunk..chunk + LARGE_PAGE).step_by(mem::usize_of(PAGE_SIZE)) {
            if !touches(Range::sized(page, PAGE_SIZE)) {
                map(page, PageSize::Size4K)?;
                counts.1 += 1;
            }
        }
    }
    Ok(counts)
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
                let (old, mask) = crate::ports::size_bar(select);
                // An I/O BAR moves ports, which the permission map governs by number.
                if old & 1 == 1 || guest_os::bar_write_allowed(value, mask) {
                    PortAction::Forward { select: Some(select) }
                } else {
                    PortAction::Refuse("a BAR over the platform's registers")
                }
            }
            other => other,
        }
    };
    match action {
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

/// Runs the guest, answering its exits, until one it cannot go on after.
fn exits(vcpu: &mut SvmVcpu, pals: &mut Pals<'_>) -> Result<(), String> {
    let mut faults = 0u64;
    let mut counts = [0u64; 5]; // CPUID, MSR, hypercalls, injected #UD, refused ports
    let mut ports = alloc::boxed::Box::new(PortLog([[0; 1024]; 2]));
    let mut refused_msrs: Vec<(u32, bool)> = Vec::new();
    let mut filter = PortFilter::default();
    loop {
        match vcpu.run() {
            VmExit::Io { port, .. } => {
                counts[4] += u64::from(!guest_os::filtered(port));
                port_exit(vcpu, &mut filter, &mut ports);
            }
            VmExit::Hypercall => {
                counts[2] += 1;
                // The caller's buffers are guest-virtual: its page tables say where they are.
                let save = &vcpu.vmcb().save;
                let mut memory = UserMemory { cr3: save.cr3, paging_ok: four_level(save.cr4) };
                let _ = pals.hypercall(vcpu.registers(), &mut memory);
                vcpu.skip_hypercall();
            }
            VmExit::Other { code: code::CPUID, .. } => {
                counts[0] += 1;
                let r = vcpu.registers();
                let (leaf, subleaf) = (low32(r.rax), low32(r.rcx));
                let host = __cpuid_count(leaf, subleaf);
                let [a, b, c, d] = guest_os::cpuid(leaf, [host.eax, host.ebx, host.ecx, host.edx]);
                (r.rax, r.rbx, r.rcx, r.rdx) = (a.into(), b.into(), c.into(), d.into());
                vcpu.skip(TWO_BYTE_INSTRUCTION);
            }
            VmExit::Msr { write } => {
                counts[1] += 1;
                let r = vcpu.registers();
                let msr = low32(r.rcx);
                let value = (r.rdx << 32) | (r.rax & 0xFFFF_FFFF);
                let efer = vcpu.vmcb().save.efer;
                match guest_os::msr_access(msr, write.then_some(value), efer) {
                    MsrAction::Write(value) => {
                        vcpu.vmcb().save.efer = value;
                        vcpu.skip(TWO_BYTE_INSTRUCTION);
                    }
                    MsrAction::Read(value) => {
                        let r = vcpu.registers();
                        (r.rax, r.rdx) = (value & 0xFFFF_FFFF, value >> 32);
                        vcpu.skip(TWO_BYTE_INSTRUCTION);
                    }
                    MsrAction::Fault => {
                        // Each refused MSR and kind logged once (at most `LOGGED_MSRS`).
                        if refused_msrs.len() < LOGGED_MSRS && !refused_msrs.contains(&(msr, write))
                        {
                            refused_msrs.push((msr, write));
                            let rip = vcpu.vmcb().save.rip;
                            log::warn!(
                                "hv: guest {} MSR {msr:#x} (rip {rip:#x}): not its MSR, #GP \
                                 injected",
                                if write { "wrote" } else { "read" }
                            );
                        }
                        vcpu.inject(guest_os::general_protection());
                    }
                }
            }
            VmExit::NestedPageFault { gpa, error } => {
                faults += 1;
                if faults <= LOGGED_FAULTS {
                    let rip = vcpu.vmcb().save.rip;
                    log::warn!(
                        "hv: guest touched {gpa:#x} (error {error:#x}, rip {rip:#x}): #GP injected"
                    );
                }
                vcpu.inject(guest_os::general_protection());
            }
            VmExit::Other { code: c, .. } if (code::VMRUN..=code::VMRUN + 6).contains(&c) => {
                counts[3] += 1;
                vcpu.inject(guest_os::invalid_opcode());
            }
            VmExit::Shutdown => {
                return Err(format!(
                    "the guest shut down (triple fault) after {counts:?} exits (CPUID, MSR, \
                     hypercall, #UD, refused port) and {faults} nested page faults"
                ));
            }
            other => return Err(format!("the guest stopped: {other}")),
        }
    }
}
