//! Local clusters: replica processes on 127.0.0.1, started from this same executable, with
//! their configuration, data, logs, pid and status files in one folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::client::Client;
use crate::config::{ClusterConfig, ReplicaEntry, Timeouts};
use crate::tcc::simulation::{simulated_identity, Manufacturer};

/// File names inside a cluster folder.
pub mod files {
    /// The configuration replicas start from.
    pub const REPLICAS: &str = "replicas.toml";
    /// The configuration clients use, written once the cluster is ready.
    pub const CLUSTER: &str = "cluster.toml";
    /// The simulated manufacturer's secret key.
    pub const MANUFACTURER: &str = "manufacturer.key";

    /// Inside a replica's data folder: the group state its TCC sealed (for restarts).
    pub const SEALED: &str = "group.sealed";

    /// Replica `id`'s data folder.
    pub fn data(id: u16) -> String {
        format!("replica-{id}")
    }
    /// Replica `id`'s pid file.
    pub fn pid(id: u16) -> String {
        format!("replica-{id}.pid")
    }
    /// Replica `id`'s log.
    pub fn log(id: u16) -> String {
        format!("replica-{id}.log")
    }
    /// Replica `id`'s status file.
    pub fn status(id: u16) -> String {
        format!("replica-{id}.status")
    }
}

/// Ports for `n` replicas: from `base` if given, else ones the system reports free now.
pub fn ports(n: u16, base: Option<u16>) -> Result<Vec<u16>> {
    if let Some(base) = base {
        return (0..n).map(|i| base.checked_add(i).context("port number overflow")).collect();
    }
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

/// A running local cluster; stops its replicas when dropped.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    config: ClusterConfig,
    children: Vec<Option<Child>>,
    exe: PathBuf,
}

impl LocalCluster {
    /// Writes the configuration and starts `n` replicas of the simulation backend.
    pub fn start(dir: &Path, n: u16, base_port: Option<u16>, exe: &Path) -> Result<LocalCluster> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for id in 0..n {
            if dir.join(files::data(id)).join("counters").exists() {
                bail!(
                    "{} holds a previous cluster's replica {id}; restarting replicas is not \
                     supported yet: use a fresh --dir",
                    dir.display()
                );
            }
        }
        let manufacturer = Manufacturer::load_or_create(&dir.join(files::MANUFACTURER))?;
        let replicas = ports(n, base_port)?
            .into_iter()
            .zip(0..n)
            .map(|(port, id)| ReplicaEntry { id, address: format!("127.0.0.1:{port}") })
            .collect();
        let config = ClusterConfig {
            name: format!("local-{}-{}", std::process::id(), dir.display()),
            replicas,
            identity: simulated_identity().to_string(),
            manufacturer: hex::encode(manufacturer.public()),
            allow_simulated: true,
            timeouts: Timeouts::default(),
            max_in_flight: 32,
            max_batch: 256,
            simulation_manufacturer_key: Some(PathBuf::from(files::MANUFACTURER)),
        };
        config.validate()?;
        config.save(&dir.join(files::REPLICAS))?;
        let mut cluster =
            LocalCluster { dir: dir.to_owned(), config, children: Vec::new(), exe: exe.to_owned() };
        for id in 0..n {
            let child = cluster.spawn(id)?;
            cluster.children.push(Some(child));
        }
        Ok(cluster)
    }

    fn spawn(&self, id: u16) -> Result<Child> {
        let log = fs::File::create(self.dir.join(files::log(id)))?;
        let child = Command::new(&self.exe)
            .arg("replica")
            .arg("--config")
            .arg(self.dir.join(files::REPLICAS))
            .arg("--id")
            .arg(id.to_string())
            .arg("--data")
            .arg(self.dir.join(files::data(id)))
            .arg("--status")
            .arg(self.dir.join(files::status(id)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting replica {id} ({})", self.exe.display()))?;
        fs::write(self.dir.join(files::pid(id)), format!("{}\n", child.id()))?;
        Ok(child)
    }

    /// The configuration (as replicas see it).
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The cluster folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until the group is formed and a client is welcomed; then writes the client
    /// configuration `cluster.toml` and returns its path.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<PathBuf> {
        let deadline = Instant::now() + timeout;
        let mut probe = self.config.clone();
        probe.simulation_manufacturer_key = None;
        probe.timeouts.request_ms = 300;
        probe.timeouts.request_attempts = 1;
        loop {
            self.check_children()?;
            match Client::connect(&probe) {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => bail!("the cluster did not form: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let mut client_config = self.config.clone();
        client_config.simulation_manufacturer_key = None;
        let path = self.dir.join(files::CLUSTER);
        client_config.save(&path)?;
        Ok(path)
    }

    /// Fails if a replica process has exited, with the tail of its log.
    pub fn check_children(&mut self) -> Result<()> {
        for (id, child) in self.children.iter_mut().enumerate() {
            if let Some(c) = child {
                if let Some(status) = c.try_wait()? {
                    let id = u16::try_from(id).unwrap_or(u16::MAX);
                    let log = fs::read_to_string(self.dir.join(files::log(id))).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(20).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    bail!("replica {id} exited ({status}); its log ends:\n{}", tail.join("\n"));
                }
            }
        }
        Ok(())
    }

    /// Kills replica `id` (a crash: no clean shut-down).
    pub fn kill(&mut self, id: u16) -> Result<()> {
        if let Some(Some(mut child)) = self.children.get_mut(usize::from(id)).map(Option::take) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Stops every replica.
    pub fn stop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
