//! The simulation backend: the Manager runs in this process, on software TCC services.
//!
//! **Nothing is isolated.** Keys live in ordinary memory, the "trusted" counters in a file any
//! process can edit, and the manufacturer is a key pair on disk. This backend exists to develop
//! and test the protocol (as SGX's simulation mode does); its attestations are marked
//! simulated so that no verifier mistakes them for real evidence.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use vpr_pal::{Call, Counter, Effect, GroupConfig, Manager, Tcc, TccError};
use vpr_proto::crypto::{self, KeyPair, PublicKey, Signature};
use vpr_proto::digest::Digest;
use vpr_proto::msg::Attestation;

use super::{Progress, TccBackend};

/// The identity a simulated PAL reports: the hash of this build's name and version (there is
/// no separate image to measure in-process).
pub fn simulated_identity() -> Digest {
    vpr_proto::crypto::hash(&[b"vpr simulated pal ", env!("CARGO_PKG_VERSION").as_bytes()])
}

/// The warning printed when a simulated TCC starts.
pub const WARNING: &str = "WARNING: simulation TCC backend: the PAL runs in this process with \
software keys and counters; nothing is isolated and its evidence is marked simulated";

/// A simulated manufacturer: certifies simulated TCC keys.
#[derive(Clone, Debug)]
pub struct Manufacturer {
    keys: KeyPair,
}

impl Manufacturer {
    /// A new manufacturer key.
    pub fn generate() -> Self {
        Manufacturer { keys: KeyPair::generate(&mut OsRng) }
    }

    /// Loads the manufacturer key stored at `path`, or makes and stores a new one.
    pub fn load_or_create(path: &Path) -> io::Result<Self> {
        if let Ok(bytes) = fs::read(path) {
            let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| bad_data(path))?;
            let keys = KeyPair::from_secret(&secret).ok_or_else(|| bad_data(path))?;
            return Ok(Manufacturer { keys });
        }
        let m = Manufacturer::generate();
        crate::files::write_durably(path, &m.keys.secret_bytes())?;
        Ok(m)
    }

    /// The public key clients trust.
    pub fn public(&self) -> PublicKey {
        self.keys.public()
    }

    fn certify(&self, tcc_key: &PublicKey) -> Signature {
        self.keys.sign(&Attestation::certificate_bytes(true, tcc_key))
    }
}

/// Software TCC services: random from the OS, a certified attestation key, and counters in a
/// file `counters` in the replica's directory.
///
/// Every read and increment goes to the file, so two services opened on one directory (a
/// replica's twin, as a host can start one under the hypervisor) share their counters, as
/// they share the sealing secret.
#[derive(Debug)]
pub struct SimulatedServices {
    identity: Digest,
    key: KeyPair,
    certificate: Signature,
    counters_path: PathBuf,
    counters_file: fs::File,
    /// The simulated TCC's sealing secret (a file beside the counters).
    sealing: [u8; 32],
}

impl SimulatedServices {
    /// Services for the replica whose data lives in `dir` (created if needed).
    pub fn open(dir: &Path, manufacturer: &Manufacturer) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let counters_path = dir.join("counters");
        match fs::metadata(&counters_path) {
            Ok(m) if [16, 24, COUNTERS_LEN as u64].contains(&m.len()) => {}
            Ok(_) => return Err(bad_data(&counters_path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                crate::files::write_durably(&counters_path, &[0; COUNTERS_LEN])?;
            }
            Err(e) => return Err(e),
        }
        let counters_file = fs::OpenOptions::new().read(true).write(true).open(&counters_path)?;
        let sealing = sealing_secret(dir)?;
        let key = attestation_key(&sealing);
        let certificate = manufacturer.certify(&key.public());
        Ok(SimulatedServices {
            identity: simulated_identity(),
            key,
            certificate,
            counters_path,
            counters_file,
            sealing,
        })
    }

