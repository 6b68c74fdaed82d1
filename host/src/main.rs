//! `vpr`: run a replicated SQLite cluster and talk to it.

#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use vpr_host::client::{Client, ClientError, ReadConsistency};
use vpr_host::config::{ClusterConfig, Durability};
use vpr_host::launcher::{files, LocalCluster, Options};
use vpr_host::store::{Durable, Store};
use vpr_host::tcc::simulation::{self, Manufacturer, Simulation};
use vpr_host::tcc::TccBackend;
use vpr_host::{net, shell};
use vpr_pal::{GroupConfig, ServiceOptions};
use vpr_proto::msg::ReadLevel;

#[derive(Parser)]
#[command(name = "vpr", version, about = "Verified passive replication of SQLite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The TCCs a local cluster's replicas run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ClusterTcc {
    /// Processes with the in-process simulation.
    Simulation,
    /// QEMU VMs with vpr's hypervisor and a TPM each.
    Qemu,
}

/// `vpr cluster --durability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DurabilityArg {
    /// A log on each replica's disk.
    Disk,
    /// In memory only.
    Memory,
}

/// The TCC backends a replica can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TccKind {
    /// The Manager in this process: no isolation (development, CI, benchmarks).
    Simulation,
    /// The PAL image under vpr's hypervisor, by hypercall.
    Hypervisor,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local cluster: replica processes on 127.0.0.1 (the simulation TCC backend), or
    /// with `--tcc qemu` replica VMs, each with its own software TPM, vpr's hypervisor and
    /// Linux, enrolled with a cluster key (build the images first: `cargo xtask linux-test`
    /// builds all of them).
    Cluster {
        /// Number of replicas (2f + 1).
        #[arg(long, default_value_t = 3)]
        replicas: u16,
        /// Folder for configuration, data, logs and pid files.
        #[arg(long)]
        dir: PathBuf,
        /// First port (replica i listens on base + i); free ports are chosen if omitted
        /// (simulation only).
        #[arg(long)]
        base_port: Option<u16>,
        /// The replicas' TCC: `simulation` (processes) or `qemu` (VMs on the real TCC).
        #[arg(long, value_enum, default_value_t = ClusterTcc::Simulation)]
        tcc: ClusterTcc,
        /// The checkout whose built images and scripts the VMs use (`--tcc qemu`).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Where a new cluster's replicas keep their state: `disk` (a log in each data
        /// folder, flushed before anything that depends on it leaves; the cluster survives a
        /// stop of every replica) or `memory` (simulation only; a new folder only).
        #[arg(long, value_enum, default_value_t = DurabilityArg::Disk)]
        durability: DurabilityArg,
    },
    /// Run one replica.
    Replica {
        /// The cluster configuration.
        #[arg(long)]
        config: PathBuf,
        /// This replica's id.
        #[arg(long)]
        id: u16,
        /// Data folder (default: replica-<id> next to the configuration).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Keep a status file here.
        #[arg(long)]
        status: Option<PathBuf>,
        /// Which TCC runs the Manager: the in-process simulation, or the PAL image under vpr's
        /// hypervisor (this process must run in the hypervisor's Linux guest).
        #[arg(long, value_enum, default_value_t = TccKind::Simulation)]
        tcc: TccKind,
        /// The PAL image (`vpr-pal-image`) for `--tcc hypervisor`.
        #[arg(long, default_value = "/usr/lib/vpr/vpr-pal-image")]
        pal: PathBuf,
    },
    /// Print the TCC key of a simulation-backend replica whose data folder is `--data` (its
    /// secret made there if missing): what a cluster configuration names as that replica's
    /// `tcc_key`. (A replica VM's key is what its enrollment certified.)
    TccKey {
        /// The replica's data folder.
        #[arg(long)]
        data: PathBuf,
    },
    /// Run SQL against the cluster; every reply is verified before anything is printed.
    Sql {
        /// The client configuration (cluster.toml).
        #[arg(long)]
        config: PathBuf,
        /// SQL to run instead of reading statements from standard input.
        #[arg(short = 'c', long = "command")]
        command: Option<String>,
        /// Print rows as JSON arrays, one per line.
        #[arg(long)]
        json: bool,
        /// How fresh reads must be: `linearizable` waits for f backups to confirm the primary
        /// still leads the latest view; `primary` answers at once (possibly stale after a
        /// partition).
        #[arg(long, value_enum, default_value_t = ReadConsistency::Linearizable)]
        read_consistency: ReadConsistency,
    },
    /// Show each replica's view, primary, state counter and database hash, as its Manager
    /// reports them (authenticated with this client's key).
    Status {
        /// The client configuration (cluster.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Verify attestation evidence with only the CA's root certificate: EK certificate ->
    /// attestation key certificate -> TPM quote of PCRs 17-19 (hypervisor, its PALs, its TCC
    /// key) -> the PAL's uTPM quote over the nonce and data. The CA, PAL identity and
    /// hypervisor come from the options, else from `--config` (a VM cluster's configuration
    /// carries them).
    Verify {
        /// The evidence (JSON, as `cargo xtask qemu-test` or a replica writes it).
        evidence: PathBuf,
        /// The CA's root certificate (PEM or DER): the only trust anchor.
        #[arg(long, required_unless_present = "config")]
        ca: Option<PathBuf>,
        /// A cluster configuration to take the CA's root certificate, the PAL identity and the
        /// hypervisor measurement from (its `identity` and `[attestation]`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The nonce the evidence must answer (64 hex digits).
        #[arg(long, value_parser = hex32)]
        nonce: [u8; 32],
        /// The PAL identity expected (SHA-256 of its image, 64 hex digits).
        #[arg(long, value_parser = hex32, required_unless_present = "config")]
        identity: Option<[u8; 32]>,
        /// The data the quote's caller chose (64 hex digits): the quote must carry it,
        /// labelled as the caller's (the PAL does not vouch for it).
        #[arg(long, value_parser = hex32)]
        data: Option<[u8; 32]>,
        /// The hypervisor's measurement PCR 17 must show (64 hex digits; required for TPM
        /// evidence).
        #[arg(long, value_parser = hex32)]
        hypervisor: Option<[u8; 32]>,
        /// Accept evidence of the simulation backend (no TPM: its key vouches for itself).
        #[arg(long)]
        allow_simulation: bool,
    },
    /// On the vpr hypervisor (a replica VM's Linux): wait for the cluster's operator on
    /// `--listen`, show it this machine's TPM evidence, and take its certificate of the TCC
    /// key (see `vpr_host::enroll`).
    EnrollAgent {
        /// Where to wait for the operator, `host:port`.
        #[arg(long, default_value = "0.0.0.0:7100")]
        listen: String,
        /// The PAL image, for a uTPM quote in the evidence (skipped if the file is absent).
        #[arg(long, default_value = "/usr/lib/vpr/vpr-pal-image")]
        pal: PathBuf,
        /// Where to store the cluster configuration the operator sends once every machine is
        /// enrolled (it names each replica's TCC key).
        #[arg(long, default_value = "/etc/vpr/cluster.toml")]
        config: PathBuf,
    },
    /// On the vpr hypervisor (a replica VM's Linux): register the PAL image, run SQL through
    /// it, take a uTPM quote, unregister it; report what each step gave.
    PalSmoke {
        /// The PAL image (the `vpr-pal-image` ELF file).
        #[arg(long)]
        image: PathBuf,
        /// Keep the PAL registered this long before unregistering it (and check it still
        /// answers then): time for `vpr pal-probe` from another process.
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
    },
    /// On the vpr hypervisor: try, from this process, what only a PAL's owner and the
    /// enrollment agent may do — execute and unregister PAL `--handle` (another process's),
    /// and install a certificate of the TCC key — and report each answer.
    #[command(hide = true)]
    PalProbe {
        /// The handle (hex, as `vpr pal-smoke` prints it).
        #[arg(long)]
        handle: String,
    },
    /// As root in the hypervisor's Linux guest: try one attack on its isolation and report
    /// what happened (`fw-cfg-dma`: make QEMU's fw_cfg device DMA into this process's memory;
    /// `msi-enable`: enable a virtio function's MSI-X; `edu-dma`: program QEMU's edu device
    /// (`-device edu`) to DMA between pages of this process, then to read and write 64 bytes
    /// at `--target`; its lines start `edu dma:`; `edu-smi`, `edu-nmi`: have the edu device
    /// (started with `dma_mask=0xffffffff`) write an SMI or NMI message into the local
    /// APIC's window by DMA; their lines start `edu message:`).
    #[command(hide = true)]
    GuestProbe {
        /// The attack.
        what: String,
        /// For `edu-dma`: the physical address to read and write (hex, `0x` optional, below
        /// 256 MiB, the edu device's DMA mask); by default the start of the first range of
        /// `vpr.hv=` on the kernel's command line below that.
        #[arg(long)]
        target: Option<String>,
    },
    /// Start a 3-replica cluster in a temporary folder, run a small workload through verified
    /// replies, show each replica's database hash, and stop.
    Demo,
    /// Measure throughput and latency percentiles of a running cluster against an unreplicated
    /// in-process SQLite baseline.
    Bench(vpr_host::bench::BenchArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VPR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vpr: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Cluster {
            replicas,
            dir,
            base_port,
            tcc: ClusterTcc::Simulation,
            durability,
            ..
        } => {
            let durability = match durability {
                DurabilityArg::Disk => Durability::Disk,
                DurabilityArg::Memory => Durability::Memory,
            };
            cluster(replicas, &dir, base_port, durability)
        }
        Command::Cluster { replicas, dir, tcc: ClusterTcc::Qemu, repo, .. } => {
            qemu_cluster(replicas, &dir, &repo)
        }
        Command::Replica { config, id, data, status, tcc, pal } => {
            replica(&config, id, data, status, tcc, &pal)
        }
        Command::Sql { config, command, json, read_consistency } => {
            sql(&config, command.as_deref(), json, read_consistency.into())
        }
        Command::Status { config } => status(&config),
        Command::TccKey { data } => {
            println!("{}", hex::encode(simulation::tcc_key(&data)?));
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => demo(),
        Command::PalSmoke { image, hold_ms } => pal_smoke(&image, hold_ms),
        Command::PalProbe { handle } => pal_probe(&handle),
        Command::GuestProbe { what, target } => guest_probe(&what, target.as_deref()),
        Command::EnrollAgent { listen, pal, config } => {
            vpr_host::enroll::agent(&listen, pal.is_file().then_some(pal.as_path()), &config)?;
            println!(
                "enroll-agent: the TCC key is certified by the cluster; configuration in {}",
                config.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            evidence,
            ca,
            config,
            nonce,
            identity,
            data,
            hypervisor,
            allow_simulation,
        } => {
            let expected = VerifyArgs { nonce, identity, data, hypervisor, allow_simulation };
            verify(&evidence, ca.as_deref(), config.as_deref(), &expected)
        }
        Command::Bench(args) => vpr_host::bench::command(&args).map(|_| ExitCode::SUCCESS),
    }
}

/// `vpr pal-smoke`: the PAL through the real TCC, from a process of the hypervisor's guest.
fn pal_smoke(image: &Path, hold_ms: u64) -> Result<ExitCode> {
    use vpr_host::tcc::hypercall::Hypervisor;
    use vpr_proto::pal_io::{Command as PalCommand, Outcome};
    use vpr_proto::utpm::{self, Quote, QuoteInfo};
    use vpr_proto::Digest;
    let hv = Hypervisor::open()?;
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let started = std::time::Instant::now();
    let registered = hv.register(&bytes)?;
    let identity = Digest::of(&bytes);
    anyhow::ensure!(
        registered.measurement == identity.0,
        "the measurement is not the image's SHA-256"
    );
    println!(
        "pal-smoke: registered {} ({} bytes) as handle {:#x} in {} ms",
        identity,
        bytes.len(),
        registered.handle,
        started.elapsed().as_millis()
    );
    let run = |command: PalCommand| -> Result<Outcome> {
        let output = hv.execute(registered.handle, &command.encode(), 64 << 10)?;
        Ok(Outcome::decode(&output)?)
    };
    let started = std::time::Instant::now();
    let write = run(PalCommand::Execute {
        sql: String::from(
            "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO kv VALUES (1, 'one')",
        ),
        params: Vec::new(),
    })?;
    let write_ms = started.elapsed().as_secs_f64() * 1000.0;
    let Outcome::Executed { error: None, update, .. } = write else {
        anyhow::bail!("the write: {write:?}");
    };
    anyhow::ensure!(!update.is_empty(), "the write captured no state update");
    let read = run(PalCommand::Execute {
        sql: String::from("SELECT v FROM kv WHERE k = 1"),
        params: Vec::new(),
    })?;
    let Outcome::Executed { error: None, results, .. } = read else {
        anyhow::bail!("the read: {read:?}");
    };
    let value = results.last().and_then(|r| r.rows.first()).and_then(|row| row.first()).cloned();
    let expected = vpr_proto::msg::Value::Text(b"one".to_vec());
    anyhow::ensure!(value.as_ref() == Some(&expected), "the read gave {value:?}");
    println!(
        "pal-smoke: SQL through the PAL: a write ({write_ms:.1} ms, a {}-byte state update) and \
         a read of it ('one')",
        update.len()
    );
    let Outcome::Digest { digest, file_size } = run(PalCommand::Digest)? else {
        anyhow::bail!("no digest");
    };
    println!("pal-smoke: database digest {digest} ({file_size} bytes)");
    let nonce = Digest::of(&started.elapsed().as_nanos().to_le_bytes());
    let data = Digest::of(b"vpr pal-smoke");
    let Outcome::Quote { quote } = run(PalCommand::Quote { nonce, data, selection: 1 })? else {
        anyhow::bail!("no quote");
    };
    let quote = Quote::from_bytes(&quote)?;
    let info = QuoteInfo::from_attest(&quote.attest)?;
    let upcr0 = utpm::extended(&[0; 32], &identity.0);
    anyhow::ensure!(
        info.extra_data == [nonce.0, utpm::caller_data(&data.0)].concat()
            && info.pcr_digest == utpm::pcr_digest(&[upcr0]),
        "the quote is over other data or uPCRs: {info:?}"
    );
    println!(
        "pal-smoke: uTPM quote over the nonce and data, uPCR 0 = the PAL's identity, signed by \
         the TCC key {} (its signature is checked by `vpr verify` with the TPM evidence)",
        hex::encode(&info.qualified_signer[2..])
    );
    if hold_ms > 0 {
        println!("pal-smoke: holding handle {:#x} for {hold_ms} ms", registered.handle);
        std::thread::sleep(std::time::Duration::from_millis(hold_ms));
        let Outcome::Digest { digest: after, .. } = run(PalCommand::Digest)? else {
            anyhow::bail!("no digest after the hold");
        };
        anyhow::ensure!(after == digest, "the PAL's database changed during the hold");
        println!("pal-smoke: after the hold the PAL is still registered and unchanged");
    }
    hv.unregister(registered.handle)?;
    println!("pal-smoke: ok");
    Ok(ExitCode::SUCCESS)
}

/// `vpr pal-probe`: what another process's PAL handle and the certificate install answer to
/// this process (each should be refused).
fn pal_probe(handle: &str) -> Result<ExitCode> {
    use vpr_host::tcc::hypercall::Hypervisor;
    use vpr_proto::pal_io::Command as PalCommand;
    let handle = u64::from_str_radix(handle.trim_start_matches("0x"), 16)
        .with_context(|| format!("--handle {handle}: not hex"))?;
    let hv = Hypervisor::open()?;
    let answer = |r: Result<(), vpr_host::tcc::hypercall::HypercallError>| match r {
        Ok(()) => String::from("DONE"),
        Err(e) => format!("refused ({e})"),
    };
    let executed = hv.execute(handle, &PalCommand::Digest.encode(), 64 << 10).map(drop);
    println!("pal-probe: execute of handle {handle:#x}: {}", answer(executed));
    println!("pal-probe: unregister of handle {handle:#x}: {}", answer(hv.unregister(handle)));
    println!("pal-probe: certify: {}", answer(hv.certify(&[0; 64])));
    Ok(ExitCode::SUCCESS)
}

/// `vpr guest-probe`: one attack on the hypervisor's isolation, and what it gave.
fn guest_probe(what: &str, target: Option<&str>) -> Result<ExitCode> {
    if target.is_some() && what != "edu-dma" {
        anyhow::bail!("guest-probe: --target is for edu-dma only");
    }
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if what == "edu-dma" {
        // Every line, the error too, starts `edu dma:` for the test to find.
        let mut report = |line: String| println!("edu dma: {line}");
        return Ok(match vpr_host::probe::edu_dma(target, &mut report) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("edu dma: error: {e:#}");
                ExitCode::from(2)
            }
        });
    }
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if let Some(mode) = what.strip_prefix("edu-") {
        if mode == "smi" || mode == "nmi" {
            let mut report = |line: String| println!("edu message: {line}");
            return Ok(match vpr_host::probe::edu_message(mode, &mut report) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    println!("edu message: error: {e:#}");
                    ExitCode::from(2)
                }
            });
        }
    }
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if what == "fw-cfg-dma" {
        println!("guest-probe: fw_cfg DMA: {}", vpr_host::probe::fw_cfg_dma()?);
        return Ok(ExitCode::SUCCESS);
    }
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if what == "msi-enable" {
        println!("guest-probe: MSI-X enable: {}", vpr_host::probe::msi_enable()?);
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::bail!(
        "guest-probe: no probe {what:?} here (known: fw-cfg-dma, msi-enable, edu-dma, edu-smi, \
         edu-nmi; on Linux/x86-64)"
    )
}

