//! The ELF loader (`elf::parse`, `elf::fill_page`) and the PAL address-space plan
//! (`pal::layout`) on arbitrary images and limits. Nothing may panic; an accepted image must
//! keep every promise of `Image` (segments sorted, on disjoint pages inside the window, file
//! bytes inside the file, never writable and executable, entry in code, pages within the
//! limit); each page loads as the segment says (its file bytes, zeros elsewhere), pages that
//! are not the segment's are refused without touching the buffer; and with the PAL limits the
//! plan's regions are disjoint and numbered in order.
//!
//! Input: a mode byte (even: the PAL limits; odd: a window start, end and page limit follow),
//! then the image.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpr_hypervisor::elf::{self, Image, Limits, Segment};
use vpr_hypervisor::memory::{Range, PAGE_SIZE};
use vpr_hypervisor::pal::{self, IMAGE_LIMITS};
use vpr_proto_fuzz::Input;

/// The byte a segment puts at `addr`: from the file inside its file part, else zero.
fn loaded(file: &[u8], segment: &Segment, addr: u64) -> u8 {
    let in_file = segment.vaddr <= addr && addr - segment.vaddr < segment.file_len;
    if !in_file {
        return 0;
    }
    let at = segment.file_offset + (addr - segment.vaddr);
    file[usize::try_from(at).expect("file bytes lie in the file")]
}

/// The pages of `segment` worth loading: the first and last few, and those where its file
/// bytes end (a segment may span thousands of pages).
fn sample_pages(segment: &Segment) -> Vec<u64> {
    let pages = segment.pages();
    let count = pages.len() / PAGE_SIZE;
    let mut picks: Vec<u64> = (0..count.min(3)).chain(count.saturating_sub(3)..count).collect();
    let file_end = segment.vaddr + segment.file_len;
    let boundary = (file_end & !(PAGE_SIZE - 1)).saturating_sub(pages.start) / PAGE_SIZE;
    picks.extend([boundary.saturating_sub(1), boundary, boundary + 1]);
    picks.retain(|&i| i < count);
    picks.sort_unstable();
    picks.dedup();
    picks.into_iter().map(|i| pages.start + i * PAGE_SIZE).collect()
}

fn check_image(file: &[u8], limits: &Limits, image: &Image) {
    assert!(!image.segments.is_empty());
    for s in &image.segments {
        assert!(s.mem_len > 0 && s.file_len <= s.mem_len, "{s:x?}");
        if s.file_len > 0 {
            let end = s.file_offset.checked_add(s.file_len).expect("file part does not wrap");
            assert!(end <= file.len() as u64, "{s:x?} past the file's {} bytes", file.len());
        }
        let end = s.vaddr.checked_add(s.mem_len).expect("segment does not wrap");
        let pages = s.pages();
        assert!(pages.start <= s.vaddr && end <= pages.end);
        assert_eq!(pages.start % PAGE_SIZE, 0);
        assert_eq!(pages.end % PAGE_SIZE, 0);
        assert!(limits.window.start <= pages.start && pages.end <= limits.window.end);
        assert!(!(s.permissions.write && s.permissions.execute), "W^X: {s:x?}");
    }
    for pair in image.segments.windows(2) {
        assert!(pair[0].vaddr < pair[1].vaddr, "sorted");
        assert!(pair[0].pages().end <= pair[1].pages().start, "disjoint pages");
    }
    let pages: u64 = image.segments.iter().map(Segment::page_count).sum();
    assert!(pages <= limits.max_pages);
    assert!(image.segments.iter().any(|s| {
        s.permissions.execute && s.vaddr <= image.entry && image.entry - s.vaddr < s.mem_len
    }));
}

fn check_loading(file: &[u8], image: &Image) {
    let mut page = vec![0xA5; PAGE_SIZE as usize];
    for segment in &image.segments {
        for addr in sample_pages(segment) {
            elf::fill_page(file, segment, addr, &mut page).expect("an accepted segment loads");
            for (i, &byte) in page.iter().enumerate() {
                let at = addr + i as u64;
                assert_eq!(byte, loaded(file, segment, at), "byte {at:#x} of {segment:x?}");
            }
        }
        // Pages that are not the segment's, and a buffer that is not a page.
        let pages = segment.pages();
        page.fill(0xA5);
        let mut refused = vec![pages.end, pages.start + 1, pages.end.wrapping_sub(1)];
        if let Some(before) = pages.start.checked_sub(PAGE_SIZE) {
            refused.push(before);
        }
        for addr in refused {
            assert!(elf::fill_page(file, segment, addr, &mut page).is_err(), "{addr:#x}");
            assert!(page.iter().all(|&b| b == 0xA5), "a refused page was written");
        }
        let mut short = [0xA5; 100];
        assert!(elf::fill_page(file, segment, pages.start, &mut short).is_err());
        assert!(short.iter().all(|&b| b == 0xA5));
    }
}

/// With the PAL limits: the plan's regions are disjoint, numbered in order, and each segment
/// keeps its permissions.
fn check_layout(image: &Image) {
    let regions = pal::layout(image);
    assert_eq!(regions.len(), 4 + image.segments.len());
    let mut first = 0;
    for (i, region) in regions.iter().enumerate() {
        assert_eq!(region.first_page, first);
        first += region.pages;
        assert_eq!(region.gpa % PAGE_SIZE, 0);
        for other in &regions[i + 1..] {
            assert!(region.span().intersect(other.span()).is_empty(), "{region:x?} {other:x?}");
        }
        if let pal::RegionKind::Segment(n) = region.kind {
            let segment = &image.segments[n];
            assert_eq!(region.span(), segment.pages());
            assert_eq!(region.permissions, segment.permissions);
        }
    }
    assert_eq!(pal::total_pages(&regions), first);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let pal_limits = input.byte() & 1 == 0;
    let limits = if pal_limits {
        IMAGE_LIMITS
    } else {
        let window = Range::new(input.number(), input.number());
        Limits { window, max_pages: u64::from(input.u16()) }
    };
    let file = input.rest();
    let Ok(image) = elf::parse(file, &limits) else { return };
    check_image(file, &limits, &image);
    check_loading(file, &image);
    if pal_limits {
        check_layout(&image);
    } else {
        let _ = pal::layout(&image);
    }
});
