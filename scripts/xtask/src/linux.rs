//! `linux-test`: Linux as the hypervisor's guest. Builds the hypervisor, the `vpr` binary and
//! the guest image (`qemu/guest-image.sh`: Debian's kernel, a busybox initramfs with `vpr`),
//! boots the hypervisor with the kernel and the initramfs as multiboot modules and
//! `vpr.guest=linux`, and judges the run from the serial log: Linux reaches user space, `vpr`
//! runs, every range the hypervisor keeps (it tells the guest, `vpr.hv=`) is refused to the
//! guest's root for reading and writing through /dev/mem, the guest goes on (`vpr` runs
//! again), and it powers off.

use crate::install;
use crate::qemu::{self, Boot};
use crate::Accel;
use crate::QemuTestOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use vpr_host::config::ClusterConfig;

/// Where the guest image is built (and its downloads cached).
const GUEST_DIR: &str = "target/guest";
/// The kernel's command line: the serial console, no KASLR (a stable layout in logs), 4-level
/// paging (what the hypervisor walks), no TPM driver (the TPM is the hypervisor's: its
/// registers fault in the guest), /dev/mem open to root for the probes, the smoke run.
const KERNEL_ARGS: &str =
    "console=ttyS0 earlyprintk=serial nokaslr no5lvl mitigations=off panic=-1 \
     initcall_blacklist=init_tis iomem=relaxed vpr.run=smoke";

/// Builds the `vpr` binary (debug), the production and test PAL images and the guest image
/// (with all three: the replicas run the production PAL, `vpr pal-smoke` the test PAL); the
/// kernel and the initramfs.
fn guest_image(root: &Path) -> Result<(PathBuf, PathBuf), String> {
    let vpr = qemu::build_vpr(root)?;
    let pal = qemu::build_pal_image(root, qemu::Image::Production)?;
    let test_pal = qemu::build_pal_image(root, qemu::Image::Test)?;
    let out = root.join(GUEST_DIR);
    install::run(
        Command::new(root.join("qemu/guest-image.sh"))
            .arg(&out)
            .arg(vpr)
            .env("VPR_GUEST_PAL", &pal)
            .env("VPR_GUEST_TEST_PAL", &test_pal),
    )?;
    Ok((out.join("vmlinuz"), out.join("initramfs.cpio.gz")))
}

/// The QEMU command line: the hypervisor with the kernel and initramfs as modules, 512 MiB, a
/// virtio NIC on user-mode networking, QEMU's `edu` test device (a DMA engine any root
/// process can aim: the attack probes' device, its address mask widened to 32 bits so that
/// it reaches the local APIC's window), no kvmvapic, no isa-debug-exit (a guest must not
/// end the machine with a port write: it powers off instead).
pub fn command_line(image: &Path, kernel: &Path, initrd: &Path, kvm: bool) -> Vec<String> {
    let (accel, cpu) = if kvm { ("kvm", "host") } else { ("tcg", "max") };
    let modules = format!("{},{}", kernel.display(), initrd.display());
    let append = format!("vpr.guest=linux -- {KERNEL_ARGS}");
    let mut args: Vec<String> =
        ["-kernel", &image.display().to_string(), "-initrd", &modules, "-append", &append]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(vpr_host::machine::console_args("512M"));
    let nic = format!("virtio-net-pci,netdev=n0,{}", vpr_host::machine::VIRTIO_DMA);
    let network = [
        "-netdev",
        "user,id=n0",
        "-device",
        &nic,
        "-device",
        "edu,dma_mask=0xffffffff",
        "-accel",
        accel,
        "-cpu",
        cpu,
    ];
    args.extend(network.iter().map(|s| s.to_string()));
    args
}

/// The whole task.
pub fn test(root: &Path, options: &QemuTestOptions) -> Result<(), String> {
    install::rust_target()?;
    let image = qemu::build_image(root, qemu::Image::Production)?;
    let (kernel, initrd) = guest_image(root)?;
    install::qemu("qemu-system-x86_64")?;
    let kvm = match options.accel {
        Accel::Kvm => true,
        Accel::Tcg => false,
        Accel::Auto => vpr_host::machine::kvm_usable(),
    };
    unsafe_machines_refused(&image, &kernel, &initrd, kvm)?;
    let mut args = command_line(&image, &kernel, &initrd, kvm);
    // QEMU's monitor, for the NMI storm (its `nmi` command raises LINT1, which Linux sets to
    // NMI delivery) while the guest runs PALs between two marker lines.
    let monitor =
        std::env::temp_dir().join(format!("vpr-linux-test-{}.monitor", std::process::id()));
    let _ = std::fs::remove_file(&monitor);
    args.extend(["-monitor".into(), format!("unix:{},server=on,wait=off", monitor.display())]);
    let mut storm = NmiStorm::new(monitor.clone());
    let boot = qemu::boot_watching(
        &args,
        options.timeout,
        if kvm { "kvm" } else { "tcg" },
        &mut |line| storm.watch(line),
    )?;
    let sent = storm.stop();
    let _ = std::fs::remove_file(&monitor);
    verdict(&boot)?;
    if sent == 0 {
        return Err(String::from("no NMI reached the guest's machine during the NMI storm"));
    }
    eprintln!(
        "linux-test: {sent} NMIs injected while the guest ran PALs; every run ended normally"
    );
    enrolled_replica(root, &image, &kernel, kvm, options.timeout)?;
    replica_cluster(root, &image, &kernel, kvm)
}

