//! `bench::run` end to end: a local 3-replica cluster, write and read workloads with two
//! clients each, verified replies, sane percentiles, and the baseline beside them.

use std::path::Path;
use std::time::Duration;

use vpr_host::bench::{self, BenchOptions, Report, Stats, Workload};
use vpr_host::client::ReadConsistency;
use vpr_host::config::ClusterConfig;
use vpr_host::launcher::LocalCluster;

const VPR: &str = env!("CARGO_BIN_EXE_vpr");

fn ordered(s: &Stats) {
    assert!(s.count > 0, "{s:?}");
    assert!(s.p50_us > 0.0, "{s:?}");
    assert!(s.p50_us <= s.p90_us && s.p90_us <= s.p99_us && s.p99_us <= s.max_us, "{s:?}");
}

fn check(report: &Report) {
    assert!(report.ops > 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(report.throughput > 0.0, "{report:?}");
    ordered(&report.all);
    ordered(&report.baseline.all);
    assert!(report.baseline.ops > 0, "{report:?}");
    assert!(report.ratio_p50 > 0.0 && report.ratio_throughput > 0.0, "{report:?}");
    let mut text = Vec::new();
    report.print(&mut text).expect("print");
    assert!(String::from_utf8(text).expect("utf-8").contains("p99 us"));
}

#[test]
fn write_and_read_workloads_on_three_replicas() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = LocalCluster::start(dir.path(), 3, None, Path::new(VPR)).expect("start");
    let path = cluster.wait_ready(Duration::from_secs(30)).expect("cluster forms");
    let config = ClusterConfig::load(&path).expect("client config");
    for (workload, reads) in [
        (Workload::Write, ReadConsistency::Linearizable),
        (Workload::Read, ReadConsistency::Linearizable),
        (Workload::Read, ReadConsistency::Primary),
    ] {
        let opts = BenchOptions {
            workload,
            clients: 2,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(200),
            rows: 1000,
            reads,
        };
        let report = bench::run(&config, Some(dir.path()), &opts).expect("bench runs");
        check(&report);
        assert_eq!(report.clients, 2);
        assert_eq!(report.replicas, 3);
        let (mine, other) = match workload {
            Workload::Write => (&report.write, &report.read),
            _ => (&report.read, &report.write),
        };
        assert!(other.is_none(), "{report:?}");
        assert_eq!(mine.as_ref().expect("stats of the workload's kind").count, report.ops);
    }
    cluster.check_children().expect("replicas still running");
}
