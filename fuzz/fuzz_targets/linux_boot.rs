//! The Linux boot protocol (`linux.rs`) on arbitrary kernel files and memory maps: the
//! bzImage parser, the E820 map, the placement of the kernel, initrd, zero page, command line
//! and GDT, and the zero page. Nothing may panic, and
//!
//! - an accepted kernel is what its header says (boot flag, "HdrS", protocol 2.12 or later,
//!   loaded high, relocatable, power-of-two alignment, protected-mode code at
//!   `(setup_sects + 1) * 512`, not shorter than `syssize`);
//! - the E820 map is sorted and disjoint, marks every reserved byte reserved and every other
//!   RAM byte usable, and nothing else;
//! - what `place` chooses lies in RAM, outside every reserved range and each other, the
//!   kernel aligned and below 4 GiB, the low structures in conventional memory, the initrd
//!   below its limit; `boot_params` then succeeds;
//! - the zero page holds the header, the loader's fields and the map, and zeros elsewhere.
//!
//! Input: the initrd and command line lengths, the RAM ranges, the reserved ranges, a byte
//! (odd: a placement of the input's own follows, for `boot_params` alone), then the kernel.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpr_hypervisor::linux::{
    self, BzImage, E820Entry, E820Kind, Placement, BOOT_PARAMS_SIZE, E820_MAX_ENTRIES, MIN_VERSION,
};
use vpr_hypervisor::memory::{Range, PAGE_SIZE};
use vpr_proto_fuzz::Input;

const FOUR_GIB: u64 = 1 << 32;
const MIB: u64 = 1 << 20;

fn u16_at(f: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([f[at], f[at + 1]])
}

fn u32_at(f: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(f[at..at + 4].try_into().unwrap())
}

fn u64_at(f: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(f[at..at + 8].try_into().unwrap())
}

/// Up to 255 ranges of `start`, `len` (saturating at the top).
fn ranges(input: &mut Input<'_>) -> Vec<Range> {
    let n = input.byte();
    (0..n).map(|_| Range::sized(input.number(), input.number())).collect()
}

fn check_image(file: &[u8], image: &BzImage<'_>) {
    assert_eq!(u16_at(file, 0x1FE), 0xAA55);
    assert_eq!(&file[0x202..0x206], b"HdrS");
    assert!(image.version() >= MIN_VERSION);
    assert_eq!(image.version(), u16_at(file, 0x206));
    let end = 0x202 + usize::from(file[0x201]);
    assert!(end <= 0x290);
    assert_eq!(image.setup_header(), &file[0x1F1..end]);
    assert_ne!(file[0x211] & 1, 0, "loaded high");
    assert_ne!(file[0x234], 0, "relocatable");
    let sects = match file[0x1F1] {
        0 => 4,
        n => n,
    };
    assert_eq!(image.setup_sects(), sects);
    let code = &file[(usize::from(sects) + 1) * 512..];
    assert!(!code.is_empty());
    assert_eq!(image.protected_mode(), code);
    assert!(code.len() as u64 >= u64::from(u32_at(file, 0x1F4)) * 16, "syssize");
    assert!(image.kernel_alignment().is_power_of_two());
    assert_eq!(image.kernel_alignment(), u32_at(file, 0x230));
    assert_eq!(image.pref_address(), u64_at(file, 0x258));
    assert_eq!(image.init_size(), u32_at(file, 0x260));
    assert_eq!(image.initrd_addr_max(), u32_at(file, 0x22C));
    assert_eq!(image.cmdline_size(), u32_at(file, 0x238));
    assert_eq!(image.kernel_span(), u64::from(image.init_size()).max(code.len() as u64));
}

/// What the map must say of `addr`: reserved wins over RAM.
fn kind_of(ram: &[Range], reserved: &[Range], addr: u64) -> Option<E820Kind> {
    if reserved.iter().any(|r| r.contains(addr)) {
        Some(E820Kind::Reserved)
    } else if ram.iter().any(|r| r.contains(addr)) {
        Some(E820Kind::Ram)
    } else {
        None
    }
}

fn check_e820(ram: &[Range], reserved: &[Range], map: &[E820Entry]) {
    assert!(map.len() <= E820_MAX_ENTRIES);
    for e in map {
        assert!(e.size > 0 && e.addr.checked_add(e.size).is_some(), "{e:x?}");
    }
    for pair in map.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(a.range().end <= b.addr, "sorted and disjoint: {a:x?} {b:x?}");
        assert!(a.range().end < b.addr || a.kind != b.kind, "not merged: {a:x?} {b:x?}");
    }
    // Every edge of every range, and the bytes either side of it.
    let edges = ram.iter().chain(reserved).flat_map(|r| [r.start, r.end]);
    for addr in edges.flat_map(|a| [a.wrapping_sub(1), a, a.wrapping_add(1)]) {
        let listed = map.iter().find(|e| e.range().contains(addr)).map(|e| e.kind);
        assert_eq!(listed, kind_of(ram, reserved, addr), "{addr:#x} in {map:x?}");
    }
}

/// Whether every byte of `range` lies in some range of `ram`.
fn covered(ram: &[Range], range: Range) -> bool {
    let mut at = range.start;
    while at < range.end {
        match ram.iter().filter(|r| r.contains(at)).map(|r| r.end).max() {
            Some(end) => at = end,
            None => return false,
        }
    }
    true
}

fn align_up(value: u64, align: u64) -> u64 {
    value.div_ceil(align) * align
}

