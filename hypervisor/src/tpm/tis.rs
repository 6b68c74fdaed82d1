//! The TPM's FIFO interface ("TIS", after the TPM Interface Specification it grew from):
//! memory-mapped registers, one 4 KiB page per locality, through which a command is written
//! byte by byte and its response read back (PTP §6).
//!
//! [`Tis`] drives the protocol over an [`Mmio`] implementation, which the bootable image backs
//! with volatile accesses at [`TIS_BASE`] and the tests with fakes:
//!
//! - [`Tis::probe`]: is there a TPM, which, of which family;
//! - [`Tis::transact`]: one command and its response at one locality — request the locality,
//!   `commandReady`, the command in bursts of at most `burstCount` bytes, `Expect` checked,
//!   `tpmGo`, wait for `dataAvail`, the 10-byte header, the rest (bounded by the header's size
//!   and [`MAX_RESPONSE`]), `commandReady`, release the locality. The locality is released
//!   on every path, errors included.
//!
//! Every wait is a poll of at most `max_polls` register reads; the device is not trusted:
//! whatever the registers return, [`Tis`] ends with a result or a [`TpmError`], never a panic
//! or an endless loop.
//!
//! Access widths: `TPM_ACCESS_x` and the FIFO are byte registers; the control bits of
//! `TPM_STS_x` (`commandReady`, `tpmGo`) are in its byte 0, written alone; `TPM_STS_x` is
//! read whole (32 bits) so that `burstCount` (bits 8 to 23) comes from one access — some
//! TPMs mishandle partial reads at non-zero offsets. `TPM_DID_VID_x` is read as 32 bits.

use super::command::HEADER_LEN;
use super::TpmError;
use alloc::vec::Vec;
use core::fmt;

/// Physical address of the TPM's register space: locality 0's page (PTP §6: the FIFO
/// interface of a PC Client TPM lies at `0xFED4_0000`..`0xFED4_4FFF`).
pub const TIS_BASE: u64 = 0xFED4_0000;
/// Distance between two localities' register pages: locality `n` at
/// `TIS_BASE + n * LOCALITY_STRIDE`.
pub const LOCALITY_STRIDE: u64 = 0x1000;
/// The highest locality: there are five, 0 to 4.
pub const MAX_LOCALITY: u8 = 4;

/// The largest command [`Tis::transact`] sends.
pub const MAX_COMMAND: usize = 4096;
/// The largest response [`Tis::transact`] accepts; a header announcing more is
/// [`TpmError::TooLarge`].
pub const MAX_RESPONSE: usize = 4096;

// Register offsets inside a locality's page (PTP §6, "Allocation of Register Space for FIFO
// TPM Access"; the `_x` of the specification's names is the locality).

/// `TPM_ACCESS_x` (1 byte): locality arbitration; see [`access`].
pub const TPM_ACCESS: u16 = 0x000;
/// `TPM_INT_ENABLE_x` (4 bytes): interrupt enables (unused: the driver polls).
pub const TPM_INT_ENABLE: u16 = 0x008;
/// `TPM_INT_VECTOR_x` (1 byte): the SIRQ vector (unused).
pub const TPM_INT_VECTOR: u16 = 0x00C;
/// `TPM_INT_STATUS_x` (4 bytes): interrupt status (unused).
pub const TPM_INT_STATUS: u16 = 0x010;
/// `TPM_INTF_CAPABILITY_x` (4 bytes): supported interrupts and transfer sizes (unused).
pub const TPM_INTF_CAPABILITY: u16 = 0x014;
/// `TPM_STS_x` (4 bytes): status, `burstCount` and family; see [`Status`] and [`sts`].
pub const TPM_STS: u16 = 0x018;
/// `TPM_DATA_FIFO_x` (1 byte used): command bytes in, response bytes out.
pub const TPM_DATA_FIFO: u16 = 0x024;
/// `TPM_INTERFACE_ID_x` (4 bytes): interface type and capabilities (unused).
pub const TPM_INTERFACE_ID: u16 = 0x030;
/// `TPM_XDATA_FIFO_x` (up to 64 bytes): the extended FIFO for wide transfers (unused).
pub const TPM_XDATA_FIFO: u16 = 0x080;
/// `TPM_DID_VID_x` (4 bytes): vendor ID in bits 0 to 15, device ID in bits 16 to 31.
pub const TPM_DID_VID: u16 = 0xF00;
/// `TPM_RID_x` (1 byte): revision ID.
pub const TPM_RID: u16 = 0xF04;

/// Bits of `TPM_ACCESS_x` (PTP §6, `TPM_ACCESS_x`).
pub mod access {
    /// Read: the other bits are valid (`tpmRegValidSts`).
    pub const VALID: u8 = 0x80;
    /// Read: this locality is active; write 1: relinquish it, or withdraw a pending request
    /// (`activeLocality`).
    pub const ACTIVE_LOCALITY: u8 = 0x20;
    /// Read: a higher locality seized the TPM from this one (`beenSeized`).
    pub const BEEN_SEIZED: u8 = 0x10;
    /// Write 1: take the TPM from lower localities (`Seize`; unused).
    pub const SEIZE: u8 = 0x08;
    /// Read: another locality is requesting the TPM (`pendingRequest`).
    pub const PENDING_REQUEST: u8 = 0x04;
    /// Write 1: request this locality (`requestUse`).
    pub const REQUEST_USE: u8 = 0x02;
    /// Read: no dynamic OS has been launched since the last reset (`tpmEstablishment`).
    pub const ESTABLISHMENT: u8 = 0x01;
}

