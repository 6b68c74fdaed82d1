//! Hiding the IOMMU from an OS: its ACPI table (IVRS) taken out of the RSDT and the XSDT
//! (ACPI §5.2.5-§5.2.8), over whatever reaches physical memory.

use crate::bytes;
use crate::memory::Range;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// The IOMMU's ACPI table: the I/O Virtualization Reporting Structure (IOMMU spec, "I/O
/// Virtualization Reporting Structure (IVRS)"). Without it an OS does not drive the IOMMU.
pub const IVRS: [u8; 4] = *b"IVRS";

/// Physical memory as the ACPI tables are reached.
pub trait PhysicalMemory {
    /// Copies the bytes at `addr` into `out`; `false` if not all of them may be read.
    fn read(&mut self, addr: u64, out: &mut [u8]) -> bool;
    /// Writes `bytes` at `addr`; `false`, with nothing written, if not all of them may be.
    fn write(&mut self, addr: u64, bytes: &[u8]) -> bool;
}

/// Why the ACPI tables were left as they were; each carries the address at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// No valid RSDP with a root table in the EBDA's first KiB or 0xE0000-0xFFFFF.
    NoRsdp,
    /// Bytes that cannot be read.
    Unreadable(u64),
    /// A root table without its signature (RSDT or XSDT).
    Signature(u64),
    /// A root table whose bytes do not sum to zero.
    Checksum(u64),
    /// A root table whose length is too short, too long or not a whole number of entries.
    Length(u64),
    /// Two root tables that overlap.
    Overlap(u64),
    /// A root table that cannot be written (nothing was).
    WriteRefused(u64),
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiError::NoRsdp => write!(f, "ACPI: no valid RSDP"),
            AcpiError::Unreadable(a) => write!(f, "ACPI: cannot read {a:#x}"),
            AcpiError::Signature(a) => write!(f, "ACPI: no RSDT/XSDT signature at {a:#x}"),
            AcpiError::Checksum(a) => write!(f, "ACPI: bad checksum of the table at {a:#x}"),
            AcpiError::Length(a) => write!(f, "ACPI: bad length of the table at {a:#x}"),
            AcpiError::Overlap(a) => write!(f, "ACPI: root tables overlap at {a:#x}"),
            AcpiError::WriteRefused(a) => write!(f, "ACPI: cannot write the table at {a:#x}"),
        }
    }
}

/// Where an RSDP may be (ACPI §5.2.5.1): the first KiB of the EBDA, whose segment is the
/// word at 0x40E, and the BIOS area 0xE0000-0xFFFFF, on 16-byte boundaries.
const EBDA_POINTER: u64 = 0x40E;
const EBDA_WINDOW: u64 = 1024;
const BIOS_AREA: Range = Range::new(0xE_0000, 0x10_0000);
/// The RSDP's signature, and the lengths its checksum and extended checksum cover
/// (ACPI §5.2.5.3).
const RSDP_SIGNATURE: &[u8; 8] = b"RSD PTR ";
const RSDP_V1_BYTES: usize = 20;
const RSDP_V2_BYTES: usize = 36;
/// Bytes of a system description table's header (ACPI §5.2.6): the entries follow it.
const HEADER_BYTES: usize = 36;
/// Offsets of the header's Length and Checksum.
const LENGTH_OFFSET: usize = 4;
const CHECKSUM_OFFSET: usize = 9;
/// The longest root table read: 16 Ki RSDT entries, far more than any firmware has.
const MAX_TABLE_BYTES: usize = 1 << 16;

/// The 8-bit sum of `bytes`: zero for a table with the right checksum.
fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |sum: u8, &b| sum.wrapping_add(b))
}

