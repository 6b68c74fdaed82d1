//! What an untrusted operating system (Linux) needs from SVM to run as the guest: the VMCB of
//! its 32-bit protected-mode entry (the Linux/x86 boot protocol's 32-bit entry), the MSR
//! permission map that protects SVM's own MSRs, and the CPUID answers that hide SVM.
//!
//! Unlike the test guests, this guest keeps the processor: physical interrupts reach it
//! directly (no INTR intercept, `V_INTR_MASKING` clear, so its RFLAGS.IF governs them: APM
//! §15.21.1), it halts when idle (no HLT intercept), and the I/O ports of the devices it
//! needs go to them ([`OS_PORTS`]), as do the MSRs it needs ([`OS_MSRS`], and
//! [`OS_READ_ONLY_MSRS`] for reading). What stays with the hypervisor: the SVM instructions,
//! VMMCALL (the hypercall), CPUID, every other MSR ([`msr_access`]: EFER writes keep SVME, the
//! rest #GP), every other I/O port ([`io_access`]: read as no device, writes dropped), and a
//! triple fault.

use crate::svm::setup::{control, DEFAULT_PAT};
use crate::svm::vmcb::{intercept, Segment, Vmcb};
use crate::svm::{CPUID_SVM, EFER_SVME, IOPM_BYTES, MSRPM_BYTES, MSR_VM_CR};
use vpr_proto::hypercall::{CPUID_LEAF, CPUID_SIGNATURE};
use x86_64::PhysAddr;

/// misc1 intercepts of an OS guest: CPUID (to hide SVM), the port map ([`IoPermissions`]),
/// the MSR map ([`MsrPermissions`]), shutdown, SMI (which QEMU would otherwise take in guest
/// mode, running the firmware's SMM code in the guest's context; the hypervisor lets it in
/// outside the guest), INIT (which would otherwise restart the processor into the firmware
/// outside guest mode; the hypervisor stops the machine), RSM (#UD: the guest is never in
/// SMM) and INVD (which would discard the hypervisor's dirty cache lines too: skipped, as if
/// it were WBINVD).
pub const OS_MISC1: u32 = intercept::CPUID
    | intercept::SMI
    | intercept::INIT
    | intercept::RSM
    | intercept::INVD
    | intercept::IOIO_PROT
    | intercept::MSR_PROT
    | intercept::SHUTDOWN;

/// MSR EFER (C000_0080h).
pub const MSR_EFER: u32 = 0xC000_0080;

/// Segment attributes of the flat 32-bit segments of the boot protocol's entry: code type 0xB
/// (execute/read, accessed), S, P, D/B, G; data type 0x3 (read/write, accessed), S, P, D/B, G
/// (APM §15.5.1 packing: descriptor bits 47:40 in 7:0, 55:52 in 11:8).
pub const CODE32: u16 = 0x0C9B;
/// See [`CODE32`].
pub const DATA32: u16 = 0x0C93;

/// Everything needed to enter an OS at its 32-bit protected-mode entry (the Linux/x86 boot
/// protocol, "32-bit Boot Protocol"): flat 4 GiB segments with the boot protocol's
/// selectors, paging off, interrupts off, ESI = the boot parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectedModeGuest {
    /// Address space ID (non-zero).
    pub asid: u32,
    /// The entry point (a physical address: paging is off). RSI (Linux: the boot
    /// parameters' address) is a general register: the caller sets it in the vCPU.
    pub entry: u64,
    /// The GDT in guest memory (base, and limit in bytes - 1).
    pub gdt: (u64, u16),
    /// The code and data selectors the GDT defines (Linux: `__BOOT_CS` 0x10, `__BOOT_DS`
    /// 0x18).
    pub selectors: (u16, u16),
    /// Host-physical address of the nested page table's PML4.
    pub nested_root: PhysAddr,
    /// Host-physical address of the 12 KiB I/O permission map (all zero for an OS).
    pub iopm: PhysAddr,
    /// Host-physical address of the 8 KiB MSR permission map ([`MsrPermissions`]).
    pub msrpm: PhysAddr,
}

impl ProtectedModeGuest {
    /// Writes the control area and the guest state into `vmcb` (which should be zeroed): CPL
    /// 0, CR0 = PE | ET, CR3 = CR4 = 0, EFER = SVME only (VMRUN requires it: APM §15.5.1),
    /// RFLAGS = 2 (IF clear), no IDT, nested paging on, the OS intercepts ([`OS_MISC1`] and
    /// the SVM instructions), `V_INTR_MASKING` clear, and a TLB flush on the first VMRUN.
    pub fn write_to(&self, vmcb: &mut Vmcb) {
        control(vmcb, OS_MISC1, self.asid, (self.iopm, self.msrpm), self.nested_root);
        // V_INTR_MASKING (bit 24 of the virtual interrupt control) stays clear: physical
        // interrupts are the guest's, masked by its own RFLAGS.IF (APM §15.21.1).
        vmcb.control.virtual_interrupt = 0;

        let (code, data) = self.selectors;
        let flat = |selector, attrib| Segment { selector, attrib, limit: 0xFFFF_FFFF, base: 0 };
        let s = &mut vmcb.save;
        s.cs = flat(code, CODE32);
        for segment in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
            *segment = flat(data, DATA32);
        }
        // A 32-bit busy TSS and an empty LDT: VMRUN checks TR's type, not its contents
        // until the guest loads its own.
        s.tr = Segment { selector: 0, attrib: 0x008B, limit: 0x67, base: 0 };
        s.ldtr = Segment::default();
        s.gdtr = Segment { selector: 0, attrib: 0, limit: u32::from(self.gdt.1), base: self.gdt.0 };
        s.idtr = Segment::default();
        s.cpl = 0;
        s.efer = EFER_SVME;
        s.cr0 = 1 << 0 | 1 << 4; // PE, ET
        s.cr3 = 0;
        s.cr4 = 0;
        s.dr6 = 0xFFFF_0FF0;
        s.dr7 = 0x400;
        s.rflags = 0x2;
        s.rip = self.entry;
        s.rsp = 0;
        s.rax = 0;
        s.g_pat = DEFAULT_PAT;
    }
}

/// The MSRs an OS guest owns: its reads and writes go to the processor (inclusive ranges).
pub const OS_MSRS: &[(u32, u32, &str)] = &[
    (0x0000_0010, 0x0000_0010, "time-stamp counter"),
    (0x0000_0048, 0x0000_0049, "speculation control, prediction barrier"),
    (0x0000_0174, 0x0000_0176, "SYSENTER CS, ESP, EIP"),
    (0x0000_01D9, 0x0000_01D9, "debug control"),
    (0x0000_0277, 0x0000_0277, "page attribute table"),
    (0x0000_06E0, 0x0000_06E0, "TSC deadline"),
    (0xC000_0081, 0xC000_0084, "STAR, LSTAR, CSTAR, SFMASK (system calls)"),
    (0xC000_0100, 0xC000_0103, "FS and GS bases, kernel GS base, TSC_AUX"),
];

/// The MSRs an OS guest may read but not write: a write would move memory or devices under
/// the hypervisor (the local APIC's window, the DRAM/MMIO boundary, the MMIO configuration
/// space) or change memory types and machine configuration the hypervisor relies on.
pub const OS_READ_ONLY_MSRS: &[(u32, u32, &str)] = &[
    (0x0000_001B, 0x0000_001B, "APIC base (x2APIC hidden: no reason to write it)"),
    (0x0000_008B, 0x0000_008B, "microcode revision"),
    (0x0000_00FE, 0x0000_00FE, "MTRR capabilities"),
    (0x0000_0200, 0x0000_020F, "variable-range MTRRs"),
    (0x0000_0250, 0x0000_0250, "fixed-range MTRR 64K"),
    (0x0000_0258, 0x0000_0259, "fixed-range MTRRs 16K"),
    (0x0000_0268, 0x0000_026F, "fixed-range MTRRs 4K"),
    (0x0000_02FF, 0x0000_02FF, "MTRR default type"),
    (0xC001_0010, 0xC001_0010, "SYSCFG"),
    (0xC001_0015, 0xC001_0015, "hardware configuration (HWCR)"),
    (0xC001_001A, 0xC001_001A, "TOP_MEM"),
    (0xC001_001D, 0xC001_001D, "TOP_MEM2"),
    (0xC001_0055, 0xC001_0055, "interrupt pending message (C1E)"),
    (0xC001_0058, 0xC001_0058, "MMIO configuration base"),
];