/// Bits of byte 0 of `TPM_STS_x` (PTP §6, `TPM_STS_x`); [`Status`] decodes the whole
/// register.
pub mod sts {
    /// Read: `dataAvail` and `Expect` are valid (`stsValid`).
    pub const VALID: u8 = 0x80;
    /// Read: the TPM is ready for a command; write 1: make it ready, aborting a command
    /// under way and dropping an unread response (`commandReady`).
    pub const COMMAND_READY: u8 = 0x40;
    /// Write 1: execute the command written to the FIFO (`tpmGo`).
    pub const GO: u8 = 0x20;
    /// Read: response bytes are waiting in the FIFO (`dataAvail`).
    pub const DATA_AVAIL: u8 = 0x10;
    /// Read: the TPM expects more command bytes (`Expect`).
    pub const EXPECT: u8 = 0x08;
    /// Read: self-tests are done (`selfTestDone`).
    pub const SELF_TEST_DONE: u8 = 0x04;
    /// Write 1: send the response again from its first byte (`responseRetry`; unused).
    pub const RESPONSE_RETRY: u8 = 0x02;
}

/// A value of `TPM_STS_x`, read as 32 bits (PTP §6, `TPM_STS_x`): status in bits 0 to 7,
/// `burstCount` in bits 8 to 23, `commandCancel` (24), `resetEstablishmentBit` (25),
/// `tpmFamily` in bits 26 and 27.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// `tpmFamily` of a TPM 2.0 (`0b00` is TPM 1.2).
    pub const FAMILY_TPM2: u8 = 0b01;

    /// The status byte (bits 0 to 7), whose bits are [`sts`].
    pub fn byte(self) -> u8 {
        self.0.to_le_bytes()[0]
    }

    /// `stsValid`.
    pub fn valid(self) -> bool {
        self.byte() & sts::VALID != 0
    }

    /// `commandReady`.
    pub fn command_ready(self) -> bool {
        self.byte() & sts::COMMAND_READY != 0
    }

    /// `dataAvail`.
    pub fn data_avail(self) -> bool {
        self.byte() & sts::DATA_AVAIL != 0
    }

    /// `Expect`.
    pub fn expect(self) -> bool {
        self.byte() & sts::EXPECT != 0
    }

    /// `burstCount`: how many bytes the FIFO takes or gives without another look at the
    /// status.
    pub fn burst_count(self) -> u16 {
        let [_, low, high, _] = self.0.to_le_bytes();
        u16::from_le_bytes([low, high])
    }

    /// `tpmFamily` (bits 26 and 27): [`Status::FAMILY_TPM2`] for a TPM 2.0.
    pub fn family(self) -> u8 {
        (self.0.to_le_bytes()[3] >> 2) & 0b11
    }
}

/// Access to the TPM's registers: `offset` (one of the `TPM_*` register offsets, below
/// `0x1000`) in the page of `locality` (0 to [`MAX_LOCALITY`]), that is at physical address
/// [`address`]`(locality, offset)`. [`Tis`] never passes anything else.
///
/// The image implements it with volatile accesses of exactly the width named; the tests
/// implement it with fakes.
pub trait Mmio {
    /// Reads the byte register at `offset`.
    fn read8(&mut self, locality: u8, offset: u16) -> u8;
    /// Reads the 32-bit register at `offset`.
    fn read32(&mut self, locality: u8, offset: u16) -> u32;
    /// Writes the byte register at `offset`.
    fn write8(&mut self, locality: u8, offset: u16, value: u8);
    /// Writes the 32-bit register at `offset` ([`Tis`] itself only writes bytes).
    fn write32(&mut self, locality: u8, offset: u16, value: u32);
    /// Called between two reads of a poll: a place to pause (a `PAUSE` instruction, a short
    /// delay) so that `max_polls` stands for a time. Does nothing by default.
    fn relax(&mut self) {}
}

/// The physical address of register `offset` of locality `locality`:
/// `TIS_BASE + locality * LOCALITY_STRIDE + offset`.
pub const fn address(locality: u8, offset: u16) -> u64 {
    TIS_BASE + locality as u64 * LOCALITY_STRIDE + offset as u64
}

/// What [`Tis::probe`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TisInfo {
    /// The TCG vendor ID (`TPM_DID_VID` bits 0 to 15; 0x1014 is IBM, whose ID swtpm uses).
    pub vendor: u16,
    /// The vendor's device ID (`TPM_DID_VID` bits 16 to 31).
    pub device: u16,
    /// The revision ID (`TPM_RID`).
    pub revision: u8,
    /// Whether `TPM_STS.tpmFamily` says TPM 2.0.
    pub tpm2: bool,
}

impl fmt::Display for TisInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TPM {}, vendor {:#06x}, device {:#06x}, revision {:#04x}",
            if self.tpm2 { "2.0" } else { "of another family" },
            self.vendor,
            self.device,
            self.revision
        )
    }
}

