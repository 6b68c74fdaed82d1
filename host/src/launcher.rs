//! Local clusters: replica processes on 127.0.0.1, started from this same executable, with
//! their configuration, data, logs, pid and status files in one folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::client::Client;
use crate::config::{ClusterConfig, Durability, ReplicaEntry, Timeouts};
use crate::status::Reported;
use crate::tcc::simulation::{self, simulated_identity, Manufacturer};

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

/// Ports for `n` replicas: from `base` if given, else ones [`crate::ports::unused`] chooses.
pub fn ports(n: u16, base: Option<u16>) -> Result<Vec<u16>> {
    if let Some(base) = base {
        return (0..n).map(|i| base.checked_add(i).context("port number overflow")).collect();
    }
    crate::ports::unused(usize::from(n))
}

/// How a local cluster is set up.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// First port (replica i listens on base + i); free ports are chosen if `None`.
    pub base_port: Option<u16>,
    /// The timeouts written into the configuration (replicas and clients read them).
    pub timeouts: Timeouts,
    /// The replicas' log filter (`VPR_LOG`, e.g. `info`); if `None` they inherit this
    /// process's environment.
    pub log_filter: Option<String>,
    /// Where the replicas keep their state (a log on disk by default).
    pub durability: Durability,
    /// Log bytes between checkpoints ([`ClusterConfig::checkpoint_bytes`]; its default if
    /// `None`).
    pub checkpoint_bytes: Option<u64>,
}

/// A running local cluster; stops its replicas when dropped.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    config: ClusterConfig,
    children: Vec<Option<Child>>,
    exe: PathBuf,
    log_filter: Option<String>,
    /// Per replica: how [`LocalCluster::restart_exited`] restarts it.
    backoff: Vec<Backoff>,
}

/// When an exited replica is started again.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    /// Restarts since it last ran for [`MAX_RESTART_DELAY`] or longer.
    restarts: u32,
    /// When it is to be started again, once it exited.
    next: Option<Instant>,
    /// When it was last started by [`LocalCluster::restart_exited`].
    since: Option<Instant>,
}

/// The first wait before an exited replica is started again; it doubles with each restart
/// up to [`MAX_RESTART_DELAY`].
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
/// The longest wait between two restarts of one replica.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

impl LocalCluster {
    /// Writes the configuration and starts `n` replicas of the simulation backend.
    pub fn start(dir: &Path, n: u16, base_port: Option<u16>, exe: &Path) -> Result<LocalCluster> {
        LocalCluster::start_with(dir, n, exe, &Options { base_port, ..Options::default() })
    }

