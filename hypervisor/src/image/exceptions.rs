//! The hypervisor's own exceptions: an IDT whose 32 vectors all report the fault on the
//! serial port and stop QEMU with the failure status. The hypervisor runs with interrupts
//! off, so an exception here is a bug in it; reporting beats a silent triple fault (which
//! QEMU's `-no-reboot` turns into exit status 0). Vector 2, the NMI, is the exception: an NMI
//! is counted ([`take_held_nmis`]) and the hypervisor goes on. It can arrive only where the
//! hypervisor lets it (GIF is clear in host mode but in [`crate::svm::take_pending_nmi`]).

use core::mem::size_of;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;
use x86_64::structures::DescriptorTablePointer;
use x86_64::VirtAddr;

// One stub per vector: push a zero where the CPU pushes no error code, push the vector, and
// call `hv_exception` with a pointer to the frame (APM Vol. 2 §8.9.3, long-mode interrupt
// stack frame).
core::arch::global_asm!(
    r#"
    .macro exception_stub vector, has_error
    .balign 16
hv_exception_\vector:
    .if \has_error == 0
    push 0
    .endif
    push \vector
    jmp hv_exception_common
    .endm

    .section .text.exceptions, "ax"
hv_exception_common:
    mov rdi, rsp
    and rsp, -16
    call hv_exception
    ud2

    exception_stub 0, 0
    exception_stub 1, 0
    exception_stub 2, 0
    exception_stub 3, 0
    exception_stub 4, 0
    exception_stub 5, 0
    exception_stub 6, 0
    exception_stub 7, 0
    exception_stub 8, 1
    exception_stub 9, 0
    exception_stub 10, 1
    exception_stub 11, 1
    exception_stub 12, 1
    exception_stub 13, 1
    exception_stub 14, 1
    exception_stub 15, 0
    exception_stub 16, 0
    exception_stub 17, 1
    exception_stub 18, 0
    exception_stub 19, 0
    exception_stub 20, 0
    exception_stub 21, 1
    exception_stub 22, 0
    exception_stub 23, 0
    exception_stub 24, 0
    exception_stub 25, 0
    exception_stub 26, 0
    exception_stub 27, 0
    exception_stub 28, 0
    exception_stub 29, 1
    exception_stub 30, 1
    exception_stub 31, 0

    // NMI: count it and return (IRETQ also ends the NMI's blocking).
    .balign 16
hv_nmi:
    lock inc qword ptr [rip + {held}]
    iretq

    .section .rodata.exceptions, "a"
    .balign 8
    .global hv_exception_stubs
hv_exception_stubs:
    .irp vector, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad hv_exception_\vector
    .endr
    .global hv_nmi_handler
hv_nmi_handler:
    .quad hv_nmi
"#,
    held = sym HELD_NMIS,
);

/// NMIs taken by the hypervisor and not yet handed on.
static HELD_NMIS: AtomicU64 = AtomicU64::new(0);

/// The NMIs the hypervisor took since the last call: they belong to the OS guest, which gets
/// one (NMIs do not queue) at its next entry.
pub fn take_held_nmis() -> u64 {
    HELD_NMIS.swap(0, Ordering::Relaxed)
}

/// The NMIs held now (not reset).
pub fn held_nmis() -> u64 {
    HELD_NMIS.load(Ordering::Relaxed)
}

unsafe extern "C" {
    /// The addresses of the 32 stubs above.
    static hv_exception_stubs: [u64; 32];
    /// The address of the NMI handler above.
    static hv_nmi_handler: u64;
}

/// What the stub and the CPU pushed.
#[repr(C)]
#[derive(Debug)]
struct ExceptionFrame {
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

/// Called by the stubs; never returns.
#[unsafe(no_mangle)]
extern "C" fn hv_exception(frame: &ExceptionFrame) -> ! {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    panic!(
        "exception {} (error {:#x}) at rip {:#x}, rsp {:#x}, rflags {:#x}, cr2 {cr2:#x}",
        frame.vector, frame.error, frame.rip, frame.rsp, frame.rflags
    );
}

/// A 64-bit interrupt gate (APM Vol. 2 §4.8.4, Figure 4-24).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

const _: () = assert!(size_of::<Gate>() == 16);

/// The code selector `boot.rs` loads.
const CODE_SELECTOR: u16 = 0x08;
/// Present, DPL 0, 64-bit interrupt gate.
const INTERRUPT_GATE: u8 = 0x8E;

impl Gate {
    #[allow(clippy::cast_possible_truncation, reason = "splitting the address into its parts")]
    fn new(handler: u64) -> Self {
        Gate {
            offset_low: handler as u16,
            selector: CODE_SELECTOR,
            ist: 0,
            type_attributes: INTERRUPT_GATE,
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 32]);

static IDT: Once<Idt> = Once::new();

/// Loads the IDT.
pub fn init() {
    // SAFETY: `hv_exception_stubs` is an initialized, immutable table in .rodata.
    let mut stubs = unsafe { hv_exception_stubs };
    // SAFETY: as above, an initialized, immutable word in .rodata.
    stubs[2] = unsafe { hv_nmi_handler };
    let idt = IDT.call_once(|| Idt(stubs.map(Gate::new)));
    let pointer = DescriptorTablePointer {
        limit: u16::try_from(size_of::<Idt>() - 1).unwrap_or(u16::MAX),
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the IDT is a static that lives forever, its gates point to the stubs above,
    // which run on the current stack and never return, and the NMI handler, which changes
    // nothing but its counter (IRETQ restores the flags).
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
}