/// The FIFO interface of a TPM, driven by polling through `M`.
#[derive(Debug)]
pub struct Tis<M: Mmio> {
    mmio: M,
    max_polls: u32,
}

impl<M: Mmio> Tis<M> {
    /// The TPM whose registers `mmio` reaches. Every wait reads the register it waits on at
    /// most `max_polls` times (at least once), calling [`Mmio::relax`] between two reads,
    /// and then fails with [`TpmError::Timeout`]. The wait for a command's execution is one
    /// of them: `max_polls` must cover the slowest command sent.
    pub fn new(mmio: M, max_polls: u32) -> Self {
        Tis { mmio, max_polls }
    }

    /// The register access, for what this type does not do.
    pub fn mmio(&mut self) -> &mut M {
        &mut self.mmio
    }

    /// Gives the register access back.
    pub fn into_inner(self) -> M {
        self.mmio
    }

    /// Whether a TPM answers, and which: `TPM_DID_VID` and `TPM_RID` of locality 0, then the
    /// family from `TPM_STS`, which is only valid while the locality is active: locality 0 is
    /// requested for that read and released.
    ///
    /// `TPM_DID_VID` reading 0 or `0xFFFF_FFFF` (nothing decodes the addresses, or the
    /// window reads as zeros) is [`TpmError::NoTpm`]; a locality never granted is
    /// [`TpmError::Timeout`].
    pub fn probe(&mut self) -> Result<TisInfo, TpmError> {
        let did_vid = self.mmio.read32(0, TPM_DID_VID);
        if did_vid == 0 || did_vid == u32::MAX {
            return Err(TpmError::NoTpm);
        }
        let [vendor_low, vendor_high, device_low, device_high] = did_vid.to_le_bytes();
        let revision = self.mmio.read8(0, TPM_RID);
        let granted = self.request(0);
        let status = granted.map(|()| self.status(0));
        self.release(0);
        Ok(TisInfo {
            vendor: u16::from_le_bytes([vendor_low, vendor_high]),
            device: u16::from_le_bytes([device_low, device_high]),
            revision,
            tpm2: status?.family() == Status::FAMILY_TPM2,
        })
    }

    /// Sends `command` (a whole marshalled command: its header's size field must be its
    /// length, at most [`MAX_COMMAND`]) at `locality` and returns the whole response, header
    /// included, as the TPM gave it: its response code is not looked at (see
    /// [`super::command::response`]).
    ///
    /// The exchange (PTP §6, the FIFO interface's command send and response receive flows):
    /// request the locality (`TPM_ACCESS.requestUse`) and wait for `tpmRegValidSts` and
    /// `activeLocality`; write `commandReady` and wait for it; write the command in bursts of
    /// at most `burstCount` bytes, checking between two bursts that the TPM still expects
    /// bytes; wait for `stsValid` and require `Expect` clear ([`TpmError::Expect`]); write
    /// `tpmGo`; wait for `stsValid` and `dataAvail`; read the 10-byte header, whose size must
    /// be at least 10 ([`TpmError::Malformed`]) and at most [`MAX_RESPONSE`]
    /// ([`TpmError::TooLarge`]); read the rest in bursts; require `dataAvail` clear once
    /// `size` bytes are read. Then, on success and on every error alike: write `commandReady`
    /// (returning the TPM to ready, aborting whatever was under way) and release the locality
    /// (`TPM_ACCESS.activeLocality`, which also withdraws a request never granted).
    ///
    /// Refused before any register access ([`TpmError::Argument`], [`TpmError::TooLarge`]):
    /// a locality above [`MAX_LOCALITY`], a command shorter than its header, longer than
    /// [`MAX_COMMAND`], or whose size field disagrees with its length.
    pub fn transact(&mut self, locality: u8, command: &[u8]) -> Result<Vec<u8>, TpmError> {
        if locality > MAX_LOCALITY {
            return Err(TpmError::Argument("locality above 4"));
        }
        check_command(command)?;
        let result = match self.request(locality) {
            Ok(()) => {
                let result = self.send(locality, command).and_then(|()| self.receive(locality));
                self.mmio.write8(locality, TPM_STS, sts::COMMAND_READY);
                result
            }
            Err(e) => Err(e),
        };
        self.release(locality);
        result
    }

    /// Polls `probe` on the register access until it gives a value, at most `max_polls`
    /// times.
    fn poll<T>(
        &mut self,
        what: &'static str,
        mut probe: impl FnMut(&mut M) -> Option<T>,
    ) -> Result<T, TpmError> {
        for i in 0..self.max_polls.max(1) {
            if i > 0 {
                self.mmio.relax();
            }
            if let Some(value) = probe(&mut self.mmio) {
                return Ok(value);
            }
        }
        Err(TpmError::Timeout(what))
    }

    /// `TPM_STS` of `locality`.
    fn status(&mut self, locality: u8) -> Status {
        Status(self.mmio.read32(locality, TPM_STS))
    }

    /// Polls `TPM_STS` until all of `bits` (of [`sts`]) are set.
    fn wait_status(
        &mut self,
        locality: u8,
        bits: u8,
        what: &'static str,
    ) -> Result<Status, TpmError> {
        self.poll(what, |mmio| {
            let status = Status(mmio.read32(locality, TPM_STS));
            (status.byte() & bits == bits).then_some(status)
        })
    }