/// Removes every entry whose table has `signature` from the RSDT and the XSDT that the RSDPs
/// name; the number of entries removed (from both). The tables shrink in place: Length
/// drops, the freed tail is zeroed and Checksum is set so the table sums to zero. Anything
/// malformed — a root table with a bad signature, length or checksum, an entry whose table
/// cannot be read — is an error and nothing is written.
pub fn remove_tables<M: PhysicalMemory + ?Sized>(
    memory: &mut M,
    signature: [u8; 4],
) -> Result<usize, AcpiError> {
    let mut roots: Vec<(u64, usize, &[u8; 4])> = Vec::new();
    for (rsdt, xsdt) in find_rsdps(memory) {
        for root in [(rsdt, 4, b"RSDT"), (xsdt, 8, b"XSDT")] {
            if root.0 != 0 && !roots.iter().any(|r| (r.0, r.1) == (root.0, root.1)) {
                roots.push(root);
            }
        }
    }
    if roots.is_empty() {
        return Err(AcpiError::NoRsdp);
    }
    let mut plans = Vec::with_capacity(roots.len());
    for &(addr, entry_bytes, expected) in &roots {
        plans.push(plan(memory, addr, entry_bytes, expected, signature)?);
    }
    for (i, a) in plans.iter().enumerate() {
        for b in plans.iter().skip(i + 1) {
            if a.addr < b.end() && b.addr < a.end() {
                return Err(AcpiError::Overlap(a.addr.max(b.addr)));
            }
        }
    }
    let changed: Vec<&Rewrite> = plans.iter().filter(|p| p.removed > 0).collect();
    // Writing the old bytes first asks the memory about every range before anything changes.
    for rewrite in &changed {
        if !memory.write(rewrite.addr, &rewrite.old) {
            return Err(AcpiError::WriteRefused(rewrite.addr));
        }
    }
    for rewrite in &changed {
        if !memory.write(rewrite.addr, &rewrite.new) {
            return Err(AcpiError::WriteRefused(rewrite.addr));
        }
    }
    Ok(changed.iter().map(|r| r.removed).sum())
}

/// A root table's bytes before and after the change.
struct Rewrite {
    addr: u64,
    old: Vec<u8>,
    new: Vec<u8>,
    removed: usize,
}

impl Rewrite {
    fn end(&self) -> u64 {
        self.addr.saturating_add(self.old.len() as u64)
    }
}

/// The (RSDT, XSDT) addresses of every valid RSDP (0 where there is none), in the order an
/// OS searches: the EBDA, then the BIOS area.
fn find_rsdps<M: PhysicalMemory + ?Sized>(memory: &mut M) -> Vec<(u64, u64)> {
    let mut areas = Vec::with_capacity(2);
    let mut segment = [0; 2];
    if memory.read(EBDA_POINTER, &mut segment) {
        let ebda = u64::from(u16::from_le_bytes(segment)) << 4;
        // As ACPICA takes it: above the BIOS data, below the legacy video memory.
        if ebda > 0x400 && ebda < 0xA_0000 {
            areas.push(Range::sized(ebda, EBDA_WINDOW));
        }
    }
    areas.push(BIOS_AREA);
    let mut found = Vec::new();
    let mut chunk = vec![0; 4096];
    for area in areas {
        let mut at = area.start;
        while at < area.end {
            let len = usize::try_from(area.end - at).map_or(chunk.len(), |n| n.min(chunk.len()));
            let buf = chunk.get_mut(..len).unwrap_or_default();
            if memory.read(at, buf) {
                let mut candidate = at;
                for slot in buf.chunks(16) {
                    if slot.starts_with(RSDP_SIGNATURE) {
                        if let Some(roots) = read_rsdp(memory, candidate) {
                            found.push(roots);
                        }
                    }
                    candidate += 16;
                }
            }
            at += len as u64;
        }
    }
    found
}

/// The (RSDT, XSDT) addresses of the RSDP at `addr`, if its checksums hold (ACPI §5.2.5.3:
/// the first 20 bytes; from revision 2 on, all 36 too).
fn read_rsdp<M: PhysicalMemory + ?Sized>(memory: &mut M, addr: u64) -> Option<(u64, u64)> {
    let mut bytes = [0; RSDP_V2_BYTES];
    let v1 = bytes.get_mut(..RSDP_V1_BYTES)?;
    if !memory.read(addr, v1) || checksum(v1) != 0 {
        return None;
    }
    let rsdt = u64::from(bytes::u32_at(&bytes, 16)?);
    if bytes::u8_at(&bytes, 15)? < 2 {
        return Some((rsdt, 0));
    }
    if !memory.read(addr, &mut bytes) || checksum(&bytes) != 0 {
        return None;
    }
    Some((rsdt, bytes::u64_at(&bytes, 24)?))
}

