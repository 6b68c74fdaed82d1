//! A cluster of replica VMs (`vpr cluster --tcc qemu`): each replica is a QEMU machine with
//! its own software TPM (its EK certificate from the local CA), on which vpr's hypervisor runs
//! Linux and, in it, `vpr replica --tcc hypervisor`. The launcher plays the cluster's
//! operator: it makes a cluster key, enrolls every VM's TCC with it ([`enroll`]: TPM evidence
//! to the CA, PCR 17 = the hypervisor), and writes the client configuration, which trusts the
//! cluster key and the PAL's identity and refuses simulated evidence; its `[attestation]`
//! section carries the CA's root certificate and the hypervisor's measurement, with which
//! `vpr verify --config` checks a replica's TPM evidence.
//!
//! Networking is QEMU's user mode, bound to 127.0.0.1 on the host: VM `i` forwards host port
//! `replica_port[i]` to its replica's port 17000 and `agent_port[i]` to its enrollment agent's
//! 7100. Inside VM `i` the cluster configuration names itself `0.0.0.0:17000` and the others
//! `10.0.2.2:replica_port[j]` (the host, as user-mode networking shows it).
//!
//! Each VM keeps its replica's data folder (the group state its TCC sealed) in a host folder,
//! `vm-<i>.data`, shared into the guest with virtio-9p: untrusted storage, like a disk, that
//! outlives the VM. A killed VM can be booted again ([`QemuCluster::restart`]) on the same TPM
//! state and data: it is enrolled again and its replica restarts from the sealed state.

use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use vpr_proto::crypto::{KeyPair, PublicKey};
use vpr_proto::Digest;

use crate::client::Client;
use crate::config::{Attestation, ClusterConfig, ReplicaEntry, Timeouts};
use crate::enroll::{self, Enrolled, Operator};
use crate::evidence::x509::Ca;
use crate::evidence::Launch;
use crate::machine::{console_args, hypervisor_measurement, tpm_args, Swtpm, VIRTIO_DMA};

/// The replica's port inside each VM.
const REPLICA_PORT: u16 = 17000;
/// The enrollment agent's port inside each VM.
const AGENT_PORT: u16 = 7100;
/// The mount tag of each VM's data folder (the guest mounts it at /var/lib/vpr).
const DATA_TAG: &str = "vprdata";

/// What a QEMU cluster is made of.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    /// Number of replica VMs (2f + 1).
    pub replicas: u16,
    /// Folder for the configuration, the VMs' logs and TPM states.
    pub dir: PathBuf,
    /// The checkout (for `qemu/tpm-setup.sh` and `qemu/guest-config.sh`).
    pub repo: PathBuf,
    /// The hypervisor image.
    pub hypervisor: PathBuf,
    /// The guest's kernel and initramfs (`qemu/guest-image.sh`, with the PAL image in it).
    pub kernel: PathBuf,
    /// See [`QemuOptions::kernel`].
    pub initramfs: PathBuf,
    /// The PAL image (its SHA-256 is the identity clients pin).
    pub pal: PathBuf,
    /// The local CA's folder (`qemu/tpm-setup.sh`'s `CA_DIR`).
    pub ca: PathBuf,
    /// Use KVM (the host must expose SVM), else TCG.
    pub kvm: bool,
    /// Memory of each VM (QEMU's `-m`).
    pub memory: String,
}

/// One replica VM.
#[derive(Debug)]
struct Vm {
    qemu: Option<Child>,
    /// Its TPM: kept as long as the VM entry lives (stopped and removed with it).
    swtpm: Swtpm,
    /// QEMU's arguments (the same for every boot of this VM).
    args: Vec<String>,
    agent_port: u16,
    log: PathBuf,
    /// The configuration its replica runs with (sent at each enrollment: it names every
    /// replica's TCC key, known once all are enrolled).
    config: String,
}