    /// Requests `locality` and waits until it is active.
    fn request(&mut self, locality: u8) -> Result<(), TpmError> {
        self.mmio.write8(locality, TPM_ACCESS, access::REQUEST_USE);
        let granted = access::VALID | access::ACTIVE_LOCALITY;
        self.poll("the locality (TPM_ACCESS.activeLocality)", |mmio| {
            (mmio.read8(locality, TPM_ACCESS) & granted == granted).then_some(())
        })
    }

    /// Relinquishes `locality`, or withdraws its request.
    fn release(&mut self, locality: u8) {
        self.mmio.write8(locality, TPM_ACCESS, access::ACTIVE_LOCALITY);
    }

    /// Makes the TPM ready and writes `command` into its FIFO, then `tpmGo`.
    fn send(&mut self, locality: u8, command: &[u8]) -> Result<(), TpmError> {
        self.mmio.write8(locality, TPM_STS, sts::COMMAND_READY);
        self.wait_status(locality, sts::COMMAND_READY, "TPM_STS.commandReady")?;
        let mut rest = command;
        while !rest.is_empty() {
            let status = self.poll("TPM_STS.burstCount while sending", |mmio| {
                let status = Status(mmio.read32(locality, TPM_STS));
                (status.burst_count() > 0).then_some(status)
            })?;
            if rest.len() < command.len() && status.valid() && !status.expect() {
                return Err(TpmError::Malformed(
                    "the TPM stopped expecting command bytes before the last one",
                ));
            }
            let (burst, after) = rest.split_at(rest.len().min(usize::from(status.burst_count())));
            for &byte in burst {
                self.mmio.write8(locality, TPM_DATA_FIFO, byte);
            }
            rest = after;
        }
        let status =
            self.wait_status(locality, sts::VALID, "TPM_STS.stsValid after the command")?;
        if status.expect() {
            return Err(TpmError::Expect);
        }
        self.mmio.write8(locality, TPM_STS, sts::GO);
        Ok(())
    }

    /// Waits for the response and reads it: header, then as many bytes as it announces.
    fn receive(&mut self, locality: u8) -> Result<Vec<u8>, TpmError> {
        self.wait_status(
            locality,
            sts::VALID | sts::DATA_AVAIL,
            "TPM_STS.dataAvail (the command's execution)",
        )?;
        let mut response = Vec::with_capacity(HEADER_LEN);
        self.read_fifo(locality, &mut response, HEADER_LEN)?;
        let size = response
            .get(2..6)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or(TpmError::Malformed("response header missing"))?;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size < HEADER_LEN {
            return Err(TpmError::Malformed("response size below its 10-byte header"));
        }
        if size > MAX_RESPONSE {
            return Err(TpmError::TooLarge);
        }
        response.reserve_exact(size - HEADER_LEN);
        self.read_fifo(locality, &mut response, size - HEADER_LEN)?;
        let status =
            self.wait_status(locality, sts::VALID, "TPM_STS.stsValid after the response")?;
        if status.data_avail() {
            return Err(TpmError::Malformed(
                "the TPM has more response bytes than its header says",
            ));
        }
        Ok(response)
    }

    /// Reads `n` response bytes from the FIFO into `out`, in bursts.
    fn read_fifo(&mut self, locality: u8, out: &mut Vec<u8>, mut n: usize) -> Result<(), TpmError> {
        while n > 0 {
            let status = self.poll("TPM_STS.burstCount while receiving", |mmio| {
                let status = Status(mmio.read32(locality, TPM_STS));
                if status.valid() && !status.data_avail() {
                    // The TPM says the response is over.
                    Some(Err(TpmError::Malformed(
                        "the TPM ended the response early (dataAvail cleared)",
                    )))
                } else {
                    (status.burst_count() > 0).then_some(Ok(status))
                }
            })??;
            let burst = n.min(usize::from(status.burst_count()));
            for _ in 0..burst {
                out.push(self.mmio.read8(locality, TPM_DATA_FIFO));
            }
            n -= burst;
        }
        Ok(())
    }
}

/// Checks a command before it is sent: length between the header's and [`MAX_COMMAND`],
/// size field equal to the length.
fn check_command(command: &[u8]) -> Result<(), TpmError> {
    if command.len() > MAX_COMMAND {
        return Err(TpmError::TooLarge);
    }
    let size = command
        .get(2..6)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .filter(|_| command.len() >= HEADER_LEN)
        .ok_or(TpmError::Argument("command shorter than its 10-byte header"))?;
    if usize::try_from(size).ok() != Some(command.len()) {
        return Err(TpmError::Argument("command size field disagrees with its length"));
    }
    Ok(())
}

/// A fake TPM behind the FIFO interface, for the tests of this module and of [`super`].
#[cfg(test)]
pub(super) mod fake {
    use super::*;
    use alloc::boxed::Box;

