//! From the multiboot loader to Rust: the multiboot 1 header, then 32-bit protected mode to
//! 64-bit long mode.
//!
//! QEMU's `-kernel` loads an ELF64 only through the header's "a.out kludge" (flags bit 16):
//! the header gives the load, load-end, bss-end and entry addresses, and QEMU copies the file
//! from the header's position accordingly. `linker.ld` keeps the image one contiguous segment
//! at 1 MiB so that file and memory layout agree.
//!
//! The entry (Multiboot Specification §3.2: EAX = magic, EBX = information structure, 32-bit
//! protected mode, paging off, no stack) zeroes `.bss`, copies the loaded `.data` aside for
//! the measurement, identity-maps the first 4 GiB with
//! 2 MiB pages (so MMIO such as the TPM at 0xFED4_0000 is reachable too), enables PAE,
//! EFER.LME and EFER.NXE, turns paging on and far-jumps to 64-bit code, which calls
//! `hv_main(magic, info)` on a 128 KiB stack (APM Vol. 2 §14.6, "Enabling and Activating
//! Long Mode").

core::arch::global_asm!(
    r#"
    .set MB_MAGIC, 0x1BADB002
    /* bit 0: modules page-aligned; bit 1: memory information; bit 16: address fields valid */
    .set MB_FLAGS, 0x00010003
    .set STACK_BYTES, 0x20000
    .set DATA_COPY_BYTES, 0x4000

    .section .multiboot, "a"
    .balign 4
multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long multiboot_header  /* header_addr */
    .long __image_start     /* load_addr */
    .long __load_end        /* load_end_addr */
    .long __bss_end         /* bss_end_addr */
    .long hv_start32        /* entry_addr */

    .section .text.boot, "ax"
    .code32
    .global hv_start32
hv_start32:
    cli
    cld
    mov %eax, %ebp              /* the loader's magic; EBX keeps the info pointer */

    /* Zero .bss: the page tables, the stack and Rust's statics. */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    /* Copy .data as the loader wrote it, before any code writes it, for the measurement
       (`mem::image_loaded`): its pointers (GOT slots, vtables) steer the code as much as the
       code does. linker.ld checks that it fits. */
    mov $__data_start, %esi
    mov $boot_data_copy, %edi
    mov $__load_end, %ecx
    sub %esi, %ecx
    rep movsb

    /* PML4[0] -> PDPT; PDPT[0..4] -> the four PDs; each PD: 512 2 MiB pages. */
    mov $(boot_pdpt + 0x3), %eax
    mov %eax, boot_pml4
    mov $boot_pdpt, %edi
    mov $(boot_pd + 0x3), %eax
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $0x1000, %eax
    add $8, %edi
    loop 1b
    mov $boot_pd, %edi
    mov $0x83, %eax             /* present, writable, 2 MiB */
    mov $2048, %ecx
2:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 2b

    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax              /* CR4.PAE */
    mov %eax, %cr4
    mov $0xC0000080, %ecx       /* EFER */
    rdmsr
    or $0x900, %eax             /* LME | NXE */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax        /* PG | WP | PE */
    mov %eax, %cr0

    lgdt boot_gdt_pointer
    ljmp $0x08, $hv_start64

    .code64
hv_start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    mov %ebp, %edi              /* hv_main(magic, info) */
    mov %ebx, %esi
    xor %ebp, %ebp
    call hv_main
3:  cli
    hlt
    jmp 3b

    .section .rodata.boot, "a"
    .balign 16
    /* The descriptors have their Accessed bit (type bit 0) set already: loading a segment
       register whose descriptor lacks it makes the processor write it into the GDT (APM
       Vol. 2 §4.7.1), which would change read-only data after the image measured itself. */
boot_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF    /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00CF93000000FFFF    /* 0x10: data */
boot_gdt_end:
    .balign 8
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
boot_stack:
    .skip STACK_BYTES
boot_stack_top:
    .global boot_data_copy
boot_data_copy:
    .skip DATA_COPY_BYTES
"#,
    options(att_syntax)
);
