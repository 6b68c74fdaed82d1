//! Checks arbitrary bytes as a PAL image, as `register` does with what a guest hands it: the
//! checks must never panic, and an accepted image must keep every promise of the layout
//! (segments inside the window, pages disjoint, no writable code, entry in code), and every
//! page of it must fill.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpr_hypervisor::elf;
use vpr_hypervisor::pal::IMAGE_LIMITS;

fuzz_target!(|data: &[u8]| {
    let Ok(image) = elf::parse(data, &IMAGE_LIMITS) else { return };
    let pages: u64 = image.segments.iter().map(elf::Segment::page_count).sum();
    assert!(pages <= IMAGE_LIMITS.max_pages);
    let mut page = vec![0; 4096];
    for (i, segment) in image.segments.iter().enumerate() {
        let pages = segment.pages();
        assert!(IMAGE_LIMITS.window.start <= pages.start && pages.end <= IMAGE_LIMITS.window.end);
        assert!(!(segment.permissions.write && segment.permissions.execute));
        for other in &image.segments[i + 1..] {
            assert!(pages.intersect(other.pages()).is_empty());
        }
        let mut at = pages.start;
        while at < pages.end {
            elf::fill_page(data, segment, at, &mut page).expect("an accepted segment fills");
            at += 4096;
        }
    }
    assert!(image.segments.iter().any(|s| s.permissions.execute
        && s.vaddr <= image.entry
        && image.entry < s.vaddr + s.mem_len));
});