    /// Where the fake's FIFO state machine is (PTP §6, FIFO interface states).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum State {
        /// Nothing under way.
        Idle,
        /// `commandReady` written: waiting for the first command byte.
        Ready,
        /// Receiving command bytes.
        Reception,
        /// `tpmGo` written: executing (forever, if `never_completes`).
        Execution,
        /// The response is in the FIFO.
        Completion,
    }

    /// What the fake answers to a command (the command's bytes).
    pub type Responder = Box<dyn FnMut(&[u8]) -> Vec<u8>>;

    /// A TPM 2.0 with QEMU's identity whose FIFO follows the PTP state machine, with knobs
    /// for misbehaviour. It checks the driver never moves more than `burstCount` bytes
    /// through the FIFO without looking at `TPM_STS` again.
    pub struct Fake {
        /// `TPM_DID_VID`.
        pub did_vid: u32,
        /// `TPM_RID`.
        pub rid: u8,
        /// `TPM_STS.tpmFamily`.
        pub family: u8,
        /// Whether a locality request is granted.
        pub grant: bool,
        /// The active locality.
        pub active: Option<u8>,
        /// The FIFO state.
        pub state: State,
        /// `burstCount` (for writes; for reads, capped at what is left).
        pub burst: u16,
        /// The command being received.
        pub command: Vec<u8>,
        /// Every command executed, with the locality it came from.
        pub executed: Vec<(u8, Vec<u8>)>,
        /// The response being read.
        pub response: Vec<u8>,
        /// How many response bytes were read.
        pub read: usize,
        /// Produces the response to a command.
        pub responder: Responder,
        /// Knob: `tpmGo` starts an execution that never ends.
        pub never_completes: bool,
        /// Knob: `Expect` stays set whatever was written.
        pub always_expects: bool,
        /// Knob: `Expect` clears once this many bytes are in, whatever the size field says.
        pub expects_at_most: Option<usize>,
        /// FIFO accesses since the last `TPM_STS` read.
        pub run: usize,
        /// How many times `requestUse` was written.
        pub requests: u32,
        /// How many times `activeLocality` was written (a release).
        pub releases: u32,
        /// How many times `commandReady` was written.
        pub readies: u32,
        /// How many register accesses were made.
        pub accesses: u64,
    }

    impl Fake {
        /// A well-behaved fake answering with `responder`, `burstCount` `burst`.
        pub fn new(burst: u16, responder: impl FnMut(&[u8]) -> Vec<u8> + 'static) -> Self {
            Fake {
                did_vid: 0x0001_1014,
                rid: 1,
                family: Status::FAMILY_TPM2,
                grant: true,
                active: None,
                state: State::Idle,
                burst,
                command: Vec::new(),
                executed: Vec::new(),
                response: Vec::new(),
                read: 0,
                responder: Box::new(responder),
                never_completes: false,
                always_expects: false,
                expects_at_most: None,
                run: 0,
                requests: 0,
                releases: 0,
                readies: 0,
                accesses: 0,
            }
        }

        /// A fake that answers every command with `response`.
        pub fn canned(burst: u16, response: Vec<u8>) -> Self {
            Fake::new(burst, move |_| response.clone())
        }

        fn expecting(&self) -> bool {
            if self.always_expects {
                return true;
            }
            if self.expects_at_most.is_some_and(|n| self.command.len() >= n) {
                return false;
            }
            match self.command.get(2..6) {
                Some(size) => {
                    let size = u32::from_be_bytes(size.try_into().unwrap());
                    self.command.len() < usize::try_from(size).unwrap()
                }
                None => true,
            }
        }

        fn status(&self) -> u32 {
            let family = u32::from(self.family) << 26;
            let burst = |n: usize| u32::try_from(n.min(0xFFFF)).unwrap() << 8;
            let byte = match self.state {
                State::Idle | State::Execution => 0,
                State::Ready => u32::from(sts::COMMAND_READY) | burst(self.burst.into()),
                State::Reception => {
                    let expect = if self.expecting() { sts::EXPECT } else { 0 };
                    u32::from(sts::VALID | expect) | burst(self.burst.into())
                }
                State::Completion => {
                    let left = self.response.len() - self.read;
                    if left > 0 {
                        u32::from(sts::VALID | sts::DATA_AVAIL) | burst(left.min(self.burst.into()))
                    } else {
                        u32::from(sts::VALID)
                    }
                }
            };
            family | byte
        }

        fn fifo_access(&mut self) {
            self.run += 1;
            assert!(
                self.run <= usize::from(self.burst),
                "more than burstCount FIFO accesses without reading TPM_STS"
            );
        }

        fn active(&self, locality: u8) -> bool {
            self.active == Some(locality)
        }
    }

    impl Mmio for Fake {
        fn read8(&mut self, locality: u8, offset: u16) -> u8 {
            self.accesses += 1;
            assert!(locality <= MAX_LOCALITY);
            match offset {
                TPM_ACCESS => {
                    access::VALID | if self.active(locality) { access::ACTIVE_LOCALITY } else { 0 }
                }
                TPM_RID => self.rid,
                TPM_DATA_FIFO if self.active(locality) => {
                    self.fifo_access();
                    if self.state == State::Completion && self.read < self.response.len() {
                        self.read += 1;
                        self.response[self.read - 1]
                    } else {
                        0xFF
                    }
                }
                _ => 0xFF,
            }
        }

        fn read32(&mut self, locality: u8, offset: u16) -> u32 {
            self.accesses += 1;
            assert!(locality <= MAX_LOCALITY);
            match offset {
                TPM_DID_VID => self.did_vid,
                TPM_STS if self.active(locality) => {
                    self.run = 0;
                    self.status()
                }
                _ => u32::MAX,
            }
        }

        fn write8(&mut self, locality: u8, offset: u16, value: u8) {
            self.accesses += 1;
            assert!(locality <= MAX_LOCALITY);
            match offset {
                TPM_ACCESS if value == access::REQUEST_USE => {
                    self.requests += 1;
                    if self.grant && self.active.is_none() {
                        self.active = Some(locality);
                    }
                }
                TPM_ACCESS if value == access::ACTIVE_LOCALITY => {
                    self.releases += 1;
                    if self.active(locality) {
                        self.active = None;
                        self.state = State::Idle;
                    }
                }
                TPM_STS if self.active(locality) && value == sts::COMMAND_READY => {
                    self.readies += 1;
                    self.state = State::Ready;
                    self.command.clear();
                    self.response.clear();
                    self.read = 0;
                }
                TPM_STS if self.active(locality) && value == sts::GO => {
                    if self.state == State::Reception && !self.expecting() {
                        self.executed.push((locality, self.command.clone()));
                        self.response = (self.responder)(&self.command);
                        self.read = 0;
                        self.state =
                            if self.never_completes { State::Execution } else { State::Completion };
                    }
                }
                TPM_DATA_FIFO if self.active(locality) => {
                    self.fifo_access();
                    if self.state == State::Ready {
                        self.state = State::Reception;
                    }
                    if self.state == State::Reception && self.expecting() {
                        self.command.push(value);
                    }
                }
                TPM_ACCESS | TPM_STS | TPM_DATA_FIFO => {}
                _ => panic!("unexpected write8 at {offset:#x}"),
            }
        }

        fn write32(&mut self, _locality: u8, offset: u16, _value: u32) {
            panic!("unexpected write32 at {offset:#x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Fake, State};
    use super::*;
    use alloc::vec;

    /// A GetRandom(16) command and a response carrying 16 bytes (Part 3 §16.1).
    fn get_random_16() -> (Vec<u8>, Vec<u8>) {
        let command = vec![0x80, 0x01, 0, 0, 0, 0x0C, 0, 0, 0x01, 0x7B, 0x00, 0x10];
        let mut response = vec![0x80, 0x01, 0, 0, 0, 0x1C, 0, 0, 0, 0, 0x00, 0x10];
        response.extend(0xA0..0xB0);
        (command, response)
    }

    /// A response header announcing `size` bytes, padded (or cut) to `len` bytes.
    fn response_of(size: u32, len: usize) -> Vec<u8> {
        let mut r = vec![0x80, 0x01];
        r.extend_from_slice(&size.to_be_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]);
        r.resize(len, 0x5A);
        r
    }

    #[test]
    fn addresses_of_registers() {
        assert_eq!(address(0, TPM_ACCESS), 0xFED4_0000);
        assert_eq!(address(0, TPM_DID_VID), 0xFED4_0F00);
        assert_eq!(address(2, TPM_STS), 0xFED4_2018);
        assert_eq!(address(MAX_LOCALITY, TPM_DATA_FIFO), 0xFED4_4024);
    }

    #[test]
    fn status_fields() {
        // QEMU's TPM 2.0, ready for a command: family 01, burstCount 0x1000, commandReady.
        let s = Status(0x0410_0040);
        assert_eq!(s.family(), Status::FAMILY_TPM2);
        assert_eq!(s.burst_count(), 0x1000);
        assert!(s.command_ready() && !s.valid() && !s.data_avail() && !s.expect());
        let s = Status(0x00FF_FF98);
        assert_eq!(s.family(), 0);
        assert_eq!(s.burst_count(), 0xFFFF);
        assert!(s.valid() && s.data_avail() && s.expect() && !s.command_ready());
        assert_eq!(Status(u32::MAX).family(), 0b11);
    }

    #[test]
    fn probe_finds_qemu_tpm() {
        let mut tis = Tis::new(Fake::canned(0x1000, Vec::new()), 100);
        let info = tis.probe().unwrap();
        assert_eq!(info, TisInfo { vendor: 0x1014, device: 0x0001, revision: 1, tpm2: true });
        assert_eq!(info.to_string(), "TPM 2.0, vendor 0x1014, device 0x0001, revision 0x01");
        let fake = tis.into_inner();
        assert_eq!((fake.requests, fake.releases, fake.active), (1, 1, None));
    }

    #[test]
    fn probe_tells_tpm12() {
        let mut fake = Fake::canned(0x1000, Vec::new());
        fake.family = 0;
        let info = Tis::new(fake, 100).probe().unwrap();
        assert!(!info.tpm2);
    }

    #[test]
    fn transact_in_bursts() {
        let (command, response) = get_random_16();
        // burstCount 5: the command (12 bytes) and the response (28) take several bursts.
        let mut tis = Tis::new(Fake::canned(5, response.clone()), 100);
        assert_eq!(tis.transact(0, &command).unwrap(), response);
        let fake = tis.into_inner();
        assert_eq!(fake.executed, vec![(0, command)]);
        assert_eq!(fake.active, None, "locality released");
        assert_eq!((fake.requests, fake.releases, fake.readies), (1, 1, 2));
    }

    #[test]
    fn transact_with_burst_of_one_and_large_burst() {
        let (command, response) = get_random_16();
        for burst in [1, 2, 3, 11, 12, 13, 0x1000, 0xFFFF] {
            let mut tis = Tis::new(Fake::canned(burst, response.clone()), 100);
            assert_eq!(tis.transact(0, &command).unwrap(), response, "burst {burst}");
        }
    }

    #[test]
    fn transact_at_every_locality() {
        let (command, response) = get_random_16();
        let mut tis = Tis::new(Fake::canned(8, response.clone()), 100);
        for locality in 0..=MAX_LOCALITY {
            assert_eq!(tis.transact(locality, &command).unwrap(), response);
            assert_eq!(tis.mmio().active, None);
        }
        let localities: Vec<u8> = tis.mmio().executed.iter().map(|(l, _)| *l).collect();
        assert_eq!(localities, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn transact_refuses_bad_arguments_without_touching_the_tpm() {
        let (command, _) = get_random_16();
        let mut tis = Tis::new(Fake::canned(8, Vec::new()), 100);
        assert_eq!(tis.transact(5, &command), Err(TpmError::Argument("locality above 4")));
        assert!(matches!(tis.transact(0, &command[..9]), Err(TpmError::Argument(_))));
        assert!(matches!(tis.transact(0, &[]), Err(TpmError::Argument(_))));
        let mut wrong_size = command.clone();
        wrong_size[5] = 0x0D;
        assert!(matches!(tis.transact(0, &wrong_size), Err(TpmError::Argument(_))));
        let mut huge = vec![0u8; MAX_COMMAND + 1];
        let size = u32::try_from(huge.len()).unwrap();
        huge[2..6].copy_from_slice(&size.to_be_bytes());
        assert_eq!(tis.transact(0, &huge), Err(TpmError::TooLarge));
        assert_eq!(tis.mmio().accesses, 0);
    }

    #[test]
    fn no_tpm() {
        for value in [0, u32::MAX] {
            let mut tis = Tis::new(Constant(value), 10);
            assert_eq!(tis.probe(), Err(TpmError::NoTpm));
        }
        // All zeros: the locality never shows as active.
        let (command, _) = get_random_16();
        let mut tis = Tis::new(Constant(0), 10);
        assert!(matches!(tis.transact(0, &command), Err(TpmError::Timeout(_))));
        // All ones: every bit set, so the locality looks granted, the TPM ready, and Expect
        // stays set after the last byte.
        let mut tis = Tis::new(Constant(u32::MAX), 10);
        assert_eq!(tis.transact(0, &command), Err(TpmError::Expect));
    }

    #[test]
    fn locality_never_granted() {
        let (command, response) = get_random_16();
        let mut fake = Fake::canned(8, response);
        fake.grant = false;
        let mut tis = Tis::new(fake, 50);
        assert_eq!(
            tis.transact(0, &command),
            Err(TpmError::Timeout("the locality (TPM_ACCESS.activeLocality)"))
        );
        assert!(matches!(tis.probe(), Err(TpmError::Timeout(_))));
        let fake = tis.into_inner();
        // The request was withdrawn both times, and nothing else was written.
        assert_eq!((fake.requests, fake.releases, fake.readies), (2, 2, 0));
        assert!(fake.executed.is_empty());
    }

    #[test]
    fn data_never_available() {
        let (command, response) = get_random_16();
        let mut fake = Fake::canned(8, response);
        fake.never_completes = true;
        let mut tis = Tis::new(fake, 50);
        assert_eq!(
            tis.transact(0, &command),
            Err(TpmError::Timeout("TPM_STS.dataAvail (the command's execution)"))
        );
        let fake = tis.into_inner();
        assert_eq!(fake.executed.len(), 1);
        // The command was aborted (commandReady) and the locality released.
        assert_eq!(fake.state, State::Idle);
        assert_eq!((fake.readies, fake.releases, fake.active), (2, 1, None));
    }

    #[test]
    fn response_sizes_out_of_bounds() {
        let (command, _) = get_random_16();
        let cases = [
            (response_of(0, 10), TpmError::Malformed("response size below its 10-byte header")),
            (response_of(9, 10), TpmError::Malformed("response size below its 10-byte header")),
            (response_of(4097, 5000), TpmError::TooLarge),
            (response_of(u32::MAX, 64), TpmError::TooLarge),
            // The header announces more than the TPM has.
            (
                response_of(40, 20),
                TpmError::Malformed("the TPM ended the response early (dataAvail cleared)"),
            ),
            (
                response_of(40, 4),
                TpmError::Malformed("the TPM ended the response early (dataAvail cleared)"),
            ),
            // The TPM has more than the header announces.
            (
                response_of(12, 20),
                TpmError::Malformed("the TPM has more response bytes than its header says"),
            ),
        ];
        for (response, error) in cases {
            let mut tis = Tis::new(Fake::canned(7, response), 50);
            assert_eq!(tis.transact(0, &command), Err(error));
            let fake = tis.into_inner();
            assert_eq!((fake.readies, fake.releases, fake.active), (2, 1, None));
        }
    }

    #[test]
    fn largest_response_is_accepted() {
        let (command, _) = get_random_16();
        let response = response_of(4096, 4096);
        let mut tis = Tis::new(Fake::canned(0x1000, response.clone()), 50);
        assert_eq!(tis.transact(0, &command).unwrap(), response);
    }

    #[test]
    fn expect_disagreements() {
        let (command, response) = get_random_16();
        let mut fake = Fake::canned(4, response.clone());
        fake.always_expects = true;
        let mut tis = Tis::new(fake, 50);
        assert_eq!(tis.transact(0, &command), Err(TpmError::Expect));
        let fake = tis.into_inner();
        assert!(fake.executed.is_empty(), "no tpmGo after an Expect error");
        assert_eq!((fake.readies, fake.releases, fake.active), (2, 1, None));

        let mut fake = Fake::canned(4, response);
        fake.expects_at_most = Some(8);
        let mut tis = Tis::new(fake, 50);
        assert_eq!(
            tis.transact(0, &command),
            Err(TpmError::Malformed("the TPM stopped expecting command bytes before the last one"))
        );
        assert_eq!(tis.mmio().active, None);
    }

    /// A device that reads the same value everywhere and ignores writes.
    struct Constant(u32);

    impl Mmio for Constant {
        fn read8(&mut self, _: u8, _: u16) -> u8 {
            self.0.to_le_bytes()[0]
        }
        fn read32(&mut self, _: u8, _: u16) -> u32 {
            self.0
        }
        fn write8(&mut self, _: u8, _: u16, _: u8) {}
        fn write32(&mut self, _: u8, _: u16, _: u32) {}
    }

    use crate::testing::XorShift;

    /// A device whose registers read as noise, biased towards all-zero and all-one bytes
    /// and towards the status bits the driver waits for; it counts accesses.
    struct Noise {
        rng: XorShift,
        accesses: u64,
        relaxes: u64,
        last_write: Option<(u16, u8)>,
    }

    impl Noise {
        fn value(&mut self) -> u32 {
            self.accesses += 1;
            let r = self.rng.next();
            let raw = r.to_le_bytes();
            match raw[7] % 8 {
                0 => 0,
                1 => u32::MAX,
                // Status-like: a small burstCount and some of the bits waited for.
                2 | 3 => u32::from(raw[0] & 0xF8) | (u32::from(raw[1] % 16) << 8),
                // A response header's worth of plausible bytes.
                4 => u32::from(raw[2] % 0x20),
                _ => u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
            }
        }
    }

    impl Mmio for Noise {
        fn read8(&mut self, _: u8, _: u16) -> u8 {
            self.value().to_le_bytes()[0]
        }
        fn read32(&mut self, _: u8, _: u16) -> u32 {
            self.value()
        }
        fn write8(&mut self, _: u8, offset: u16, value: u8) {
            self.accesses += 1;
            self.last_write = Some((offset, value));
        }
        fn write32(&mut self, _: u8, _: u16, _: u32) {
            panic!("write32");
        }
        fn relax(&mut self) {
            self.relaxes += 1;
        }
    }

    #[test]
    fn noisy_device_never_panics_and_every_wait_ends() {
        let (command, _) = get_random_16();
        let mut outcomes = [0u32; 8];
        let max_polls = 16;
        for seed in 1..3000u64 {
            let noise = Noise {
                rng: XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                accesses: 0,
                relaxes: 0,
                last_write: None,
            };
            let mut tis = Tis::new(noise, max_polls);
            let outcome = if seed % 4 == 0 {
                tis.probe().map(|_| Vec::new())
            } else {
                tis.transact(0, &command)
            };
            let index = match outcome {
                Ok(_) => 0,
                Err(TpmError::NoTpm) => 1,
                Err(TpmError::Timeout(_)) => 2,
                Err(TpmError::Malformed(_)) => 3,
                Err(TpmError::Tpm(_)) => 4,
                Err(TpmError::Expect) => 5,
                Err(TpmError::TooLarge) => 6,
                Err(TpmError::Argument(_)) => 7,
            };
            outcomes[index] += 1;
            let noise = tis.into_inner();
            if index != 1 {
                // Whatever happened, the last thing written released the locality.
                assert_eq!(noise.last_write, Some((TPM_ACCESS, access::ACTIVE_LOCALITY)));
            }
            // Bounded: at most a poll per byte moved plus a few, each poll at most
            // max_polls reads, and at most MAX_RESPONSE bytes.
            let bound = u64::from(max_polls) * (2 * MAX_RESPONSE as u64 + 16);
            assert!(noise.accesses < bound, "seed {seed}: {} accesses", noise.accesses);
            assert!(noise.relaxes < noise.accesses);
        }
        assert_eq!(outcomes[7], 0);
        assert!(outcomes[2] > 0 && outcomes[3] + outcomes[5] + outcomes[6] > 0, "{outcomes:?}");
    }

    #[test]
    fn zero_max_polls_still_reads_once() {
        let (command, response) = get_random_16();
        let mut tis = Tis::new(Fake::canned(0x1000, response.clone()), 0);
        assert_eq!(tis.transact(0, &command).unwrap(), response);
    }
}
