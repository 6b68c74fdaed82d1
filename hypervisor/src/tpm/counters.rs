//! Trusted counters kept in the TPM's NV memory where only this hypervisor's launch reaches
//! them, and where software booted instead of it can neither write them nor roll them back.
//!
//! The counters live in *pages*: NV indexes at [`PAGE_BASE`] + 0, 1, ... of [`PAGE_LEN`]
//! bytes each, defined with [`PCR_BOUND_PAGE_ATTRIBUTES`] and the policy of PCR 17 and
//! locality 2 ([`Tpm::bound_policy`]) — read and written only with a policy session of this
//! hypervisor's launch, never with the owner's authorization — exactly like the master
//! secret's index. Page 0's header says how many pages are in use.
//!
//! What the owner (or any software booted instead of the hypervisor) can still do is delete
//! an index: an owner-defined index is the owner's to delete (TPM 2.0 Part 3 §31.4), and
//! `TPMA_NV_POLICY_DELETE`, which would forbid it, needs the platform hierarchy, which the
//! firmware takes. A deleted page must not read as counters at zero, so:
//!
//! - the pages belong to the master secret: page 0 is written, holding no counter, *before*
//!   a new master secret is stored ([`Counters::initialize`]), and a hypervisor that finds
//!   the master secret opens the pages with [`Counters::open`], which refuses unless every
//!   page in use is there, bound and written. Deleting a page while the master secret stays
//!   is therefore seen, and the counters refuse to answer rather than read zero;
//! - deleting the master secret's index too makes the next boot make a new master secret:
//!   a new TCC, whose keys (its TCC key, its sealing key) are new, so no blob sealed and no
//!   evidence made under the old counters opens or verifies with it. Its counters start at
//!   zero, as a new machine's do.
//!
//! A page is written in one TPM2_NV_Write of at most 512 bytes (a new page), or an entry of
//! one counter (40 bytes) or of its value (8), each atomic in the TPM; a new page joins the
//! count in page 0 only once written, so a crash leaves either the old state or the new.
//! The pages are read once per boot and kept in memory: the TPM is reached only through the
//! hypervisor while it runs.
//!
//! What this does not protect: the TPM's own state. swtpm keeps it in a file of the host's;
//! a host that copies an older file back (or runs another swtpm) rolls everything back,
//! counters and master secret alike. A hardware TPM keeps it in its own NV memory. And as
//! for everything bound to PCR 17: under QEMU any boot loader can extend PCR 17 with this
//! hypervisor's value (the launch is simulated), and then reach the pages as it would.
//!
//! Layout of a page (all integers big-endian): bytes 0-3 the number of pages in use (page
//! 0; 0 in the others), 4-7 the format ([`FORMAT`]; page 0), then [`SLOTS`] slots of 40
//! bytes — the counter's 32-byte id, then its value as a u64. A slot whose id is all zeros is
//! free.

use alloc::vec::Vec;
use core::fmt;

use super::command::NvPublic;
use super::{BoundIndex, Mmio, Tpm, TpmError, PCR_BOUND_PAGE_ATTRIBUTES};

/// The NV index of page 0 (owner-defined indexes: TPM 2.0 Part 2 §7.4, 0x0180_0000 to
/// 0x01BF_FFFF; the master secret's is 0x01A0_0000, well above the last page).
pub const PAGE_BASE: u32 = 0x0180_0000;
/// The most pages: [`MAX_PAGES`] × [`SLOTS`] counters. A page takes about 0.6 KB of the
/// TPM's NV memory (swtpm has 128 KiB); every PAL a guest registers may name counters, so
/// a guest can fill them (a denial of service, as refusing to run the replica is).
pub const MAX_PAGES: u32 = 64;
/// Counters in a page.
pub const SLOTS: usize = 12;
/// Bytes of a page's header.
const HEADER: usize = 8;
/// Bytes of a slot: the id, then the value.
const SLOT: usize = 40;
/// Bytes of a page: its header and [`SLOTS`] slots, within one 512-byte TPM2_NV_Write.
pub const PAGE_LEN: u16 = 488;
/// The format page 0 names.
pub const FORMAT: u32 = 1;

const _: () = assert!(HEADER + SLOTS * SLOT == PAGE_LEN as usize && PAGE_LEN <= 512);

