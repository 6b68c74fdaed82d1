//! Cluster configuration, in TOML: what replicas need to form the group and what clients need
//! to reach and verify it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vpr_proto::crypto::PublicKey;
use vpr_proto::digest::Digest;

/// One replica's place in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaEntry {
    /// Its id, 0..n.
    pub id: u16,
    /// Where its socket listens, `host:port`.
    pub address: String,
    /// Its TCC's key, hex (SEC1 uncompressed): the replica runs only on that TCC, and clients
    /// and the other replicas accept it only from there. Replicas and clients need it; a
    /// configuration without it serves only to boot a machine whose key is not known yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcc_key: Option<String>,
}

impl ReplicaEntry {
    /// Its TCC key, if the configuration names one.
    ///
    /// # Errors
    /// Not 65 bytes of hex.
    pub fn tcc_key(&self) -> Result<Option<PublicKey>, ConfigError> {
        let Some(text) = &self.tcc_key else { return Ok(None) };
        let invalid =
            |why: String| ConfigError::Invalid(format!("replica {}: tcc_key: {why}", self.id));
        let bytes = hex::decode(text).map_err(|e| invalid(e.to_string()))?;
        bytes.try_into().map(Some).map_err(|_| invalid(String::from("not 65 bytes")))
    }
}

/// Timeouts, in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timeouts {
    /// A client gives up on one attempt of a request after this long and retries.
    pub request_ms: u64,
    /// Attempts a client makes before reporting the service unreachable.
    pub request_attempts: u32,
    /// Resend period: updates to backups that have not acknowledged them, Joins and Accepts
    /// until answered.
    pub retransmit_ms: u64,
    /// The primary waits this long for every backup's Join before forming the group with a
    /// majority.
    pub join_ms: u64,
    /// The primary tells backups it is alive (its latest Commit) at least this often.
    pub heartbeat_ms: u64,
    /// A backup that hears nothing valid from the primary this long (or sees a client's
    /// request go unanswered this long) suspects it and proposes the next view.
    pub view_change_ms: u64,
    /// The suspicion timeout doubles after each view change that brought no progress, up to
    /// this (thesis §5.2.5: adaptive, but capped by the administrator).
    pub view_change_max_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            request_ms: 2000,
            request_attempts: 5,
            retransmit_ms: 200,
            join_ms: 3000,
            heartbeat_ms: 200,
            view_change_ms: 2000,
            view_change_max_ms: 16_000,
        }
    }
}

/// What a cluster's replicas were attested with when they were enrolled (a cluster of
/// replica VMs): clients and `vpr verify` check a replica's TPM evidence against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The TPM manufacturer's root certificate (PEM): the only trust anchor of the evidence.
    pub ca_root: String,
    /// The measurement of the hypervisor PCR 17 must show, hex (SHA-256).
    pub hypervisor: String,
}

impl Attestation {
    /// The hypervisor measurement as bytes.
    ///
    /// # Errors
    /// Not 64 hex digits.
    pub fn hypervisor_measurement(&self) -> Result<[u8; 32], ConfigError> {
        let bytes = hex::decode(&self.hypervisor)
            .map_err(|e| ConfigError::Invalid(format!("attestation.hypervisor: {e}")))?;
        bytes
            .try_into()
            .map_err(|_| ConfigError::Invalid(String::from("attestation.hypervisor: not 32 bytes")))
    }

    /// The root certificate(s) in [`Attestation::ca_root`].
    ///
    /// # Errors
    /// No certificate there.
    pub fn ca_root_certificates(
        &self,
    ) -> Result<Vec<crate::evidence::x509::Certificate>, ConfigError> {
        if !self.ca_root.contains("-----BEGIN CERTIFICATE-----") {
            return Err(ConfigError::Invalid(String::from(
                "attestation.ca_root: not a PEM certificate",
            )));
        }
        crate::evidence::x509::read_certificates(self.ca_root.as_bytes())
            .map_err(|e| ConfigError::Invalid(format!("attestation.ca_root: {e}")))
    }
}