/// The hypervisor refuses to run Linux on a machine with QEMU's kvmvapic option ROM (whose
/// state in guest memory lets the guest make QEMU write any physical address), on one
/// without an IOMMU (where any device's DMA reaches its memory), on one whose virtio NIC
/// does not send its DMA through the IOMMU (no `iommu_platform=on`), and on one with such a
/// device where the firmware does not look (function 3 of an empty slot): booted each way,
/// the machine must stop before Linux, saying why.
fn unsafe_machines_refused(
    image: &Path,
    kernel: &Path,
    initrd: &Path,
    kvm: bool,
) -> Result<(), String> {
    // (what the command line loses, what it gains, a label, the refusal, the case)
    let hidden = "virtio-rng-pci,addr=05.3,disable-legacy=on,iommu_platform=off";
    let cases: [(&str, &[&str], &str, &str, &str); 4] = [
        (
            "-global apic-common.vapic=off",
            &[],
            "kvmvapic on",
            "QEMU's kvmvapic option ROM is present",
            "with QEMU's kvmvapic ROM present",
        ),
        (
            "-device amd-iommu",
            &[],
            "no IOMMU",
            "no AMD IOMMU on PCI bus 0",
            "on a machine without an IOMMU",
        ),
        (
            "iommu_platform=on,",
            &[],
            "virtio bypassing the IOMMU",
            "would bypass the IOMMU",
            "with a virtio NIC whose DMA bypasses the IOMMU",
        ),
        (
            "",
            &["-device", hidden],
            "a hidden function",
            "virtio function 00:05.3",
            "with a virtio device at function 3 of an empty slot (which the firmware and Linux \
             skip, but the guest can drive) bypassing the IOMMU",
        ),
    ];
    for (removed, added, label, refusal, case) in cases {
        // The command line without `removed` (two arguments, or a part of one), with `added`.
        let mut args = command_line(image, kernel, initrd, kvm);
        let changed = match removed.split_once(' ') {
            _ if removed.is_empty() => true,
            Some((flag, value)) => {
                let at = args.windows(2).position(|pair| pair[0] == flag && pair[1] == value);
                at.map(|at| args.drain(at..at + 2)).is_some()
            }
            None => {
                let arg = args.iter_mut().find(|a| a.contains(removed));
                arg.map(|arg| *arg = arg.replacen(removed, "", 1)).is_some()
            }
        };
        if !changed {
            return Err(format!("the command line has no {removed:?}"));
        }
        args.extend(added.iter().map(|a| a.to_string()));
        let boot = qemu::boot(&args, std::time::Duration::from_secs(120), label)?;
        if boot.status.is_none() {
            return Err(format!("{case}, the machine did not stop by itself"));
        }
        if !seen(&boot.lines, refusal) || seen(&boot.lines, "hv: entering Linux") {
            return Err(format!("the hypervisor ran Linux {case}"));
        }
        eprintln!("linux-test: {case} the hypervisor refused to run Linux");
    }
    Ok(())
}

/// NMIs sent through QEMU's monitor (a Unix socket) every few milliseconds from the guest's
/// "nmi storm: begin" line to its "nmi storm: end" line.
struct NmiStorm {
    monitor: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sender: Option<std::thread::JoinHandle<u64>>,
}

impl NmiStorm {
    fn new(monitor: PathBuf) -> Self {
        NmiStorm { monitor, stop: Default::default(), sender: None }
    }