/// The MSR permission map of an OS guest (APM §15.11): two bits per MSR (read, then write)
/// for three ranges — 0000_0000h-0000_1FFFh at byte 0, C000_0000h-C000_1FFFh at byte 0x800,
/// C001_0000h-C001_1FFFh at byte 0x1000; a set bit makes the access exit (MSRs outside the
/// ranges always exit). An allow-list: [`OS_MSRS`] open, [`OS_READ_ONLY_MSRS`] open for
/// reads, EFER open for reads (writes exit, so the guest cannot clear SVME, which would make
/// the next VMRUN fail, APM §15.5.1); every other MSR exits, VM_CR and VM_HSAVE_PA (the host
/// save area is the hypervisor's) among them, and [`msr_access`] answers.
#[derive(Clone, PartialEq, Eq)]
pub struct MsrPermissions {
    bits: [u8; MSRPM_LEN],
}

/// [`MSRPM_BYTES`] as an array length.
const MSRPM_LEN: usize = 8 * 1024;
const _: () = assert!(MSRPM_LEN as u64 == MSRPM_BYTES);

impl core::fmt::Debug for MsrPermissions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let set = self.bits.iter().map(|b| b.count_ones()).sum::<u32>();
        f.debug_struct("MsrPermissions").field("intercepted_accesses", &set).finish()
    }
}

impl MsrPermissions {
    /// The OS guest's map (see the type's description).
    pub fn for_os() -> Self {
        // Every access exits but those opened below.
        let mut map = MsrPermissions { bits: [0xFF; MSRPM_LEN] };
        for &(first, last, _) in OS_MSRS {
            (first..=last).for_each(|msr| map.open(msr, true, true));
        }
        for &(first, last, _) in OS_READ_ONLY_MSRS {
            (first..=last).for_each(|msr| map.open(msr, true, false));
        }
        map.open(MSR_EFER, true, false);
        map
    }

    /// Lets reads (`read`) and writes (`write`) of `msr` through (no exit). MSRs outside the
    /// three ranges cannot be opened (APM §15.11).
    pub fn open(&mut self, msr: u32, read: bool, write: bool) {
        if let Some((byte, bit)) = MsrPermissions::position(msr) {
            if read {
                self.bits[byte] &= !(1 << bit);
            }
            if write {
                self.bits[byte] &= !(1 << (bit + 1));
            }
        }
    }

    /// The byte and the bit of the read permission of `msr`, if the map covers it.
    fn position(msr: u32) -> Option<(usize, u8)> {
        let (base, first) = match msr {
            0x0000_0000..=0x0000_1FFF => (0x000, 0x0000_0000),
            0xC000_0000..=0xC000_1FFF => (0x800, 0xC000_0000),
            0xC001_0000..=0xC001_1FFF => (0x1000, 0xC001_0000),
            _ => return None,
        };
        let index = usize::try_from(msr - first).ok()?;
        Some((base + index / 4, u8::try_from(2 * (index % 4)).ok()?))
    }

    /// The map's bytes, to copy into the 8 KiB the VMCB points to.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }
}

/// The I/O ports an OS guest (Linux on QEMU's `q35` machine, as vpr starts it) reaches
/// directly, each range inclusive with what it is. Every other port exits and is answered by
/// [`io_access`]. Left out on purpose: the ISA DMA controllers and page registers
/// (0x00-0x1F, 0x81-0x8F, 0xC0-0xDF: the 8237 can make a device write anywhere in the low
/// 16 MiB, past any IOMMU), the keyboard controller (0x60, 0x64: its output port gates A20
/// and resets the machine), System Control Port A (0x92: A20 and fast reset), the APM
/// control port (0xB2: an SMI), fw_cfg (0x510-0x51B: its DMA interface at 0x514 writes
/// guest-chosen addresses, past any IOMMU), the ICH9's SMI enable and status (PM base +
/// 0x30-0x3F) and TCO watchdog (+ 0x60-0x7F: a reset), the SMBus controller, and everything
/// QEMU does not attach.
pub const OS_PORTS: &[(u16, u16, &str)] = &[
    (0x0020, 0x0021, "master interrupt controller (8259)"),
    (0x0040, 0x0043, "interval timer (8254)"),
    (0x0061, 0x0061, "NMI status and timer-2 gate (timer calibration)"),
    (0x0080, 0x0080, "POST code (Linux's I/O delay)"),
    (0x00A0, 0x00A1, "slave interrupt controller (8259)"),
    (0x03F8, 0x03FF, "COM1 (the console)"),
    (0x04D0, 0x04D1, "interrupt edge/level control (ELCR)"),
    (0x0600, 0x0603, "ACPI PM1 status and enable (the ICH9 PM base as the firmware sets it)"),
    (0x0606, 0x062F, "ACPI power management: timer, GPE0 (PM1a control is filtered)"),
    (0xC000, 0xFFFF, "PCI I/O window (I/O BARs of the attached devices)"),
];

/// The I/O permission map of an OS guest (APM §15.10.1): one bit per port, set when an
/// access exits; an access of several bytes exits if any of its bytes' bits is set. 12 KiB,
/// the last bits covering accesses that run past port 0xFFFF.
#[derive(Clone, PartialEq, Eq)]
pub struct IoPermissions {
    bits: [u8; IOPM_LEN],
}

/// [`IOPM_BYTES`] as an array length.
const IOPM_LEN: usize = 12 * 1024;
const _: () = assert!(IOPM_LEN as u64 == IOPM_BYTES);

impl core::fmt::Debug for IoPermissions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let open = self.bits.iter().map(|b| b.count_zeros()).sum::<u32>();
        f.debug_struct("IoPermissions").field("open_ports", &open).finish()
    }
}

impl IoPermissions {
    /// The OS guest's map: [`OS_PORTS`] open, the rest intercepted.
    pub fn for_os() -> Self {
        // Every port exits but those opened below.
        let mut map = IoPermissions { bits: [0xFF; IOPM_LEN] };
        for &(first, last, _) in OS_PORTS {
            map.open(first, last);
        }
        map
    }

    /// Lets accesses of ports `first..=last` through.
    pub fn open(&mut self, first: u16, last: u16) {
        for port in first..=last {
            self.bits[usize::from(port / 8)] &= !(1 << (port % 8));
        }
    }

    /// The map's bytes, to copy into the 12 KiB the VMCB points to.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }
}

/// Ports the hypervisor answers on the guest's behalf after a check ([`PortFilter`]): the
/// access then goes to the device, or is refused. Intercepted like every port not in
/// [`OS_PORTS`].
pub const FILTERED_PORTS: &[(u16, u16, &str)] = &[
    (0x0070, 0x0071, "RTC/CMOS index and data: the shutdown status byte (0x0F) is refused"),
    (0x0604, 0x0605, "ACPI PM1a control: sleep states other than soft-off are refused"),
    (0x0CF8, 0x0CFF, "PCI configuration: chipset and BAR writes checked; reset control refused"),
];

/// Whether the hypervisor filters `port` ([`FILTERED_PORTS`]).
pub fn filtered(port: u16) -> bool {
    FILTERED_PORTS.iter().any(|&(first, last, _)| (first..=last).contains(&port))
}

/// What the hypervisor does with an access of a filtered port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortAction {
    /// Do the access on the device as the guest asked, after writing `select` to 0xCF8 (PCI
    /// configuration data).
    Forward {
        /// The PCI configuration address to select first, if any.
        select: Option<u32>,
    },
    /// No device access: IN answers this value; OUT is done.
    Emulate(u32),
    /// A write refused: dropped, for the reason given.
    Refuse(&'static str),
    /// A write of a BAR: size the BAR on the device (`select`ed), then
    /// [`bar_write_allowed`] decides.
    SizeBar {
        /// The BAR's configuration address.
        select: u32,
    },
    /// Do the write with `value` instead of the guest's (an MSI or MSI-X enable bit cleared),
    /// after writing `select` to 0xCF8.
    Rewrite {
        /// The PCI configuration address to select first.
        select: u32,
        /// The value written.
        value: u32,
    },
}

