//! A bounded explorer of V-PR under a planning adversary: real [`vpr_pal::Manager`]s driven
//! through `handle(Call)`, an adversary that owns the network, clients of its own, twins and
//! restarts, and the safety promises checked in every state.
//!
//! - `tcc`: a test TCC whose counters and sealing are shared by all instances of a replica.
//! - `shape`: the only place that knows the fields of effects and messages.
//! - `world`: Managers, network, clients and the adversary's actions, replayable.
//! - `invariants`: the promises (agreement, later views carry commits, blinded until durable,
//!   exactly once) as checks over what was observed.
//! - `search`: breadth-first search (shortest counterexamples), random walks, and shrinking.

mod invariants;
mod search;
mod shape;
mod tcc;
mod world;

pub use search::{bfs, random, shrink, trace, Found, Outcome, Stats};
pub use tcc::{Rng, SharedTcc};
pub use world::{Action, ClientSpec, Config, Inst, Pick, World};
