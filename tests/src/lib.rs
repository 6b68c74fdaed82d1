//! Cross-crate tests of vpr live in `tests/` and `benches/`; this library holds the checkers they
//! share.

pub mod explore;
pub mod linearizability;