    /// Starts or stops the storm at the guest's marker lines.
    fn watch(&mut self, line: &str) {
        use std::sync::atomic::Ordering;
        if line.contains("vpr-guest: nmi storm: begin") && self.sender.is_none() {
            let (monitor, stop) = (self.monitor.clone(), self.stop.clone());
            self.sender = Some(std::thread::spawn(move || {
                use std::io::{Read, Write};
                let Ok(mut socket) = std::os::unix::net::UnixStream::connect(&monitor) else {
                    eprintln!("linux-test: cannot reach QEMU's monitor at {}", monitor.display());
                    return 0;
                };
                let _ = socket.set_nonblocking(true);
                let (mut sent, mut echo) = (0u64, [0u8; 4096]);
                while !stop.load(Ordering::Relaxed) {
                    if socket.write_all(b"nmi\n").is_err() {
                        break;
                    }
                    sent += 1;
                    // One command at a time: wait for the monitor's next prompt (at most a
                    // second), so that a busy QEMU does not get a backlog of NMIs to deliver
                    // in one burst.
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
                    let mut answer = Vec::new();
                    while std::time::Instant::now() < deadline {
                        match socket.read(&mut echo) {
                            Ok(n) if n > 0 => answer.extend_from_slice(&echo[..n]),
                            _ => std::thread::sleep(std::time::Duration::from_millis(1)),
                        }
                        if answer.windows(6).any(|w| w == b"(qemu)") {
                            break;
                        }
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                sent
            }));
        }
        if line.contains("vpr-guest: nmi storm: end") {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Ends the storm; how many NMIs it sent.
    fn stop(&mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.sender.take().and_then(|s| s.join().ok()).unwrap_or(0)
    }
}

/// The p50 and p99 of `samples` (milliseconds).
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    // Nearest rank: the smallest sample with at least q of the samples at or below it.
    let at = |percent: usize| {
        let rank = (samples.len() * percent).div_ceil(100).max(1);
        samples.get(rank - 1).copied().unwrap_or(f64::NAN)
    };
    (at(50), at(99))
}

/// Runs `sql` through `client`; the milliseconds it took (an SQL error fails).
fn timed(client: &mut vpr_host::client::Client, sql: &str) -> Result<f64, String> {
    let t = std::time::Instant::now();
    let outcome = client.execute(sql, vec![]).map_err(|e| format!("{sql}: {e}"))?;
    if let Some(error) = outcome.error {
        return Err(format!("{sql}: {error:?}"));
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// The measured workload: a table, then 20 times a one-row insert and a point read
/// (linearizable); the writes' and the reads' milliseconds.
fn workload(client: &mut vpr_host::client::Client) -> Result<(Vec<f64>, Vec<f64>), String> {
    timed(client, "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)")?;
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    let mut rows = 0;
    for i in 0..20 {
        insert(client, &mut writes, &mut rows)?;
        reads.push(timed(client, &format!("SELECT v FROM kv WHERE k = {i}"))?);
    }
    Ok((writes, reads))
}

/// [`workload`] on a local cluster of the simulation backend with as many replicas.
fn simulation_workload(root: &Path) -> Result<(Vec<f64>, Vec<f64>), String> {
    use vpr_host::launcher::LocalCluster;
    let dir = root.join("target/qemu-cluster-simulation");
    let _ = std::fs::remove_dir_all(&dir);
    let exe = qemu::build_vpr(root)?;
    let mut cluster =
        LocalCluster::start(&dir, CLUSTER_VMS, None, &exe).map_err(|e| format!("{e:#}"))?;
    let config =
        cluster.wait_ready(std::time::Duration::from_secs(60)).map_err(|e| format!("{e:#}"))?;
    let config = ClusterConfig::load(&config).map_err(|e| e.to_string())?;
    let mut client =
        vpr_host::client::Client::connect(&config).map_err(|e| format!("client: {e}"))?;
    let measured = workload(&mut client);
    cluster.stop();
    measured
}

/// `vpr verify` (the command) accepts the evidence the cluster wrote for VM 0 with only the
/// client configuration (its CA root certificate, PAL identity and hypervisor measurement),
/// and refuses it for another nonce, or with another hypervisor measurement.
fn verify_cluster_evidence(
    root: &Path,
    options: &vpr_host::qemu_cluster::QemuOptions,
) -> Result<(), String> {
    let read = |name: &str| {
        std::fs::read_to_string(options.dir.join(name)).map_err(|e| format!("{name}: {e}"))
    };
    let nonce = read("evidence-0.nonce")?;
    let data = vpr_proto::Digest::of(vpr_host::enroll::ENROLLMENT_DATA);
    let verify = |nonce: &str, more: &[&str]| -> Result<(bool, String), String> {
        let output = Command::new(root.join("target/debug/vpr"))
            .arg("verify")
            .arg(options.dir.join("evidence-0.json"))
            .arg("--config")
            .arg(options.dir.join("cluster.toml"))
            .args(["--nonce", nonce, "--data", &data.to_string()])
            .args(more)
            .output()
            .map_err(|e| format!("vpr verify: {e}"))?;
        let text =
            String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
        Ok((output.status.success(), text.into_owned()))
    };
    match verify(nonce.trim(), &[])? {
        (true, text)
            if text.starts_with("verified:")
                && text.contains("hypervisor (PCR 17)")
                && text.contains(vpr_host::evidence::SIMULATED_LAUNCH_WARNING) => {}
        (_, text) => return Err(format!("vpr verify refuses the cluster's evidence: {text}")),
    }
    match verify(&"00".repeat(32), &[])? {
        (false, text) if text.contains("nonce") => {}
        (_, text) => return Err(format!("vpr verify accepts evidence for another nonce: {text}")),
    }
    match verify(nonce.trim(), &["--hypervisor", &"11".repeat(32)])? {
        (false, text) if text.contains("PCR 17") => {}
        (_, text) => return Err(format!("vpr verify accepts another hypervisor: {text}")),
    }
    eprintln!(
        "linux-test: vpr verify accepts VM 0's evidence from its enrollment with only the \
         client configuration (CA root certificate, PAL identity, hypervisor measurement), and \
         refuses it for another nonce or another hypervisor"
    );
    Ok(())
}

/// Inserts row `rows` (a one-row write, its milliseconds into `writes`), then counts it.
fn insert(
    client: &mut vpr_host::client::Client,
    writes: &mut Vec<f64>,
    rows: &mut i64,
) -> Result<(), String> {
    writes.push(timed(client, &format!("INSERT INTO kv VALUES ({rows}, 'value {rows}')"))?);
    *rows += 1;
    Ok(())
}

/// Replica VMs of the cluster test (f = 1).
const CLUSTER_VMS: u16 = 3;

/// The status reports of the replicas that answer, once `ids` all report the same update,
/// database and view, at update `at_least` or later.
fn converged(
    client: &vpr_host::client::Client,
    config: &ClusterConfig,
    ids: &[u16],
    at_least: u64,
    timeout: std::time::Duration,
) -> Result<Vec<(u16, vpr_proto::msg::StatusReport)>, String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let reports: Vec<_> = client
            .status(config)
            .into_iter()
            .filter_map(|(id, report)| report.ok().map(|r| (id, r)))
            .collect();
        let of: Vec<_> = reports.iter().filter(|(id, _)| ids.contains(id)).collect();
        let same = of.windows(2).all(|w| {
            (w[0].1.committed, w[0].1.digest, w[0].1.view)
                == (w[1].1.committed, w[1].1.digest, w[1].1.view)
        });
        if of.len() == ids.len() && same && of.iter().all(|(_, r)| r.committed >= at_least) {
            return Ok(reports);
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("replicas {ids:?} did not converge: {reports:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Boot 3: three replica VMs (`vpr_host::qemu_cluster`, what `vpr cluster --tcc qemu` runs),
/// each with its own TPM and data share, enrolled with one cluster key; the group forms with
/// attested joins; a client on the host runs verified writes and reads; a backup VM is killed
/// and the writes go on (two of three); the killed VM boots again on its TPM and data, is
/// enrolled again, restarts its replica from the group state it sealed and catches up; then
/// the primary VM is killed: a new primary takes over, the writes go on, and every
/// acknowledged write is there; the live replicas report the same committed update and
/// database hash, in reports their Managers authenticate.
fn replica_cluster(root: &Path, image: &Path, kernel: &Path, kvm: bool) -> Result<(), String> {
    use std::time::{Duration, Instant};
    use vpr_host::client::Client;
    use vpr_host::qemu_cluster::QemuCluster;
    let options = cluster_options(root, image, kernel, kvm, CLUSTER_VMS, "qemu-cluster");
    let started = Instant::now();
    let mut cluster = QemuCluster::start(&options, &|m| eprintln!("linux-test: {m}"))
        .map_err(|e| format!("{e:#}"))?;
    let enrolled = started.elapsed();
    cluster.wait_ready(Duration::from_secs(240)).map_err(|e| format!("{e:#}"))?;
    let formed = started.elapsed();
    verify_cluster_evidence(root, &options)?;
    let config = cluster.config().clone();
    let mut client = Client::connect(&config).map_err(|e| format!("client: {e}"))?;
    let (mut writes, mut reads) = workload(&mut client)?;
    let mut rows: i64 = 20;
    // A backup VM dies: the primary and the other backup are a majority and go on.
    let backup = CLUSTER_VMS - 1;
    let all: Vec<u16> = (0..CLUSTER_VMS).collect();
    let before = converged(&client, &config, &all, 1, Duration::from_secs(60))?;
    let state_counter = before.iter().find(|(id, _)| *id == backup).map_or(0, |(_, r)| r.committed);
    cluster.kill(backup);
    for _ in 0..5 {
        insert(&mut client, &mut writes, &mut rows)?;
    }
    eprintln!("linux-test: vm {backup} (a backup) killed; 5 writes committed without it");
    // It boots again on its TPM and data share, and catches up.
    let key_before = cluster.enrolled.get(usize::from(backup)).map(|e| e.tcc_key);
    let restarted = Instant::now();
    let again = cluster.restart(backup, Duration::from_secs(180)).map_err(|e| format!("{e:#}"))?;
    let reenrolled = restarted.elapsed();
    if Some(&again) != cluster.enrolled.get(usize::from(backup)) {
        return Err(String::from("the restarted VM's enrollment was not recorded"));
    }
    // Its TCC key comes from its TPM's master secret and the hypervisor: the same again.
    if key_before != Some(again.tcc_key) {
        return Err(format!("vm {backup} came back with another TCC key"));
    }
    let reports = converged(&client, &config, &all, state_counter + 5, Duration::from_secs(240))?;
    let caught_up = restarted.elapsed();
    let log = std::fs::read_to_string(options.dir.join(format!("vm-{backup}.log")))
        .map_err(|e| e.to_string())?;
    if !log.contains("holding sealed group state") || !log.contains("restarts from its sealed") {
        return Err(format!(
            "vm {backup} did not restart from its sealed state:\n{}",
            cluster.log_tail(backup, 20)
        ));
    }
    eprintln!(
        "linux-test: vm {backup} booted again, enrolled after {:.1} s (the same TCC key), \
         restarted from its sealed state and caught up after {:.1} s",
        reenrolled.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    // It may have acknowledged updates past its sealed state counter that it no longer holds
    // (at most max_in_flight): its view changes count once it committed past them
    // (pal/src/manager/transfer.rs). Writes until then.
    let counts_from = state_counter + u64::from(config.max_in_flight);
    let mut at = reports.iter().map(|(_, r)| r.committed).max().unwrap_or(0);
    while at < counts_from {
        insert(&mut client, &mut writes, &mut rows)?;
        at += 1;
    }
    converged(&client, &config, &all, counts_from, Duration::from_secs(60))?;
    // Then the primary VM dies: the two others elect a new primary.
    cluster.kill(0);
    let failover = Instant::now();
    // Until a new primary answers (idempotent: a lost reply's retry changes nothing).
    let failover_write =
        format!("INSERT OR REPLACE INTO kv VALUES ({rows}, 'after the primary died')");
    loop {
        match timed(&mut client, &failover_write) {
            Ok(_) => break,
            Err(e) if failover.elapsed() < Duration::from_secs(300) => {
                eprintln!("linux-test: waiting for a new primary: {e}");
            }
            Err(e) => return Err(e),
        }
    }
    let failover = failover.elapsed();
    rows += 1;
    for _ in 0..4 {
        insert(&mut client, &mut writes, &mut rows)?;
    }
    let count = client
        .execute("SELECT count(*), sum(k) FROM kv", vec![])
        .map_err(|e| format!("count: {e}"))?;
    let table = count.results.last().map(|r| r.rows.clone()).unwrap_or_default();
    let expected = (0..rows).sum::<i64>();
    let all_rows = [vpr_proto::msg::Value::Integer(rows), vpr_proto::msg::Value::Integer(expected)];
    if table != [all_rows.to_vec()] {
        return Err(format!("after the failures, the table holds {table:?}"));
    }
    let live: Vec<u16> = (1..CLUSTER_VMS).collect();
    let reports = converged(&client, &config, &live, at + 5, Duration::from_secs(60))?;
    let live: Vec<_> = reports.iter().filter(|(id, _)| live.contains(id)).collect();
    if live[0].1.primary == 0 || live[0].1.view == 0 {
        return Err(format!("the live replicas' reports: {reports:?}"));
    }
    drop(cluster);
    let (w50, w99) = percentiles(&mut writes);
    let (r50, r99) = percentiles(&mut reads);
    // The same workload on the simulation backend (replica processes, no isolation).
    let (mut sim_writes, mut sim_reads) = simulation_workload(root)?;
    let (s_w50, s_w99) = percentiles(&mut sim_writes);
    let (s_r50, s_r99) = percentiles(&mut sim_reads);
    eprintln!(
        "linux-test: the same workload on the simulation backend ({CLUSTER_VMS} replica \
         processes): writes p50 {s_w50:.1} ms p99 {s_w99:.1} ms, reads p50 {s_r50:.1} ms p99 \
         {s_r99:.1} ms; the VMs under TCG are {:.0}x (writes) and {:.0}x (reads) slower at p50",
        w50 / s_w50,
        r50 / s_r50
    );
    eprintln!(
        "linux-test: {CLUSTER_VMS} replica VMs enrolled after {:.1} s, group formed after \
         {:.1} s; writes p50 {w50:.0} ms p99 {w99:.0} ms, linearizable reads p50 {r50:.0} ms \
         p99 {r99:.0} ms (1 client, TCG); a backup VM killed, booted again and caught up \
         after {:.1} s; then the primary VM killed: the first write after it took {:.1} s \
         (view {}, primary {}); all {rows} acknowledged writes present; the {} live replicas at \
         update {} with database {}",
        enrolled.as_secs_f64(),
        formed.as_secs_f64(),
        caught_up.as_secs_f64(),
        failover.as_secs_f64(),
        live[0].1.view,
        live[0].1.primary,
        live.len(),
        live[0].1.committed,
        live[0].1.digest
    );
    Ok(())
}

/// The options of a cluster of `replicas` VMs in `target/<dir>`, from the images built.
fn cluster_options(
    root: &Path,
    image: &Path,
    kernel: &Path,
    kvm: bool,
    replicas: u16,
    dir: &str,
) -> vpr_host::qemu_cluster::QemuOptions {
    vpr_host::qemu_cluster::QemuOptions {
        replicas,
        dir: root.join("target").join(dir),
        repo: root.to_path_buf(),
        hypervisor: image.to_path_buf(),
        kernel: kernel.to_path_buf(),
        initramfs: root.join(GUEST_DIR).join("initramfs.cpio.gz"),
        pal: qemu::pal_image_path(root, qemu::Image::Production),
        ca: root.join("target/tpm/ca"),
        kvm,
        memory: String::from("512M"),
    }
}

/// Boot 2: a replica VM with its own TPM (swtpm, EK certificate from the local CA), as a
/// cluster of one. The test plays the cluster's operator: it enrolls the VM's TCC
/// (`vpr_host::enroll`: TPM evidence up to the CA, credential activation, PCR 17 = this
/// hypervisor, PCR 19 = the TCC key) and certifies its key with a fresh cluster key; the VM
/// then runs a one-replica group on the real TCC, and a client on the host — trusting only the
/// cluster key and the PAL's identity, refusing simulated evidence — runs verified SQL through
/// the port forward.
fn enrolled_replica(
    root: &Path,
    image: &Path,
    kernel: &Path,
    kvm: bool,
    timeout: std::time::Duration,
) -> Result<(), String> {
    use std::time::Instant;
    use vpr_host::client::Client;
    use vpr_host::qemu_cluster::QemuCluster;
    let options = cluster_options(root, image, kernel, kvm, 1, "qemu-replica");
    let started = Instant::now();
    let mut cluster = QemuCluster::start(&options, &|m| eprintln!("linux-test: {m}"))
        .map_err(|e| format!("{e:#}"))?;
    let enrolled_after = started.elapsed();
    cluster.wait_ready(timeout).map_err(|e| format!("{e:#}"))?;
    let session_after = started.elapsed();
    // The client trusts the cluster key and the PAL identity only, no simulated evidence.
    let mut client = Client::connect(cluster.config()).map_err(|e| format!("client: {e}"))?;
    let write = client
        .execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v); INSERT INTO kv VALUES ('a', 42)", vec![])
        .map_err(|e| format!("write: {e}"))?;
    if write.error.is_some() {
        return Err(format!("write: {:?}", write.error));
    }
    let read = client
        .execute("SELECT v FROM kv WHERE k = 'a'", vec![])
        .map_err(|e| format!("read: {e}"))?;
    let rows = read.results.last().map(|r| r.rows.clone()).unwrap_or_default();
    if rows != [vec![vpr_proto::msg::Value::Integer(42)]] {
        return Err(format!("read: {rows:?}"));
    }
    if !cluster.log_tail(0, 1000).contains("vpr-guest: enrolled:") {
        return Err(String::from("the VM did not report its enrollment"));
    }
    let enrolled = &cluster.enrolled[0];
    eprintln!(
        "linux-test: a replica VM with its own TPM was enrolled (EK {}, TCC key {}) and served \
         verified SQL to the host through the real TCC, with no simulated evidence accepted; \
         enrolled after {:.1} s, verified session after {:.1} s",
        vpr_proto::Digest(enrolled.ek_certificate),
        vpr_proto::Digest::of(&enrolled.tcc_key),
        enrolled_after.as_secs_f64(),
        session_after.as_secs_f64()
    );
    Ok(())
}

/// Whether a line containing `marker` was printed.
fn seen(lines: &[String], marker: &str) -> bool {
    lines.iter().any(|l| l.contains(marker))
}

/// The ranges the hypervisor told the guest it keeps (`vpr.hv=a-b,c-d` on the kernel's
/// command line as Linux printed it).
fn hypervisor_ranges(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .find_map(|l| l.split("vpr.hv=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|list| list.split(',').filter_map(|r| r.split('-').next()).map(String::from).collect())
        .unwrap_or_default()
}

/// The MSRs the guest's smoke run writes and reads (`MSR_WRITES`, `MSR_READS` in
/// `qemu/guest/init`), each of which the hypervisor must refuse.
const MSR_WRITES: [&str; 14] = [
    "0xc001001a",
    "0xc001001d",
    "0x1b",
    "0xc0010010",
    "0xc0010015",
    "0xc0010058",
    "0x2ff",
    "0xc0010114",
    "0xc0010117",
    "0xc0010112",
    "0xc0010113",
    "0xc0010000",
    "0x400",
    "0x830",
];
const MSR_READS: [&str; 7] =
    ["0xc0010111", "0xc0010117", "0xc0010112", "0xc0010113", "0xc0010000", "0x400", "0x830"];

/// Whether the line starting `prefix` ("<value> before, <value> after ...") shows a register
/// that kept its value through the guest's write.
fn kept(lines: &[String], prefix: &str, what: &str) -> Result<(), String> {
    let line = lines.iter().find_map(|l| l.split(prefix).nth(1));
    let kept = line.and_then(|s| s.split_once(" before, ")).and_then(|(before, rest)| {
        rest.split_once(" after").map(|(after, _)| before == after && before != "nothing")
    });
    if kept == Some(true) {
        Ok(())
    } else {
        Err(format!("{what} took the guest's write: {line:?}"))
    }
}

/// Whether the run shows what it must.
pub fn verdict(boot: &Boot) -> Result<(), String> {
    let lines = &boot.lines;
    match boot.status {
        Some(status) if status.success() => {}
        Some(status) => {
            return Err(format!("QEMU exited with {status}: the guest did not power off"))
        }
        None => return Err(String::from("QEMU still running at the timeout; killed")),
    }
    for (marker, what) in [
        ("hv: entering Linux at", "the hypervisor did not enter Linux"),
        ("Run /init as init process", "Linux did not reach user space"),
        ("vpr-guest: vpr --version: vpr ", "vpr did not run in the guest"),
        ("vpr-guest: pal-smoke: ok", "the PAL did not run through the hypervisor from the guest"),
        ("vpr-guest: smoke done", "the smoke run did not finish"),
    ] {
        if !seen(lines, marker) {
            return Err(String::from(what));
        }
    }
    let ranges = hypervisor_ranges(lines);
    if ranges.len() < 3 {
        return Err(format!(
            "the hypervisor named {} ranges of its memory, not 3 or more",
            ranges.len()
        ));
    }
    for addr in &ranges {
        for access in ["read", "write"] {
            let refused = format!("vpr-guest: hypervisor memory {addr} {access}: refused");
            if !seen(lines, &refused) {
                return Err(format!(
                    "the guest's {access} of hypervisor memory at {addr} was not refused"
                ));
            }
        }
    }
    for addr in ["0xfed40000", "0xfed42000"] {
        if !seen(lines, &format!("vpr-guest: tpm registers {addr} read: refused")) {
            return Err(format!("the guest read the TPM's registers at {addr}"));
        }
    }
    if !seen(lines, "vpr-guest: after the probes, vpr --version: vpr ") {
        return Err(String::from("the guest did not go on after its probes"));
    }
    if !seen(lines, "vpr-guest: after the probes, the PAL still runs: pal-smoke: ok") {
        return Err(String::from("the PAL did not run through the hypervisor after the probes"));
    }
    if !seen(lines, "hv: guest touched") {
        return Err(String::from("the hypervisor saw no nested page fault from the probes"));
    }
    // The A20 gates (System Control Port A, the keyboard controller) are the hypervisor's:
    // the guest's writes are dropped, the ports read as no device, and it goes on (the
    // hypercalls after the probes, above, ran with A20 on).
    for port in ["0x92", "0x64", "0x60"] {
        if !seen(lines, &format!("vpr-guest: port {port} after the A20 writes: reads ff")) {
            return Err(format!("port {port} did not read as no device after the A20 writes"));
        }
        if !seen(lines, &format!("hv: guest wrote port {port} ")) {
            return Err(format!("the hypervisor did not report the guest's write of port {port}"));
        }
    }
    // MSRs that would move memory or devices under the hypervisor, SVM's, SMM's and the
    // rest of what it keeps (one of each kind, as `qemu/guest/init` lists them): each access
    // refused (#GP), and reported by the hypervisor.
    let writes = MSR_WRITES.iter().map(|&msr| (msr, "write", "wrote"));
    let reads = MSR_READS.iter().map(|&msr| (msr, "read", "read"));
    for (msr, access, reported) in writes.chain(reads) {
        if !seen(lines, &format!("vpr-guest: msr {msr} {access}: refused")) {
            return Err(format!("the guest's {access} of MSR {msr} was not refused"));
        }
        if !seen(lines, &format!("hv: guest {reported} MSR {msr} ")) {
            return Err(format!("the hypervisor did not report the guest's {access} of MSR {msr}"));
        }
    }
    // The chipset: the CMOS shutdown byte and the host bridge's SMRAM control keep their
    // values (the hypervisor filters both and reports the refusals).
    let cmos =
        lines.iter().find_map(|l| l.split("vpr-guest: cmos 0x0f after writing 0a: reads ").nth(1));
    if !matches!(cmos, Some(v) if !v.trim().is_empty() && v.trim() != "0a" && v.trim() != "nothing")
    {
        return Err(format!("the CMOS shutdown byte took the guest's write: {cmos:?}"));
    }
    kept(lines, "vpr-guest: smram control: ", "the host bridge's SMRAM control")?;
    kept(lines, "vpr-guest: ecam base: ", "the host bridge's ECAM base (PCIEXBAR)")?;
    // DMA: the IOMMU is the hypervisor's and hidden from the guest (no ACPI table, no PCI
    // function, its registers and the ECAM window fault); a device the guest programs (edu)
    // moves data within the guest's memory but neither reads nor writes the hypervisor's.
    for (marker, what) in [
        ("hv: IOMMU protects the hypervisor from DMA", "the hypervisor did not set up the IOMMU"),
        ("vpr-guest: iommu acpi table: absent", "the guest saw the IOMMU's ACPI table (IVRS)"),
        ("vpr-guest: iommu pci functions seen: 0", "the guest saw the IOMMU's PCI function"),
        (
            "vpr-guest: chipset window 0xfed80000 read: refused",
            "the guest read the IOMMU's registers",
        ),
        ("vpr-guest: chipset window 0xb0000000 read: refused", "the guest read the ECAM window"),
        (
            "vpr-guest: edu dma: control: DMA works on the guest's memory",
            "the edu device's DMA did not work on the guest's own memory (the attack proves \
             nothing)",
        ),
        ("vpr-guest: edu dma: read: refused", "a device read the hypervisor's memory by DMA"),
        ("vpr-guest: edu dma: write: refused", "a device wrote the hypervisor's memory by DMA"),
        ("hv: the canary at", "the hypervisor did not check its canary at power-off"),
        ("vpr-guest: edu message: smi sent", "the edu device did not send its SMI message"),
        ("vpr-guest: edu message: nmi sent", "the edu device did not send its NMI message"),
        ("vpr-guest: smram save area 0xafefc read: refused", "the guest read SMRAM's window"),
        (
            "hv: an SMI came while the guest ran",
            "the hypervisor did not take the SMI a device sent outside the guest",
        ),
    ] {
        if !seen(lines, marker) {
            return Err(String::from(what));
        }
    }
    if lines.iter().any(|l| l.contains("hv: the canary at") && !l.contains(" is intact")) {
        return Err(String::from("a device's DMA overwrote the hypervisor's canary"));
    }
    for refused in ["hv: guest wrote port 0x71 ", "hv: guest wrote port 0xcfd "] {
        if !seen(lines, refused) {
            return Err(format!("the hypervisor did not report a refused write ({refused})"));
        }
    }
    // A PAL is its registering process's: another process may neither execute nor
    // unregister it, nor install the TCC key's certificate; the owner's PAL still answers.
    for what in ["execute of handle", "unregister of handle", "certify"] {
        let refused = lines.iter().any(|l| {
            l.contains(&format!("vpr-guest: pal-probe: {what}")) && l.contains(": refused")
        });
        if !refused {
            return Err(format!("another process's {what} was not refused"));
        }
    }
    if !seen(lines, "vpr-guest: the owner after the probe: pal-smoke: ok") {
        return Err(String::from("the owner's PAL did not answer after another process's probe"));
    }
    if !seen(lines, "executed by another address space: refused") {
        return Err(String::from("the hypervisor did not report the foreign execute"));
    }
    // DMA through fw_cfg: the transfer never runs (its ports are the hypervisor's).
    if !seen(lines, "vpr-guest: guest-probe: fw_cfg DMA: refused") {
        return Err(String::from("fw_cfg DMA wrote into the guest's memory: its ports are open"));
    }
    if !seen(lines, "hv: guest wrote port 0x518 ") {
        return Err(String::from("the hypervisor did not report the fw_cfg DMA port write"));
    }
    // Message interrupts: the enable bit stays clear, and the hypervisor says so.
    if !seen(lines, "vpr-guest: guest-probe: MSI-X enable: refused") {
        return Err(String::from("the guest enabled MSI-X on its virtio function"));
    }
    if !seen(lines, "a message-interrupt enable bit, cleared") {
        return Err(String::from("the hypervisor did not report the cleared MSI-X enable bit"));
    }
    // The interrupt controllers: SMI delivery in an I/O APIC entry and in LINT0 refused (the
    // entries keep their values), INIT through the ICR refused (the guest goes on), each
    // reported by the hypervisor.
    kept(lines, "vpr-guest: io apic input 23: ", "the I/O APIC redirection entry")?;
    kept(lines, "vpr-guest: io apic input 23 by its alias: ", "the I/O APIC entry, by an alias")?;
    kept(lines, "vpr-guest: hpet timer 0 configuration: ", "the HPET's timer 0")?;
    kept(lines, "vpr-guest: virtio rom bar: ", "the virtio NIC's expansion ROM BAR")?;
    kept(lines, "vpr-guest: virtio i/o bar: ", "the virtio NIC's I/O BAR")?;
    kept(lines, "vpr-guest: local apic lint0: ", "the local APIC's LINT0 entry")?;
    for (at, mode) in [("0xfec00010", "Smi"), ("0xfee00350", "Smi"), ("0xfee00300", "Init")] {
        let reported = lines.iter().any(|l| {
            l.contains("hv: guest interrupt-controller write refused")
                && l.contains(&format!("at {at}: delivery mode {mode}"))
        });
        if !reported {
            return Err(format!("the hypervisor did not refuse the {mode} write at {at}"));
        }
    }
    for (marker, what) in [
        ("vpr-guest: INIT through the local APIC sent: the guest goes on", "an INIT by the ICR"),
        (
            "vpr-guest: INIT as an MSI at the local APIC's offset 0 sent: the guest goes on",
            "an INIT by the APIC's offset 0",
        ),
        (
            "vpr-guest: INIT as an MSI past the local APIC's page: refused",
            "an INIT past the APIC's page",
        ),
    ] {
        if !seen(lines, marker) {
            return Err(format!("the guest was not refused {what}"));
        }
    }
    for (at, why) in [
        ("0xfee00000", "not a register"),
        ("0xfec00110", "not a register"),
        ("0xfed00100", "not a register"),
    ] {
        let reported = lines.iter().any(|l| {
            l.contains("hv: guest interrupt-controller write refused")
                && l.contains(&format!("at {at}: {why}"))
        });
        if !reported {
            return Err(format!("the hypervisor did not refuse the write at {at}"));
        }
    }
    // NMIs while PALs run: held by the hypervisor and given to the guest after the call; no
    // run dies of them.
    for run in 1..=3 {
        if !seen(lines, &format!("vpr-guest: nmi storm: run {run}: pal-smoke: ok")) {
            return Err(format!("PAL run {run} of the NMI storm did not end normally"));
        }
    }
    if !seen(lines, "hv: an NMI came while a PAL ran: held") {
        return Err(String::from("no NMI of the storm came while a PAL ran"));
    }
    eprintln!(
        "linux-test: Linux booted on the hypervisor, ran vpr, was refused {} ranges of \
         hypervisor memory (read and write), the A20 gates (ports 0x92, 0x64, 0x60), {} \
         MSR writes and {} reads (TOP_MEM, APIC base, SYSCFG, SVM's, SMM's, ...), another process's \
         use of a PAL it did not register, fw_cfg DMA, SMI entries in its I/O APIC and local \
         APIC and an INIT to itself, and went on; {:.1} s from QEMU's start to power-off",
        ranges.len(),
        MSR_WRITES.len(),
        MSR_READS.len(),
        boot.elapsed.as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_come_from_the_kernel_command_line() {
        let lines = [String::from(
            "[    0.000000] Command line: console=ttyS0 vpr.run=smoke vpr.hv=0x100000-0x1c7000,0x104d000-0x184d000",
        )];
        assert_eq!(hypervisor_ranges(&lines), ["0x100000", "0x104d000"]);
        assert!(hypervisor_ranges(&[String::from("nothing")]).is_empty());
    }

    #[test]
    fn command_line_has_modules_and_no_exit_device() {
        let args =
            command_line(Path::new("/hv"), Path::new("/k"), Path::new("/i"), false).join(" ");
        assert!(args.contains("-kernel /hv -initrd /k,/i -append vpr.guest=linux -- console=ttyS0"));
        assert!(!args.contains("isa-debug-exit"));
        assert!(args.ends_with("-accel tcg -cpu max"));
    }
}