/// Why the counters cannot be used. Nothing is read from pages that fail a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterError {
    /// The TPM failed on page `page`.
    Tpm {
        /// The page.
        page: u32,
        /// What failed.
        error: TpmError,
    },
    /// A page in use is not there (deleted: by the TPM's owner, or software booted instead
    /// of the hypervisor).
    Missing {
        /// The page.
        page: u32,
    },
    /// A page in use is bound but was never written (deleted and defined again).
    Unwritten {
        /// The page.
        page: u32,
    },
    /// A page's index has other attributes, size or policy than this launch's pages.
    Foreign {
        /// The page.
        page: u32,
        /// Its public area.
        public: NvPublic,
    },
    /// Page 0's header is not one this hypervisor writes.
    Header {
        /// The pages it says are in use.
        pages: u32,
        /// The format it names.
        format: u32,
    },
    /// One id in two slots.
    Duplicate,
    /// An id of all zeros (which marks a free slot).
    ZeroId,
    /// Every slot of every page is taken.
    Full,
    /// The counter is at `u64::MAX`.
    Overflow,
}

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CounterError::Tpm { page, error } => write!(f, "counter page {page}: {error}"),
            CounterError::Missing { page } => write!(
                f,
                "counter page {page} (NV index {:#x}) is in use but not in the TPM: it was \
                 deleted (refused: its counters would read as zero)",
                index(*page)
            ),
            CounterError::Unwritten { page } => write!(
                f,
                "counter page {page} (NV index {:#x}) is in use but was never written: it was \
                 deleted and defined again (refused: its counters would read as zero)",
                index(*page)
            ),
            CounterError::Foreign { page, public } => write!(
                f,
                "counter page {page} (NV index {:#x}) has attributes {:#x} and {} bytes, or \
                 another policy, not {PCR_BOUND_PAGE_ATTRIBUTES:#x}, {PAGE_LEN} bytes and this \
                 launch's PCR 17 and locality 2 policy (refused)",
                index(*page),
                public.attributes,
                public.data_size
            ),
            CounterError::Header { pages, format } => write!(
                f,
                "counter page 0 says {pages} pages of format {format} are in use, not 1 to \
                 {MAX_PAGES} of format {FORMAT} (refused)"
            ),
            CounterError::Duplicate => write!(f, "a counter's id is in two slots (refused)"),
            CounterError::ZeroId => write!(f, "a counter's id may not be all zeros"),
            CounterError::Full => {
                write!(f, "every one of the {} counter slots is taken", MAX_PAGES as usize * SLOTS)
            }
            CounterError::Overflow => write!(f, "the counter is at its largest value"),
        }
    }
}

/// The NV index of page `page`.
pub fn index(page: u32) -> u32 {
    PAGE_BASE + page
}

/// The launch the pages are bound to: PCR `pcr` at its current value and `locality`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// The locality every command is sent from, and the policy names.
    pub locality: u8,
    /// The PCR the policy names.
    pub pcr: u32,
}

/// The counters of this boot: the pages in use, as read from (and written to) the TPM.
#[derive(Debug, Clone)]
pub struct Counters {
    binding: Binding,
    pages: Vec<[u8; PAGE_LEN as usize]>,
}

impl Counters {
    /// Makes page 0 anew, holding no counter: for a TCC whose master secret is about to be
    /// made (none was there, so whatever the pages held belonged to a TCC that is gone). Call
    /// it before storing the new master secret. A page 0 whose index is foreign is refused.
    pub fn initialize<M: Mmio>(tpm: &mut Tpm<M>, binding: Binding) -> Result<Self, CounterError> {
        let mut page = [0; PAGE_LEN as usize];
        page[..4].copy_from_slice(&1u32.to_be_bytes());
        page[4..8].copy_from_slice(&FORMAT.to_be_bytes());
        prepare(tpm, binding, 0)?;
        write(tpm, binding, 0, 0, &page)?;
        Ok(Counters { binding, pages: Vec::from([page]) })
    }

    /// The counters of a TCC whose master secret was there: page 0 and every page it counts
    /// must be there, bound to this launch and written; their slots must name each id once.
    pub fn open<M: Mmio>(tpm: &mut Tpm<M>, binding: Binding) -> Result<Self, CounterError> {
        let first = read(tpm, binding, 0)?;
        let pages = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
        let format = u32::from_be_bytes([first[4], first[5], first[6], first[7]]);
        if !(1..=MAX_PAGES).contains(&pages) || format != FORMAT {
            return Err(CounterError::Header { pages, format });
        }
        let mut counters = Counters { binding, pages: Vec::from([first]) };
        for page in 1..pages {
            counters.pages.push(read(tpm, binding, page)?);
        }
        let mut ids: Vec<&[u8]> = counters.slots().map(|(_, _, id, _)| id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err(CounterError::Duplicate);
        }
        Ok(counters)
    }