    /// Writes the configuration and starts `n` replicas of the simulation backend, set up as
    /// `options` says.
    pub fn start_with(dir: &Path, n: u16, exe: &Path, options: &Options) -> Result<LocalCluster> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for id in 0..n {
            if dir.join(files::data(id)).join("counters").exists() {
                bail!(
                    "{} holds a previous cluster's replica {id}: a new cluster is never started \
                     over it ({} restarts the cluster its {} describes; else use a fresh --dir)",
                    dir.display(),
                    "`vpr cluster --dir` on that folder",
                    files::REPLICAS
                );
            }
        }
        let manufacturer = Manufacturer::load_or_create(&dir.join(files::MANUFACTURER))?;
        // Each replica's simulated TCC key (its secret made in its data folder now), so the
        // configuration binds every id to its TCC.
        let replicas = ports(n, options.base_port)?
            .into_iter()
            .zip(0..n)
            .map(|(port, id)| {
                let key = simulation::tcc_key(&dir.join(files::data(id)))?;
                Ok(ReplicaEntry {
                    id,
                    address: format!("127.0.0.1:{port}"),
                    tcc_key: Some(hex::encode(key)),
                })
            })
            .collect::<Result<_>>()?;
        let config = ClusterConfig {
            name: format!("local-{}-{}", std::process::id(), dir.display()),
            replicas,
            identity: simulated_identity().to_string(),
            manufacturer: hex::encode(manufacturer.public()),
            allow_simulated: true,
            timeouts: options.timeouts.clone(),
            max_in_flight: 32,
            max_batch: 256,
            retained_updates: 1024,
            simulation_manufacturer_key: Some(PathBuf::from(files::MANUFACTURER)),
            attestation: None,
            durability: options.durability,
            checkpoint_bytes: options
                .checkpoint_bytes
                .unwrap_or(crate::store::MIN_CHECKPOINT_BYTES),
        };
        config.validate()?;
        config.save(&dir.join(files::REPLICAS))?;
        LocalCluster::spawn_all(dir, config, exe, options.log_filter.clone(), false)
    }

    /// Starts every replica of `config` in `dir` (appending to their logs if `append`).
    fn spawn_all(
        dir: &Path,
        config: ClusterConfig,
        exe: &Path,
        log_filter: Option<String>,
        append: bool,
    ) -> Result<LocalCluster> {
        let mut cluster = LocalCluster {
            dir: dir.to_owned(),
            config,
            children: Vec::new(),
            backoff: Vec::new(),
            exe: exe.to_owned(),
            log_filter,
        };
        for id in 0..cluster.config.n() {
            let child = cluster.spawn(id, append)?;
            cluster.children.push(Some(child));
        }
        Ok(cluster)
    }

    /// Starts again every replica of the cluster that `dir` holds (its configuration, written
    /// by [`LocalCluster::start_with`], and each replica's data folder): each restarts from
    /// its sealed state and its log. Nothing in the folder is changed if it is refused.
    ///
    /// # Errors
    /// The configuration is missing or malformed; the cluster keeps its state in memory
    /// (lost with its replicas); a replica never joined its group (no sealed state).
    pub fn reopen(dir: &Path, exe: &Path, log_filter: Option<String>) -> Result<LocalCluster> {
        let path = dir.join(files::REPLICAS);
        let config = ClusterConfig::load(&path)
            .with_context(|| format!("{} holds no cluster to restart", dir.display()))?;
        if config.durability != Durability::Disk {
            bail!(
                "{}: durability = \"memory\": its replicas kept their state in memory, lost when \
                 they stopped; start a new cluster in a fresh --dir",
                path.display()
            );
        }
        for id in 0..config.n() {
            let sealed = dir.join(files::data(id)).join(files::SEALED);
            if !sealed.is_file() {
                bail!(
                    "replica {id} never joined its group ({} is missing): this cluster cannot \
                     restart; start a new one in a fresh --dir",
                    sealed.display()
                );
            }
        }
        LocalCluster::spawn_all(dir, config, exe, log_filter, true)
    }

    /// Starts replica `id` (its log appended to, on a restart, rather than replaced).
    fn spawn(&self, id: u16, append: bool) -> Result<Child> {
        let log = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(self.dir.join(files::log(id)))?;
        let mut command = Command::new(&self.exe);
        if let Some(filter) = &self.log_filter {
            command.env("VPR_LOG", filter);
        }
        let child = command
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

    /// Waits until the group is formed with every running replica in it (each one's status
    /// file says so: a replica killed before it joined could not come back into this group)
    /// and a client is welcomed; then writes the client configuration `cluster.toml` and returns
    /// its path.
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
        loop {
            self.check_children()?;
            let waiting: Vec<u16> = (0..self.config.n())
                .filter(|id| self.is_running(*id) && !self.status(*id).is_ok_and(|r| r.ready))
                .collect();
            if waiting.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                bail!("the group formed, but replicas {waiting:?} did not join it in time");
            }
            std::thread::sleep(Duration::from_millis(50));
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
                    bail!("replica {id} exited ({status}); {}", self.log_tail(id));
                }
            }
        }
        Ok(())
    }

    /// The last lines of replica `id`'s log.
    fn log_tail(&self, id: u16) -> String {
        let log = fs::read_to_string(self.dir.join(files::log(id))).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("its log ends:\n{}", tail.join("\n"))
    }

    /// Starts again every replica whose process exited (a crash, or a Manager that stopped
    /// for good): from its data folder, so from its sealed state, as [`LocalCluster::restart`]
    /// does. A replica that keeps exiting waits longer each time: 0.5 s after its first exit,
    /// doubling up to 30 s, and 0.5 s again once it ran 30 s. One line per replica exited
    /// (with its log's tail), restarted, or that could not be checked or started (the others
    /// are still seen to).
    pub fn restart_exited(&mut self) -> Vec<String> {
        let mut said = Vec::new();
        let now = Instant::now();
        let fresh = Backoff { restarts: 0, next: None, since: None };
        self.backoff.resize(self.children.len().max(self.backoff.len()), fresh);
        for index in 0..self.children.len() {
            let id = u16::try_from(index).unwrap_or(u16::MAX);
            if let Some(child) = &mut self.children[index] {
                let status = match child.try_wait() {
                    Ok(Some(status)) => status,
                    Ok(None) => continue,
                    Err(e) => {
                        said.push(format!("replica {id}: cannot tell whether it runs: {e}"));
                        continue;
                    }
                };
                self.children[index] = None;
                let backoff = &mut self.backoff[index];
                if backoff.since.is_some_and(|since| now - since >= MAX_RESTART_DELAY) {
                    backoff.restarts = 0;
                }
                let delay = FIRST_RESTART_DELAY
                    .saturating_mul(1 << backoff.restarts.min(16))
                    .min(MAX_RESTART_DELAY);
                backoff.next = Some(now + delay);
                said.push(format!(
                    "replica {id} exited ({status}); starting it again in {delay:?}; {}",
                    self.log_tail(id)
                ));
                continue;
            }
            let backoff = self.backoff[index];
            if backoff.next.is_some_and(|at| now >= at) {
                let restarts = backoff.restarts.saturating_add(1);
                match self.spawn(id, true) {
                    Ok(child) => {
                        self.children[index] = Some(child);
                        self.backoff[index] = Backoff { restarts, next: None, since: Some(now) };
                        said.push(format!("replica {id} started again (restart {restarts})"));
                    }
                    Err(e) => {
                        let delay = MAX_RESTART_DELAY;
                        self.backoff[index] =
                            Backoff { restarts, next: Some(now + delay), ..backoff };
                        said.push(format!(
                            "replica {id} could not be started again ({e:#}); trying in {delay:?}"
                        ));
                    }
                }
            }
        }
        said
    }

    /// Kills replica `id` (a crash: no clean shut-down).
    pub fn kill(&mut self, id: u16) -> Result<()> {
        if let Some(Some(mut child)) = self.children.get_mut(usize::from(id)).map(Option::take) {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// The process id of replica `id`, if this launcher started it and has not seen it exit.
    pub fn pid(&self, id: u16) -> Option<u32> {
        self.children.get(usize::from(id))?.as_ref().map(Child::id)
    }

    /// Whether replica `id` runs (reaping it if it exited).
    pub fn is_running(&mut self, id: u16) -> bool {
        match self.children.get_mut(usize::from(id)) {
            Some(Some(child)) => matches!(child.try_wait(), Ok(None)),
            _ => false,
        }
    }

    /// Waits up to `timeout` for replica `id` to exit (say, after someone else killed it),
    /// reaps it and returns how it ended. Fails if it is still running then, or if this
    /// launcher holds no process for it.
    pub fn wait_exit(&mut self, id: u16, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let slot = self.children.get_mut(usize::from(id)).context("no such replica")?;
        let Some(child) = slot else { bail!("replica {id} is not running") };
        loop {
            if let Some(status) = child.try_wait()? {
                *slot = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("replica {id} (pid {}) still runs after {timeout:?}", child.id());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts replica `id` again, after it exited or was killed, with the command line it
    /// was first started with: a replica whose data folder holds sealed group state restarts
    /// from it. Its log is appended to.
    pub fn restart(&mut self, id: u16) -> Result<()> {
        let index = usize::from(id);
        if index >= self.children.len() {
            bail!("no replica {id}");
        }
        if self.is_running(id) {
            bail!("replica {id} is running");
        }
        if let Some(mut old) = self.children[index].take() {
            old.wait()?;
        }
        let child = self.spawn(id, true)?;
        self.children[index] = Some(child);
        Ok(())
    }

    /// Replica `id`'s status file, as its host last wrote it.
    pub fn status(&self, id: u16) -> Result<Reported> {
        let path = self.dir.join(files::status(id));
        crate::status::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// The primary, as the status files of running replicas tell: the primary of the latest
    /// view that f + 1 of them report, if it runs itself. `None` while no such replica is
    /// known (say, during a view change).
    pub fn primary(&mut self) -> Option<u16> {
        let running: Vec<u16> = (0..self.config.n()).filter(|id| self.is_running(*id)).collect();
        let reports: Vec<Reported> =
            running.iter().filter_map(|id| self.status(*id).ok()).filter(|r| r.ready).collect();
        let view = reports.iter().map(|r| r.view).max()?;
        let agreeing = reports.iter().filter(|r| r.view == view).count();
        let primary = reports.iter().find(|r| r.view == view)?.primary;
        (agreeing > self.config.faults() && running.contains(&primary)).then_some(primary)
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
