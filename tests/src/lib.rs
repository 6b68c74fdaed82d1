//! Cross-crate tests of vpr live in `tests/` and `benches/`; this library is empty.
