//! The test guests' programs: 64-bit machine code assembled into the image's .rodata, between
//! `guest_<name>_start` and `guest_<name>_end` labels, and copied into a guest's code page.
//! The hypervisor never runs them itself. The `pal_*` programs are the code of test PALs:
//! [`pal_image`] wraps one in the ELF executable a guest registers.

use alloc::vec::Vec;
use vpr_proto::hypercall::pal::{self, Service};
use vpr_proto::hypercall::Call;

/// Where a test PAL's code is (its entry point): right after the ELF headers
/// [`pal_image`] writes, which share its first page.
pub const TEST_PAL_CODE: u64 = pal::IMAGE_BASE + HEADERS_LEN;
/// Where a test PAL's data segment is (zero-filled, [`TEST_PAL_DATA_LEN`] bytes).
pub const TEST_PAL_DATA: u64 = pal::IMAGE_BASE + 0x10_0000;
/// Bytes of a test PAL's data.
pub const TEST_PAL_DATA_LEN: u64 = 0x4000;
/// The ELF header (64 bytes) and two program headers (56 each).
const HEADERS_LEN: u64 = 64 + 2 * 56;

/// The ELF64 executable of a test PAL (ELF-64 Object File Format 1.5: the file header, then
/// the program headers): one read-execute segment from file offset 0 at
/// [`pal::IMAGE_BASE`] holding the headers and `code` (entry [`TEST_PAL_CODE`]), and one
/// read-write segment of [`TEST_PAL_DATA_LEN`] zero bytes at [`TEST_PAL_DATA`].
pub fn pal_image(code: &[u8]) -> Vec<u8> {
    let mut elf = Vec::with_capacity(crate::mem::usize_of(HEADERS_LEN) + code.len());
    elf.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    for half in [2u16, 62] {
        elf.extend_from_slice(&half.to_le_bytes()); // e_type ET_EXEC, e_machine EM_X86_64
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    for word in [TEST_PAL_CODE, 64, 0] {
        elf.extend_from_slice(&word.to_le_bytes()); // e_entry, e_phoff, e_shoff
    }
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, 2, 64, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    let file_len = HEADERS_LEN + code.len() as u64;
    // p_type PT_LOAD, p_flags, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
    let text = (5u32, 0, pal::IMAGE_BASE, file_len, file_len);
    let data = (6u32, 0, TEST_PAL_DATA, 0, TEST_PAL_DATA_LEN);
    for (flags, offset, vaddr, filesz, memsz) in [text, data] {
        elf.extend_from_slice(&1u32.to_le_bytes());
        elf.extend_from_slice(&flags.to_le_bytes());
        for word in [offset, vaddr, vaddr, filesz, memsz, 0x1000] {
            elf.extend_from_slice(&word.to_le_bytes());
        }
    }
    elf.extend_from_slice(code);
    elf
}

/// The register values the `registers` program loads, in the order rbx, rcx, rdx, rsi, rdi,
/// rbp, r8-r15; the hypervisor inverts them and the program checks it sees the inverses.
pub const PATTERNS: [u64; 14] = [
    0x5A5A_0000_0000_0001,
    0x5A5A_0000_0000_0002,
    0x5A5A_0000_0000_0003,
    0x5A5A_0000_0000_0004,
    0x5A5A_0000_0000_0005,
    0x5A5A_0000_0000_0006,
    0x5A5A_0000_0000_0008,
    0x5A5A_0000_0000_0009,
    0x5A5A_0000_0000_000A,
    0x5A5A_0000_0000_000B,
    0x5A5A_0000_0000_000C,
    0x5A5A_0000_0000_000D,
    0x5A5A_0000_0000_000E,
    0x5A5A_0000_0000_000F,
];

/// What the `pal_sum` PAL puts in its registers before it is done.
pub const PAL_SECRET: u64 = 0x5EC2_E75E_C2E7_5EC2;

/// Hypercall numbers (RAX) the test programs use.
pub mod call {
    /// "Here is a value" (in RBX, from `echo`); `spin` calls it in a loop.
    pub const REPORT: u64 = 1;
    /// "Give me a value" (the hypervisor answers in RAX).
    pub const ASK: u64 = 2;
    /// "Check my registers" (`registers`).
    pub const CHECK: u64 = 3;
    /// "All I saw was right."
    pub const PASS: u64 = 4;
    /// "Something I saw was wrong."
    pub const FAIL: u64 = 5;
}

// The programs. Each lies between `guest_<name>_start` and `guest_<name>_end` in .rodata: the
// hypervisor copies them into a guest's code page, it never runs them itself.
core::arch::global_asm!(
    r#"
    .section .rodata.guest_programs, "a"

    /* ping: two hypercalls with values in RAX, then HLT. */
    .global guest_ping_start, guest_ping_end
guest_ping_start:
    mov eax, 42
    vmmcall
    mov eax, 43
    vmmcall
    hlt
guest_ping_end:

    /* echo: ask for a value (the answer comes back in RAX), report it in RBX. */
    .global guest_echo_start, guest_echo_end
guest_echo_start:
    mov eax, {ask}
    vmmcall
    mov rbx, rax
    mov eax, {report}
    vmmcall
    hlt
guest_echo_end:

    /* registers: load patterns, let the hypervisor check and invert them, check that the
       inverses arrived. */
    .global guest_registers_start, guest_registers_end
guest_registers_start:
    movabs rbx, {p0}
    movabs rcx, {p1}
    movabs rdx, {p2}
    movabs rsi, {p3}
    movabs rdi, {p4}
    movabs rbp, {p5}
    movabs r8, {p6}
    movabs r9, {p7}
    movabs r10, {p8}
    movabs r11, {p9}
    movabs r12, {p10}
    movabs r13, {p11}
    movabs r14, {p12}
    movabs r15, {p13}
    mov eax, {check}
    vmmcall
    movabs rax, ~{p0}
    cmp rbx, rax
    jne 1f
    movabs rax, ~{p1}
    cmp rcx, rax
    jne 1f
    movabs rax, ~{p2}
    cmp rdx, rax
    jne 1f
    movabs rax, ~{p3}
    cmp rsi, rax
    jne 1f
    movabs rax, ~{p4}
    cmp rdi, rax
    jne 1f
    movabs rax, ~{p5}
    cmp rbp, rax
    jne 1f
    movabs rax, ~{p6}
    cmp r8, rax
    jne 1f
    movabs rax, ~{p7}
    cmp r9, rax
    jne 1f
    movabs rax, ~{p8}
    cmp r10, rax
    jne 1f
    movabs rax, ~{p9}
    cmp r11, rax
    jne 1f
    movabs rax, ~{p10}
    cmp r12, rax
    jne 1f
    movabs rax, ~{p11}
    cmp r13, rax
    jne 1f
    movabs rax, ~{p12}
    cmp r14, rax
    jne 1f
    movabs rax, ~{p13}
    cmp r15, rax
    jne 1f
    mov eax, {pass}
    vmmcall
    hlt
1:  mov eax, {fail}
    vmmcall
    hlt
guest_registers_end:

    /* spin: hypercalls in a loop, for timing the round trip. */
    .global guest_spin_start, guest_spin_end
guest_spin_start:
2:  mov eax, {report}
    vmmcall
    jmp 2b
guest_spin_end:

    /* poke_host: write to guest-physical 1 MiB, where the hypervisor's own image sits in host
       memory; nothing is mapped there for the guest. */
    .global guest_poke_host_start, guest_poke_host_end
guest_poke_host_start:
    mov rax, 0xbad
    mov qword ptr [0x100000], rax
    hlt
guest_poke_host_end:

    /* cpuid: an exit the dispatcher does not handle, when CPUID is intercepted. */
    .global guest_cpuid_start, guest_cpuid_end
guest_cpuid_start:
    xor eax, eax
    cpuid
    hlt
guest_cpuid_end:

    /* debug_exit: try to end QEMU "successfully" through the isa-debug-exit port. */
    .global guest_debug_exit_start, guest_debug_exit_end
guest_debug_exit_start:
    mov dx, 0xf4
    mov eax, 0x10
    out dx, eax
    hlt
guest_debug_exit_end:

    /* rdmsr: read VM_HSAVE_PA, the host save area's address. */
    .global guest_rdmsr_start, guest_rdmsr_end
guest_rdmsr_start:
    mov ecx, 0xC0010117
    rdmsr
    hlt
guest_rdmsr_end:

    /* script: the untrusted guest of the PAL tests. It makes the hypercalls listed at
       SCRIPT (count at +0, entries from +64, 128 bytes each: RAX, RBX, RCX, RDX, RSI, RDI, R8
       in, a pad, then RAX, RBX, RCX, RDX, RSI, RDI, R8, R9 as they came back) and halts. An
       RBX of -2 stands for the handle the last successful register returned. R9 is zeroed
       before each call: a non-zero R9 afterwards is a register leaked into the guest. */
    .global guest_script_start, guest_script_end
guest_script_start:
    mov r12, {script}
    mov r13, [r12]
    lea r14, [r12 + 64]
    xor r15d, r15d
2:  test r13, r13
    jz 3f
    mov rax, [r14]
    mov rbx, [r14 + 8]
    cmp rbx, -2
    jne 4f
    mov rbx, r15
4:  mov rcx, [r14 + 16]
    mov rdx, [r14 + 24]
    mov rsi, [r14 + 32]
    mov rdi, [r14 + 40]
    mov r8, [r14 + 48]
    xor r9d, r9d
    vmmcall
    mov [r14 + 64], rax
    mov [r14 + 72], rbx
    mov [r14 + 80], rcx
    mov [r14 + 88], rdx
    mov [r14 + 96], rsi
    mov [r14 + 104], rdi
    mov [r14 + 112], r8
    mov [r14 + 120], r9
    test rax, rax
    jnz 5f
    mov rax, {register}
    cmp [r14], rax
    jne 5f
    mov r15, rbx
5:  add r14, 128
    dec r13
    jmp 2b
3:  hlt
guest_script_end:

    /* peek: read the qword at the address stored at the first data page. */
    .global guest_peek_start, guest_peek_end
guest_peek_start:
    mov rax, [{script}]
    mov rax, [rax]
    hlt
guest_peek_end:

    /* triple_fault: #UD with no IDT: #UD -> #GP -> #DF -> shutdown. */
    .global guest_triple_fault_start, guest_triple_fault_end
guest_triple_fault_start:
    ud2
guest_triple_fault_end:

    /* PAL sum: output = sum of the input bytes (u64), their xor (u64), and its call counter
       (u64, in its data page, incremented per execution). Then it fills every register it
       can with a secret before saying it is done: none of it may reach the guest. */
    .global pal_sum_start, pal_sum_end
pal_sum_start:
    xor eax, eax
    xor r8d, r8d
    xor r9d, r9d
1:  cmp r9, rsi
    jae 2f
    movzx r10d, byte ptr [rdi + r9]
    add rax, r10
    xor r8, r10
    inc r9
    jmp 1b
2:  mov r11, {pal_data}
    inc qword ptr [r11]
    mov r10, [r11]
    push r10
    pop r10
    mov [rdx], rax
    mov [rdx + 8], r8
    mov [rdx + 16], r10
    movabs rax, {secret}
    mov rcx, rax
    mov rdx, rax
    mov rsi, rax
    mov rdi, rax
    mov rbp, rax
    mov r8, rax
    mov r9, rax
    mov r10, rax
    mov r11, rax
    mov r12, rax
    mov r13, rax
    mov r14, rax
    mov r15, rax
    mov ebx, 24
    mov eax, {pal_done}
    vmmcall
    ud2
pal_sum_end:

    /* PAL hostile: the first input byte picks the attack. 0: write outside its memory (just
       above its stack, where nothing is mapped); 1: write its own code; 2: execute its data;
       3: claim an output far larger than the buffer; 4: halt; 5: end QEMU "successfully"
       through the isa-debug-exit port. */
    .global pal_hostile_start, pal_hostile_end
pal_hostile_start:
    movzx eax, byte ptr [rdi]
    cmp eax, 1
    je 1f
    cmp eax, 2
    je 2f
    cmp eax, 3
    je 3f
    cmp eax, 4
    je 5f
    cmp eax, 5
    je 6f
    mov qword ptr [{unmapped}], rax
    jmp 4f
1:  mov r11, {pal_code}
    mov qword ptr [r11], rax
    jmp 4f
2:  mov r11, {pal_data}
    jmp r11
3:  mov rbx, -1
    mov eax, {pal_done}
    vmmcall
5:  hlt
6:  mov dx, 0xf4
    mov eax, 0x10
    out dx, eax
4:  xor ebx, ebx
    mov eax, {pal_done}
    vmmcall
pal_hostile_end:

    /* PAL reenter: calls execute, register and an unknown number from inside the PAL and
       outputs the three statuses it got. */
    .global pal_reenter_start, pal_reenter_end
pal_reenter_start:
    mov r12, rdx
    mov eax, {execute}
    mov ebx, 0x101
    vmmcall
    mov [r12], rax
    mov eax, {register}
    vmmcall
    mov [r12 + 8], rax
    mov eax, 0x1234
    vmmcall
    mov [r12 + 16], rax
    mov ebx, 24
    mov eax, {pal_done}
    vmmcall
pal_reenter_end:
    /* vector: loads XMM0-15 and MXCSR from its data page, makes the hypercall whose RAX..R8
       follow, and stores what the registers hold afterwards (see `selftest/pal.rs`). */
    .global guest_vector_start, guest_vector_end
guest_vector_start:
    mov r12, {script}
    ldmxcsr [r12 + 320]
    movdqu xmm0, [r12 + 0]
    movdqu xmm1, [r12 + 16]
    movdqu xmm2, [r12 + 32]
    movdqu xmm3, [r12 + 48]
    movdqu xmm4, [r12 + 64]
    movdqu xmm5, [r12 + 80]
    movdqu xmm6, [r12 + 96]
    movdqu xmm7, [r12 + 112]
    movdqu xmm8, [r12 + 128]
    movdqu xmm9, [r12 + 144]
    movdqu xmm10, [r12 + 160]
    movdqu xmm11, [r12 + 176]
    movdqu xmm12, [r12 + 192]
    movdqu xmm13, [r12 + 208]
    movdqu xmm14, [r12 + 224]
    movdqu xmm15, [r12 + 240]
    mov rax, [r12 + 256]
    mov rbx, [r12 + 264]
    mov rcx, [r12 + 272]
    mov rdx, [r12 + 280]
    mov rsi, [r12 + 288]
    mov rdi, [r12 + 296]
    mov r8, [r12 + 304]
    vmmcall
    mov [r12 + 768], rax
    stmxcsr [r12 + 776]
    movdqu [r12 + 512], xmm0
    movdqu [r12 + 528], xmm1
    movdqu [r12 + 544], xmm2
    movdqu [r12 + 560], xmm3
    movdqu [r12 + 576], xmm4
    movdqu [r12 + 592], xmm5
    movdqu [r12 + 608], xmm6
    movdqu [r12 + 624], xmm7
    movdqu [r12 + 640], xmm8
    movdqu [r12 + 656], xmm9
    movdqu [r12 + 672], xmm10
    movdqu [r12 + 688], xmm11
    movdqu [r12 + 704], xmm12
    movdqu [r12 + 720], xmm13
    movdqu [r12 + 736], xmm14
    movdqu [r12 + 752], xmm15
    hlt
guest_vector_end:

    /* PAL vector: outputs the XMM registers, MXCSR and the x87 control and status words it
       starts with (264 bytes), then fills XMM0-15 with the secret, changes MXCSR and pushes
       onto the x87 stack before it is done: none of it may reach the guest. */
    .global pal_vector_start, pal_vector_end
pal_vector_start:
    movdqu [rdx + 0], xmm0
    movdqu [rdx + 16], xmm1
    movdqu [rdx + 32], xmm2
    movdqu [rdx + 48], xmm3
    movdqu [rdx + 64], xmm4
    movdqu [rdx + 80], xmm5
    movdqu [rdx + 96], xmm6
    movdqu [rdx + 112], xmm7
    movdqu [rdx + 128], xmm8
    movdqu [rdx + 144], xmm9
    movdqu [rdx + 160], xmm10
    movdqu [rdx + 176], xmm11
    movdqu [rdx + 192], xmm12
    movdqu [rdx + 208], xmm13
    movdqu [rdx + 224], xmm14
    movdqu [rdx + 240], xmm15
    stmxcsr [rdx + 256]
    fnstcw [rdx + 260]
    fnstsw [rdx + 262]
    movabs rax, {secret}
    movq xmm0, rax
    punpcklqdq xmm0, xmm0
    movdqa xmm1, xmm0
    movdqa xmm2, xmm0
    movdqa xmm3, xmm0
    movdqa xmm4, xmm0
    movdqa xmm5, xmm0
    movdqa xmm6, xmm0
    movdqa xmm7, xmm0
    movdqa xmm8, xmm0
    movdqa xmm9, xmm0
    movdqa xmm10, xmm0
    movdqa xmm11, xmm0
    movdqa xmm12, xmm0
    movdqa xmm13, xmm0
    movdqa xmm14, xmm0
    movdqa xmm15, xmm0
    mov dword ptr [rsp - 8], 0x7F80
    ldmxcsr [rsp - 8]
    fldpi
    mov ebx, 264
    mov eax, {pal_done}
    vmmcall
    ud2
pal_vector_end:

    /* PAL services: calls each service (and some wrongly), output: 32 random bytes, its
       identity (32 bytes), then RAX and RBX after each of the 10 calls (16 bytes each). The
       counter calls name their counter by the first 32 bytes of the input page. */
    .global pal_services_start, pal_services_end
pal_services_start:
    mov r12, rdx
    mov eax, {svc_random}
    mov rbx, {out}
    mov rcx, 32
    vmmcall
    mov [r12 + 64], rax
    mov [r12 + 72], rbx
    mov eax, {svc_identity}
    mov rbx, {out} + 32
    mov rcx, 0
    vmmcall
    mov [r12 + 80], rax
    mov [r12 + 88], rbx
    mov eax, {svc_increment}
    mov rbx, {input}
    mov rcx, 0
    vmmcall
    mov [r12 + 96], rax
    mov [r12 + 104], rbx
    mov eax, {svc_increment}
    mov rbx, {input}
    mov rcx, 0
    vmmcall
    mov [r12 + 112], rax
    mov [r12 + 120], rbx
    mov eax, {svc_read}
    mov rbx, {input}
    mov rcx, 0
    vmmcall
    mov [r12 + 128], rax
    mov [r12 + 136], rbx
    mov eax, {svc_read}
    mov rbx, {pal_code}
    mov rcx, 0
    vmmcall
    mov [r12 + 144], rax
    mov [r12 + 152], rbx
    mov eax, {svc_random}
    mov rbx, {pal_code}
    mov rcx, 8
    vmmcall
    mov [r12 + 160], rax
    mov [r12 + 168], rbx
    mov eax, {svc_random}
    mov rbx, {out}
    mov rcx, {max_random} + 1
    vmmcall
    mov [r12 + 176], rax
    mov [r12 + 184], rbx
    mov eax, {svc_identity}
    mov rbx, 0
    mov rcx, 0
    vmmcall
    mov [r12 + 192], rax
    mov [r12 + 200], rbx
    mov eax, {svc_random}
    mov rbx, {pal_data}
    mov rcx, 16
    vmmcall
    mov [r12 + 208], rax
    mov [r12 + 216], rbx
    mov ebx, 224
    mov eax, {pal_done}
    vmmcall
    ud2
pal_services_end:
    /* PAL sealer: the first input byte picks the service. 0: seal the rest of the input, 1:
       unseal it (both into 1,024 bytes of output after a 16-byte header), 2: attest the 32
       bytes after it. Output: RAX (the status), RBX (a length), then the bytes; 1,040 in all. */
    .global pal_sealer_start, pal_sealer_end
pal_sealer_start:
    mov r12, rdx
    mov r13, rsi
    movzx eax, byte ptr [rdi]
    cmp eax, 2
    je 2f
    cmp eax, 1
    je 1f
    mov eax, {svc_seal}
    jmp 3f
1:  mov eax, {svc_unseal}
3:  lea rbx, [rdi + 1]
    lea rcx, [r13 - 1]
    lea rdx, [r12 + 16]
    mov esi, 1024
    vmmcall
    mov [r12], rax
    mov [r12 + 8], rbx
    jmp 4f
2:  mov eax, {svc_attest}
    lea rbx, [rdi + 1]
    lea rcx, [r12 + 16]
    vmmcall
    mov [r12], rax
    mov qword ptr [r12 + 8], {attestation_len}
4:  mov ebx, 1040
    mov eax, {pal_done}
    vmmcall
    ud2
pal_sealer_end:
    /* PAL service abuse: calls Seal, Unseal and Attest wrongly (see `selftest/pal.rs`) and
       outputs RAX after each, at 64 + 16 i. */
    .global pal_abuse_start, pal_abuse_end
pal_abuse_start:
    mov r12, rdx
    mov eax, {svc_seal}
    mov rbx, {pal_code}
    mov rcx, 8
    mov rdx, {out} + 512
    mov rsi, 64
    vmmcall
    mov [r12 + 64], rax
    mov eax, {svc_seal}
    mov rbx, {out}
    mov rcx, {max_seal} + 1
    mov rdx, {out} + 512
    mov rsi, 64
    vmmcall
    mov [r12 + 80], rax
    mov eax, {svc_seal}
    mov rbx, {out}
    mov rcx, 16
    mov rdx, {out} + 512
    mov rsi, 8
    vmmcall
    mov [r12 + 96], rax
    mov eax, {svc_unseal}
    mov rbx, {out}
    mov rcx, 16
    mov rdx, {out} + 512
    mov rsi, 64
    vmmcall
    mov [r12 + 112], rax
    mov eax, {svc_attest}
    mov rbx, 0
    mov rcx, 0
    mov rdx, 0
    mov rsi, 0
    vmmcall
    mov [r12 + 128], rax
    mov eax, {svc_attest}
    mov rbx, {out}
    mov rcx, {out_page_end}
    mov rdx, 0
    mov rsi, 0
    vmmcall
    mov [r12 + 144], rax
    mov eax, {svc_attest}
    mov rbx, {out}
    mov rcx, {pal_code}
    mov rdx, 0
    mov rsi, 0
    vmmcall
    mov [r12 + 160], rax
    mov eax, {svc_seal}
    mov rbx, {out}
    mov rcx, 16
    mov rdx, -16
    mov rsi, 64
    vmmcall
    mov [r12 + 176], rax
    mov ebx, 192
    mov eax, {pal_done}
    vmmcall
    ud2
pal_abuse_end:
    /* PAL counter: the first input byte picks the call: 0 reads the counter named by the
       32 input bytes after it, 1 increments it. Output: RAX and RBX after the call (16
       bytes). */
    .global pal_counter_start, pal_counter_end
pal_counter_start:
    mov r12, rdx
    movzx eax, byte ptr [rdi]
    test eax, eax
    jnz 1f
    mov eax, {svc_read}
    jmp 2f
1:  mov eax, {svc_increment}
2:  lea rbx, [rdi + 1]
    vmmcall
    mov [r12], rax
    mov [r12 + 8], rbx
    mov ebx, 16
    mov eax, {pal_done}
    vmmcall
    ud2
pal_counter_end:
    /* PAL uPCRs: reads uPCR 0, extends uPCR 1 with the 32 input bytes, reads uPCR 1, then
       reads uPCR 8 (there is none) and extends uPCR 1 from its own code (not writable).
       Output: uPCR 0 (32 bytes), uPCR 1 (32), then RAX after each of the 5 calls. */
    .global pal_upcr_start, pal_upcr_end
pal_upcr_start:
    mov r12, rdx
    mov eax, {svc_pcr_read}
    xor ebx, ebx
    mov rcx, r12
    vmmcall
    mov [r12 + 64], rax
    mov eax, {svc_pcr_extend}
    mov ebx, 1
    mov rcx, rdi
    vmmcall
    mov [r12 + 72], rax
    mov eax, {svc_pcr_read}
    mov ebx, 1
    lea rcx, [r12 + 32]
    vmmcall
    mov [r12 + 80], rax
    mov eax, {svc_pcr_read}
    mov ebx, 8
    lea rcx, [r12 + 104]
    vmmcall
    mov [r12 + 88], rax
    mov eax, {svc_pcr_extend}
    mov ebx, 1
    mov rcx, {pal_code}
    vmmcall
    mov [r12 + 96], rax
    mov ebx, 104
    mov eax, {pal_done}
    vmmcall
    ud2
pal_upcr_end:
"#,
    script = const super::DATA,
    register = const Call::Register as u64,
    execute = const Call::Execute as u64,
    pal_done = const pal::DONE,
    pal_code = const pal::IMAGE_BASE,
    pal_data = const TEST_PAL_DATA,
    unmapped = const pal::STACK_TOP,
    out = const pal::OUTPUT_BASE,
    input = const pal::INPUT_BASE,
    max_random = const pal::MAX_RANDOM_LEN,
    svc_random = const Service::Random as u64,
    svc_identity = const Service::Identity as u64,
    svc_read = const Service::CounterRead as u64,
    svc_increment = const Service::CounterIncrement as u64,
    svc_attest = const Service::Attest as u64,
    svc_seal = const Service::Seal as u64,
    svc_unseal = const Service::Unseal as u64,
    svc_pcr_read = const Service::PcrRead as u64,
    svc_pcr_extend = const Service::PcrExtend as u64,
    attestation_len = const pal::ATTESTATION_LEN,
    max_seal = const pal::MAX_SEAL_LEN,
    out_page_end = const pal::OUTPUT_BASE + vpr_proto::hypercall::MAX_IO_LEN - 8,
    secret = const PAL_SECRET,
    ask = const call::ASK,
    report = const call::REPORT,
    check = const call::CHECK,
    pass = const call::PASS,
    fail = const call::FAIL,
    p0 = const PATTERNS[0],
    p1 = const PATTERNS[1],
    p2 = const PATTERNS[2],
    p3 = const PATTERNS[3],
    p4 = const PATTERNS[4],
    p5 = const PATTERNS[5],
    p6 = const PATTERNS[6],
    p7 = const PATTERNS[7],
    p8 = const PATTERNS[8],
    p9 = const PATTERNS[9],
    p10 = const PATTERNS[10],
    p11 = const PATTERNS[11],
    p12 = const PATTERNS[12],
    p13 = const PATTERNS[13],
);

/// Declares `fn $name() -> &'static [u8]` returning the bytes between two labels above.
macro_rules! programs {
    ($($name:ident: $start:ident .. $end:ident;)*) => {
        /// The test programs' machine code.
        pub mod program {
            unsafe extern "C" {
                $(static $start: u8; static $end: u8;)*
            }
            $(
                /// The program's bytes.
                pub fn $name() -> &'static [u8] {
                    let start = core::ptr::addr_of!($start);
                    let len = core::ptr::addr_of!($end) as usize - start as usize;
                    // SAFETY: both labels are in the same .rodata section, `start` first, and
                    // the bytes between them are assembled code that nothing writes.
                    unsafe { core::slice::from_raw_parts(start, len) }
                }
            )*
        }
    };
}

