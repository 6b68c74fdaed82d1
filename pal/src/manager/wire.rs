//! The Manager's configuration and status as they cross the PAL's boundary
//! ([`vpr_proto::tcc`]): a PAL image decodes a [`Group`] into the [`GroupConfig`] it starts
//! a Manager with, and reports [`Manager::wire_status`].

use vpr_proto::tcc::{Group, Status};

use super::{GroupConfig, Manager};
use crate::service::ServiceOptions;
use crate::tcc::Tcc;

impl From<&GroupConfig> for Group {
    fn from(config: &GroupConfig) -> Self {
        let ServiceOptions { page_size, max_sql_bytes, max_vm_steps } = config.service;
        Group {
            replicas: config.replicas,
            me: config.me,
            manufacturer: config.manufacturer,
            allow_simulated: config.allow_simulated,
            cluster: config.cluster,
            max_in_flight: config.max_in_flight,
            page_size,
            max_sql_bytes,
            max_vm_steps,
            members: config.members.clone(),
            durable: config.durable,
        }
    }
}

impl From<&Group> for GroupConfig {
    fn from(group: &Group) -> Self {
        GroupConfig {
            replicas: group.replicas,
            me: group.me,
            manufacturer: group.manufacturer,
            allow_simulated: group.allow_simulated,
            cluster: group.cluster,
            max_in_flight: group.max_in_flight,
            service: ServiceOptions {
                page_size: group.page_size,
                max_sql_bytes: group.max_sql_bytes,
                max_vm_steps: group.max_vm_steps,
            },
            members: group.members.clone(),
            durable: group.durable,
        }
    }
}

impl<T: Tcc> Manager<T> {
    /// Where this Manager stands, for its host (hashes the database: not for every message).
    pub fn wire_status(&self) -> Status {
        Status {
            ready: self.is_ready(),
            view: self.view(),
            primary: self.primary(),
            started: self.view_started(),
            committed: self.committed(),
            needs_state: self.needs_state(),
            digest: self.digest(),
            stopped: self.is_stopped(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn group_configs_convert_both_ways() {
        let config = GroupConfig {
            replicas: 5,
            me: 3,
            manufacturer: [7; 65],
            allow_simulated: true,
            cluster: [9; 32],
            max_in_flight: 12,
            service: ServiceOptions {
                page_size: Some(8192),
                max_sql_bytes: 1000,
                max_vm_steps: None,
            },
            members: alloc::vec![[1; 65], [2; 65], [3; 65], [4; 65], [5; 65]],
            durable: true,
        };
        let group = Group::from(&config);
        assert_eq!(group.page_size, Some(8192));
        assert_eq!(group.max_vm_steps, None);
        let back = GroupConfig::from(&group);
        assert_eq!(Group::from(&back), group);
        assert_eq!(format!("{back:?}"), format!("{config:?}"));
        let defaults = Group::from(&GroupConfig { service: ServiceOptions::default(), ..config });
        assert_eq!(defaults.max_vm_steps, ServiceOptions::default().max_vm_steps);
    }
}