/// The change of the root table at `addr` (entries of `entry_bytes`, signature `expected`)
/// that drops the entries of tables with `signature`; checks it all.
fn plan<M: PhysicalMemory + ?Sized>(
    memory: &mut M,
    addr: u64,
    entry_bytes: usize,
    expected: &[u8; 4],
    signature: [u8; 4],
) -> Result<Rewrite, AcpiError> {
    let mut header = [0; HEADER_BYTES];
    if !memory.read(addr, &mut header) {
        return Err(AcpiError::Unreadable(addr));
    }
    if !header.starts_with(expected) {
        return Err(AcpiError::Signature(addr));
    }
    let length = bytes::u32_at(&header, LENGTH_OFFSET)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| {
            (HEADER_BYTES..=MAX_TABLE_BYTES).contains(&n)
                && (n - HEADER_BYTES).is_multiple_of(entry_bytes)
        })
        .ok_or(AcpiError::Length(addr))?;
    let mut old = vec![0; length];
    if !memory.read(addr, &mut old) {
        return Err(AcpiError::Unreadable(addr));
    }
    if checksum(&old) != 0 {
        return Err(AcpiError::Checksum(addr));
    }
    let mut new = Vec::with_capacity(length);
    new.extend_from_slice(&header);
    let mut removed = 0;
    for entry in old.get(HEADER_BYTES..).unwrap_or_default().chunks_exact(entry_bytes) {
        let target = entry.iter().rev().fold(0, |value: u64, &b| value << 8 | u64::from(b));
        let mut found = [0; 4];
        if !memory.read(target, &mut found) {
            return Err(AcpiError::Unreadable(target));
        }
        if found == signature {
            removed += 1;
        } else {
            new.extend_from_slice(entry);
        }
    }
    let new_length = u32::try_from(new.len()).map_err(|_| AcpiError::Length(addr))?;
    if let Some(field) = new.get_mut(LENGTH_OFFSET..LENGTH_OFFSET + 4) {
        field.copy_from_slice(&new_length.to_le_bytes());
    }
    if let Some(sum) = new.get_mut(CHECKSUM_OFFSET) {
        *sum = 0;
    }
    let sum = checksum(&new);
    if let Some(byte) = new.get_mut(CHECKSUM_OFFSET) {
        *byte = sum.wrapping_neg();
    }
    new.resize(length, 0);
    Ok(Rewrite { addr, old, new, removed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    /// 2 MiB of physical memory with a read-only window; counts writes.
    struct FakeRam {
        bytes: Vec<u8>,
        read_only: Range,
        writes: usize,
    }

    fn ix(addr: u64) -> usize {
        usize::try_from(addr).unwrap()
    }

    impl FakeRam {
        fn new() -> Self {
            FakeRam { bytes: vec![0; 2 << 20], read_only: Range::default(), writes: 0 }
        }
        fn span(&self, addr: u64, len: usize) -> Option<core::ops::Range<usize>> {
            let start = usize::try_from(addr).ok()?;
            let end = start.checked_add(len)?;
            (end <= self.bytes.len()).then_some(start..end)
        }
        fn put(&mut self, addr: u64, bytes: &[u8]) {
            let span = self.span(addr, bytes.len()).unwrap();
            self.bytes[span].copy_from_slice(bytes);
        }
    }

    impl PhysicalMemory for FakeRam {
        fn read(&mut self, addr: u64, out: &mut [u8]) -> bool {
            let Some(span) = self.span(addr, out.len()) else { return false };
            out.copy_from_slice(&self.bytes[span]);
            true
        }
        fn write(&mut self, addr: u64, bytes: &[u8]) -> bool {
            let Some(span) = self.span(addr, bytes.len()) else { return false };
            if !Range::sized(addr, bytes.len() as u64).intersect(self.read_only).is_empty() {
                return false;
            }
            self.bytes[span].copy_from_slice(bytes);
            self.writes += 1;
            true
        }
    }

    /// A table: signature, length, revision 1, checksum, OEM fields, then `body`.
    fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = Vec::from(&signature[..]);
        t.extend_from_slice(&u32::try_from(HEADER_BYTES + body.len()).unwrap().to_le_bytes());
        t.extend_from_slice(&[1, 0]);
        t.extend_from_slice(b"BOCHS BXPC    ");
        t.extend_from_slice(&[1, 0, 0, 0, b'B', b'X', b'P', b'C', 1, 0, 0, 0]);
        t.extend_from_slice(body);
        t[CHECKSUM_OFFSET] = checksum(&t).wrapping_neg();
        t
    }

    fn rsdt_body(entries: &[u64]) -> Vec<u8> {
        entries.iter().flat_map(|&a| u32::try_from(a).unwrap().to_le_bytes()).collect()
    }

    fn xsdt_body(entries: &[u64]) -> Vec<u8> {
        entries.iter().flat_map(|&a| a.to_le_bytes()).collect()
    }

    fn rsdp(revision: u8, rsdt: u64, xsdt: u64) -> Vec<u8> {
        let mut r = Vec::from(&RSDP_SIGNATURE[..]);
        r.push(0);
        r.extend_from_slice(b"BOCHS ");
        r.push(revision);
        r.extend_from_slice(&u32::try_from(rsdt).unwrap().to_le_bytes());
        if revision >= 2 {
            r.extend_from_slice(&36u32.to_le_bytes());
            r.extend_from_slice(&xsdt.to_le_bytes());
            r.extend_from_slice(&[0; 4]);
        }
        r[8] = checksum(&r[..20]).wrapping_neg();
        if revision >= 2 {
            r[32] = checksum(&r).wrapping_neg();
        }
        r
    }

    const FACP: u64 = 0x10_0000;
    const IVRS_AT: u64 = 0x10_1000;
    const APIC: u64 = 0x10_2000;
    const RSDT_AT: u64 = 0x11_0000;
    const XSDT_AT: u64 = 0x11_1000;
    const RSDP_AT: u64 = 0xF_5A10;
    const EBDA: u64 = 0x9_FC00;

    /// Firmware tables like SeaBIOS's: FACP, IVRS and APIC in an RSDT and an XSDT.
    fn firmware(revision: u8) -> FakeRam {
        let mut ram = FakeRam::new();
        for (at, signature) in [(FACP, b"FACP"), (IVRS_AT, b"IVRS"), (APIC, b"APIC")] {
            ram.put(at, &table(signature, &[7; 20]));
        }
        ram.put(RSDT_AT, &table(b"RSDT", &rsdt_body(&[FACP, IVRS_AT, APIC])));
        ram.put(XSDT_AT, &table(b"XSDT", &xsdt_body(&[FACP, IVRS_AT, APIC])));
        ram.put(RSDP_AT, &rsdp(revision, RSDT_AT, XSDT_AT));
        ram
    }

    /// The entries of the root table at `at`, checking its checksum.
    fn root_entries(ram: &mut FakeRam, at: u64, entry_bytes: usize) -> Vec<u64> {
        let mut header = [0; HEADER_BYTES];
        assert!(ram.read(at, &mut header));
        let mut t = vec![0; usize::try_from(bytes::u32_at(&header, 4).unwrap()).unwrap()];
        assert!(ram.read(at, &mut t));
        assert_eq!(checksum(&t), 0, "the table at {at:#x} sums to zero");
        t[HEADER_BYTES..]
            .chunks_exact(entry_bytes)
            .map(|e| e.iter().rev().fold(0, |v: u64, &b| v << 8 | u64::from(b)))
            .collect()
    }

    #[test]
    fn removes_ivrs_from_rsdt_and_xsdt() {
        let mut ram = firmware(2);
        let before = ram.bytes.clone();
        assert_eq!(remove_tables(&mut ram, IVRS), Ok(2));
        assert_eq!(root_entries(&mut ram, RSDT_AT, 4), [FACP, APIC]);
        assert_eq!(root_entries(&mut ram, XSDT_AT, 8), [FACP, APIC]);
        // The freed tails are zero; nothing but the two root tables changed.
        assert_eq!(ram.bytes[ix(RSDT_AT + 44)..ix(RSDT_AT + 48)], [0; 4]);
        assert_eq!(ram.bytes[ix(XSDT_AT + 52)..ix(XSDT_AT + 60)], [0; 8]);
        for (i, (a, b)) in (0u64..).zip(before.iter().zip(&ram.bytes)) {
            if a != b {
                assert!(
                    (RSDT_AT..RSDT_AT + 48).contains(&i) || (XSDT_AT..XSDT_AT + 60).contains(&i)
                );
            }
        }
        // Again: nothing left to remove, nothing written.
        let writes = ram.writes;
        assert_eq!(remove_tables(&mut ram, IVRS), Ok(0));
        assert_eq!(ram.writes, writes);
    }

    #[test]
    fn acpi_1_has_only_an_rsdt_and_several_entries_may_go() {
        let mut ram = firmware(0);
        ram.put(RSDT_AT, &table(b"RSDT", &rsdt_body(&[IVRS_AT, FACP, IVRS_AT])));
        ram.put(XSDT_AT, &[0xEE; 64]); // not named by a revision-0 RSDP: never read
        assert_eq!(remove_tables(&mut ram, IVRS), Ok(2));
        assert_eq!(root_entries(&mut ram, RSDT_AT, 4), [FACP]);
        assert_eq!(remove_tables(&mut ram, *b"FACP"), Ok(1));
        assert_eq!(root_entries(&mut ram, RSDT_AT, 4), []);
    }

    #[test]
    fn an_rsdp_in_the_ebda_is_found_and_shared_tables_change_once() {
        let segment = u16::try_from(EBDA >> 4).unwrap().to_le_bytes();
        let mut ram = firmware(2);
        ram.put(EBDA_POINTER, &segment);
        ram.put(EBDA + 0x40, &rsdp(2, RSDT_AT, XSDT_AT));
        assert_eq!(remove_tables(&mut ram, IVRS), Ok(2));
        // Only in the EBDA, at the end of its first KiB.
        let mut ram = firmware(2);
        ram.put(RSDP_AT, &[0; 36]);
        ram.put(EBDA_POINTER, &segment);
        ram.put(EBDA + 0x3F0, &rsdp(0, RSDT_AT, 0));
        assert_eq!(remove_tables(&mut ram, IVRS), Ok(1));
        assert_eq!(root_entries(&mut ram, XSDT_AT, 8), [FACP, IVRS_AT, APIC], "not named");
    }

    #[test]
    fn invalid_rsdps_are_not_rsdps() {
        // Bad checksum; bad extended checksum; off a 16-byte boundary; no RSDP at all; one
        // that names no root table.
        type Mutation = dyn Fn(&mut FakeRam);
        let cases: [&Mutation; 5] = [
            &|ram| ram.bytes[ix(RSDP_AT + 8)] ^= 1,
            &|ram| ram.bytes[ix(RSDP_AT + 32)] ^= 1,
            &|ram| {
                ram.put(RSDP_AT, &[0; 36]);
                ram.put(RSDP_AT + 4, &rsdp(2, RSDT_AT, XSDT_AT));
            },
            &|ram| ram.put(RSDP_AT, &[0; 36]),
            &|ram| ram.put(RSDP_AT, &rsdp(2, 0, 0)),
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut ram = firmware(2);
            case(&mut ram);
            assert_eq!(remove_tables(&mut ram, IVRS), Err(AcpiError::NoRsdp), "case {i}");
            assert_eq!(ram.writes, 0);
        }
    }

    #[test]
    fn malformed_root_tables_change_nothing() {
        let (rsdt, xsdt) = (ix(RSDT_AT), ix(XSDT_AT));
        type Mutation<'a> = dyn Fn(&mut FakeRam) + 'a;
        let cases: [(&Mutation<'_>, AcpiError); 9] = [
            (&|ram| ram.bytes[rsdt + 20] ^= 1, AcpiError::Checksum(RSDT_AT)),
            (&|ram| ram.bytes[xsdt + 40] ^= 1, AcpiError::Checksum(XSDT_AT)),
            (&|ram| ram.bytes[xsdt] = b'Y', AcpiError::Signature(XSDT_AT)),
            (&|ram| ram.put(RSDT_AT + 4, &35u32.to_le_bytes()), AcpiError::Length(RSDT_AT)),
            (&|ram| ram.put(RSDT_AT + 4, &u32::MAX.to_le_bytes()), AcpiError::Length(RSDT_AT)),
            (&|ram| ram.put(XSDT_AT + 4, &48u32.to_le_bytes()), AcpiError::Length(XSDT_AT)),
            (
                &|ram| ram.put(XSDT_AT, &table(b"XSDT", &xsdt_body(&[FACP, 1 << 40]))),
                AcpiError::Unreadable(1 << 40),
            ),
            (
                &|ram| ram.put(RSDP_AT, &rsdp(2, RSDT_AT, 0x20_0000 - 16)),
                AcpiError::Unreadable(0x20_0000 - 16),
            ),
            (
                // One table named as both.
                &|ram| ram.put(RSDP_AT, &rsdp(2, RSDT_AT, RSDT_AT)),
                AcpiError::Signature(RSDT_AT),
            ),
        ];
        for (i, (case, error)) in cases.iter().enumerate() {
            let mut ram = firmware(2);
            case(&mut ram);
            let before = ram.bytes.clone();
            assert_eq!(remove_tables(&mut ram, IVRS), Err(*error), "case {i}");
            assert!(ram.bytes == before && ram.writes == 0, "case {i}: written");
        }
    }

    #[test]
    fn overlapping_roots_change_nothing() {
        // An RSDT without entries whose last four bytes are the start of a valid XSDT.
        let mut ram = firmware(2);
        let mut rsdt = table(b"RSDT", &[]);
        rsdt[32..36].copy_from_slice(b"XSDT");
        rsdt[CHECKSUM_OFFSET] = 0;
        rsdt[CHECKSUM_OFFSET] = checksum(&rsdt).wrapping_neg();
        ram.put(RSDT_AT, &rsdt);
        ram.put(RSDT_AT + 32, &table(b"XSDT", &xsdt_body(&[FACP, IVRS_AT])));
        ram.put(RSDP_AT, &rsdp(2, RSDT_AT, RSDT_AT + 32));
        assert_eq!(root_entries(&mut ram, RSDT_AT, 4), []);
        let before = ram.bytes.clone();
        assert_eq!(remove_tables(&mut ram, IVRS), Err(AcpiError::Overlap(RSDT_AT + 32)));
        assert!(ram.bytes == before && ram.writes == 0);
    }

    #[test]
    fn a_refused_write_changes_nothing() {
        let mut ram = firmware(2);
        ram.read_only = Range::sized(XSDT_AT + 50, 1);
        let before = ram.bytes.clone();
        assert_eq!(remove_tables(&mut ram, IVRS), Err(AcpiError::WriteRefused(XSDT_AT)));
        assert!(ram.bytes == before, "the RSDT was not changed either");
    }

    #[test]
    fn mutated_tables_never_panic_and_success_is_complete() {
        let mut rng = XorShift(0xAC_91);
        let spots = [RSDP_AT, RSDT_AT, XSDT_AT, EBDA_POINTER];
        for _ in 0..3000 {
            let mut ram = firmware(2);
            for _ in 0..=rng.below(3) {
                let at = spots[rng.below(spots.len())] + rng.next() % 64;
                ram.bytes[ix(at)] = rng.next().to_le_bytes()[0];
            }
            if let Ok(removed) = remove_tables(&mut ram, IVRS) {
                assert!(removed <= 6, "{removed}");
                // What is left is consistent and has nothing more to remove.
                let writes = ram.writes;
                assert_eq!(remove_tables(&mut ram, IVRS), Ok(0));
                assert_eq!(ram.writes, writes);
            }
        }
    }
}
