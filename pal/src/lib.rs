//! The PAL: vpr's trusted code, run isolated by the hypervisor (or in-process by the
//! simulation backend).
//!
//! This crate holds the logic that is the same whichever runs it. Today that is the
//! [`service`]: SQLite (through `sqlite-shim`) executing requests at a primary, with the pages
//! each request wrote captured as a [`vpr_proto::update::StateUpdate`], and backups verifying
//! and applying those updates, so every replica's database file stays byte-identical with
//! one execution per request (V-PR, thesis §5.1: passive replication of state updates).
//!
//! No unsafe code: everything that touches C lives in `sqlite-shim`.

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod manager;
pub mod merkle;
pub mod service;
pub mod tcc;

pub use manager::{Call, Effect, GroupConfig, Manager};
pub use service::{ApplyError, Reply, Service, ServiceOptions};
pub use tcc::{Counter, Tcc, TccError};