programs! {
    ping: guest_ping_start..guest_ping_end;
    echo: guest_echo_start..guest_echo_end;
    registers: guest_registers_start..guest_registers_end;
    spin: guest_spin_start..guest_spin_end;
    poke_host: guest_poke_host_start..guest_poke_host_end;
    cpuid: guest_cpuid_start..guest_cpuid_end;
    debug_exit: guest_debug_exit_start..guest_debug_exit_end;
    rdmsr: guest_rdmsr_start..guest_rdmsr_end;
    triple_fault: guest_triple_fault_start..guest_triple_fault_end;
    script: guest_script_start..guest_script_end;
    peek: guest_peek_start..guest_peek_end;
    pal_sum: pal_sum_start..pal_sum_end;
    pal_hostile: pal_hostile_start..pal_hostile_end;
    pal_reenter: pal_reenter_start..pal_reenter_end;
    vector: guest_vector_start..guest_vector_end;
    pal_vector: pal_vector_start..pal_vector_end;
    pal_services: pal_services_start..pal_services_end;
    pal_sealer: pal_sealer_start..pal_sealer_end;
    pal_abuse: pal_abuse_start..pal_abuse_end;
    pal_counter: pal_counter_start..pal_counter_end;
    pal_upcr: pal_upcr_start..pal_upcr_end;
}