/// The cluster, as replicas and clients read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// A name for this deployment; two clusters with different names never mix.
    pub name: String,
    /// The replicas, n = 2f + 1 of them.
    pub replicas: Vec<ReplicaEntry>,
    /// The service identity (PAL measurement) clients pin, hex.
    pub identity: String,
    /// The manufacturer public key that certifies TCCs, hex (SEC1 uncompressed).
    pub manufacturer: String,
    /// Whether simulated TCCs are accepted (the simulation backend).
    pub allow_simulated: bool,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Most updates in flight at the primary.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: u32,
    /// Most requests the primary executes in one batch.
    #[serde(default = "default_batch")]
    pub max_batch: usize,
    /// Committed updates the primary keeps to resend to backups that missed them; a backup
    /// further behind catches up by snapshot.
    #[serde(default = "default_retained")]
    pub retained_updates: usize,
    /// Simulation backend only: the file holding the simulated manufacturer's secret key
    /// (relative paths are relative to this file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation_manufacturer_key: Option<PathBuf>,
    /// Replica VMs: the CA and the hypervisor their TCCs were attested with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attestation>,
    /// Where each replica keeps its state: `"disk"` (the default: a log on its data folder's
    /// disk, each record flushed before the Acks and replies that depend on it leave, so the
    /// cluster survives a stop of every replica) or `"memory"` (nothing on disk: a replica
    /// that restarts gets its state from the others, and a stop of the whole cluster loses
    /// the database).
    #[serde(default)]
    pub durability: Durability,
    /// With `durability = "disk"`: bytes of log records after which a replica writes a
    /// checkpoint (its whole state, after which the older records go). A checkpoint is also
    /// put off until the records since the last one outgrow it.
    #[serde(default = "default_checkpoint_bytes")]
    pub checkpoint_bytes: u64,
}

fn default_checkpoint_bytes() -> u64 {
    crate::store::MIN_CHECKPOINT_BYTES
}

/// Where replicas keep their state (see [`ClusterConfig::durability`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A write-ahead log on the replica's disk.
    #[default]
    Disk,
    /// In memory only.
    Memory,
}

fn default_in_flight() -> u32 {
    32
}

fn default_batch() -> usize {
    256
}