/// The MSI and MSI-X capabilities of bus 0's functions, found by the hypervisor before the
/// guest runs (PCI Local Bus 3.0 §6.7 capability lists; §6.8.1 MSI, whose Message Control
/// enable is bit 0 at capability + 2; PCI 3.0 §6.8.2 MSI-X, enable bit 15 at capability + 2).
/// A message interrupt is a memory write of a guest-chosen value to a guest-chosen address —
/// an INIT or SMI to the processor, or a DMA write anywhere — so the guest never gets one
/// enabled: [`PortFilter`] clears these bits in its configuration writes (Linux, started with
/// `pci=nomsi`, uses the INTx lines instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInterrupts {
    /// (device, function, capability offset, MSI-X).
    found: [(u8, u8, u8, bool); MAX_MESSAGE_CAPABILITIES],
    len: usize,
    /// More were found than fit: every write past the standard header is then refused.
    overflow: bool,
    /// The functions that answered, a bit per function of each device.
    present: [u8; 32],
}

/// How many MSI/MSI-X capabilities [`MessageInterrupts`] holds (QEMU's `q35` machine as vpr
/// starts it has four).
const MAX_MESSAGE_CAPABILITIES: usize = 64;
/// Capability IDs (PCI Code and ID Assignment §2).
const CAPABILITY_MSI: u32 = 0x05;
const CAPABILITY_MSI_X: u32 = 0x11;

impl Default for MessageInterrupts {
    fn default() -> Self {
        MessageInterrupts {
            found: [(0, 0, 0, false); MAX_MESSAGE_CAPABILITIES],
            len: 0,
            overflow: false,
            present: [0; 32],
        }
    }
}

impl MessageInterrupts {
    /// Walks bus 0, reading configuration dwords with `read(device, function, register)`
    /// (all ones where no function answers).
    pub fn find(mut read: impl FnMut(u8, u8, u8) -> u32) -> Self {
        let mut found = MessageInterrupts::default();
        // Every function number, whether or not function 0 is there or says it has others
        // (a device at function 3 of an empty slot is the guest's to drive all the same).
        for device in 0..32u8 {
            for function in 0..8u8 {
                if read(device, function, 0) & 0xFFFF == 0xFFFF {
                    continue;
                }
                found.present[usize::from(device)] |= 1 << function;
                // Status bit 4: a capability list; the list starts at 0x34 (§6.7).
                if read(device, function, 0x04) >> 16 & 1 << 4 != 0 {
                    found.walk(device, function, &mut read);
                }
            }
        }
        found
    }

    /// Whether bus 0's `device`/`function` answered when the functions were found.
    pub fn present(&self, device: u8, function: u8) -> bool {
        self.present.get(usize::from(device)).is_some_and(|f| f & 1 << (function & 7) != 0)
    }

    /// Follows one function's capability list (at most 48 entries: a looping list ends).
    fn walk(&mut self, device: u8, function: u8, read: &mut impl FnMut(u8, u8, u8) -> u32) {
        let mut at = read(device, function, 0x34).to_le_bytes()[0] & 0xFC;
        for _ in 0..48 {
            if at < 0x40 {
                return;
            }
            let header = read(device, function, at);
            let id = header & 0xFF;
            if id == CAPABILITY_MSI || id == CAPABILITY_MSI_X {
                if self.len == MAX_MESSAGE_CAPABILITIES {
                    self.overflow = true;
                    return;
                }
                self.found[self.len] = (device, function, at, id == CAPABILITY_MSI_X);
                self.len += 1;
            }
            at = header.to_le_bytes()[1] & 0xFC;
        }
    }

    /// How many were found.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none were found.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The enable bits of `device`/`function`: (configuration byte, bit in it).
    fn enable_bits(&self, device: u8, function: u8) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.found[..self.len].iter().filter(move |f| f.0 == device && f.1 == function).map(
            |&(_, _, at, msi_x)| {
                if msi_x {
                    (u32::from(at) + 3, 7)
                } else {
                    (u32::from(at) + 2, 0)
                }
            },
        )
    }
}

/// Memory that no BAR may cover (guest-physical = host-physical): the I/O APIC, HPET, the
/// TPM's window, the local APIC and the firmware, up to 4 GiB.
const PLATFORM_WINDOW: (u64, u64) = (0xFEC0_0000, 0x1_0000_0000);

/// What a base address register is, by its register and contents (PCI Local Bus 3.0
/// §6.2.5.1): bit 0 of a BAR at 0x10-0x24 is hardwired (1: I/O); a memory BAR of type 10b
/// (bits 2:1) is 64-bit, and the register after it is its upper half; 0x30 is the expansion
/// ROM's, whose bit 0 is its enable bit instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// An I/O BAR.
    Io,
    /// A memory BAR (or the lower half of a 64-bit one).
    Memory,
    /// The upper half of a 64-bit memory BAR.
    UpperHalf,
    /// The expansion ROM BAR.
    Rom,
}

impl BarKind {
    /// The kind of the BAR at `register` whose value is `old`, the register before it holding
    /// `previous`.
    pub fn of(register: u32, old: u32, previous: u32) -> BarKind {
        let previous_is_64 = (0x14..=0x24).contains(&register) && previous & 0b111 == 0b100;
        match register {
            0x30 => BarKind::Rom,
            _ if previous_is_64 => BarKind::UpperHalf,
            _ if old & 1 == 1 => BarKind::Io,
            _ => BarKind::Memory,
        }
    }

    /// What the hypervisor writes to size a BAR of this kind: all ones, but for the ROM, whose
    /// enable bit stays clear (all ones would turn it on over the firmware's top).
    pub fn sizing_value(self) -> u32 {
        if self == BarKind::Rom {
            0xFFFF_F800
        } else {
            u32::MAX
        }
    }
}

/// Where I/O BARs may go: the PCI I/O window (`OS_PORTS`), never over the ports the hypervisor
/// filters or uses itself (PCI configuration, power management, the console).
const IO_WINDOW: (u32, u32) = (0xC000, 0x1_0000);

/// Whether a BAR of kind `kind` and size mask `mask` (what it reads after the sizing value
/// was written) may take the 32-bit `value`:
/// - a sizing write always (all ones; for the ROM 0xFFFF_F800, its enable bit clear);
/// - a memory BAR or an enabled or disabled ROM only where the range it would decode does not
///   reach [`PLATFORM_WINDOW`] (where it would take priority over the TPM's registers);
/// - an I/O BAR only inside [`IO_WINDOW`] (over 0xCF8 it would take every configuration access
///   the hypervisor forwards, over 0x604 its power-off);
/// - the upper half of a 64-bit BAR anything (a BAR above 4 GiB is outside what the guest's
///   nested page table maps; the lower half is checked as a 32-bit BAR).
///
/// A BAR left at the sizing value overlaps the firmware's last bytes (docs/hypervisor.md).
pub fn bar_write_allowed(kind: BarKind, value: u32, mask: u32) -> bool {
    if value == kind.sizing_value() {
        return true;
    }
    let (address_mask, base) = match kind {
        BarKind::UpperHalf => return true,
        BarKind::Io => {
            let address_bits = mask & 0xFFFC;
            if address_bits == 0 {
                return false; // not implemented: nothing to move
            }
            let size = (!address_bits & 0xFFFF) + 1;
            let base = value & 0xFFFC;
            return value >> 16 == 0 && base >= IO_WINDOW.0 && base + size <= IO_WINDOW.1;
        }
        BarKind::Memory => (mask & 0xFFFF_FFF0, value & 0xFFFF_FFF0),
        BarKind::Rom => (mask & 0xFFFF_F800, value & 0xFFFF_F800),
    };
    if address_mask == 0 {
        return true; // not implemented
    }
    let size = u64::from(!address_mask) + 1;
    let base = u64::from(base);
    base + size <= PLATFORM_WINDOW.0 || base >= PLATFORM_WINDOW.1
}

/// The state of the filtered ports the guest set: the PCI configuration address it wrote to
/// 0xCF8 and the CMOS index it wrote to 0x70.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PortFilter {
    pci_address: u32,
    cmos_index: u8,
    messages: MessageInterrupts,
    /// A bus-0 function (device, function) the guest must not see: the IOMMU's.
    hidden: Option<(u8, u8)>,
}

