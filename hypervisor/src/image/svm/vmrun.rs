//! The world switch: VMRUN with every general-purpose register saved and restored.
//!
//! VMRUN saves the host's RAX, RSP and RIP (with segments, control registers, EFER, RFLAGS)
//! in the host save area and loads the guest's from the VMCB; #VMEXIT does the reverse (APM
//! Vol. 2 §15.5-§15.6). Every other general-purpose register passes unchanged between the
//! worlds, so this routine loads the guest's from a [`GuestRegisters`] before VMRUN and stores
//! them back after #VMEXIT, keeping the host's callee-saved registers on the stack. The state
//! that only VMLOAD/VMSAVE move (FS, GS, TR, LDTR, KernelGsBase, the SYSCALL and SYSENTER
//! MSRs; APM §15.5.2) is swapped too, the host's kept in a page of its own. GIF is cleared
//! before the switch and stays clear after it (APM §15.17): the hypervisor takes no
//! interrupt, NMI or SMI while it runs — they stay pending until VMRUN sets GIF for the
//! guest (or, for an NMI, until `take_pending_nmi` lets it in) — so nothing the guest programs
//! can run firmware or fault handlers in the middle of the hypervisor's work. INIT is held
//! too on a processor, but not by QEMU's TCG, which takes it in host mode at once: the
//! guest's ways to send one are closed instead (`vpr_hypervisor::apic`).
//!
//! Floating-point and vector state is not touched: the image is built soft-float and never
//! uses it, so the guest's survives as it is.

use core::mem::offset_of;
use vpr_hypervisor::vm::GuestRegisters;

/// Enters the guest described by the VMCB at `vmcb` and returns at its next #VMEXIT.
///
/// # Safety
/// `vmcb` must be the physical address of a valid VMCB (identity-mapped, page-aligned) whose
/// guest can reach only memory given to it through its nested page table; `host_state` a page
/// for the host's VMSAVE state; `registers` the guest's registers. SVM must be enabled (EFER.SVME,
/// VM_HSAVE_PA) and this must run at CPL 0 with interrupts disabled.
#[unsafe(naked)]
pub unsafe extern "sysv64" fn world_switch(
    vmcb: u64,
    host_state: u64,
    registers: *mut GuestRegisters,
) {
    core::arch::naked_asm!(
        // Host: callee-saved registers, then the two pointers needed after the exit.
        "push rbx",
        "push rbp",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "push rdx", // registers
        "push rsi", // host_state
        "clgi",
        "mov rax, rsi",
        "vmsave rax",
        "mov rax, rdi",
        "vmload rax",
        // Guest: everything but RAX (VMRUN's operand, the guest's comes from the VMCB) and
        // RSP (in the VMCB); RDX last, it holds the pointer.
        "mov rbx, [rdx + {rbx}]",
        "mov rcx, [rdx + {rcx}]",
        "mov rsi, [rdx + {rsi}]",
        "mov rdi, [rdx + {rdi}]",
        "mov rbp, [rdx + {rbp}]",
        "mov r8, [rdx + {r8}]",
        "mov r9, [rdx + {r9}]",
        "mov r10, [rdx + {r10}]",
        "mov r11, [rdx + {r11}]",
        "mov r12, [rdx + {r12}]",
        "mov r13, [rdx + {r13}]",
        "mov r14, [rdx + {r14}]",
        "mov r15, [rdx + {r15}]",
        "mov rdx, [rdx + {rdx}]",
        "vmrun rax",
        // #VMEXIT: RAX (the VMCB address) and RSP are the host's again; the rest are the
        // guest's. Stack: guest RDX, host_state, registers.
        "push rdx",
        "mov rdx, [rsp + 16]",
        "mov [rdx + {rbx}], rbx",
        "mov [rdx + {rcx}], rcx",
        "mov [rdx + {rsi}], rsi",
        "mov [rdx + {rdi}], rdi",
        "mov [rdx + {rbp}], rbp",
        "mov [rdx + {r8}], r8",
        "mov [rdx + {r9}], r9",
        "mov [rdx + {r10}], r10",
        "mov [rdx + {r11}], r11",
        "mov [rdx + {r12}], r12",
        "mov [rdx + {r13}], r13",
        "mov [rdx + {r14}], r14",
        "mov [rdx + {r15}], r15",
        "pop qword ptr [rdx + {rdx}]",
        "vmsave rax",
        "pop rax", // host_state
        "vmload rax",
        // No STGI: GIF stays clear in the hypervisor (see the module's description).
        "add rsp, 8", // registers
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbp",
        "pop rbx",
        // The guest's caller-saved registers are stored: clear them, so that nothing of a
        // PAL's stays in the processor's registers (an SMI let in afterwards would save them
        // into SMRAM). RAX holds host_state, RDX the registers' address: neither the guest's.
        "xor ecx, ecx",
        "xor esi, esi",
        "xor edi, edi",
        "xor r8d, r8d",
        "xor r9d, r9d",
        "xor r10d, r10d",
        "xor r11d, r11d",
        "ret",
        rbx = const offset_of!(GuestRegisters, rbx),
        rcx = const offset_of!(GuestRegisters, rcx),
        rdx = const offset_of!(GuestRegisters, rdx),
        rsi = const offset_of!(GuestRegisters, rsi),
        rdi = const offset_of!(GuestRegisters, rdi),
        rbp = const offset_of!(GuestRegisters, rbp),
        r8 = const offset_of!(GuestRegisters, r8),
        r9 = const offset_of!(GuestRegisters, r9),
        r10 = const offset_of!(GuestRegisters, r10),
        r11 = const offset_of!(GuestRegisters, r11),
        r12 = const offset_of!(GuestRegisters, r12),
        r13 = const offset_of!(GuestRegisters, r13),
        r14 = const offset_of!(GuestRegisters, r14),
        r15 = const offset_of!(GuestRegisters, r15),
    )
}