fn check_placement(
    image: &BzImage<'_>,
    initrd_len: u64,
    cmdline_len: u64,
    ram: &[Range],
    reserved: &[Range],
    p: &Placement,
) {
    assert!(cmdline_len <= u64::from(image.cmdline_size()));
    let align = u64::from(image.kernel_alignment()).max(2 * MIB);
    assert_eq!(p.kernel % align, 0, "{p:x?}");
    assert!(p.kernel >= image.pref_address(), "{p:x?} below pref_address");
    let kernel = Range::sized(p.kernel, image.kernel_span());
    assert!(kernel.end <= FOUR_GIB && kernel.len() == image.kernel_span());
    let low = Range::new(0x1_0000, 0x9_0000);
    let mut placed = vec![
        kernel,
        Range::sized(p.boot_params, BOOT_PARAMS_SIZE as u64),
        Range::sized(p.cmdline, align_up(cmdline_len + 1, PAGE_SIZE)),
        Range::sized(p.gdt, PAGE_SIZE),
    ];
    for r in &placed[1..] {
        assert!(low.start <= r.start && r.end <= low.end, "{r:x?} outside low memory");
        assert_eq!(r.start % PAGE_SIZE, 0);
    }
    if initrd_len == 0 {
        assert_eq!(p.initrd, 0);
    } else {
        // 0 says there is none (boot.rst: `ramdisk_image`).
        assert_ne!(p.initrd, 0, "an initrd at 0 is no initrd");
        let initrd = Range::sized(p.initrd, align_up(initrd_len, PAGE_SIZE));
        let limit = (u64::from(image.initrd_addr_max()) + 1).min(FOUR_GIB);
        assert!(initrd.end <= limit, "initrd {initrd:x?} past {limit:#x}");
        assert_eq!(p.initrd % PAGE_SIZE, 0);
        placed.push(initrd);
    }
    for (i, r) in placed.iter().enumerate() {
        assert!(covered(ram, *r), "{r:x?} not in RAM {ram:x?}");
        for hole in reserved {
            assert!(r.intersect(*hole).is_empty(), "{r:x?} in reserved {hole:x?}");
        }
        for other in &placed[i + 1..] {
            assert!(r.intersect(*other).is_empty(), "{r:x?} overlaps {other:x?}");
        }
    }
}

fn check_zero_page(
    image: &BzImage<'_>,
    p: &Placement,
    initrd_len: u64,
    cmdline_len: u64,
    map: &[E820Entry],
    page: &[u8; BOOT_PARAMS_SIZE],
) {
    let header = image.setup_header();
    let end = 0x1F1 + header.len();
    assert!(p.kernel + image.kernel_span() <= FOUR_GIB);
    assert!(p.cmdline + cmdline_len < FOUR_GIB);
    assert_eq!(u32_at(page, 0x214), u32::try_from(p.kernel).unwrap());
    assert_eq!(u32_at(page, 0x228), u32::try_from(p.cmdline).unwrap());
    let ramdisk = if initrd_len == 0 { (0, 0) } else { (p.initrd, initrd_len) };
    assert_eq!((u64::from(u32_at(page, 0x218)), u64::from(u32_at(page, 0x21C))), ramdisk);
    if initrd_len > 0 {
        let limit = (u64::from(image.initrd_addr_max()) + 1).min(FOUR_GIB);
        assert!(p.initrd + initrd_len <= limit);
    }
    assert_eq!(page[0x210], 0xFF);
    assert_eq!(page[0x211], header[0x211 - 0x1F1] | 0x80);
    assert_eq!(u16_at(page, 0x224), 0xFE00);
    let written = [0x210..0x212, 0x214..0x220, 0x224..0x226, 0x228..0x22C];
    for at in 0x1F1..end {
        if !written.iter().any(|w| w.contains(&at)) {
            assert_eq!(page[at], header[at - 0x1F1], "header byte {at:#x}");
        }
    }
    assert_eq!(usize::from(page[0x1E8]), map.len());
    let table = 0x2D0..0x2D0 + 20 * map.len();
    for (e, raw) in map.iter().zip(page[table.clone()].chunks_exact(20)) {
        assert_eq!(
            (u64_at(raw, 0), u64_at(raw, 8), u32_at(raw, 16)),
            (e.addr, e.size, e.kind.code())
        );
    }
    for (at, &byte) in page.iter().enumerate() {
        if !(0x1F1..end).contains(&at) && at != 0x1E8 && !table.contains(&at) {
            assert_eq!(byte, 0, "byte {at:#x} of the zero page");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let initrd_len = input.number();
    let cmdline_len = input.number();
    let ram = ranges(&mut input);
    let reserved = ranges(&mut input);
    let own = (input.byte() & 1 == 1).then(|| Placement {
        kernel: input.number(),
        initrd: input.number(),
        boot_params: input.number(),
        cmdline: input.number(),
        gdt: input.number(),
    });
    let file = input.rest();
    let Ok(image) = BzImage::parse(file) else { return };
    check_image(file, &image);

    let map = linux::e820(&ram, &reserved);
    if let Ok(map) = &map {
        check_e820(&ram, &reserved, map);
    }
    let placed = linux::place(&image, initrd_len, cmdline_len, &ram, &reserved);
    if let Ok(p) = &placed {
        check_placement(&image, initrd_len, cmdline_len, &ram, &reserved, p);
    }
    let Ok(map) = map else { return };
    if let Ok(p) = &placed {
        let page = linux::boot_params(&image, p, initrd_len, cmdline_len, &map)
            .expect("a placement from place makes a zero page");
        check_zero_page(&image, p, initrd_len, cmdline_len, &map, &page);
    }
    if let Some(p) = &own {
        if let Ok(page) = linux::boot_params(&image, p, initrd_len, cmdline_len, &map) {
            check_zero_page(&image, p, initrd_len, cmdline_len, &map, &page);
        }
    }
});