/// What the cluster's operator holds to enroll a VM: the CA, the cluster key, the hypervisor
/// measurement PCR 17 must show.
struct Operating {
    ca: Ca,
    cluster_key: KeyPair,
    hypervisor: [u8; 32],
}

impl std::fmt::Debug for Operating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operating")
            .field("cluster_key", &hex::encode(self.cluster_key.public()))
            .field("hypervisor", &hex::encode(self.hypervisor))
            .finish_non_exhaustive()
    }
}

/// A running cluster of replica VMs; stopped (VMs and TPMs) when dropped.
#[derive(Debug)]
pub struct QemuCluster {
    vms: Vec<Vm>,
    config: ClusterConfig,
    dir: PathBuf,
    operating: Operating,
    /// What each VM's enrollment established, in order.
    pub enrolled: Vec<Enrolled>,
}

impl QemuCluster {
    /// Boots the VMs and enrolls each one's TCC; `progress` hears what happens. The cluster is
    /// not necessarily formed yet: [`QemuCluster::wait_ready`].
    ///
    /// # Errors
    /// A missing file, a VM that does not boot or whose evidence is refused (with the tail of
    /// its serial log).
    pub fn start(options: &QemuOptions, progress: &dyn Fn(&str)) -> Result<QemuCluster> {
        let n = options.replicas;
        fs::create_dir_all(&options.dir)?;
        let measurement =
            hypervisor_measurement(&options.hypervisor).map_err(anyhow::Error::msg)?;
        let hypervisor: [u8; 32] = hex::decode(&measurement)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("the hypervisor's measurement is not 32 bytes"))?;
        let pal = fs::read(&options.pal).with_context(|| format!("{}", options.pal.display()))?;
        let identity = Digest::of(&pal);
        let ca =
            Ca::load(&options.ca).with_context(|| format!("the CA in {}", options.ca.display()))?;
        let root_file = options.ca.join(crate::evidence::x509::ROOT_CERTIFICATE_FILE);
        let ca_root = fs::read_to_string(&root_file)
            .with_context(|| format!("the CA's root certificate {}", root_file.display()))?;
        let cluster_key = KeyPair::generate(&mut rand_core::OsRng);
        let replica_ports = crate::ports::unused(usize::from(n))?;
        let base = ClusterConfig {
            name: format!("qemu-{}", std::process::id()),
            replicas: Vec::new(),
            identity: identity.to_string(),
            manufacturer: hex::encode(cluster_key.public()),
            allow_simulated: false,
            // TCG runs the PAL tens of times slower than hardware: give requests time.
            timeouts: Timeouts {
                request_ms: 10_000,
                request_attempts: 12,
                view_change_ms: 8_000,
                ..Timeouts::default()
            },
            max_in_flight: 32,
            max_batch: 256,
            retained_updates: 1024,
            simulation_manufacturer_key: None,
            attestation: Some(Attestation { ca_root, hypervisor: measurement.clone() }),
            // Replica VMs keep their state in memory for now: a log on the VM's disk is not
            // wired into the VM cluster's drills yet.
            durability: crate::config::Durability::Memory,
            checkpoint_bytes: crate::store::MIN_CHECKPOINT_BYTES,
        };
        // Replica `id`'s entries as VM `me` sees them (or, with `None`, as host clients do),
        // with the TCC keys in `keys` (none before the enrollments).
        let entries = |me: Option<u16>, keys: &[PublicKey]| -> Vec<ReplicaEntry> {
            (0..n)
                .map(|id| ReplicaEntry {
                    id,
                    address: match me {
                        Some(me) if me == id => format!("0.0.0.0:{REPLICA_PORT}"),
                        Some(_) => format!("10.0.2.2:{}", replica_ports[usize::from(id)]),
                        None => format!("127.0.0.1:{}", replica_ports[usize::from(id)]),
                    },
                    tcc_key: keys.get(usize::from(id)).map(hex::encode),
                })
                .collect()
        };
        // The guest image, read once: each VM's is it with that VM's configuration appended.
        let image = fs::read(&options.initramfs)
            .with_context(|| format!("{}", options.initramfs.display()))?;
        let mut vms = Vec::new();
        for id in 0..n {
            // Booted with the configuration without TCC keys; its agent stores the whole one.
            let mut config = base.clone();
            config.replicas = entries(Some(id), &[]);
            let toml = options.dir.join(format!("vm-{id}.toml"));
            config.save(&toml)?;
            let initramfs = options.dir.join(format!("vm-{id}.initramfs"));
            with_config(&options.repo, &image, &toml, &initramfs)?;
            let tpm = options.dir.join(format!("tpm-{id}"));
            let swtpm =
                Swtpm::start(&options.repo, tpm, &options.ca).map_err(anyhow::Error::msg)?;
            let agent_port = crate::ports::one()?;
            let log = options.dir.join(format!("vm-{id}.log"));
            // A fresh data folder: a previous cluster's sealed state is not this one's.
            let data = options.dir.join(format!("vm-{id}.data"));
            match fs::remove_dir_all(&data) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("{}", data.display())),
            }
            fs::create_dir_all(&data)?;
            let forwards =
                [(agent_port, AGENT_PORT), (replica_ports[usize::from(id)], REPLICA_PORT)];
            let args = qemu_args(options, &initramfs, &swtpm, &data, id, &forwards);
            let qemu = spawn_qemu(&args, &log, false)?;
            progress(&format!("vm {id}: booting (serial log {})", log.display()));
            vms.push(Vm { qemu: Some(qemu), swtpm, args, agent_port, log, config: String::new() });
        }
        let mut cluster = QemuCluster {
            vms,
            config: ClusterConfig { replicas: entries(None, &[]), ..base.clone() },
            dir: options.dir.clone(),
            operating: Operating { ca, cluster_key, hypervisor },
            enrolled: Vec::new(),
        };
        let mut enrollments = Vec::new();
        for id in 0..n {
            let enrollment = cluster.enroll(id, Duration::from_secs(180))?;
            let enrolled = enrollment.enrolled.clone();
            // One TPM, one replica: the configuration's keys must be n machines' TPMs.
            if let Some(other) =
                cluster.enrolled.iter().position(|e| e.ek_certificate == enrolled.ek_certificate)
            {
                bail!("vm {id} shows the TPM (EK certificate) of vm {other}: refused");
            }
            progress(&format!(
                "vm {id}: enrolled (EK certificate {}, TCC key {}, {})",
                Digest(enrolled.ek_certificate),
                Digest::of(&enrolled.tcc_key),
                enrolled.launch
            ));
            // Its evidence, for `vpr verify` (with the nonce it answers).
            if let Some(evidence) = enrolled.evidence(&cluster.operating.ca, &identity.0)? {
                fs::write(options.dir.join(format!("evidence-{id}.json")), evidence.to_json())?;
                fs::write(
                    options.dir.join(format!("evidence-{id}.nonce")),
                    hex::encode(enrolled.nonce),
                )?;
            }
            cluster.enrolled.push(enrolled);
            enrollments.push(enrollment);
        }
        // What the accepted evidence does not prove, once for each launch it showed.
        let mut launches: Vec<Launch> = Vec::new();
        for launch in cluster.enrolled.iter().map(|e| e.launch) {
            if !launches.contains(&launch) {
                launches.push(launch);
                progress(launch.warning());
            }
        }
        // Every TCC key is known: each VM's replica gets the configuration that binds each
        // id to its TCC, and clients the same.
        let keys: Vec<PublicKey> = cluster.enrolled.iter().map(|e| e.tcc_key).collect();
        cluster.config.replicas = entries(None, &keys);
        cluster.config.validate()?;
        for (id, enrollment) in (0..n).zip(enrollments) {
            let config = ClusterConfig { replicas: entries(Some(id), &keys), ..base.clone() };
            let text = toml::to_string_pretty(&config)?;
            enrollment.configure(&text).with_context(|| format!("vm {id}: its configuration"))?;
            cluster.vms[usize::from(id)].config = text;
        }
        fs::write(options.dir.join("hypervisor.measurement"), &measurement)?;
        Ok(cluster)
    }

    /// Enrolls VM `id` once its agent answers.
    fn enroll(&mut self, id: u16, timeout: Duration) -> Result<enroll::Enrollment> {
        let deadline = Instant::now() + timeout;
        // A VM enrolled before must show the same TCC key again (checked before it is
        // certified).
        let operator = Operator {
            ca: &self.operating.ca,
            cluster_key: &self.operating.cluster_key,
            hypervisor: self.operating.hypervisor,
            tcc_key: self.enrolled.get(usize::from(id)).map(|e| e.tcc_key),
        };
        loop {
            let vm = &mut self.vms[usize::from(id)];
            if let Some(qemu) = vm.qemu.as_mut() {
                if let Some(status) = qemu.try_wait()? {
                    bail!(
                        "vm {id} stopped ({status}) before its enrollment:\n{}",
                        self.log_tail(id, 20)
                    );
                }
            }
            match enroll::enroll(("127.0.0.1", vm.agent_port), &operator) {
                Ok(enrolled) => return Ok(enrolled),
                // Not up yet, or its TPM failed (the agent tries again): retry.
                Err(enroll::EnrollError::Io(_) | enroll::EnrollError::Tcc(_))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => bail!("vm {id}: enrollment: {e}\n{}", self.log_tail(id, 20)),
            }
        }
    }

    /// Waits until a client is welcomed (the group formed, its evidence verified), writes the
    /// client configuration `cluster.toml` and returns its path.
    ///
    /// # Errors
    /// The group did not form in time.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<PathBuf> {
        let deadline = Instant::now() + timeout;
        loop {
            match Client::connect(&self.config) {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => {
                    bail!("the group did not form: {e}\n{}", self.log_tail(0, 20))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        let path = self.dir.join("cluster.toml");
        self.config.save(&path)?;
        Ok(path)
    }

    /// The client configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Kills VM `id` (as a machine would crash): its QEMU, not its TPM.
    pub fn kill(&mut self, id: u16) {
        if let Some(mut qemu) = self.vms.get_mut(usize::from(id)).and_then(|vm| vm.qemu.take()) {
            let _ = qemu.kill();
            let _ = qemu.wait();
        }
    }

    /// Boots VM `id` again (killing it first if it runs), as a machine restarted after a
    /// crash: on the same TPM state (swtpm started again on it) and the same data folder, with
    /// the same ports. Its TCC is enrolled again (the certificate of its TCC key lived in the
    /// hypervisor's memory); its replica then restarts from the group state it sealed and asks
    /// for a snapshot. Returns what the enrollment established.
    ///
    /// # Errors
    /// No such VM, QEMU or swtpm does not start, or the enrollment fails.
    pub fn restart(&mut self, id: u16, timeout: Duration) -> Result<Enrolled> {
        self.kill(id);
        let vm = self.vms.get_mut(usize::from(id)).with_context(|| format!("no VM {id}"))?;
        vm.swtpm.restart().map_err(anyhow::Error::msg)?;
        vm.qemu = Some(spawn_qemu(&vm.args, &vm.log, true)?);
        let config = vm.config.clone();
        // (`enroll` refuses another TCC key than the first enrollment's before certifying.)
        let enrolled = self.enroll(id, timeout)?.configure(&config)?;
        if let Some(slot) = self.enrolled.get_mut(usize::from(id)) {
            *slot = enrolled.clone();
        }
        Ok(enrolled)
    }

    /// The last `lines` lines of VM `id`'s serial log.
    pub fn log_tail(&self, id: u16, lines: usize) -> String {
        let Some(vm) = self.vms.get(usize::from(id)) else { return String::new() };
        let Ok(file) = fs::File::open(&vm.log) else { return String::new() };
        let all: Vec<String> = BufReader::new(file).lines().map_while(|l| l.ok()).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for QemuCluster {
    fn drop(&mut self) {
        for id in 0..self.vms.len() {
            self.kill(u16::try_from(id).unwrap_or(u16::MAX));
        }
        // Each Swtpm stops and removes its state when its VM entry goes.
    }
}

/// Starts QEMU with `args`, its output (the serial console) into `log`, appended to it when
/// `append` (a VM's later boots).
fn spawn_qemu(args: &[String], log: &Path, append: bool) -> Result<Child> {
    let out = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(log)
        .with_context(|| format!("{}", log.display()))?;
    Command::new("qemu-system-x86_64")
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("starting qemu-system-x86_64")
}

/// QEMU's arguments for VM `id`: the hypervisor with the kernel and `initramfs` as modules,
/// Linux told to run the replica on the hypervisor's TCC after its enrollment, its TPM, its
/// `data` folder shared with virtio-9p, and user-mode networking with `forwards` (host port,
/// guest port) bound to 127.0.0.1.
fn qemu_args(
    options: &QemuOptions,
    initramfs: &Path,
    swtpm: &Swtpm,
    data: &Path,
    id: u16,
    forwards: &[(u16, u16)],
) -> Vec<String> {
    let kernel_args = format!(
        "console=ttyS0 nokaslr no5lvl mitigations=off panic=-1 initcall_blacklist=init_tis \
         vpr.run=replica vpr.id={id} vpr.tcc=hypervisor vpr.enroll={AGENT_PORT} vpr.log=info \
         vpr.data={DATA_TAG}"
    );
    let forwards: String = forwards
        .iter()
        .map(|(host, guest)| format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"))
        .collect();
    let (accel, cpu) = if options.kvm { ("kvm", "host") } else { ("tcg", "max") };
    let mut args: Vec<String> = vec![
        "-kernel".into(),
        options.hypervisor.display().to_string(),
        "-initrd".into(),
        format!("{},{}", options.kernel.display(), initramfs.display()),
        "-append".into(),
        format!("vpr.guest=linux -- {kernel_args}"),
        "-netdev".into(),
        format!("user,id=n0{forwards}"),
        "-device".into(),
        format!("virtio-net-pci,netdev=n0,{VIRTIO_DMA}"),
        // The data folder: QEMU's process accesses it as is (security_model=none).
        "-fsdev".into(),
        // (A comma in an option value is written twice.)
        format!(
            "local,id=data,path={},security_model=none",
            data.display().to_string().replace(',', ",,")
        ),
        "-device".into(),
        format!("virtio-9p-pci,fsdev=data,mount_tag={DATA_TAG},{VIRTIO_DMA}"),
        "-accel".into(),
        accel.into(),
        "-cpu".into(),
        cpu.into(),
    ];
    args.extend(console_args(&options.memory));
    args.extend(tpm_args(&swtpm.socket));
    args
}

/// The guest image `initramfs` (its bytes) with `toml` appended as /etc/vpr/cluster.toml
/// (`qemu/guest-config.sh`), into `out`.
fn with_config(repo: &Path, initramfs: &[u8], toml: &Path, out: &Path) -> Result<()> {
    let extra = out.with_extension("config.cpio.gz");
    let status = Command::new(repo.join("qemu/guest-config.sh"))
        .arg(&extra)
        .arg(format!("{}:/etc/vpr/cluster.toml", toml.display()))
        .stdout(Stdio::null())
        .status()
        .context("running qemu/guest-config.sh")?;
    if !status.success() {
        bail!("qemu/guest-config.sh failed ({status})");
    }
    let mut file = fs::File::create(out).with_context(|| format!("{}", out.display()))?;
    file.write_all(initramfs)?;
    file.write_all(&fs::read(&extra)?)?;
    Ok(())
}
