//! The untrusted side of vpr: the host runtime that carries messages between Managers and
//! clients, and the backends that reach a TCC.
//!
//! Nothing here is trusted: the Managers authenticate everything they receive, and clients
//! verify every reply. The host never sees the group key or client keys.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod client;
pub mod config;
pub mod enroll;
pub mod evidence;
pub mod files;
pub mod launcher;
pub mod machine;
pub mod net;
pub mod ports;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod probe;
pub mod qemu_cluster;
pub mod replica;
pub mod shell;
pub mod status;
pub mod store;
pub mod tcc;