impl PortFilter {
    /// A filter that keeps the message interrupts `messages` disabled.
    pub fn new(messages: MessageInterrupts) -> Self {
        PortFilter { messages, ..PortFilter::default() }
    }

    /// The filter, with bus 0's `device`/`function` hidden: it reads as no function (all
    /// ones) and its writes are refused.
    pub fn hiding(self, device: u8, function: u8) -> Self {
        PortFilter { hidden: Some((device, function)), ..self }
    }

    /// The decision for `access` (of a [`filtered`] port) with `value` for an OUT.
    pub fn access(&mut self, access: IoAccess, value: u32) -> PortAction {
        let ones = u32::MAX >> (32 - 8 * u32::from(access.size));
        if access.string {
            return PortAction::Refuse("string I/O");
        }
        match (access.port, access.size, access.write) {
            (0x70, 1, true) => {
                self.cmos_index = (value & 0xFF) as u8;
                PortAction::Forward { select: None }
            }
            (0x70 | 0x71, 1, false) => PortAction::Forward { select: None },
            (0x71, 1, true) if self.cmos_index & 0x7F == 0x0F => {
                PortAction::Refuse("the CMOS shutdown status (warm-reset vector)")
            }
            (0x71, 1, true) => PortAction::Forward { select: None },
            (0x70 | 0x71, _, _) => PortAction::Refuse("a wide CMOS access"),
            (0x604 | 0x605, _, false) => PortAction::Forward { select: None },
            (0x604 | 0x605, size, true) => {
                let control = if access.port == 0x605 { value << 8 } else { value };
                let sleep = control & 1 << 13 != 0;
                let kind = (control >> 10) & 0b111;
                if size > 2 || (sleep && kind != 0) {
                    PortAction::Refuse("a sleep state other than soft-off")
                } else {
                    PortAction::Forward { select: None }
                }
            }
            (0xCF8, 4, true) => {
                self.pci_address = value;
                PortAction::Emulate(0)
            }
            (0xCF8, 4, false) => PortAction::Emulate(self.pci_address),
            (0xCF9, 1, true) => PortAction::Refuse("the reset control register"),
            (0xCF8..=0xCFB, _, false) => PortAction::Emulate(ones),
            (0xCF8..=0xCFB, _, true) => PortAction::Emulate(0),
            (port, size, write) => self.pci_data(port, size, write, value),
        }
    }

    /// An access of 0xCFC-0xCFF: the configuration register the latched address selects.
    fn pci_data(&self, port: u16, size: u8, write: bool, value: u32) -> PortAction {
        let address = self.pci_address;
        if address & 1 << 31 == 0 {
            return if write { PortAction::Emulate(0) } else { PortAction::Emulate(u32::MAX) };
        }
        let select = address & 0xFFFF_FFFC;
        let (bus, device, function) =
            ((address >> 16) & 0xFF, (address >> 11) & 0x1F, (address >> 8) & 0b111);
        if let Some((d, f)) = self.hidden {
            if bus == 0 && device == u32::from(d) && function == u32::from(f) {
                return if write {
                    PortAction::Refuse("the IOMMU's configuration (the hypervisor's)")
                } else {
                    PortAction::Emulate(u32::MAX >> (32 - 8 * u32::from(size)))
                };
            }
        }
        if !write {
            return PortAction::Forward { select: Some(select) };
        }
        let register = (address & 0xFC) + u32::from(port - 0xCFC);
        let (d, f) = (device.to_le_bytes()[0], function.to_le_bytes()[0]);
        if bus != 0 {
            return PortAction::Refuse("a function on another bus (none was there at boot)");
        }
        if !self.messages.present(d, f) {
            return PortAction::Refuse("a function that was not there when the bus was checked");
        }
        match pci_config_write(bus, device, function, register) {
            ConfigWrite::Refuse(why) => PortAction::Refuse(why),
            ConfigWrite::Bar if size == 4 && register.is_multiple_of(4) => {
                PortAction::SizeBar { select }
            }
            ConfigWrite::Bar => PortAction::Refuse("a partial BAR write"),
            ConfigWrite::Allow if bus != 0 => {
                PortAction::Refuse("a function behind a bridge (not walked for MSI at boot)")
            }
            ConfigWrite::Allow if register >= 0x40 && self.messages.overflow => {
                PortAction::Refuse("more MSI capabilities than the hypervisor keeps track of")
            }
            ConfigWrite::Allow => {
                let (device, function) = (device.to_le_bytes()[0], function.to_le_bytes()[0]);
                let written = register..register + u32::from(size);
                let mut kept = value;
                for (byte, bit) in self.messages.enable_bits(device, function) {
                    if written.contains(&byte) {
                        kept &= !(1 << ((byte - register) * 8 + bit));
                    }
                }
                if kept == value {
                    PortAction::Forward { select: Some(select) }
                } else {
                    PortAction::Rewrite { select, value: kept }
                }
            }
        }
    }
}

/// The class of a PCI configuration write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConfigWrite {
    Allow,
    /// A base address register: checked against its size.
    Bar,
    Refuse(&'static str),
}

/// The policy for writes of configuration register `register` (byte offset) of bus 0's
/// chipset functions on QEMU's `q35` machine, none of which the guest configures — the MCH
/// (device 0: ECAM base 0x60, PAM 0x90-0x96, SMRAM 0x9D, extended SMRAM 0x9E, TSEG; Intel 3
/// Series Chipset datasheet, 316966, §5.1), the ICH9 LPC bridge but its PIRQ routing (31.0:
/// ACPI base 0x40, ACPI control 0x44, GPIO base, RCBA 0xF0; Intel ICH9 datasheet, 316972,
/// §13.1), its SMBus controller (31.3: the I/O BAR that would put the controller in the
/// guest's port window, host configuration 0x40, SMI enable) — and every device's BARs.
fn pci_config_write(bus: u32, device: u32, function: u32, register: u32) -> ConfigWrite {
    match (bus, device, function, register) {
        (0, 0, 0, _) => {
            ConfigWrite::Refuse("the MCH's configuration (memory, SMRAM, configuration window)")
        }
        // LPC: its PIRQ routing (PIRQA-D 0x60-0x63, PIRQE-H 0x68-0x6B) stays the guest's
        // (ACPI's _SRS).
        (0, 31, 0, 0x60..=0x63 | 0x68..=0x6B) => ConfigWrite::Allow,
        (0, 31, 0, _) => {
            ConfigWrite::Refuse("the LPC bridge's configuration (ACPI, GPIO and RCBA bases, SMI)")
        }
        (0, 31, 3, _) => {
            ConfigWrite::Refuse("the SMBus controller's configuration (its I/O BAR, SMI)")
        }
        (_, _, _, 0x10..=0x27 | 0x30..=0x33) => ConfigWrite::Bar,
        _ => ConfigWrite::Allow,
    }
}

/// An intercepted port access, from the IOIO exit's EXITINFO1 (APM §15.10.2, Figure 15-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoAccess {
    /// The port.
    pub port: u16,
    /// Bytes accessed: 1, 2 or 4.
    pub size: u8,
    /// IN (`false`) or OUT.
    pub write: bool,
    /// INS or OUTS (with or without REP).
    pub string: bool,
}

impl IoAccess {
    /// Decodes EXITINFO1 of an IOIO exit: bit 0 IN, bit 2 string, bits 4-6 the size (one of
    /// them set), bits 31:16 the port. `None` for a size field the processor never reports.
    pub fn from_exit_info(info1: u64) -> Option<IoAccess> {
        let size = match (info1 >> 4) & 0b111 {
            0b001 => 1,
            0b010 => 2,
            0b100 => 4,
            _ => return None,
        };
        Some(IoAccess {
            port: u16::try_from((info1 >> 16) & 0xFFFF).ok()?,
            size,
            write: info1 & 1 == 0,
            string: info1 & 1 << 2 != 0,
        })
    }
}

/// What the hypervisor does with an intercepted port access of an OS guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoAction {
    /// IN: the port reads as all ones over its size (no device answers), put in the low
    /// `size` bytes of RAX (a 32-bit IN clears RAX's upper half, as the processor does).
    Read {
        /// The value of all ones.
        value: u32,
        /// Bytes: 1, 2 or 4.
        size: u8,
    },
    /// OUT: dropped.
    Drop,
    /// INS or OUTS: #GP(0) (not emulated: no guest uses string I/O on a port it does not
    /// own).
    Fault,
}