    /// Pages in use.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// Counters kept.
    pub fn len(&self) -> usize {
        self.slots().count()
    }

    /// Whether no counter is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of counter `id`: 0 if it was never incremented.
    pub fn get(&self, id: &[u8; 32]) -> u64 {
        self.slots().find(|(_, _, slot, _)| *slot == id).map_or(0, |(_, _, _, value)| value)
    }

    /// Adds one to counter `id` in the TPM, then here; its new value. On an error nothing
    /// changed here, though the TPM may hold the new value if its answer was lost (the image
    /// then reads the pages anew, and the next increment counts on from the TPM's value: a
    /// value may be skipped, never given twice). A PAL's Manager stops on any failed
    /// increment (`vpr_pal::Manager`, crash-only).
    pub fn increment<M: Mmio>(
        &mut self,
        tpm: &mut Tpm<M>,
        id: &[u8; 32],
    ) -> Result<u64, CounterError> {
        if id.iter().all(|&b| b == 0) {
            return Err(CounterError::ZeroId);
        }
        let found = self.slots().find(|(_, _, s, _)| *s == &id[..]);
        if let Some((page, slot, value)) = found.map(|(page, slot, _, value)| (page, slot, value)) {
            let next = value.checked_add(1).ok_or(CounterError::Overflow)?;
            let at = HEADER + slot * SLOT + 32;
            self.write(tpm, page, at, &next.to_be_bytes())?;
            return Ok(next);
        }
        let mut entry = [0; SLOT];
        entry[..32].copy_from_slice(id);
        entry[32..].copy_from_slice(&1u64.to_be_bytes());
        let free = self.pages.iter().enumerate().find_map(|(page, bytes)| {
            (0..SLOTS).find(|&slot| free(bytes, slot)).map(|slot| (page, slot))
        });
        if let Some((page, slot)) = free {
            self.write(tpm, page, HEADER + slot * SLOT, &entry)?;
            return Ok(1);
        }
        // A new page: written whole (its counter in slot 0), then counted in page 0.
        let new = u32::try_from(self.pages.len()).map_err(|_| CounterError::Full)?;
        if new >= MAX_PAGES {
            return Err(CounterError::Full);
        }
        let mut bytes = [0; PAGE_LEN as usize];
        bytes[HEADER..HEADER + SLOT].copy_from_slice(&entry);
        prepare(tpm, self.binding, new)?;
        write(tpm, self.binding, new, 0, &bytes)?;
        self.pages.push(bytes);
        if let Err(e) = self.write(tpm, 0, 0, &(new + 1).to_be_bytes()) {
            self.pages.pop();
            return Err(e);
        }
        Ok(1)
    }

    /// Every taken slot: (page, slot, id, value).
    fn slots(&self) -> impl Iterator<Item = (usize, usize, &[u8], u64)> + '_ {
        self.pages.iter().enumerate().flat_map(|(page, bytes)| {
            (0..SLOTS).filter(|&slot| !free(bytes, slot)).map(move |slot| {
                let at = HEADER + slot * SLOT;
                let mut value = [0; 8];
                value.copy_from_slice(&bytes[at + 32..at + SLOT]);
                (page, slot, &bytes[at..at + 32], u64::from_be_bytes(value))
            })
        })
    }

    /// Writes `data` at `at` of page `page` (one in use) in the TPM, then here.
    fn write<M: Mmio>(
        &mut self,
        tpm: &mut Tpm<M>,
        page: usize,
        at: usize,
        data: &[u8],
    ) -> Result<(), CounterError> {
        let number = u32::try_from(page).map_err(|_| CounterError::Full)?;
        let bytes = self.pages.get_mut(page).and_then(|bytes| bytes.get_mut(at..at + data.len()));
        let Some(bytes) = bytes else {
            return Err(CounterError::Tpm {
                page: number,
                error: TpmError::Argument("a range outside the counter pages"),
            });
        };
        write(tpm, self.binding, number, at, data)?;
        bytes.copy_from_slice(data);
        Ok(())
    }
}

/// Whether slot `slot` of a page is free (its id all zeros).
fn free(bytes: &[u8; PAGE_LEN as usize], slot: usize) -> bool {
    let at = HEADER + slot * SLOT;
    bytes[at..at + 32].iter().all(|&b| b == 0)
}

