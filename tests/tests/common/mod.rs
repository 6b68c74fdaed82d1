//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod cluster;
pub mod effects;

use vpr_pal::{Reply, Service, ServiceOptions};
use vpr_proto::update::StateUpdate;

/// A primary and a backup: every request runs at the primary and its update, through its
/// byte encoding, is applied at the backup (thesis Fig 5.4, without the protocol around it).
pub struct Pair {
    pub primary: Service,
    pub backup: Service,
}

impl Pair {
    pub fn new(options: &ServiceOptions) -> Pair {
        Pair {
            primary: Service::new(options).expect("primary"),
            backup: Service::new(options).expect("backup"),
        }
    }

    /// Runs `sql` at the primary, ships the update, and checks the files are identical.
    pub fn step(&mut self, sql: &str) -> (Reply, StateUpdate) {
        let (reply, update) = self.primary.execute(sql, &[]);
        let bytes = update.encode();
        self.backup.apply_encoded(&bytes).unwrap_or_else(|e| panic!("apply after {sql:?}: {e}"));
        self.assert_identical(sql);
        (reply, update)
    }

    /// Like `step`, but the request must succeed.
    pub fn ok(&mut self, sql: &str) -> (Reply, StateUpdate) {
        let (reply, update) = self.step(sql);
        assert!(reply.error.is_none(), "{sql:?} failed: {:?}", reply.error);
        (reply, update)
    }

    pub fn assert_identical(&self, after: &str) {
        let (p, b) = (self.primary.file_image(), self.backup.file_image());
        assert!(
            p == b,
            "backup differs from primary after {after:?} ({} vs {} bytes)",
            p.len(),
            b.len()
        );
        assert_eq!(self.primary.digest(), self.backup.digest());
    }
}
