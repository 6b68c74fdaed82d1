//! The real TCC: the PAL image registered with vpr's hypervisor, from a process of the Linux
//! guest it runs ([`hypercall`](super::hypercall)). The Manager runs inside the PAL, isolated
//! from this process; every call crosses as an encoded `pal_io::Command` and comes back as
//! an `Outcome`.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use vpr_pal::{Call, Effect, GroupConfig};
use vpr_proto::digest::Digest;
use vpr_proto::hypercall::MAX_IO_LEN;
use vpr_proto::pal_io::{Command, Outcome};
use vpr_proto::tcc::Group;

use super::hypercall::{HypercallError, Hypervisor};
use super::{Progress, Status, TccBackend};

/// Output capacity of a Manager call: the most the hypervisor hands back (a snapshot of a
/// large database may need all of it).
const CALL_CAPACITY: usize = 4 << 20;
const _: () = assert!(CALL_CAPACITY as u64 == MAX_IO_LEN);
/// Output capacity of a status query.
const STATUS_CAPACITY: usize = 64 << 10;

/// The Manager in a PAL under the hypervisor.
#[derive(Debug)]
pub struct HypervisorTcc {
    hv: Hypervisor,
    handle: u64,
    identity: Digest,
    /// Executions so far (for diagnostics).
    calls: AtomicU64,
    /// The Manager's status as of its last call: only calls change it, and asking the PAL
    /// costs an execution that hashes the database, so the status, progress and primary the
    /// runtime asks for between calls come from here.
    last: vpr_proto::tcc::Status,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl HypervisorTcc {
    /// Registers `image` and starts the Manager of replica `group.me` on a fresh database.
    ///
    /// # Errors
    /// Not on the hypervisor, the image refused, or the Manager refused the configuration.
    pub fn start(image: &[u8], group: &GroupConfig) -> io::Result<Self> {
        let mut tcc = HypervisorTcc::register(image)?;
        tcc.begin(Command::Start { group: Group::from(group) })?;
        Ok(tcc)
    }

    /// Registers `image` and restarts the Manager from the group state it `sealed` before,
    /// and from its `log` if there is one (see [`Simulation::restore`](super::simulation)).
    ///
    /// # Errors
    /// As [`HypervisorTcc::start`]; a blob or a log the PAL does not accept is refused.
    pub fn restore(
        image: &[u8],
        group: &GroupConfig,
        sealed: &[u8],
        log: Option<&[Vec<u8>]>,
    ) -> io::Result<Self> {
        let mut tcc = HypervisorTcc::register(image)?;
        tcc.begin(Command::Restore {
            group: Group::from(group),
            sealed: sealed.to_vec(),
            log: log.map(<[Vec<u8>]>::to_vec),
        })?;
        Ok(tcc)
    }

    fn register(image: &[u8]) -> io::Result<Self> {
        let hv = Hypervisor::open().map_err(other)?;
        let registered = hv.register(image).map_err(other)?;
        let identity = Digest(registered.measurement);
        if identity != Digest::of(image) {
            return Err(other("the hypervisor's measurement is not the image's SHA-256"));
        }
        let calls = AtomicU64::new(0);
        Ok(HypervisorTcc { hv, handle: registered.handle, identity, calls, last: not_ready() })
    }

    fn begin(&mut self, command: Command) -> io::Result<()> {
        match self.run(&command, STATUS_CAPACITY).map_err(other)? {
            Outcome::Status(status) => {
                self.last = status;
                Ok(())
            }
            Outcome::Refused { reason } => Err(other(format!("the PAL refused: {reason}"))),
            other_outcome => Err(other(format!("unexpected answer {other_outcome:?}"))),
        }
    }

    /// One execution of the PAL.
    fn run(&self, command: &Command, capacity: usize) -> Result<Outcome, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let output = self
            .hv
            .execute(self.handle, &command.encode(), capacity)
            .map_err(|e: HypercallError| e.to_string())?;
        Outcome::decode(&output).map_err(|e| format!("undecodable outcome: {e}"))
    }

    /// Asks the PAL for the Manager's status; a PAL that cannot answer reports a Manager not
    /// in the group.
    fn wire_status(&self) -> vpr_proto::tcc::Status {
        match self.run(&Command::Status, STATUS_CAPACITY) {
            Ok(Outcome::Status(status)) => status,
            result => {
                tracing::error!("the PAL's status: {result:?}");
                not_ready()
            }
        }
    }
}

/// The status of a Manager not in a group.
fn not_ready() -> vpr_proto::tcc::Status {
    vpr_proto::tcc::Status {
        ready: false,
        view: 0,
        primary: 0,
        started: false,
        committed: 0,
        needs_state: None,
        digest: Digest([0; 32]),
        stopped: false,
    }
}

impl TccBackend for HypervisorTcc {
    fn status(&self) -> Status {
        let s = &self.last;
        Status {
            ready: s.ready,
            view: s.view,
            primary: s.primary,
            committed: s.committed,
            digest: s.digest,
        }
    }

    fn primary(&self) -> u16 {
        self.last.primary
    }

    fn progress(&self) -> Progress {
        let s = &self.last;
        Progress {
            ready: s.ready,
            view: s.view,
            started: s.started,
            committed: s.committed,
            needs_state: s.needs_state,
            stopped: s.stopped,
        }
    }

    fn call(&mut self, call: Call) -> Vec<Effect> {
        let effects = match self.run(&Command::Call(call), CALL_CAPACITY) {
            // The Manager's status comes with its effects: one PAL execution per call.
            Ok(Outcome::Effects { effects, status }) => {
                self.last = status;
                return effects;
            }
            Ok(Outcome::Refused { reason }) => vec![Effect::Refused(reason)],
            Ok(Outcome::EffectsLost { len, capacity }) => {
                // The call took effect: what it sent is gone, as if the network lost it.
                tracing::error!(
                    "the Manager's effects ({len} bytes) exceeded the PAL's output \
                     ({capacity} bytes) and were lost"
                );
                vec![Effect::Refused(format!(
                    "effects lost: {len} bytes exceed the PAL's output of {capacity} bytes"
                ))]
            }
            Ok(other_outcome) => {
                vec![Effect::Refused(format!("unexpected answer {other_outcome:?}"))]
            }
            Err(e) => vec![Effect::Refused(e)],
        };
        self.last = self.wire_status();
        effects
    }

    fn identity(&self) -> Digest {
        self.identity
    }

    fn is_isolated(&self) -> bool {
        true
    }
}

impl Drop for HypervisorTcc {
    fn drop(&mut self) {
        if let Err(e) = self.hv.unregister(self.handle) {
            tracing::warn!("unregistering the PAL: {e}");
        }
    }
}