/// Makes sure page `page`'s index is there and bound to this launch (defining it if it is
/// absent): before writing a page that is not in use (its bytes, if any, are stale).
fn prepare<M: Mmio>(tpm: &mut Tpm<M>, binding: Binding, page: u32) -> Result<(), CounterError> {
    let fail = |error| CounterError::Tpm { page, error };
    match look(tpm, binding, page)? {
        BoundIndex::Bound { .. } => Ok(()),
        BoundIndex::Absent => tpm
            .define_bound(
                binding.locality,
                index(page),
                binding.pcr,
                PCR_BOUND_PAGE_ATTRIBUTES,
                PAGE_LEN,
            )
            .map_err(fail),
        BoundIndex::Foreign(public) => Err(CounterError::Foreign { page, public }),
    }
}

/// What page `page`'s index is.
fn look<M: Mmio>(
    tpm: &mut Tpm<M>,
    binding: Binding,
    page: u32,
) -> Result<BoundIndex, CounterError> {
    tpm.bound_index(binding.locality, index(page), binding.pcr, PCR_BOUND_PAGE_ATTRIBUTES, PAGE_LEN)
        .map_err(|error| CounterError::Tpm { page, error })
}

/// Page `page`, in use: there, bound to this launch, written.
fn read<M: Mmio>(
    tpm: &mut Tpm<M>,
    binding: Binding,
    page: u32,
) -> Result<[u8; PAGE_LEN as usize], CounterError> {
    match look(tpm, binding, page)? {
        BoundIndex::Bound { written: true } => {}
        BoundIndex::Bound { written: false } => return Err(CounterError::Unwritten { page }),
        BoundIndex::Absent => return Err(CounterError::Missing { page }),
        BoundIndex::Foreign(public) => return Err(CounterError::Foreign { page, public }),
    }
    let bytes = tpm
        .read_bound(binding.locality, index(page), binding.pcr, 0, PAGE_LEN)
        .map_err(|error| CounterError::Tpm { page, error })?;
    bytes.try_into().map_err(|_| CounterError::Tpm {
        page,
        error: TpmError::Malformed("TPM2_NV_Read returned other than the bytes asked"),
    })
}

/// How many times a write the TPM answered with a warning is sent (a warning, such as
/// `TPM_RC_NV_RATE` or `TPM_RC_RETRY`, says the command was not executed).
pub const WRITE_ATTEMPTS: u32 = 8;