/// 32 bytes from 64 hex digits (a command-line argument).
fn hex32(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text).map_err(|e| format!("not hex: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("{} bytes, expected 32", b.len()))
}

/// What `vpr verify` expects, from its arguments.
struct VerifyArgs {
    nonce: [u8; 32],
    identity: Option<[u8; 32]>,
    data: Option<[u8; 32]>,
    hypervisor: Option<[u8; 32]>,
    allow_simulation: bool,
}

/// `vpr verify`: exit status 0 and what the evidence proves, or 1 and why it is refused.
/// What the options do not give comes from the configuration at `config`.
fn verify(
    evidence: &Path,
    ca: Option<&Path>,
    config: Option<&Path>,
    args: &VerifyArgs,
) -> Result<ExitCode> {
    use vpr_host::evidence::{x509, Evidence, Expected};
    use vpr_proto::Digest;
    let text = std::fs::read_to_string(evidence)
        .with_context(|| format!("reading {}", evidence.display()))?;
    let config = config.map(ClusterConfig::load).transpose()?;
    let attestation = config.as_ref().and_then(|c| c.attestation.as_ref());
    let roots = match (ca, attestation) {
        (Some(ca), _) => x509::read_certificates(
            &std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?,
        )
        .with_context(|| format!("{}: the CA's root certificate", ca.display()))?,
        (None, Some(attestation)) => attestation.ca_root_certificates()?,
        (None, None) => anyhow::bail!(
            "no CA: give --ca, or --config with a configuration that has an [attestation] \
             section (a cluster of replica VMs)"
        ),
    };
    let identity = match (args.identity, &config) {
        (Some(identity), _) => identity,
        (None, Some(config)) => config.identity_digest()?.0,
        (None, None) => anyhow::bail!("no PAL identity: give --identity or --config"),
    };
    let hypervisor = match (args.hypervisor, attestation) {
        (Some(hypervisor), _) => Some(hypervisor),
        (None, Some(attestation)) => Some(attestation.hypervisor_measurement()?),
        (None, None) => None,
    };
    let expected = Expected {
        roots: &roots,
        nonce: args.nonce,
        identity,
        data: args.data,
        hypervisor,
        allow_simulation: args.allow_simulation,
        now: std::time::SystemTime::now(),
    };
    let verified = Evidence::from_json(&text).and_then(|e| e.verify(&expected));
    match verified {
        Ok(v) => {
            match args.data {
                Some(data) => println!(
                    "verified: PAL {} quoted the caller's data {} (labelled: the caller's \
                     statement, not the PAL's)",
                    Digest(v.identity),
                    Digest(data)
                ),
                None => println!(
                    "verified: PAL {} quoted labelled caller data {} (SHA-256 of \
                     \"vpr caller data\" and the caller's data: the caller's statement, not the \
                     PAL's; --data checks it)",
                    Digest(v.identity),
                    Digest(v.data)
                ),
            }
            println!("  TCC key (sha256):        {}", Digest(v.tcc_key));
            match (v.ek_certificate, v.launch, hypervisor) {
                (Some(ek), Some(launch), Some(hypervisor)) => {
                    println!("  TPM EK certificate:      {} (chains to the CA)", Digest(ek));
                    println!("  hypervisor (PCR 17):     {} ({launch})", Digest(hypervisor));
                    println!("  {}", launch.warning());
                    let log = v.pal_log.unwrap_or_default();
                    println!("  PALs registered (PCR 18): {}", log.len());
                }
                _ => println!(
                    "  SIMULATED: no TPM vouches for this key (accepted with --allow-simulation)"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("refused: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A flag set by SIGINT or SIGTERM.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    Ok(stop)
}

fn cluster(n: u16, dir: &Path, base_port: Option<u16>, durability: Durability) -> Result<ExitCode> {
    let stop = stop_flag()?;
    let exe = std::env::current_exe()?;
    let mut cluster = if dir.join(files::REPLICAS).is_file() {
        let cluster = LocalCluster::reopen(dir, &exe, None)?;
        eprintln!(
            "vpr: restarting the cluster in {} from its data ({} replicas; {})",
            dir.display(),
            cluster.config().n(),
            simulation::WARNING
        );
        cluster
    } else {
        let options = Options { base_port, durability, ..Options::default() };
        let cluster = LocalCluster::start_with(dir, n, &exe, &options)?;
        eprintln!("vpr: starting {n} replicas in {} ({})", dir.display(), simulation::WARNING);
        cluster
    };
    let config = cluster.wait_ready(Duration::from_secs(60))?;
    eprintln!("vpr: cluster ready; clients use {}", config.display());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // A replica that exited is started again from its data folder (its sealed state).
        for line in cluster.restart_exited() {
            eprintln!("vpr: {line}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("vpr: stopping the cluster");
    cluster.stop();
    Ok(ExitCode::SUCCESS)
}

/// `vpr cluster --tcc qemu`: replica VMs from the images built in `repo`, until SIGINT or
/// SIGTERM.
fn qemu_cluster(n: u16, dir: &Path, repo: &Path) -> Result<ExitCode> {
    use vpr_host::qemu_cluster::{QemuCluster, QemuOptions};
    let stop = stop_flag()?;
    let repo = repo.canonicalize().with_context(|| format!("{}", repo.display()))?;
    let built = |path: &str| -> Result<PathBuf> {
        let path = repo.join(path);
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: build the images first (`cargo xtask linux-test` builds them all)",
            path.display()
        );
        Ok(path)
    };
    let kvm = vpr_host::machine::kvm_usable();
    let options = QemuOptions {
        replicas: n,
        dir: dir.to_path_buf(),
        repo: repo.clone(),
        hypervisor: built("target/hypervisor/x86_64-unknown-none/freestanding/vpr-hypervisor")?,
        kernel: built("target/guest/vmlinuz")?,
        initramfs: built("target/guest/initramfs.cpio.gz")?,
        pal: built("target/image/freestanding/vpr-pal-image")?,
        ca: repo.join("target/tpm/ca"),
        kvm,
        memory: String::from("512M"),
    };
    eprintln!(
        "vpr: starting {n} replica VMs in {} ({})",
        dir.display(),
        if kvm { "KVM" } else { "TCG" }
    );
    let mut cluster = QemuCluster::start(&options, &|m| eprintln!("vpr: {m}"))?;
    let config = cluster.wait_ready(Duration::from_secs(300))?;
    eprintln!("vpr: cluster ready (attested joins); clients use {}", config.display());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("vpr: stopping the replica VMs");
    drop(cluster);
    Ok(ExitCode::SUCCESS)
}

fn replica(
    config_path: &Path,
    id: u16,
    data: Option<PathBuf>,
    status: Option<PathBuf>,
    tcc: TccKind,
    pal: &Path,
) -> Result<ExitCode> {
    use vpr_host::tcc::hypervisor::HypervisorTcc;
    let stop = stop_flag()?;
    let config = ClusterConfig::load(config_path)?;
    let data = data
        .unwrap_or_else(|| config_path.parent().unwrap_or(Path::new(".")).join(files::data(id)));
    let group = GroupConfig {
        replicas: config.n(),
        me: id,
        manufacturer: config.manufacturer_key()?,
        allow_simulated: config.allow_simulated,
        cluster: config.cluster_id(),
        max_in_flight: config.max_in_flight,
        service: ServiceOptions::default(),
        members: config.members()?,
        durable: config.durability == Durability::Disk,
    };
    let sealed = data.join(files::SEALED);
    let blob = match std::fs::read(&sealed) {
        Ok(blob) => Some(blob),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", sealed.display())),
    };
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let mut store = group
        .durable
        .then(|| Store::open(&data))
        .transpose()
        .with_context(|| format!("opening the log in {}", data.display()))?;
    // With sealed group state, a restart: from the log if there is one, else (or if the
    // Manager refuses it) without, and the state comes from the others.
    let log = match (&blob, &store) {
        (Some(_), Some(store)) if !store.is_empty() => Some(
            store.records().with_context(|| format!("reading the log in {}", data.display()))?,
        ),
        _ => None,
    };
    // `sealed`: a restart, and `log` the log it restarts from; else a new replica.
    let begin = |sealed: Option<&[u8]>, log: Option<&[Vec<u8>]>| -> Result<Box<dyn TccBackend>> {
        Ok(match tcc {
            TccKind::Simulation => {
                let manufacturer = simulation_manufacturer(&config)?;
                let group = group.clone();
                Box::new(match sealed {
                    Some(sealed) => Simulation::restore(&data, &manufacturer, group, sealed, log)?,
                    None => Simulation::start(&data, &manufacturer, group)?,
                })
            }
            TccKind::Hypervisor => {
                let image = std::fs::read(pal)
                    .with_context(|| format!("reading the PAL image {}", pal.display()))?;
                let backend = match sealed {
                    Some(sealed) => HypervisorTcc::restore(&image, &group, sealed, log)?,
                    None => HypervisorTcc::start(&image, &group)?,
                };
                eprintln!(
                    "vpr: replica {id}: the Manager runs in PAL {} under the hypervisor",
                    backend.identity()
                );
                Box::new(backend)
            }
        })
    };
    if tcc == TccKind::Simulation {
        eprintln!("{}", simulation::WARNING);
    }
    let backend = match (&blob, &log) {
        (Some(blob), Some(log)) => match begin(Some(blob), Some(log)) {
            Ok(backend) => {
                eprintln!("vpr: replica {id} restarts from its sealed state and its log");
                backend
            }
            Err(e) => {
                // The refused log is kept as it is, beside the new one.
                let aside = vpr_host::store::set_aside(&data)
                    .with_context(|| format!("setting the log in {} aside", data.display()))?;
                eprintln!(
                    "vpr: replica {id}: its log in {} is refused: {e:#}; it restarts without \
                     it and gets its state from the others (the log is kept in {})",
                    data.join(vpr_host::store::LOG_DIR).display(),
                    aside.display()
                );
                store = Some(Store::open(&data)?);
                begin(Some(blob), None)?
            }
        },
        (Some(blob), None) => {
            eprintln!("vpr: replica {id} restarts from its sealed state; it needs a snapshot");
            begin(Some(blob), None)?
        }
        (None, _) => begin(None, None)?,
    };
    let status = status.as_deref();
    match store {
        Some(store) => {
            let backend = Durable::new(backend, store, config.checkpoint_bytes);
            net::run_replica(&config, id, backend, &stop, status, &sealed)?;
        }
        None => net::run_replica(&config, id, backend, &stop, status, &sealed)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The simulated manufacturer the configuration names (made if missing).
fn simulation_manufacturer(config: &ClusterConfig) -> Result<Manufacturer> {
    let key_path = config
        .simulation_manufacturer_key
        .clone()
        .context("the simulation backend needs simulation_manufacturer_key in the configuration")?;
    Ok(Manufacturer::load_or_create(&key_path)?)
}

fn sql(
    config_path: &Path,
    command: Option<&str>,
    json: bool,
    level: ReadLevel,
) -> Result<ExitCode> {
    let config = ClusterConfig::load(config_path)?;
    let mut client = match Client::connect(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vpr: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    client.set_read_level(level);
    let exec = |sql: &str| client.execute(sql, Vec::new()).map_err(|e: ClientError| e.to_string());
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    let code = match command {
        Some(sql) => shell::run_once(sql, &mut out, &mut err, json, exec),
        None => {
            let stdin = io::stdin();
            let prompt = stdin.is_terminal();
            shell::run(stdin.lock(), &mut out, &mut err, json, prompt, exec)
        }
    };
    out.flush()?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(2)))
}

fn status(config_path: &Path) -> Result<ExitCode> {
    let config = ClusterConfig::load(config_path)?;
    let client = match Client::connect(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vpr: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut code = ExitCode::SUCCESS;
    println!("replica  view  primary  state  database digest");
    for (id, report) in client.status(&config) {
        match report {
            Ok(r) => println!(
                "{id:>7}  {:>4}  {:>7}  {:>5}  {}",
                r.view, r.primary, r.committed, r.digest
            ),
            Err(e) => {
                println!("{id:>7}  -- {e}");
                code = ExitCode::from(2);
            }
        }
    }
    Ok(code)
}

/// The demo's workload: tables, inserts, updates, a join, an aggregate, and a
/// non-deterministic insert that only the primary executes.
const DEMO: &[&str] = &[
    "CREATE TABLE account(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance REAL NOT NULL)",
    "CREATE TABLE transfer(id INTEGER PRIMARY KEY, src INTEGER REFERENCES account(id), \
     dst INTEGER REFERENCES account(id), amount REAL, note TEXT)",
    "INSERT INTO account(owner, balance) VALUES ('alice', 100.0), ('bob', 50.0), ('carol', 75.5)",
    "INSERT INTO transfer(src, dst, amount, note) VALUES (1, 2, 20.0, 'rent'), (3, 1, 5.25, 'coffee')",
    "UPDATE account SET balance = balance - 20.0 WHERE id = 1; \
     UPDATE account SET balance = balance + 20.0 WHERE id = 2",
    "INSERT INTO transfer(src, dst, amount, note) VALUES (2, 3, abs(random() % 100) / 10.0, 'random')",
    "SELECT a.owner, b.owner, t.amount, t.note FROM transfer t \
     JOIN account a ON a.id = t.src JOIN account b ON b.id = t.dst ORDER BY t.id",
    "SELECT count(*), sum(balance), round(avg(balance), 2) FROM account",
];

fn demo() -> Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    println!("Starting a 3-replica cluster (simulation TCC backend: nothing is isolated).");
    let mut cluster = LocalCluster::start(dir.path(), 3, None, &exe)?;
    let config_path = cluster.wait_ready(Duration::from_secs(60))?;
    let config = ClusterConfig::load(&config_path)?;
    let mut client = Client::connect(&config)?;
    println!("Connected: the service's attestation verified (identity {}).\n", config.identity);
    let mut out = io::stdout().lock();
    for statement in DEMO {
        writeln!(out, "vpr> {statement}")?;
        let outcome = client.execute(statement, Vec::new())?;
        shell::write_list(&mut out, &outcome)?;
        if let Some(e) = &outcome.error {
            anyhow::bail!("the demo's SQL failed: {} (code {})", e.message, e.code);
        }
    }
    drop(out);
    let reports = wait_converged(&client, &config, Duration::from_secs(10))?;
    println!(
        "\nEvery reply above was verified. Each replica's state, reported and authenticated by \
         its Manager:"
    );
    for r in &reports {
        let role = if r.primary == r.replica { "primary" } else { "backup" };
        println!("  replica {} ({role:7}) update {} digest {}", r.replica, r.committed, r.digest);
    }
    println!(
        "\nKilling every replica (SIGKILL) and starting the cluster again from its folder: each \
         replica restarts from the log on its disk."
    );
    cluster.stop();
    drop(cluster);
    let mut cluster = LocalCluster::reopen(dir.path(), &exe, None)?;
    cluster.wait_ready(Duration::from_secs(60))?;
    let mut client = Client::connect(&config)?;
    let mut out = io::stdout().lock();
    let statement = "SELECT count(*), sum(balance) FROM account";
    writeln!(out, "vpr> {statement}")?;
    let outcome = client.execute(statement, Vec::new())?;
    shell::write_list(&mut out, &outcome)?;
    drop(out);
    let after = wait_converged(&client, &config, Duration::from_secs(30))?;
    let digest = reports.first().map(|r| r.digest);
    anyhow::ensure!(
        after.iter().all(|r| Some(r.digest) == digest),
        "the restarted cluster's database differs: {after:?}"
    );
    println!("Every replica is back at the same database digest.");
    cluster.stop();
    Ok(ExitCode::SUCCESS)
}

/// Waits until every replica reports (authenticated) the same committed update and digest.
fn wait_converged(
    client: &Client,
    config: &ClusterConfig,
    timeout: Duration,
) -> Result<Vec<vpr_proto::msg::StatusReport>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let reports: Vec<_> =
            client.status(config).into_iter().filter_map(|(_, r)| r.ok()).collect();
        if reports.len() == usize::from(config.n())
            && reports
                .iter()
                .all(|r| r.committed == reports[0].committed && r.digest == reports[0].digest)
        {
            return Ok(reports);
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!("replicas did not converge: {reports:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
