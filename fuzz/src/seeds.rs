//! Valid inputs for the targets whose formats a fuzzer would take long to find from nothing
//! (an ELF image, a bzImage, a hypercall with pointers inside the caller's memory, a state
//! update with its digest). The
//! `make_seeds` binary checks that the hypervisor accepts them ([`check`]) and writes them
//! into each target's corpus before a run; they are built here, so nothing binary sits in
//! the repository.

use crate::number_bytes;
use vpr_hypervisor::memory::Range;
use vpr_hypervisor::vm::GuestRegisters;
use vpr_hypervisor::{elf, linux, pal as hv_pal};
use vpr_proto::hypercall::pal::{self, Service};
use vpr_proto::hypercall::Call;
use vpr_proto::{PageWrite, StateUpdate};

/// Whether the hypervisor accepts what the seeds are meant to carry: each PAL image, each
/// kernel with its memory map, each guest call. A seed it refused would start a target on
/// its first checks only.
pub fn check() -> Result<(), String> {
    for (i, update) in state_updates().iter().enumerate() {
        StateUpdate::decode_with_digest(update).map_err(|e| format!("state update {i}: {e}"))?;
    }
    for (i, image) in pal_images().iter().enumerate() {
        elf::parse(image, &hv_pal::IMAGE_LIMITS).map_err(|e| format!("PAL image {i}: {e}"))?;
    }
    for (i, (initrd, cmdline, kernel)) in kernels().iter().enumerate() {
        let image = linux::BzImage::parse(kernel).map_err(|e| format!("kernel {i}: {e}"))?;
        let ram: Vec<Range> = RAM.iter().map(|&(start, len)| Range::sized(start, len)).collect();
        let reserved: Vec<Range> =
            RESERVED.iter().map(|&(start, len)| Range::sized(start, len)).collect();
        linux::place(&image, *initrd, *cmdline, &ram, &reserved)
            .map_err(|e| format!("kernel {i}: {e}"))?;
    }
    let ram = [Range::sized(GUEST_RAM.0, GUEST_RAM.1)];
    for (number, [rbx, rcx, rdx, rsi, rdi, r8]) in calls() {
        if Call::from_u64(number).is_some() {
            let r =
                GuestRegisters { rax: number, rbx, rcx, rdx, rsi, rdi, r8, ..Default::default() };
            hv_pal::Request::decode(&r, &ram).map_err(|e| format!("call {number:#x}: {e}"))?;
        }
    }
    Ok(())
}

/// Each target's seeds: its name and its inputs.
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("pal_image", pal_images()),
        ("elf_loader", elf_loader()),
        ("linux_boot", linux_boot()),
        ("hypercall_args", hypercall_args()),
        ("decode_state_update", state_updates()),
    ]
}

/// State updates: one full page and a partial last one; no page. An update carries the
/// digest of its header and pages, which random bytes never match.
fn state_updates() -> Vec<Vec<u8>> {
    let pages = vec![
        PageWrite { index: 0, data: vec![0x11; 512] },
        PageWrite { index: 2, data: vec![0x22; 100] },
    ];
    let written = StateUpdate { page_size: 512, file_size: 1124, pages };
    let none = StateUpdate { page_size: 4096, file_size: 0, pages: Vec::new() };
    vec![written.encode(), none.encode()]
}

/// `p_type` of a loadable segment and of the GNU stack note.
const PT_LOAD: u32 = 1;
const PT_GNU_STACK: u32 = 0x6474_E551;
/// `p_flags`: execute, write, read.
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// One program header: type, flags, offset, address, bytes in the file, bytes in memory.
type Phdr = (u32, u32, u64, u64, u64, u64);

/// An x86-64 `ET_EXEC` image: the 64-byte header, the program headers right after it, then
/// `body`. Segment offsets count from the start of the file.
pub fn elf(entry: u64, phdrs: &[Phdr], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&[0x7F, b'E', b'L', b'F', 2, 1, 1]);
    out.resize(16, 0);
    out.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    out.extend_from_slice(&62u16.to_le_bytes()); // e_machine: x86-64
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&entry.to_le_bytes());
    out.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    let phnum = u16::try_from(phdrs.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&phnum.to_le_bytes());
    out.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    for &(p_type, flags, offset, vaddr, filesz, memsz) in phdrs {
        out.extend_from_slice(&p_type.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        for field in [offset, vaddr, vaddr, filesz, memsz, 0x1000] {
            out.extend_from_slice(&field.to_le_bytes());
        }
    }
    out.extend_from_slice(body);
    out
}

