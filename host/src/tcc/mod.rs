//! Reaching a TCC: one trait, two backends.
//!
//! - [`simulation`]: the PAL's Manager in this process with software keys and counters. No
//!   isolation at all; for development, CI and protocol benchmarks. Its evidence says it is
//!   simulated and verifiers refuse it unless told otherwise.
//! - [`hypervisor`]: the PAL image registered with vpr's hypervisor, reached by hypercalls
//!   from a process of the Linux guest it runs ([`hypercall`]). The Manager runs isolated in
//!   the PAL.

pub mod hypercall;
pub mod hypervisor;
pub mod simulation;

use vpr_pal::{Call, Effect};
use vpr_proto::digest::Digest;

/// What a backend reports about its Manager (untrusted as reported here: for display).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Whether the group is formed here.
    pub ready: bool,
    /// The current view.
    pub view: u64,
    /// The primary of that view.
    pub primary: u16,
    /// The last committed or applied update.
    pub committed: u64,
    /// The database digest (`vpr_pal::merkle`: a Merkle root over the file).
    pub digest: Digest,
}

/// Cheap progress marks of a Manager, as its host sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Whether the group is formed here.
    pub ready: bool,
    /// The current view.
    pub view: u64,
    /// Whether that view started here.
    pub started: bool,
    /// The last committed or applied update.
    pub committed: u64,
    /// The Manager needs a snapshot (restarted, or an old primary) from this update on.
    pub needs_state: Option<u64>,
    /// The Manager stopped for good (its TCC failed after it changed what it holds).
    pub stopped: bool,
}

/// A TCC running the PAL's Manager, as the host sees it: calls in, effects out.
pub trait TccBackend {
    /// The Manager's current status (hashes the database: not for every message).
    fn status(&self) -> Status;
    /// The primary of the Manager's current view.
    fn primary(&self) -> u16;
    /// Cheap progress marks: the status changes only when these do.
    fn progress(&self) -> Progress;
    /// Runs the Manager on one call.
    fn call(&mut self, call: Call) -> Vec<Effect>;
    /// The PAL identity (measurement) the TCC reports.
    fn identity(&self) -> Digest;
    /// Whether this backend isolates anything (false for the simulation).
    fn is_isolated(&self) -> bool;
}

impl<T: TccBackend + ?Sized> TccBackend for Box<T> {
    fn status(&self) -> Status {
        (**self).status()
    }
    fn primary(&self) -> u16 {
        (**self).primary()
    }
    fn progress(&self) -> Progress {
        (**self).progress()
    }
    fn call(&mut self, call: Call) -> Vec<Effect> {
        (**self).call(call)
    }
    fn identity(&self) -> Digest {
        (**self).identity()
    }
    fn is_isolated(&self) -> bool {
        (**self).is_isolated()
    }
}
