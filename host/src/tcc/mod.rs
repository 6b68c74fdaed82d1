//! Reaching a TCC: one trait, two backends.
//!
//! - [`simulation`]: the PAL's Manager in this process with software keys and counters. No
//!   isolation at all; for development, CI and protocol benchmarks. Its evidence says it is
//!   simulated and verifiers refuse it unless told otherwise.
//! - the hypervisor backend (hypercalls from a Linux guest of vpr's hypervisor) is not built
//!   yet.

pub mod simulation;

use vpr_pal::{Call, Effect};
use vpr_proto::digest::Digest;

/// A TCC running the PAL's Manager, as the host sees it: calls in, effects out.
pub trait TccBackend {
    /// Runs the Manager on one call.
    fn call(&mut self, call: Call) -> Vec<Effect>;
    /// The PAL identity (measurement) the TCC reports.
    fn identity(&self) -> Digest;
    /// Whether this backend isolates anything (false for the simulation).
    fn is_isolated(&self) -> bool;
}