    /// Reads one counter from the file (a file from before the incarnation or the log
    /// counter is 16 or 24 bytes long: those counters read 0 there).
    fn load(&self, counter: Counter) -> Result<u64, TccError> {
        use std::os::unix::fs::FileExt;
        let mut word = [0u8; 8];
        match self.counters_file.read_exact_at(&mut word, offset(counter)) {
            Ok(()) => Ok(u64::from_le_bytes(word)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => {
                Err(TccError(format!("reading counters in {}: {e}", self.counters_path.display())))
            }
        }
    }

    /// Overwrites one counter's 8 bytes in place and flushes them to the disk: one `pwrite`
    /// within a page, which a killed process either made or did not, made durable as a TPM's
    /// NV write is before it answers (a durable replica's log counter must not fall behind
    /// its log after a power cut).
    fn store(&self, counter: Counter, value: u64) -> Result<(), TccError> {
        use std::os::unix::fs::FileExt;
        self.counters_file
            .write_all_at(&value.to_le_bytes(), offset(counter))
            .and_then(|()| self.counters_file.sync_data())
            .map_err(|e| {
                TccError(format!("storing counters in {}: {e}", self.counters_path.display()))
            })
    }
}

/// The simulated TCC's secret in `dir` (the file `sealing.key`, made if missing): it seals,
/// and the TCC key is derived from it, as the hypervisor derives both from its TPM-held
/// master secret. A replica's twin (a second process on the same folder) has the same.
fn sealing_secret(dir: &Path) -> io::Result<[u8; 32]> {
    fs::create_dir_all(dir)?;
    let sealing_file = dir.join("sealing.key");
    match fs::read(&sealing_file) {
        Ok(bytes) => bytes.as_slice().try_into().map_err(|_| bad_data(&sealing_file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            OsRng.fill_bytes(&mut secret);
            crate::files::write_durably(&sealing_file, &secret)?;
            Ok(secret)
        }
        Err(e) => Err(e),
    }
}

/// The simulated TCC's attestation key, derived from its secret.
fn attestation_key(sealing: &[u8; 32]) -> KeyPair {
    let mut attempt = 0u32;
    loop {
        let secret = crypto::mac(sealing, &[b"vpr simulated tcc key", &attempt.to_le_bytes()]);
        if let Some(key) = KeyPair::from_secret(&secret) {
            return key;
        }
        attempt += 1;
    }
}

/// The TCC key of the simulated TCC whose data lives in `dir` (its secret made if missing):
/// what a cluster configuration names for that replica.
///
/// # Errors
/// The folder or its secret cannot be read or written.
pub fn tcc_key(dir: &Path) -> io::Result<PublicKey> {
    Ok(attestation_key(&sealing_secret(dir)?).public())
}

/// Size of the counters file: view, state, incarnation and log, 8 bytes each, little-endian.
const COUNTERS_LEN: usize = 32;

/// Where `counter` lives in the counters file.
fn offset(counter: Counter) -> u64 {
    match counter {
        Counter::View => 0,
        Counter::State => 8,
        Counter::Incarnation => 16,
        Counter::Log => 24,
    }
}

impl Tcc for SimulatedServices {
    fn identity(&self) -> Digest {
        self.identity
    }

    fn random(&mut self, buf: &mut [u8]) {
        OsRng.fill_bytes(buf);
    }

    fn attest(&mut self, data: &Digest) -> Attestation {
        Attestation::make(&self.key, self.certificate, true, self.identity, *data)
    }

    fn counter(&mut self, counter: Counter) -> Result<u64, TccError> {
        self.load(counter)
    }

    fn increment(&mut self, counter: Counter) -> Result<u64, TccError> {
        let next = self
            .load(counter)?
            .checked_add(1)
            .ok_or_else(|| TccError("counter overflow".into()))?;
        self.store(counter, next)?;
        Ok(next)
    }

    fn advance(&mut self, counter: Counter, value: u64) -> Result<u64, TccError> {
        let now = self.load(counter)?;
        if now < value {
            self.store(counter, value)?;
            return Ok(value);
        }
        Ok(now)
    }

    fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, TccError> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        Ok(crypto::aead_seal(&self.sealing, nonce, &seal_context(&self.identity), data))
    }

    fn unseal(&mut self, blob: &[u8]) -> Result<Vec<u8>, TccError> {
        crypto::aead_open(&self.sealing, &seal_context(&self.identity), blob)
            .ok_or_else(|| TccError("sealed blob refused: altered, or sealed elsewhere".into()))
    }
}

/// What a simulated seal binds its blob to: the PAL identity.
fn seal_context(identity: &Digest) -> Vec<u8> {
    crypto::concat(&[b"vpr simulated seal", identity.as_bytes()])
}

/// The simulation backend: a Manager over [`SimulatedServices`].
#[derive(Debug)]
pub struct Simulation {
    manager: Manager<SimulatedServices>,
}

impl Simulation {
    /// Starts the Manager of replica `group.me` with its data in `dir`.
    pub fn start(dir: &Path, manufacturer: &Manufacturer, group: GroupConfig) -> io::Result<Self> {
        let services = SimulatedServices::open(dir, manufacturer)?;
        let manager = Manager::new(services, group).map_err(io::Error::other)?;
        Ok(Simulation { manager })
    }

    /// Restarts the Manager of replica `group.me` from its data in `dir` and the group state
    /// it sealed there before: from its `log` if there is one (`vpr_pal::Manager::recover`),
    /// else as a replica that lost its state (`vpr_pal::Manager::restore`).
    pub fn restore(
        dir: &Path,
        manufacturer: &Manufacturer,
        group: GroupConfig,
        sealed: &[u8],
        log: Option<&[Vec<u8>]>,
    ) -> io::Result<Self> {
        let services = SimulatedServices::open(dir, manufacturer)?;
        let manager = match log {
            Some(log) => Manager::recover(services, group, sealed, log),
            None => Manager::restore(services, group, sealed),
        };
        Ok(Simulation { manager: manager.map_err(io::Error::other)? })
    }

    /// The Manager (for status queries).
    pub fn manager(&self) -> &Manager<SimulatedServices> {
        &self.manager
    }
}

impl TccBackend for Simulation {
    fn primary(&self) -> u16 {
        self.manager.primary()
    }

    fn progress(&self) -> Progress {
        let m = &self.manager;
        Progress {
            ready: m.is_ready(),
            view: m.view(),
            started: m.view_started(),
            committed: m.committed(),
            needs_state: m.needs_state(),
            stopped: m.is_stopped(),
        }
    }

    fn status(&self) -> super::Status {
        let m = &self.manager;
        super::Status {
            ready: m.is_ready(),
            view: m.view(),
            primary: m.primary(),
            committed: m.committed(),
            digest: m.digest(),
        }
    }

    fn call(&mut self, call: Call) -> Vec<Effect> {
        self.manager.handle(call)
    }

    fn identity(&self) -> Digest {
        self.manager.identity()
    }

    fn is_isolated(&self) -> bool {
        false
    }
}

fn bad_data(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{} is malformed", path.display()))
}
