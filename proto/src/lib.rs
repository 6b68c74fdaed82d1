//! vpr-proto: the byte-level wire formats of vpr, replicated Byzantine-tolerant SQLite.
//!
//! These are the wire formats shared by the host, the PAL and the hypervisor. The crate is
//! `no_std` + `alloc` so that every side can link the same code. Decoders take untrusted bytes
//! and never panic: every malformed input is answered with a [`DecodeError`] that carries the
//! offending value, and no decoder allocates more than its input could justify.
//!
//! Modules:
//! - [`wire`]: little-endian [`Reader`](wire::Reader) / [`Writer`](wire::Writer) helpers and the
//!   shared [`DecodeError`].
//! - [`digest`]: the SHA-256 [`Digest`] newtype and a streaming [`Sha256`](digest::Sha256).
//! - [`update`]: the [`StateUpdate`] a primary ships to backups (pages of the database file).
//! - [`pal_io`]: the [`Command`](pal_io::Command) a PAL image's `execute` takes and the
//!   [`Outcome`](pal_io::Outcome) it returns.
//! - [`tcc`]: what crosses between the untrusted host and the trusted Manager: the
//!   [`Call`](tcc::Call)s, [`Effect`](tcc::Effect)s, [`Group`](tcc::Group) configuration and
//!   [`Status`](tcc::Status), with their encodings.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod attest;
pub mod client;
pub mod crypto;
pub mod digest;
pub mod hypercall;
pub mod msg;
pub mod pal_io;
pub mod tcc;
pub mod tpm2;
pub mod update;
pub mod utpm;
pub mod wire;

pub use digest::Digest;
pub use update::{PageWrite, StateUpdate};
pub use wire::DecodeError;