fn default_retained() -> usize {
    1024
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading the file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: toml::de::Error,
    },
    /// A field is wrong.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ClusterConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        let mut config: ClusterConfig = toml::from_str(&text)
            .map_err(|source| ConfigError::Parse { path: path.to_owned(), source })?;
        if let (Some(key), Some(dir)) = (&config.simulation_manufacturer_key, path.parent()) {
            if key.is_relative() {
                config.simulation_manufacturer_key = Some(dir.join(key));
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Writes the configuration as TOML (through a temporary file and a rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(tmp, path)
    }

    /// Checks ids, sizes and keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self.replicas.len();
        if n == 0 || n.is_multiple_of(2) || n > vpr_proto::msg::MAX_REPLICAS {
            return Err(ConfigError::Invalid(format!(
                "{n} replicas: need an odd number (2f + 1) up to {}",
                vpr_proto::msg::MAX_REPLICAS
            )));
        }
        for (i, r) in self.replicas.iter().enumerate() {
            if usize::from(r.id) != i {
                return Err(ConfigError::Invalid(format!(
                    "replica {i} has id {}; ids must be 0..n in order",
                    r.id
                )));
            }
        }
        self.tcc_keys()?;
        self.identity_digest()?;
        self.manufacturer_key()?;
        let t = &self.timeouts;
        if t.heartbeat_ms == 0 || t.retransmit_ms == 0 || t.heartbeat_ms >= t.view_change_ms {
            return Err(ConfigError::Invalid(
                "timeouts: heartbeat_ms and retransmit_ms must be positive and heartbeat_ms \
                 below view_change_ms"
                    .into(),
            ));
        }
        if t.view_change_max_ms < t.view_change_ms {
            return Err(ConfigError::Invalid(
                "timeouts: view_change_max_ms must be at least view_change_ms".into(),
            ));
        }
        if self.max_in_flight == 0 || self.max_batch == 0 {
            return Err(ConfigError::Invalid(
                "max_in_flight and max_batch must be positive".into(),
            ));
        }
        if let Some(attestation) = &self.attestation {
            attestation.hypervisor_measurement()?;
            attestation.ca_root_certificates()?;
        }
        Ok(())
    }

    /// n.
    pub fn n(&self) -> u16 {
        u16::try_from(self.replicas.len()).unwrap_or(u16::MAX)
    }

    /// f = (n - 1) / 2.
    pub fn faults(&self) -> usize {
        self.replicas.len().saturating_sub(1) / 2
    }

    /// The pinned service identity.
    pub fn identity_digest(&self) -> Result<Digest, ConfigError> {
        let bytes = hex::decode(&self.identity)
            .map_err(|e| ConfigError::Invalid(format!("identity: {e}")))?;
        let arr: [u8; 32] =
            bytes.try_into().map_err(|_| ConfigError::Invalid("identity: not 32 bytes".into()))?;
        Ok(Digest(arr))
    }

    /// The manufacturer key.
    pub fn manufacturer_key(&self) -> Result<PublicKey, ConfigError> {
        let bytes = hex::decode(&self.manufacturer)
            .map_err(|e| ConfigError::Invalid(format!("manufacturer: {e}")))?;
        bytes.try_into().map_err(|_| ConfigError::Invalid("manufacturer: not 65 bytes".into()))
    }

    /// Each replica's TCC key, by id (part of the configuration digest C).
    ///
    /// # Errors
    /// A replica without its `tcc_key`, or one that is not a key.
    pub fn members(&self) -> Result<Vec<PublicKey>, ConfigError> {
        self.tcc_keys()?
            .into_iter()
            .zip(&self.replicas)
            .map(|(key, r)| {
                key.ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "replica {} has no tcc_key: replicas and clients need each replica's \
                         TCC key",
                        r.id
                    ))
                })
            })
            .collect()
    }

    /// The TCC keys the replicas' entries name, each at most once: a client never trusts a
    /// group in which one TCC holds two ids (the configuration digest binds this list).
    fn tcc_keys(&self) -> Result<Vec<Option<PublicKey>>, ConfigError> {
        let mut keys: Vec<Option<PublicKey>> = Vec::with_capacity(self.replicas.len());
        for r in &self.replicas {
            let key = r.tcc_key()?;
            if let Some(other) = keys.iter().position(|k| key.is_some() && *k == key) {
                return Err(ConfigError::Invalid(format!(
                    "replicas {other} and {} have the same tcc_key: one TCC cannot hold two ids",
                    r.id
                )));
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// The cluster identifier Managers bind the group to.
    pub fn cluster_id(&self) -> [u8; 32] {
        vpr_proto::crypto::hash(&[b"vpr cluster ", self.name.as_bytes()]).0
    }

    /// What clients trust.
    pub fn trust(&self) -> Result<vpr_proto::client::Trust, ConfigError> {
        let (manufacturer, identity) = (self.manufacturer_key()?, self.identity_digest()?);
        Ok(vpr_proto::client::Trust {
            config: vpr_proto::client::config_digest(
                self.n(),
                &identity,
                &manufacturer,
                self.allow_simulated,
                &self.cluster_id(),
                self.max_in_flight,
                &self.members()?,
            ),
            manufacturer,
            identity,
            allow_simulated: self.allow_simulated,
        })
    }

    /// The ZeroMQ endpoint of replica `id`.
    pub fn endpoint(&self, id: u16) -> Option<String> {
        self.replicas.get(usize::from(id)).map(|r| format!("tcp://{}", r.address))
    }
}

/// For tests: three replicas on 127.0.0.1 at `ports`, replica `id`'s TCC key `key(id)`.
#[cfg(test)]
pub(crate) fn three_replicas(
    ports: [u16; 3],
    key: impl Fn(u16) -> Option<String>,
) -> ClusterConfig {
    let manufacturer = vpr_proto::crypto::KeyPair::from_secret(&[7; 32]).expect("key");
    ClusterConfig {
        name: String::from("test"),
        replicas: (0..3)
            .map(|id| ReplicaEntry {
                id,
                address: format!("127.0.0.1:{}", ports[usize::from(id)]),
                tcc_key: key(id),
            })
            .collect(),
        identity: Digest([1; 32]).to_string(),
        manufacturer: hex::encode(manufacturer.public()),
        allow_simulated: false,
        timeouts: Timeouts::default(),
        max_in_flight: 32,
        max_batch: 256,
        retained_updates: 1024,
        simulation_manufacturer_key: None,
        attestation: None,
        durability: Durability::Disk,
        checkpoint_bytes: default_checkpoint_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replica `id`'s TCC key in [`config`].
    fn member(id: u16) -> PublicKey {
        let secret = [u8::try_from(id).unwrap_or(0) + 1; 32];
        vpr_proto::crypto::KeyPair::from_secret(&secret).expect("key").public()
    }

    /// A configuration of three replicas.
    fn config() -> ClusterConfig {
        three_replicas([17000, 17001, 17002], |id| Some(hex::encode(member(id))))
    }

    /// A CA's root certificate (the x509 module's test data).
    fn root_pem() -> String {
        String::from(include_str!("evidence/testdata/x509/root-b.pem"))
    }

    #[test]
    fn attestation_round_trips_and_is_optional() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cluster.toml");
        let plain = config();
        plain.save(&path).expect("save");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("attestation"), "{text}");
        assert_eq!(ClusterConfig::load(&path).expect("load"), plain);
        let attested = ClusterConfig {
            attestation: Some(Attestation { ca_root: root_pem(), hypervisor: "ab".repeat(32) }),
            ..config()
        };
        attested.save(&path).expect("save");
        let loaded = ClusterConfig::load(&path).expect("load");
        assert_eq!(loaded, attested);
        let attestation = loaded.attestation.expect("attestation");
        assert_eq!(attestation.hypervisor_measurement().expect("measurement"), [0xab; 32]);
        assert_eq!(attestation.ca_root_certificates().expect("root").len(), 1);
    }

    #[test]
    fn a_wrong_attestation_is_refused() {
        for (ca_root, hypervisor, what) in [
            (root_pem(), "ab".repeat(31), "not 32 bytes"),
            (root_pem(), "zz".repeat(32), "attestation.hypervisor"),
            (String::from("not a certificate"), "ab".repeat(32), "not a PEM certificate"),
            (
                String::from("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                "ab".repeat(32),
                "attestation.ca_root",
            ),
        ] {
            let wrong = ClusterConfig {
                attestation: Some(Attestation { ca_root, hypervisor }),
                ..config()
            };
            match wrong.validate() {
                Err(ConfigError::Invalid(message)) => assert!(message.contains(what), "{message}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn tcc_keys_bind_ids_and_enter_the_digest() {
        let good = config();
        assert_eq!(good.members().expect("members"), [member(0), member(1), member(2)]);
        let digest = good.trust().expect("trust").config;
        // Another TCC for replica 2: another configuration digest.
        let mut other = config();
        other.replicas[2].tcc_key = Some(hex::encode(member(5)));
        assert_ne!(other.trust().expect("trust").config, digest);
        // One TCC named for two ids is refused.
        let mut twice = config();
        twice.replicas[2].tcc_key = twice.replicas[1].tcc_key.clone();
        match twice.validate() {
            Err(ConfigError::Invalid(m)) => assert!(m.contains("same tcc_key"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Without a key: loads (a machine to boot), but no client or replica can use it.
        let mut missing = config();
        missing.replicas[0].tcc_key = None;
        missing.validate().expect("valid without keys");
        match missing.trust() {
            Err(ConfigError::Invalid(m)) => assert!(m.contains("replica 0 has no tcc_key"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut bad = config();
        bad.replicas[1].tcc_key = Some(String::from("abcd"));
        match bad.validate() {
            Err(ConfigError::Invalid(m)) => assert!(m.contains("replica 1: tcc_key"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