/// Writes `data` at `at` of page `page` in one TPM2_NV_Write, sent again (up to
/// [`WRITE_ATTEMPTS`] times) while the TPM answers a warning: a PAL's Manager stops on a
/// failed increment, and a TPM that is only busy must not stop it.
fn write<M: Mmio>(
    tpm: &mut Tpm<M>,
    binding: Binding,
    page: u32,
    at: usize,
    data: &[u8],
) -> Result<(), CounterError> {
    let fail = |error| CounterError::Tpm { page, error };
    let at = u16::try_from(at).map_err(|_| fail(TpmError::Argument("NV offset above 65535")))?;
    let mut attempts = 1;
    loop {
        match tpm.write_bound(binding.locality, index(page), binding.pcr, at, data) {
            Err(TpmError::Tpm(rc)) if rc.is_warning() && attempts < WRITE_ATTEMPTS => {
                attempts += 1;
            }
            result => return result.map_err(fail),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::command;
    use super::super::tests::Simulated;
    use super::super::tis::fake::Fake;
    use super::*;
    use alloc::rc::Rc;
    use core::cell::RefCell;

    /// [`SLOTS`] as a u32.
    const SLOTS_U32: u32 = 12;

    fn at(offset: usize) -> u16 {
        u16::try_from(offset).unwrap()
    }

    const LAUNCH: Binding = Binding { locality: 2, pcr: 17 };

    /// A started simulated TPM, and a handle on it for the owner's doings between boots.
    fn machine() -> (Rc<RefCell<Simulated>>, Tpm<Fake>) {
        let simulated = Rc::new(RefCell::new(Simulated::new()));
        simulated.borrow_mut().started = true;
        let inner = Rc::clone(&simulated);
        let tpm = Tpm::new(Fake::new(0x1000, move |c| inner.borrow_mut().execute(c)), 100);
        (simulated, tpm)
    }

    fn id(n: u32) -> [u8; 32] {
        vpr_proto::crypto::hash(&[b"counter", &n.to_be_bytes()]).0
    }

    /// The owner deletes NV index `index` (TPM2_NV_UndefineSpace: an owner's index is the
    /// owner's to delete).
    fn undefine(tpm: &Rc<RefCell<Simulated>>, index: u32) {
        let mut tpm = tpm.borrow_mut();
        let before = tpm.nv.len();
        tpm.nv.retain(|nv| nv.handle != index);
        assert_eq!(tpm.nv.len(), before - 1, "index {index:#x} was there");
    }

    #[test]
    fn counters_count_and_survive_a_reboot() {
        let (_, mut tpm) = machine();
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        assert!(counters.is_empty());
        assert_eq!(counters.get(&id(1)), 0);
        assert_eq!(counters.increment(&mut tpm, &id(1)), Ok(1));
        assert_eq!(counters.increment(&mut tpm, &id(1)), Ok(2));
        assert_eq!(counters.increment(&mut tpm, &id(2)), Ok(1));
        assert_eq!((counters.get(&id(1)), counters.get(&id(2)), counters.get(&id(3))), (2, 1, 0));

        // The next boot reads them from the TPM.
        let mut again = Counters::open(&mut tpm, LAUNCH).unwrap();
        assert_eq!((again.pages(), again.len()), (1, 2));
        assert_eq!((again.get(&id(1)), again.get(&id(2)), again.get(&id(3))), (2, 1, 0));
        assert_eq!(again.increment(&mut tpm, &id(2)), Ok(2));
        assert_eq!(Counters::open(&mut tpm, LAUNCH).unwrap().get(&id(2)), 2);
    }

    #[test]
    fn a_full_page_takes_the_next_until_all_are_full() {
        let (_, mut tpm) = machine();
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        let all = MAX_PAGES * SLOTS_U32;
        for n in 0..all {
            assert_eq!(counters.increment(&mut tpm, &id(n)), Ok(1), "counter {n}");
        }
        assert_eq!(counters.pages(), MAX_PAGES as usize);
        assert_eq!(counters.increment(&mut tpm, &id(all)), Err(CounterError::Full));
        // Those kept still count.
        assert_eq!(counters.increment(&mut tpm, &id(all - 1)), Ok(2));
        let again = Counters::open(&mut tpm, LAUNCH).unwrap();
        assert_eq!(
            (again.pages(), again.len()),
            (MAX_PAGES as usize, usize::try_from(all).unwrap())
        );
        assert_eq!((again.get(&id(0)), again.get(&id(all - 1)), again.get(&id(all))), (1, 2, 0));
    }

    #[test]
    fn an_all_zero_id_and_the_largest_value_are_refused() {
        let (_, mut tpm) = machine();
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        assert_eq!(counters.increment(&mut tpm, &[0; 32]), Err(CounterError::ZeroId));
        counters.increment(&mut tpm, &id(1)).unwrap();
        // This launch sets the value (as only it can) to the largest.
        tpm.write_bound(2, PAGE_BASE, 17, at(HEADER + 32), &u64::MAX.to_be_bytes()).unwrap();
        let mut counters = Counters::open(&mut tpm, LAUNCH).unwrap();
        assert_eq!(counters.get(&id(1)), u64::MAX);
        assert_eq!(counters.increment(&mut tpm, &id(1)), Err(CounterError::Overflow));
        assert_eq!(Counters::open(&mut tpm, LAUNCH).unwrap().get(&id(1)), u64::MAX);
    }

    /// The owner may neither read nor write a page: TPM_RC_NV_AUTHORIZATION.
    #[test]
    fn the_owner_cannot_read_or_write_a_page() {
        let (_, mut tpm) = machine();
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        counters.increment(&mut tpm, &id(1)).unwrap();
        let refused = Err(TpmError::Tpm(super::super::ResponseCode(0x149)));
        assert_eq!(tpm.nv_write(0, PAGE_BASE, at(HEADER + 32), &[0; 8]), refused);
        assert_eq!(tpm.nv_read(0, PAGE_BASE, 0, PAGE_LEN).map(drop), refused);
        assert_eq!(Counters::open(&mut tpm, LAUNCH).unwrap().get(&id(1)), 1);
    }

    /// A page deleted while the master secret stays: the counters refuse, and never read as
    /// zero — whether the page is left absent, defined again as this launch defines it
    /// (unwritten: only this launch can write it), or defined again so the owner can write
    /// it.
    #[test]
    fn a_deleted_page_is_refused_not_read_as_zero() {
        let (simulated, mut tpm) = machine();
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        for n in 0..=SLOTS_U32 {
            counters.increment(&mut tpm, &id(n)).unwrap();
        }
        assert_eq!(counters.pages(), 2);

        // Page 1, then page 0.
        for page in [1, 0] {
            let tpm = &mut tpm;
            undefine(&simulated, index(page));
            assert_eq!(Counters::open(tpm, LAUNCH).unwrap_err(), CounterError::Missing { page });

            // Defined again as this launch would: there, bound, but never written.
            tpm.define_bound(2, index(page), 17, PCR_BOUND_PAGE_ATTRIBUTES, PAGE_LEN).unwrap();
            assert_eq!(Counters::open(tpm, LAUNCH).unwrap_err(), CounterError::Unwritten { page });

            // Defined again so the owner may write it, holding a header of one page and no
            // counters.
            undefine(&simulated, index(page));
            let policy = tpm.bound_policy(2, 17).unwrap();
            let owned = PCR_BOUND_PAGE_ATTRIBUTES | command::TPMA_NV_OWNERWRITE;
            let define =
                command::nv_define_space_with_policy(index(page), owned, PAGE_LEN, &policy);
            command::parse_nv_define_space(&tpm.tis().transact(0, &define).unwrap()).unwrap();
            let mut forged = [0u8; PAGE_LEN as usize];
            forged[..8].copy_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
            tpm.nv_write(0, index(page), 0, &forged).unwrap();
            match Counters::open(tpm, LAUNCH) {
                Err(CounterError::Foreign { page: p, public }) => {
                    assert_eq!((p, public.attributes & command::TPMA_NV_OWNERWRITE), (page, 2));
                }
                other => panic!("page {page}: {other:?}"),
            }
        }
    }

    /// Pages bound to another launch (another PCR 17) are refused by this one, and this
    /// launch's pages by another.
    #[test]
    fn another_launchs_pages_are_refused() {
        let (_, mut tpm) = machine();
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        counters.increment(&mut tpm, &id(1)).unwrap();
        tpm.pcr_extend(2, 17, &[9; 32]).unwrap();
        assert!(matches!(
            Counters::open(&mut tpm, LAUNCH),
            Err(CounterError::Foreign { page: 0, .. })
        ));
        assert!(matches!(
            Counters::initialize(&mut tpm, LAUNCH),
            Err(CounterError::Foreign { page: 0, .. })
        ));
    }

    /// A new master secret (the old one deleted) starts the counters again from page 0,
    /// whatever the old TCC's pages held; its later pages are written whole before use.
    #[test]
    fn a_new_tcc_starts_from_empty_pages() {
        let (_, mut tpm) = machine();
        let mut old = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        for n in 0..2 * SLOTS_U32 {
            old.increment(&mut tpm, &id(n)).unwrap();
        }
        assert_eq!(old.pages(), 2);
        let mut new = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        assert_eq!((new.pages(), new.len(), new.get(&id(0))), (1, 0, 0));
        for n in 100..100 + SLOTS_U32 + 1 {
            assert_eq!(new.increment(&mut tpm, &id(n)), Ok(1));
        }
        let again = Counters::open(&mut tpm, LAUNCH).unwrap();
        assert_eq!((again.pages(), again.len()), (2, SLOTS + 1));
        assert_eq!((again.get(&id(SLOTS_U32)), again.get(&id(100 + SLOTS_U32))), (0, 1));
    }

    /// Page 0's header is checked: a count of pages out of range, another format, one id in
    /// two slots.
    #[test]
    fn a_bad_header_or_a_duplicate_is_refused() {
        let (_, mut tpm) = machine();
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        counters.increment(&mut tpm, &id(1)).unwrap();
        for (header, pages, format) in [
            ([0, 0, 0, 0, 0, 0, 0, 1], 0, 1),
            ([0, 0, 0, 65, 0, 0, 0, 1], 65, 1),
            ([0, 0, 0, 1, 0, 0, 0, 2], 1, 2),
        ] {
            tpm.write_bound(2, PAGE_BASE, 17, 0, &header).unwrap();
            assert_eq!(
                Counters::open(&mut tpm, LAUNCH).unwrap_err(),
                CounterError::Header { pages, format }
            );
        }
        tpm.write_bound(2, PAGE_BASE, 17, 0, &[0, 0, 0, 1, 0, 0, 0, 1]).unwrap();
        let mut twice = [0u8; SLOT];
        twice[..32].copy_from_slice(&id(1));
        tpm.write_bound(2, PAGE_BASE, 17, at(HEADER + SLOT), &twice).unwrap();
        assert_eq!(Counters::open(&mut tpm, LAUNCH).unwrap_err(), CounterError::Duplicate);
    }

    /// What the TPM does with the NV_Write (code 0x137) number `nth` from now on.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Fault {
        /// Not executed; answered TPM_RC_FAILURE (0x101).
        Refused,
        /// Executed, then the answer lost (the driver sees TPM_RC_FAILURE).
        Lost,
    }

    /// Which NV_Write from now on fails, and how.
    type Knob = Rc<RefCell<Option<(u32, Fault)>>>;

    /// A machine whose `nth` next NV_Write (counted from when the knob is set) suffers `fault`.
    fn faulty_machine() -> (Rc<RefCell<Simulated>>, Knob, Tpm<Fake>) {
        let simulated = Rc::new(RefCell::new(Simulated::new()));
        simulated.borrow_mut().started = true;
        let knob: Knob = Rc::new(RefCell::new(None));
        let (inner, k) = (Rc::clone(&simulated), Rc::clone(&knob));
        let tpm = Tpm::new(
            Fake::new(0x1000, move |c| {
                let code = u32::from_be_bytes(c[6..10].try_into().unwrap());
                let mut k = k.borrow_mut();
                let failure = [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01].to_vec();
                if code == 0x137 {
                    if let Some((n, fault)) = *k {
                        if n == 0 {
                            *k = None;
                            return match fault {
                                Fault::Refused => failure,
                                Fault::Lost => {
                                    inner.borrow_mut().execute(c);
                                    failure
                                }
                            };
                        }
                        *k = Some((n - 1, fault));
                    }
                }
                inner.borrow_mut().execute(c)
            }),
            100,
        );
        (simulated, knob, tpm)
    }

    /// Every crash point of a new page (its write refused or lost, page 0's count refused or
    /// lost), and of a value or a new slot: afterwards the counters open, no id is in two
    /// slots, and no value ever returned goes back.
    #[test]
    fn every_write_failing_or_lost_keeps_the_counters_consistent() {
        for (nth, fault) in
            [(0, Fault::Refused), (0, Fault::Lost), (1, Fault::Refused), (1, Fault::Lost)]
        {
            let (_, knob, mut tpm) = faulty_machine();
            let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
            for n in 0..SLOTS_U32 {
                counters.increment(&mut tpm, &id(n)).unwrap();
            }
            // Counter 100 needs page 1: write #0 is the page, #1 page 0's count.
            *knob.borrow_mut() = Some((nth, fault));
            assert!(counters.increment(&mut tpm, &id(100)).is_err(), "{nth} {fault:?}");
            // As with_counters does: the copy is dropped and the pages read again.
            let mut again = Counters::open(&mut tpm, LAUNCH).unwrap();
            let seen = again.get(&id(100));
            assert!(seen <= 1);
            assert_eq!(again.increment(&mut tpm, &id(100)), Ok(seen + 1), "{nth} {fault:?}");
            for n in 200..200 + SLOTS_U32 {
                again.increment(&mut tpm, &id(n)).unwrap();
            }
            let reopened = Counters::open(&mut tpm, LAUNCH).unwrap();
            assert_eq!(reopened.get(&id(100)), seen + 1);
            assert_eq!(reopened.get(&id(0)), 1);
        }
    }

    /// A value write whose answer is lost: the TPM holds v+1, the PAL was told it failed. The
    /// copy dropped (as `with_counters` does), the next increment returns v+2: v+1 is never
    /// returned (no roll-back; a gap, and the PAL's Manager stopped at the failure anyway).
    #[test]
    fn a_lost_value_answer_skips_a_value() {
        let (_, knob, mut tpm) = faulty_machine();
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        assert_eq!(counters.increment(&mut tpm, &id(1)), Ok(1));
        *knob.borrow_mut() = Some((0, Fault::Lost));
        assert!(counters.increment(&mut tpm, &id(1)).is_err());
        assert_eq!(counters.get(&id(1)), 1, "the copy is unchanged");
        let mut reopened = Counters::open(&mut tpm, LAUNCH).unwrap();
        assert_eq!(reopened.get(&id(1)), 2, "the TPM holds the value never returned");
        assert_eq!(reopened.increment(&mut tpm, &id(1)), Ok(3));
        // The copy kept instead writes 2 again.
        assert_eq!(counters.increment(&mut tpm, &id(1)), Ok(2));
    }

    /// The owner defines every later page exactly as this launch would, before the counters
    /// need them (and page 0 before the first boot): each is written whole before it counts.
    #[test]
    fn pages_the_owner_defined_in_advance_are_written_whole() {
        let (_, mut tpm) = machine();
        for page in 0..3 {
            tpm.define_bound(2, index(page), 17, PCR_BOUND_PAGE_ATTRIBUTES, PAGE_LEN).unwrap();
        }
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        for n in 0..2 * SLOTS_U32 + 1 {
            assert_eq!(counters.increment(&mut tpm, &id(n)), Ok(1));
        }
        let again = Counters::open(&mut tpm, LAUNCH).unwrap();
        assert_eq!((again.pages(), again.len()), (3, 2 * SLOTS + 1));
    }

    /// An old TCC's pages hold ids the new TCC uses again, with higher values: none of them is
    /// read, and a page the new TCC takes is rewritten whole (no Duplicate, no old value).
    #[test]
    fn an_old_tccs_stale_pages_never_leak_values() {
        let (_, mut tpm) = machine();
        let mut old = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        for n in 0..3 * SLOTS_U32 {
            for _ in 0..5 {
                old.increment(&mut tpm, &id(n)).unwrap();
            }
        }
        let mut new = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        for n in (0..3 * SLOTS_U32).rev() {
            assert_eq!(new.increment(&mut tpm, &id(n)), Ok(1));
        }
        let again = Counters::open(&mut tpm, LAUNCH).unwrap();
        assert_eq!((again.pages(), again.len()), (3, 3 * SLOTS));
        assert!((0..3 * SLOTS_U32).all(|n| again.get(&id(n)) == 1));
    }

    /// Pages deleted between boots in every order (a page past the count, a page in use,
    /// page 0 and redefined): the counters refuse or are as they were; never lower.
    #[test]
    fn deleting_pages_in_any_order_never_lowers_a_counter() {
        let (simulated, mut tpm) = machine();
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        for n in 0..2 * SLOTS_U32 {
            for _ in 0..3 {
                counters.increment(&mut tpm, &id(n)).unwrap();
            }
        }
        // A page past the count (the owner defined it, then deletes it): harmless.
        tpm.define_bound(2, index(5), 17, PCR_BOUND_PAGE_ATTRIBUTES, PAGE_LEN).unwrap();
        undefine(&simulated, index(5));
        let opened = Counters::open(&mut tpm, LAUNCH).unwrap();
        assert!((0..2 * SLOTS_U32).all(|n| opened.get(&id(n)) == 3));
        // Page 1 deleted, page 0 then deleted and redefined: refused at every step.
        undefine(&simulated, index(1));
        assert!(Counters::open(&mut tpm, LAUNCH).is_err());
        undefine(&simulated, index(0));
        tpm.define_bound(2, index(0), 17, PCR_BOUND_PAGE_ATTRIBUTES, PAGE_LEN).unwrap();
        assert!(Counters::open(&mut tpm, LAUNCH).is_err());
        tpm.define_bound(2, index(1), 17, PCR_BOUND_PAGE_ATTRIBUTES, PAGE_LEN).unwrap();
        assert!(Counters::open(&mut tpm, LAUNCH).is_err());
    }

    /// A TPM that answers a warning (NV_RATE: not executed) is asked again: the increment
    /// succeeds once it takes the write; a TPM that stays busy past [`WRITE_ATTEMPTS`] fails
    /// it, and nothing changed.
    #[test]
    fn a_busy_tpm_is_asked_again() {
        let simulated = Rc::new(RefCell::new(Simulated::new()));
        simulated.borrow_mut().started = true;
        let busy = Rc::new(core::cell::Cell::new(0u32));
        let (inner, left) = (Rc::clone(&simulated), Rc::clone(&busy));
        let mut tpm = Tpm::new(
            Fake::new(0x1000, move |c| {
                if c[6..10] == [0, 0, 0x01, 0x37] && left.get() > 0 {
                    left.set(left.get() - 1);
                    return [0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x20].to_vec();
                }
                inner.borrow_mut().execute(c)
            }),
            100,
        );
        let mut counters = Counters::initialize(&mut tpm, LAUNCH).unwrap();
        busy.set(WRITE_ATTEMPTS - 1);
        assert_eq!(counters.increment(&mut tpm, &id(1)), Ok(1));
        assert_eq!(busy.get(), 0);
        busy.set(WRITE_ATTEMPTS);
        let busy_rc = TpmError::Tpm(super::super::ResponseCode(0x920));
        assert_eq!(
            counters.increment(&mut tpm, &id(1)),
            Err(CounterError::Tpm { page: 0, error: busy_rc })
        );
        assert_eq!(Counters::open(&mut tpm, LAUNCH).unwrap().get(&id(1)), 1);
    }
}