/// The answer to an intercepted port access: a port the guest does not own behaves as one
/// with no device behind it — reads give all ones, writes are dropped — so A20 stays on, the
/// DMA controllers and fw_cfg stay idle, and the guest goes on.
pub fn io_access(access: IoAccess) -> IoAction {
    match (access.string, access.write) {
        (true, _) => IoAction::Fault,
        (false, true) => IoAction::Drop,
        (false, false) => IoAction::Read {
            value: u32::MAX >> (32 - 8 * u32::from(access.size)),
            size: access.size,
        },
    }
}

/// What the hypervisor does with an intercepted MSR access of an OS guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrAction {
    /// Let the write happen with this value instead (EFER with SVME kept set).
    Write(u64),
    /// Answer the read with this value.
    Read(u64),
    /// Inject #GP(0): the MSR is not the guest's.
    Fault,
}

/// The answer to an intercepted `rdmsr` (`write` = None) or `wrmsr` of `value` by an OS guest
/// (every MSR [`MsrPermissions::for_os`] does not open); `efer` is the guest's EFER as the
/// VMCB holds it. A write of EFER keeps SVME set (the guest sees the rest as it wrote it);
/// VM_CR reads as 0 ("SVM not locked, not disabled" is irrelevant: the guest sees no SVM);
/// every other access faults (#GP), as for an MSR the processor does not have — writes of
/// the read-only MSRs and reads and writes of SVM's among them. EFER.LMA is the
/// processor's to set (it follows CR0.PG and EFER.LME): a write keeps the value it has, as
/// the processor would, and VMRUN's consistency checks hold (APM §15.5.1).
pub fn msr_access(msr: u32, write: Option<u64>, efer: u64) -> MsrAction {
    const LMA: u64 = 1 << 10;
    match (msr, write) {
        (MSR_EFER, Some(value)) => MsrAction::Write((value & !LMA) | (efer & LMA) | EFER_SVME),
        (MSR_EFER, None) => MsrAction::Read(efer),
        (MSR_VM_CR, None) => MsrAction::Read(0),
        _ => MsrAction::Fault,
    }
}

/// The EVENTINJ value (APM §15.20) that injects exception `vector` with error code `code`
/// (if any) at the next VMRUN: vector in bits 7:0, type 3 (exception) in 10:8, EV (bit 11)
/// when an error code is pushed, V (bit 31), the error code in 63:32.
pub fn exception(vector: u8, code: Option<u32>) -> u64 {
    let ev = if code.is_some() { 1 << 11 } else { 0 };
    u64::from(vector) | 3 << 8 | ev | 1 << 31 | u64::from(code.unwrap_or(0)) << 32
}

/// #GP(0): what a guest gets for touching memory or an MSR that is not its own.
pub fn general_protection() -> u64 {
    exception(13, Some(0))
}

/// #UD: what a guest gets for an SVM instruction (as on a processor without SVM).
pub fn invalid_opcode() -> u64 {
    exception(6, None)
}

/// CPUID leaf 1, ECX bit 31: "running under a hypervisor".
const HYPERVISOR_PRESENT: u32 = 1 << 31;
/// CPUID leaf 1 and 8000_0001h, EDX bits 7 (MCE) and 14 (MCA): machine checks. Hidden: their
/// MSRs (MCG_*, the MC banks) are not the guest's, and machine checks are the hypervisor's to
/// take.
const MACHINE_CHECK: u32 = 1 << 7 | 1 << 14;
/// CPUID leaf 1, ECX bit 21: x2APIC. Hidden: the guest keeps the xAPIC mode the firmware set,
/// and never writes the APIC base MSR.
const X2APIC: u32 = 1 << 21;