/// PAL images inside the PAL window: code and data (with `.bss`) on their own pages; one
/// segment starting mid-page with the entry inside it; code, read-only data sharing no page.
pub fn pal_images() -> Vec<Vec<u8>> {
    let base = pal::IMAGE_BASE;
    // mov eax, DONE; xor ebx, ebx; vmmcall; then data bytes.
    let code: Vec<u8> =
        [0xB8, 0x00, 0x01, 0x70, 0x76, 0x31, 0xDB, 0x0F, 0x01, 0xD9].into_iter().collect();
    let body_at = 64 + 56 * 3;
    let mut body = code.clone();
    body.extend_from_slice(b"vpr data");
    let two = elf(
        base,
        &[
            (PT_LOAD, PF_R | PF_X, body_at, base, 10, 10),
            (PT_LOAD, PF_R | PF_W, body_at + 10, base + 0x1000, 8, 0x2000),
            (PT_GNU_STACK, PF_R | PF_W, 0, 0, 0, 0),
        ],
        &body,
    );
    let one_at = 64 + 56;
    let one =
        elf(base + 0x123 + 4, &[(PT_LOAD, PF_R | PF_X, one_at, base + 0x123, 10, 0x40)], &code);
    let three_at = 64 + 56 * 3;
    let three = elf(
        base + 0x2000,
        &[
            (PT_LOAD, PF_R, three_at + 10, base + 0x1FF8, 8, 8),
            (PT_LOAD, PF_R | PF_X, three_at, base + 0x2000, 10, 0x1000),
            (PT_LOAD, PF_R | PF_W, 0, base + 0x10_0000, 0, 0x10_0000),
        ],
        &body,
    );
    vec![two, one, three]
}

/// The `elf_loader` target's input: the limits, then the image.
fn elf_loader() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for image in pal_images() {
        // The PAL limits.
        let mut seed = vec![0];
        seed.extend_from_slice(&image);
        seeds.push(seed);
        // A window of its own: [IMAGE_BASE, IMAGE_BASE + 1 MiB + 4 KiB), 300 pages.
        let mut seed = vec![1];
        seed.extend_from_slice(&number_bytes(pal::IMAGE_BASE));
        seed.extend_from_slice(&number_bytes(pal::IMAGE_BASE + 0x10_1000));
        seed.extend_from_slice(&300u16.to_le_bytes());
        seed.extend_from_slice(&image);
        seeds.push(seed);
    }
    seeds
}

/// A bzImage of `setup_sects` setup sectors and `pm_len` bytes of protected-mode code, boot
/// protocol 2.15, relocatable, loaded high, preferring 16 MiB at 2 MiB alignment.
pub fn bzimage(setup_sects: u8, pm_len: usize) -> Vec<u8> {
    // boot.rst: a `setup_sects` of 0 means 4.
    let sectors = if setup_sects == 0 { 4 } else { usize::from(setup_sects) };
    let pm_offset = (sectors + 1) * 512;
    let mut f: Vec<u8> = (0..pm_offset + pm_len).map(|i| (i % 249) as u8 | 1).collect();
    let mut set = |at: usize, bytes: &[u8]| f[at..at + bytes.len()].copy_from_slice(bytes);
    set(0x1F1, &[setup_sects]);
    set(0x1F4, &u32::try_from(pm_len / 16).unwrap_or(0).to_le_bytes()); // syssize
    set(0x1FE, &0xAA55u16.to_le_bytes());
    set(0x200, &[0xEB, 0x6A]); // the jump: the header ends at 0x26C
    set(0x202, b"HdrS");
    set(0x206, &0x020Fu16.to_le_bytes());
    set(0x210, &[0, 0x01]); // type_of_loader, loadflags: LOADED_HIGH
    set(0x22C, &0x7FFF_FFFFu32.to_le_bytes()); // initrd_addr_max
    set(0x230, &0x20_0000u32.to_le_bytes()); // kernel_alignment
    set(0x234, &[1]); // relocatable_kernel
    set(0x238, &0x7FFu32.to_le_bytes()); // cmdline_size
    set(0x258, &(16u64 << 20).to_le_bytes()); // pref_address
    set(0x260, &0x0100_0000u32.to_le_bytes()); // init_size
    f
}

/// A guest's RAM for the kernels: conventional memory and 511 MiB above 1 MiB.
const RAM: &[(u64, u64)] = &[(0, 0x9_F000), (1 << 20, 511 << 20)];
/// What the hypervisor keeps of it: 8 MiB from 2 MiB.
const RESERVED: &[(u64, u64)] = &[(2 << 20, 8 << 20)];

/// Kernels with an initrd and command line length each.
fn kernels() -> Vec<(u64, u64, Vec<u8>)> {
    vec![
        (0x20_0000, 40, bzimage(1, 512)),
        (0, 0, bzimage(0, 0x600)),
        (0x1234, 2047, bzimage(3, 16)),
    ]
}