/// The registers an OS guest's CPUID `leaf` (and `subleaf`) returns, from the processor's
/// answer `host` (EAX, EBX, ECX, EDX): SVM hidden (8000_0001h ECX bit 2 clear, leaf
/// 8000_000Ah all zero), "hypervisor present" set and x2APIC cleared in leaf 1, machine
/// checks (MCE, MCA) cleared in leaves 1 and 8000_0001h, and the hypervisor leaves
/// answering the signature (and nothing beyond 4000_0000h).
pub fn cpuid(leaf: u32, host: [u32; 4]) -> [u32; 4] {
    let [eax, ebx, ecx, edx] = host;
    let word = |i: usize| {
        let b = &CPUID_SIGNATURE[4 * i..4 * i + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    match leaf {
        1 => [eax, ebx, (ecx | HYPERVISOR_PRESENT) & !X2APIC, edx & !MACHINE_CHECK],
        CPUID_LEAF => [CPUID_LEAF, word(0), word(1), word(2)],
        0x4000_0001..=0x4000_00FF => [0; 4],
        0x8000_0001 => [eax, ebx, ecx & !CPUID_SVM, edx & !MACHINE_CHECK],
        0x8000_000A => [0; 4],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svm::MSR_VM_HSAVE_PA;
    use alloc::boxed::Box;

    impl MsrPermissions {
        /// Whether reading (`write` false) or writing `msr` exits.
        fn intercepts(&self, msr: u32, write: bool) -> bool {
            match MsrPermissions::position(msr) {
                Some((byte, bit)) => self.bits[byte] & 1 << (bit + u8::from(write)) != 0,
                None => true,
            }
        }
    }

    impl IoPermissions {
        /// Whether an access of `size` bytes at `port` exits.
        fn intercepts(&self, port: u16, size: u8) -> bool {
            (0..usize::from(size.max(1))).any(|i| {
                let p = usize::from(port) + i;
                self.bits[p / 8] & 1 << (p % 8) != 0
            })
        }
    }

    #[test]
    fn protected_mode_entry_state() {
        let mut vmcb = Box::new(Vmcb::zeroed());
        ProtectedModeGuest {
            asid: 1,
            entry: 0x100_0000,
            gdt: (0x2_2000, 31),
            selectors: (0x10, 0x18),
            nested_root: PhysAddr::new(0x20_0000),
            iopm: PhysAddr::new(0x30_0000),
            msrpm: PhysAddr::new(0x30_3000),
        }
        .write_to(&mut vmcb);
        let c = &vmcb.control;
        // APM §15.5.1: VMRUN intercepted, ASID non-zero, EFER.SVME set.
        assert_ne!(c.intercept_misc2 & intercept::VMRUN, 0);
        assert_ne!(c.intercept_misc2 & intercept::VMMCALL, 0);
        assert_ne!(c.guest_asid, 0);
        assert_eq!(c.intercept_misc1 & (intercept::INTR | intercept::HLT), 0);
        assert_ne!(c.intercept_misc1 & intercept::CPUID, 0);
        assert_eq!(c.virtual_interrupt & 1 << 24, 0, "V_INTR_MASKING clear");
        let s = &vmcb.save;
        assert_eq!(s.efer, EFER_SVME);
        assert_eq!((s.cr0, s.cr3, s.cr4, s.rflags), (0x11, 0, 0, 2));
        assert_eq!((s.cs.selector, s.cs.attrib, s.cs.limit), (0x10, CODE32, 0xFFFF_FFFF));
        assert_eq!((s.ds.selector, s.ss.attrib), (0x18, DATA32));
        assert_eq!((s.gdtr.base, s.gdtr.limit), (0x2_2000, 31));
        assert_eq!(s.rip, 0x100_0000);
        // D/B set and L clear: 32-bit code.
        assert_eq!((s.cs.attrib >> 10 & 1, s.cs.attrib >> 9 & 1), (1, 0));
    }

    #[test]
    fn msr_map_is_an_allow_list() {
        let map = MsrPermissions::for_os();
        assert!(map.intercepts(MSR_EFER, true));
        assert!(!map.intercepts(MSR_EFER, false));
        for msr in [MSR_VM_CR, MSR_VM_HSAVE_PA] {
            assert!(map.intercepts(msr, false) && map.intercepts(msr, true));
        }
        // LSTAR, the TSC, PAT, the GS base: the guest's.
        for msr in [0xC000_0082, 0x10, 0x277, 0xC000_0101] {
            assert!(!map.intercepts(msr, false) && !map.intercepts(msr, true), "{msr:#x}");
        }
        // APIC base, MTRRs, SYSCFG, TOP_MEM, MMIO configuration: read, not written.
        for msr in [0x1B, 0x200, 0x2FF, 0xC001_0010, 0xC001_001A, 0xC001_0058] {
            assert!(!map.intercepts(msr, false) && map.intercepts(msr, true), "{msr:#x}");
        }
        // Anything not listed exits both ways: performance counters, the SMM base, x2APIC.
        for msr in [0xC1, 0x186, 0xC001_0004, 0xC001_0111, 0x802] {
            assert!(map.intercepts(msr, false) && map.intercepts(msr, true), "{msr:#x}");
        }
        // Outside the three ranges every access exits.
        assert!(map.intercepts(0x4000_0000, false));
        // The exact bits (APM §15.11): EFER is C000_0080h, byte 0x800 + 0x80 / 4 = 0x820,
        // its read bit is bit 0 (open) and its write bit bit 1; VM_CR C001_0114h: byte
        // 0x1000 + 0x45, pair 0; VM_HSAVE_PA C001_0117h: byte 0x1045, pair 3 (both exit, and
        // their neighbours, not listed, too).
        let bytes = map.as_bytes();
        assert_eq!(bytes[0x820] & 0b11, 0b10);
        assert_eq!(bytes[0x1045], 0xFF);
        // The TSC (0x10): byte 4, pair 0, both open.
        assert_eq!(bytes[4] & 0b11, 0);
    }

    #[test]
    fn msr_accesses_keep_svm_on_and_its_msrs_away() {
        // LME and LMA written: LME taken, LMA left as the processor has it (clear here).
        assert_eq!(
            msr_access(MSR_EFER, Some(0x500), EFER_SVME),
            MsrAction::Write(0x100 | EFER_SVME)
        );
        assert_eq!(msr_access(MSR_EFER, Some(0), EFER_SVME), MsrAction::Write(EFER_SVME));
        // LMA stays as the processor set it, whatever the guest writes.
        let long = EFER_SVME | 1 << 10 | 1 << 8;
        assert_eq!(
            msr_access(MSR_EFER, Some(1 << 8 | 1 << 11), long),
            MsrAction::Write(long | 1 << 11)
        );
        assert_eq!(msr_access(MSR_EFER, Some(1 << 10), EFER_SVME), MsrAction::Write(EFER_SVME));
        assert_eq!(msr_access(MSR_EFER, None, 0xD01), MsrAction::Read(0xD01));
        assert_eq!(msr_access(MSR_VM_CR, None, 0), MsrAction::Read(0));
        assert_eq!(msr_access(MSR_VM_CR, Some(1 << 4), 0), MsrAction::Fault);
        assert_eq!(msr_access(MSR_VM_HSAVE_PA, None, 0), MsrAction::Fault);
        assert_eq!(msr_access(MSR_VM_HSAVE_PA, Some(0x1000), 0), MsrAction::Fault);
        // A write of a read-only MSR (the APIC base, TOP_MEM) and any access of one not
        // listed (the SMM base) fault.
        assert_eq!(msr_access(0x1B, Some(0xFEE0_0900), 0), MsrAction::Fault);
        assert_eq!(msr_access(0xC001_001A, Some(0), 0), MsrAction::Fault);
        assert_eq!(msr_access(0xC001_0111, None, 0), MsrAction::Fault);
    }

    #[test]
    fn io_map_opens_only_the_listed_ports() {
        let map = IoPermissions::for_os();
        for port in [0x20, 0x40, 0x3F8, 0x3FD, 0x600, 0x608, 0x620, 0x62F, 0xC040] {
            assert!(!map.intercepts(port, 1), "{port:#x}");
        }
        // Filtered: intercepted, answered after a check.
        for port in [0x70, 0x71, 0x604, 0x605, 0xCF8, 0xCF9, 0xCFC, 0xCFF] {
            assert!(map.intercepts(port, 1) && filtered(port), "{port:#x}");
        }
        assert!(!filtered(0x92) && !filtered(0x606));
        // A20 (0x92, the keyboard controller), ISA DMA, fw_cfg and its DMA, debug ports, the
        // APM control port (an SMI), the ICH9's SMI enable and TCO watchdog, the SMBus.
        for port in [
            0x00, 0x0A, 0x60, 0x64, 0x81, 0x87, 0x92, 0xB2, 0xC0, 0xD6, 0x402, 0x510, 0x514, 0x630,
            0x634, 0x660, 0x700,
        ] {
            assert!(map.intercepts(port, 1), "{port:#x}");
        }
        // A 4-byte access reaching one closed port exits: 0x600 is open, 0x5FE..0x601 not.
        assert!(!map.intercepts(0x600, 4));
        assert!(map.intercepts(0x5FE, 4));
        // Past 0xFFFF (the map's last bits) stays intercepted: 0xFFFE + 4 bytes.
        assert!(map.intercepts(0xFFFE, 4));
        assert!(!map.intercepts(0xFFFC, 4));
        // APM §15.10.1: port p is bit p % 8 of byte p / 8; 0x92 is byte 0x12, bit 2.
        assert_eq!(map.as_bytes()[0x12] & 1 << 2, 1 << 2);
        assert_eq!(map.as_bytes()[0x3F8 / 8], 0);
    }

    fn out(port: u16, size: u8) -> IoAccess {
        IoAccess { port, size, write: true, string: false }
    }

    fn inp(port: u16, size: u8) -> IoAccess {
        IoAccess { port, size, write: false, string: false }
    }

    /// Bus 0 of QEMU's `q35` as far as the filter's tests need it: the MCH, a device at 4.0,
    /// the LPC bridge (31.0, multi-function) and the SMBus controller (31.3); each answers
    /// with some ID and no capabilities.
    fn q35(device: u8, function: u8, register: u8) -> u32 {
        match (device, function, register) {
            (0 | 4, 0, 0) | (31, 0 | 3, 0) => 0x0001_8086,
            (_, _, 0) => u32::MAX,
            _ => 0,
        }
    }

    #[test]
    fn pci_configuration_keeps_the_chipset_and_platform_window() {
        let mut f = PortFilter::new(MessageInterrupts::find(q35));
        // The MCH's SMRAM control (0:0.0, 0x9D), PAM (0x90) and ECAM base (0x60): refused.
        assert_eq!(f.access(out(0xCF8, 4), 0x8000_009C), PortAction::Emulate(0));
        assert_eq!(f.access(inp(0xCF8, 4), 0), PortAction::Emulate(0x8000_009C));
        assert!(matches!(f.access(out(0xCFD, 1), 0x4A), PortAction::Refuse(_)));
        f.access(out(0xCF8, 4), 0x8000_0090);
        assert!(matches!(f.access(out(0xCFD, 1), 0x33), PortAction::Refuse(_)));
        f.access(out(0xCF8, 4), 0x8000_0060);
        assert!(matches!(f.access(out(0xCFC, 4), 0xFED0_0001), PortAction::Refuse(_)));
        // Reads go to the device, the address selected first.
        assert_eq!(f.access(inp(0xCFE, 1), 0), PortAction::Forward { select: Some(0x8000_0060) });
        // The LPC's ACPI base (0:31.0, 0x40) and RCBA (0xF0), the SMBus host configuration
        // (0:31.3, 0x40): refused; the LPC's PIRQ routing (0x60, 0x68): allowed.
        for (address, value) in
            [(0x8000_F840, 0xC001), (0x8000_F8F0, 0xFED0_0001), (0x8000_FB40, 1)]
        {
            f.access(out(0xCF8, 4), address);
            assert!(
                matches!(f.access(out(0xCFC, 4), value), PortAction::Refuse(_)),
                "{address:#x}"
            );
        }
        // Their BARs and command registers too: the SMBus controller's I/O BAR (0:31.3, 0x20)
        // would otherwise move into the guest's port window.
        for address in [0x8000_FB20, 0x8000_FB04, 0x8000_0004, 0x8000_F804] {
            f.access(out(0xCF8, 4), address);
            assert!(
                matches!(f.access(out(0xCFC, 4), 0xC101), PortAction::Refuse(_)),
                "{address:#x}"
            );
        }
        for address in [0x8000_F860, 0x8000_F868] {
            f.access(out(0xCF8, 4), address);
            assert_eq!(f.access(out(0xCFC, 1), 11), PortAction::Forward { select: Some(address) });
        }
        // A device's command register: allowed; its BAR: sized first; a partial BAR write
        // refused.
        f.access(out(0xCF8, 4), 0x8000_2004);
        assert_eq!(f.access(out(0xCFC, 2), 7), PortAction::Forward { select: Some(0x8000_2004) });
        f.access(out(0xCF8, 4), 0x8000_2010);
        assert_eq!(
            f.access(out(0xCFC, 4), 0xFEB0_0000),
            PortAction::SizeBar { select: 0x8000_2010 }
        );
        assert!(matches!(f.access(out(0xCFE, 2), 0xFED4), PortAction::Refuse(_)));
        // Reset control: refused. Configuration disabled (bit 31 clear): no device access.
        assert!(matches!(f.access(out(0xCF9, 1), 6), PortAction::Refuse(_)));
        f.access(out(0xCF8, 4), 0x0000_0070);
        assert_eq!(f.access(inp(0xCFC, 4), 0), PortAction::Emulate(u32::MAX));
        assert_eq!(f.access(out(0xCFC, 4), 1), PortAction::Emulate(0));
    }

    #[test]
    fn functions_absent_at_boot_take_no_write() {
        // 5.3 of an empty slot, found all the same; 5.0 and 6.1 absent.
        let read = |device: u8, function: u8, register: u8| match (device, function, register) {
            (5, 3, 0) => 0x1005_1AF4,
            (_, _, 0) => u32::MAX,
            _ => 0,
        };
        let messages = MessageInterrupts::find(read);
        assert!(messages.present(5, 3) && !messages.present(5, 0) && !messages.present(6, 1));
        let mut f = PortFilter::new(messages);
        f.access(out(0xCF8, 4), 0x8000_2B04);
        assert_eq!(f.access(out(0xCFC, 2), 7), PortAction::Forward { select: Some(0x8000_2B04) });
        for address in [0x8000_2804, 0x8000_3104, 0x8001_2B04] {
            f.access(out(0xCF8, 4), address);
            assert!(matches!(f.access(out(0xCFC, 2), 7), PortAction::Refuse(_)), "{address:#x}");
            // Reads still go to the device (all ones where none answers).
            assert_eq!(f.access(inp(0xCFC, 2), 0), PortAction::Forward { select: Some(address) });
        }
    }

    #[test]
    fn the_hidden_function_reads_as_absent_and_takes_no_write() {
        let mut f = PortFilter::default().hiding(1, 0);
        f.access(out(0xCF8, 4), 0x8000_0800);
        assert_eq!(f.access(inp(0xCFC, 4), 0), PortAction::Emulate(u32::MAX));
        assert_eq!(f.access(inp(0xCFE, 2), 0), PortAction::Emulate(0xFFFF));
        f.access(out(0xCF8, 4), 0x8000_0844);
        assert!(matches!(f.access(out(0xCFC, 4), 0xFED0_0001), PortAction::Refuse(_)));
        f.access(out(0xCF8, 4), 0x8000_0804);
        assert!(matches!(f.access(out(0xCFC, 2), 0), PortAction::Refuse(_)));
        // Its neighbours, and the same slot on another bus, are not hidden.
        f.access(out(0xCF8, 4), 0x8000_0900);
        assert_eq!(f.access(inp(0xCFC, 4), 0), PortAction::Forward { select: Some(0x8000_0900) });
        f.access(out(0xCF8, 4), 0x8001_0800);
        assert_eq!(f.access(inp(0xCFC, 4), 0), PortAction::Forward { select: Some(0x8001_0800) });
    }

    /// Bus 0 as QEMU's `pc` machine has it with vpr's devices: the host bridge and the PIIX
    /// (multi-function, no capabilities), virtio-net at 3 (MSI-X at 0x98 after a vendor
    /// capability at 0x84) and a device at 4 with MSI at 0x50.
    fn bus0(device: u8, function: u8, register: u8) -> u32 {
        match (device, function, register) {
            (0, 0, 0) => 0x1237_8086,
            (0, 0, 0x0C) => 0,
            (1, 0..=3, 0) => 0x7000_8086,
            (1, 0, 0x0C) => 0x0080_0000,
            (3, 0, 0) => 0x1000_1AF4,
            (3, 0, 0x04) => 0x0010_0000,
            (3, 0, 0x0C) => 0,
            (3, 0, 0x34) => 0x84,
            (3, 0, 0x84) => 0x0014_9809,
            (3, 0, 0x98) => 0x0003_0011,
            (4, 0, 0) => 0x0001_1234,
            (4, 0, 0x04) => 0x0010_0000,
            (4, 0, 0x34) => 0x50,
            (4, 0, 0x50) => 0x0080_0005,
            (_, _, 0) => u32::MAX,
            _ => 0,
        }
    }

    #[test]
    fn message_interrupts_are_found_and_never_enabled() {
        let messages = MessageInterrupts::find(bus0);
        assert_eq!(messages.len(), 2);
        let mut f = PortFilter::new(messages);
        // MSI-X Message Control of 3.0 (0x9A): enable (bit 15) and function mask (14).
        f.access(out(0xCF8, 4), 0x8000_1898);
        assert_eq!(
            f.access(out(0xCFE, 2), 0xC000),
            PortAction::Rewrite { select: 0x8000_1898, value: 0x4000 }
        );
        // The same through a 1-byte write of 0x9B, and a dword write of 0x98.
        assert_eq!(
            f.access(out(0xCFF, 1), 0x80),
            PortAction::Rewrite { select: 0x8000_1898, value: 0 }
        );
        assert_eq!(
            f.access(out(0xCFC, 4), 0x8003_0011),
            PortAction::Rewrite { select: 0x8000_1898, value: 0x0003_0011 }
        );
        // Clearing it, and the byte below it, go through unchanged.
        assert_eq!(f.access(out(0xCFF, 1), 0), PortAction::Forward { select: Some(0x8000_1898) });
        assert_eq!(
            f.access(out(0xCFE, 1), 0xFF),
            PortAction::Forward { select: Some(0x8000_1898) }
        );
        // MSI of 4.0: enable is bit 0 of 0x52; the address and data (0x54...) are free.
        f.access(out(0xCF8, 4), 0x8000_2050);
        assert_eq!(
            f.access(out(0xCFE, 2), 0x0081),
            PortAction::Rewrite { select: 0x8000_2050, value: 0x0080 }
        );
        f.access(out(0xCF8, 4), 0x8000_2054);
        assert_eq!(
            f.access(out(0xCFC, 4), 0xFEE0_0000),
            PortAction::Forward { select: Some(0x8000_2054) }
        );
        // Another device's same offsets are not capabilities; a function that did not answer
        // when the bus was walked (5.0), and another bus, are refused.
        f.access(out(0xCF8, 4), 0x8000_0850);
        assert_eq!(f.access(out(0xCFE, 2), 1), PortAction::Forward { select: Some(0x8000_0850) });
        f.access(out(0xCF8, 4), 0x8000_2850);
        assert!(matches!(f.access(out(0xCFE, 2), 1), PortAction::Refuse(_)));
        f.access(out(0xCF8, 4), 0x8001_1850);
        assert!(matches!(f.access(out(0xCFE, 2), 1), PortAction::Refuse(_)));
    }

    #[test]
    fn a_looping_capability_list_ends() {
        let looping = |device: u8, function: u8, register: u8| match (device, function, register) {
            (0, 0, 0) => 0x0001_1234,
            (0, 0, 0x04) => 0x0010_0000,
            (0, 0, 0x34) => 0x40,
            (0, 0, 0x40) => 0x0000_4005, // MSI, next: itself
            (_, _, 0) => u32::MAX,
            _ => 0,
        };
        let messages = MessageInterrupts::find(looping);
        // One capability seen 48 times: the table fills no further than it holds.
        assert_eq!(messages.len(), 48);
        assert!(!messages.overflow);
    }

    #[test]
    fn too_many_capabilities_close_the_extended_registers() {
        let many = |_: u8, function: u8, register: u8| match (function, register) {
            (_, 0) => 0x0001_1234,
            (_, 0x04) => 0x0010_0000,
            (0, 0x0C) => 0x0080_0000,
            (_, 0x34) => 0x40,
            (_, 0x40) => 0x0000_5005,
            (_, 0x50) => 0x0000_0011,
            _ => 0,
        };
        let messages = MessageInterrupts::find(many);
        assert!(messages.overflow);
        let mut f = PortFilter::new(messages);
        f.access(out(0xCF8, 4), 0x8000_F0A0);
        assert!(matches!(f.access(out(0xCFC, 4), 0), PortAction::Refuse(_)));
        // The standard header stays writable (the command register).
        f.access(out(0xCF8, 4), 0x8000_F004);
        assert_eq!(f.access(out(0xCFC, 2), 7), PortAction::Forward { select: Some(0x8000_F004) });
    }

    #[test]
    fn bars_stay_out_of_the_platform_window() {
        // A 16 KiB memory BAR (mask 0xFFFF_C000).
        let (memory, mask) = (BarKind::Memory, 0xFFFF_C000);
        assert!(bar_write_allowed(memory, 0xFEB0_0000, mask));
        assert!(bar_write_allowed(memory, u32::MAX, mask), "sizing");
        assert!(!bar_write_allowed(memory, 0xFED4_0000, mask), "over the TPM's registers");
        assert!(!bar_write_allowed(memory, 0xFEBF_E000, mask), "reaching into the window");
        assert!(bar_write_allowed(memory, 0xFEBF_C000, mask), "ending at its start");
        assert!(!bar_write_allowed(memory, 0xFEE0_0000, 0xFFF0_0000), "a 1 MiB BAR over the APIC");
        // The expansion ROM (256 KiB): sized with its enable bit clear; all ones (enabled at
        // the top) refused, enabled or not over the TPM refused, below the window allowed.
        let (rom, mask) = (BarKind::Rom, 0xFFFC_0000);
        assert_eq!(rom.sizing_value(), 0xFFFF_F800);
        assert!(bar_write_allowed(rom, 0xFFFF_F800, mask), "sizing an expansion ROM");
        assert!(!bar_write_allowed(rom, u32::MAX, mask), "a ROM enabled at the top");
        assert!(!bar_write_allowed(rom, 0xFED4_0001, mask), "a ROM enabled over the TPM");
        assert!(!bar_write_allowed(rom, 0xFED4_0000, mask), "a ROM over the TPM, disabled");
        assert!(bar_write_allowed(rom, 0xFEB4_0001, mask));
        // A 32-byte I/O BAR: inside 0xC000-0xFFFF only.
        let (io, mask) = (BarKind::Io, 0xFFFF_FFE1);
        assert!(bar_write_allowed(io, u32::MAX, mask), "sizing");
        assert!(bar_write_allowed(io, 0xC041, mask));
        assert!(bar_write_allowed(io, 0xFFE1, mask), "the window's last 32 ports");
        for over in [0x0CE1, 0x0601, 0x03E1, 0xBFF1, 0x1_C041] {
            assert!(!bar_write_allowed(io, over, mask), "{over:#x}");
        }
        // The upper half of a 64-bit BAR takes anything.
        assert!(bar_write_allowed(BarKind::UpperHalf, 0x1, 0xFFFF_FFFF));
    }

    #[test]
    fn bar_kinds_come_from_the_register_and_the_one_before() {
        assert_eq!(BarKind::of(0x10, 0xC041, 0), BarKind::Io);
        assert_eq!(BarKind::of(0x10, 0xFEB0_0000, 0), BarKind::Memory);
        // 0x14 after a 64-bit memory BAR (type 10b) is its upper half, whatever it holds.
        assert_eq!(BarKind::of(0x14, 0x1, 0xFEB0_000C), BarKind::UpperHalf);
        assert_eq!(BarKind::of(0x14, 0x1, 0xFEB0_0000), BarKind::Io);
        // The ROM's bit 0 is its enable bit, not "I/O".
        assert_eq!(BarKind::of(0x30, 0xFEB4_0001, 0), BarKind::Rom);
    }

    #[test]
    fn cmos_shutdown_byte_and_sleep_states_are_refused() {
        let mut f = PortFilter::default();
        assert_eq!(f.access(out(0x70, 1), 0x0F), PortAction::Forward { select: None });
        assert!(matches!(f.access(out(0x71, 1), 0x0A), PortAction::Refuse(_)));
        // With the NMI-disable bit, still the shutdown byte.
        f.access(out(0x70, 1), 0x8F);
        assert!(matches!(f.access(out(0x71, 1), 0x0A), PortAction::Refuse(_)));
        f.access(out(0x70, 1), 0x0B);
        assert_eq!(f.access(out(0x71, 1), 0x02), PortAction::Forward { select: None });
        assert_eq!(f.access(inp(0x71, 1), 0), PortAction::Forward { select: None });
        assert!(matches!(f.access(out(0x70, 2), 0x0A0F), PortAction::Refuse(_)));
        // PM1a control: S5 (type 0) with SLP_EN goes through; S3 (type 1) does not, in a
        // word or as its high byte; SCI_EN alone goes through.
        assert_eq!(f.access(out(0x604, 2), 1 << 13), PortAction::Forward { select: None });
        assert!(matches!(f.access(out(0x604, 2), 1 << 13 | 1 << 10), PortAction::Refuse(_)));
        assert!(matches!(f.access(out(0x605, 1), 0x24), PortAction::Refuse(_)));
        assert_eq!(f.access(out(0x604, 2), 1), PortAction::Forward { select: None });
    }

    #[test]
    fn closed_ports_read_as_no_device() {
        // EXITINFO1: port 0x92, 8-bit IN.
        let info = 0x92 << 16 | 1 << 4 | 1;
        let access = IoAccess::from_exit_info(info).unwrap();
        assert_eq!(access, IoAccess { port: 0x92, size: 1, write: false, string: false });
        assert_eq!(io_access(access), IoAction::Read { value: 0xFF, size: 1 });
        let word = IoAccess { size: 2, ..access };
        assert_eq!(io_access(word), IoAction::Read { value: 0xFFFF, size: 2 });
        let dword = IoAccess { size: 4, ..access };
        assert_eq!(io_access(dword), IoAction::Read { value: u32::MAX, size: 4 });
        // OUT 0x514 (fw_cfg DMA), 32-bit: dropped.
        let out = IoAccess::from_exit_info(0x514 << 16 | 1 << 6).unwrap();
        assert_eq!((out.write, out.size), (true, 4));
        assert_eq!(io_access(out), IoAction::Drop);
        // REP OUTSB: #GP.
        let outs = IoAccess::from_exit_info(0x60 << 16 | 1 << 4 | 1 << 3 | 1 << 2).unwrap();
        assert_eq!(io_access(outs), IoAction::Fault);
        assert_eq!(IoAccess::from_exit_info(0x60 << 16 | 0b011 << 4), None);
    }

    #[test]
    fn injected_exceptions() {
        assert_eq!(general_protection(), 0x0000_0000_8000_0B0D);
        assert_eq!(invalid_opcode(), 0x8000_0306);
        assert_eq!(exception(14, Some(2)), 0x0000_0002_8000_0B0E);
    }

    #[test]
    fn cpuid_hides_svm_and_names_the_hypervisor() {
        let host = [1, 2, u32::MAX, 4];
        assert_eq!(cpuid(0x8000_0001, host), [1, 2, !CPUID_SVM, 4]);
        assert_eq!(cpuid(1, [0, 0, 0, u32::MAX])[3], !MACHINE_CHECK, "MCE and MCA hidden");
        assert_eq!(cpuid(0x8000_000A, host), [0; 4]);
        assert_eq!(cpuid(1, [1, 2, 0, 4])[2], HYPERVISOR_PRESENT);
        assert_eq!(cpuid(1, [1, 2, X2APIC, 4])[2], HYPERVISOR_PRESENT, "x2APIC hidden");
        let id = cpuid(CPUID_LEAF, host);
        let mut signature = [0u8; 12];
        for (i, word) in id[1..].iter().enumerate() {
            signature[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
        }
        assert_eq!(&signature, CPUID_SIGNATURE);
        assert_eq!(cpuid(0x4000_0001, host), [0; 4]);
        assert_eq!(cpuid(0, host), host);
        assert_eq!(cpuid(7, host), host);
    }
}