/// The `linux_boot` target's input: the initrd and command line lengths, the guest's RAM
/// and what the hypervisor keeps of it, an optional placement of the input's own, then the
/// kernel file.
fn linux_boot() -> Vec<Vec<u8>> {
    let mib = 1u64 << 20;
    let ranges = |seed: &mut Vec<u8>, ranges: &[(u64, u64)]| {
        seed.push(u8::try_from(ranges.len()).unwrap_or(0));
        for &(start, len) in ranges {
            seed.extend_from_slice(&number_bytes(start));
            seed.extend_from_slice(&number_bytes(len));
        }
    };
    let mut seeds = Vec::new();
    for (initrd, cmdline, kernel) in kernels() {
        let mut seed = Vec::new();
        seed.extend_from_slice(&number_bytes(initrd));
        seed.extend_from_slice(&number_bytes(cmdline));
        ranges(&mut seed, RAM);
        ranges(&mut seed, RESERVED);
        seed.push(0); // the placement `place` chooses
        seed.extend_from_slice(&kernel);
        seeds.push(seed);
    }
    // A placement of the input's own for `boot_params`.
    let mut seed = Vec::new();
    seed.extend_from_slice(&number_bytes(0x1000));
    seed.extend_from_slice(&number_bytes(10));
    ranges(&mut seed, &[(0, 0x9_F000), (mib, 255 * mib)]);
    ranges(&mut seed, &[]);
    seed.push(1);
    for at in [16 * mib, 0x0FF0_0000, 0x1_0000, 0x1_1000, 0x1_2000] {
        seed.extend_from_slice(&number_bytes(at));
    }
    seed.extend_from_slice(&bzimage(1, 256));
    seeds.push(seed);
    seeds
}

/// The `hypercall_args` target's input: the call (an index into its list of numbers), six
/// argument registers, the guest's RAM, a PAL's segments, then registry operations.
fn hypercall_args() -> Vec<Vec<u8>> {
    let guest = Call::ALL.iter().map(|&c| c as u64);
    let all: Vec<u64> =
        guest.chain(Service::ALL.iter().map(|&s| s as u64)).chain([pal::DONE]).collect();
    let index = |number: u64| {
        u8::try_from(all.iter().position(|&n| n == number).unwrap_or(0xFF)).unwrap_or(0xFF)
    };
    calls()
        .into_iter()
        .map(|(number, args)| {
            let mut seed = vec![index(number)];
            for arg in args {
                seed.extend_from_slice(&number_bytes(arg));
            }
            seed.push(1);
            seed.extend_from_slice(&number_bytes(GUEST_RAM.0));
            seed.extend_from_slice(&number_bytes(GUEST_RAM.1));
            // One writable segment of 2 pages in the PAL window.
            seed.push(1);
            seed.extend_from_slice(&number_bytes(0x10_0000));
            seed.extend_from_slice(&number_bytes(0x2000));
            seed.push(1);
            // Registry: insert, insert, remove the first, look up the second, insert.
            seed.extend_from_slice(&[0, 0, 1]);
            seed.extend_from_slice(&number_bytes(0x101));
            seed.push(2);
            seed.extend_from_slice(&number_bytes(0x102));
            seed.push(0);
            seed
        })
        .collect()
}

/// The guest's RAM for the calls: `[0x1000, 1 MiB)`.
const GUEST_RAM: (u64, u64) = (0x1000, 0xF_F000);

/// Calls with their six argument registers (RBX, RCX, RDX, RSI, RDI, R8): the guest's, with
/// pointers in [`GUEST_RAM`], and a PAL's, with pointers in its stack and output.
fn calls() -> Vec<(u64, [u64; 6])> {
    let stack = pal::STACK_BASE;
    vec![
        (Call::Version as u64, [0; 6]),
        (Call::Register as u64, [0x2000, 0x1000, 0x8000, 0, 0, 0]),
        (Call::Execute as u64, [0x101, 0x2000, 0x100, 0x3000, 0x100, 0x4000]),
        (Call::Unregister as u64, [0x101, 0, 0, 0, 0, 0]),
        (Call::Evidence as u64, [0x2000, 0x3000, 0x400, 0x4000, 0, 0]),
        (Call::Activate as u64, [0x2000, 0x80, 0x3000, 0x4000, 0, 0]),
        (Call::Certify as u64, [0x2000, 0, 0, 0, 0, 0]),
        (Service::Random as u64, [stack, 32, 0, 0, 0, 0]),
        (Service::Attest as u64, [stack, stack + 0x100, 0, 0, 0, 0]),
        (Service::Seal as u64, [stack, 64, stack + 0x1000, 0x1000, 0, 0]),
        (Service::Quote as u64, [pal::OUTPUT_BASE, 3, pal::OUTPUT_BASE + 64, 512, 0, 0]),
        (pal::DONE, [16, 0, 0, 0, 0, 0]),
    ]
}
