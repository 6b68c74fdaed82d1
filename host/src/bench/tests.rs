//! Tests of the benchmark's statistics, workloads and baseline.
use super::*;

#[test]
fn stats_are_exact_at_three_significant_digits() {
    let mut h = histogram();
    // Below 2048 every value has its own bucket: percentiles are exact.
    for ns in 1..=1000 {
        h.record(ns).unwrap();
    }
    let s = Stats::from_histogram(&h);
    assert_eq!(s.count, 1000);
    assert_eq!(s.p50_us, 0.5);
    assert_eq!(s.p90_us, 0.9);
    assert_eq!(s.p99_us, 0.99);
    assert_eq!(s.max_us, 1.0);
    assert!((s.mean_us - 0.5005).abs() < 1e-9, "{}", s.mean_us);

    // Larger values: within 0.1%, and equal to HdrHistogram's equivalent value.
    let mut h = histogram();
    for _ in 0..90 {
        h.record(200_000).unwrap(); // 200 us
    }
    for _ in 0..9 {
        h.record(1_000_000).unwrap(); // 1 ms
    }
    h.record(50_000_000).unwrap(); // 50 ms
    let s = Stats::from_histogram(&h);
    assert_eq!(s.count, 100);
    for (got, want) in
        [(s.p50_us, 200.0), (s.p90_us, 200.0), (s.p99_us, 1000.0), (s.max_us, 50_000.0)]
    {
        assert!(got >= want && got <= want * 1.001, "{got} vs {want}");
    }
    assert_eq!(s.p50_us, h.highest_equivalent(200_000) as f64 / 1000.0);
    assert_eq!(Stats::from_histogram(&histogram()).count, 0);
}

#[test]
fn mixed_workload_is_ninety_ten() {
    for index in 0..4 {
        let mut rng = Rng::new(index);
        let draws = 100_000;
        let writes =
            (0..draws).filter(|_| Op::choose(Workload::Mixed, &mut rng) == Op::Write).count();
        assert!((9_500..=10_500).contains(&writes), "seed {index}: {writes} writes");
    }
    let mut rng = Rng::new(0);
    assert!((0..1000).all(|_| Op::choose(Workload::Write, &mut rng) == Op::Write));
    assert!((0..1000).all(|_| Op::choose(Workload::Read, &mut rng) == Op::Read));
}

#[test]
fn rng_is_reproducible_and_covers_its_range() {
    let draw = |seed| {
        let mut rng = Rng::new(seed);
        (0..8).map(|_| rng.next_u64()).collect::<Vec<_>>()
    };
    assert_eq!(draw(3), draw(3));
    assert_ne!(draw(3), draw(4));
    let mut rng = Rng::new(1);
    let mut seen = [0u32; 10];
    for _ in 0..10_000 {
        seen[usize::try_from(rng.below(10)).unwrap()] += 1;
    }
    assert!(seen.iter().all(|n| (800..=1200).contains(n)), "{seen:?}");
    let text = rng.text(VALUE_LEN);
    assert_eq!(text.len(), VALUE_LEN);
    assert!(text.iter().all(u8::is_ascii_alphanumeric));
}

#[test]
fn requests_and_preload() {
    let table = Table::named("bench_kv_t".into());
    let batches = table.preload(1001);
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].1.len(), PRELOAD_BATCH);
    assert_eq!(batches[2].1.len(), 1);
    assert!(batches[2].0.ends_with("VALUES (1001, ?1)"), "{}", batches[2].0);
    assert!(batches.iter().all(|(_, p)| p.len() <= vpr_proto::msg::MAX_PARAMS));
    let mut rng = Rng::new(7);
    for _ in 0..1000 {
        let (sql, params) = table.request(Op::Read, &mut rng, 5).unwrap();
        assert_eq!(sql, "SELECT v FROM bench_kv_t WHERE k = ?1");
        assert!(matches!(params[..], [Value::Integer(1..=5)]), "{params:?}");
    }
    let (sql, params) = table.request(Op::Write, &mut rng, 5).unwrap();
    assert_eq!(sql, "INSERT INTO bench_kv_t(v) VALUES (?1)");
    assert!(matches!(&params[..], [Value::Text(t)] if t.len() == VALUE_LEN));
    assert!(Table::fresh().name != Table::fresh().name);
}

fn short(workload: Workload) -> BenchOptions {
    BenchOptions {
        workload,
        clients: 4,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(50),
        rows: 1200,
        reads: crate::client::ReadConsistency::Linearizable,
    }
}

#[test]
fn baseline_runs_every_workload() {
    for workload in [Workload::Write, Workload::Read, Workload::Mixed] {
        let b = run_baseline(&short(workload)).unwrap();
        assert_eq!(b.connections, 1);
        assert!(b.ops > 100, "{workload}: {b:?}");
        assert!(b.throughput > 0.0);
        assert_eq!(b.all.count, b.ops);
        assert!(b.all.p50_us > 0.0 && b.all.p50_us <= b.all.p99_us);
        assert!(b.all.p99_us <= b.all.max_us);
        assert_eq!(b.read.is_some(), workload != Workload::Write, "{workload}");
        assert_eq!(b.write.is_some(), workload != Workload::Read, "{workload}");
        if workload == Workload::Mixed {
            let (r, w) = (b.read.unwrap().count, b.write.unwrap().count);
            assert_eq!(r + w, b.ops);
            assert!(w > 0 && w < r, "{r} reads, {w} writes");
        }
    }
    let mut empty = short(Workload::Read);
    empty.rows = 0;
    assert!(run_baseline(&empty).is_err());
    empty.workload = Workload::Write;
    assert!(run_baseline(&empty).unwrap().ops > 0);
}

#[test]
fn report_prints_and_serializes() {
    let opts = short(Workload::Mixed);
    let baseline = run_baseline(&opts).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let baseline_disk = run_baseline_on_disk(&opts, dir.path()).unwrap();
    assert!(baseline_disk.ops > 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the baseline's file stayed");
    let report = Report {
        workload: opts.workload,
        reads: opts.reads,
        clients: opts.clients,
        replicas: 3,
        rows: opts.rows,
        warmup_s: 0.05,
        duration_s: 0.3,
        ops: baseline.ops,
        errors: 0,
        throughput: baseline.throughput,
        all: baseline.all.clone(),
        read: baseline.read.clone(),
        write: baseline.write.clone(),
        ratio_p50: 1.0,
        ratio_throughput: 1.0,
        baseline,
        baseline_disk,
        ratio_p50_disk: 1.0,
        ratio_throughput_disk: 1.0,
    };
    let mut text = Vec::new();
    report.print(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    for line in ["cluster all", "cluster read", "baseline write", "disk write", "cluster / disk"] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["workload"], "mixed");
    assert!(json["baseline"]["all"]["p99_us"].as_f64().unwrap() > 0.0);
    assert_eq!(json["read"]["count"], report.read.as_ref().unwrap().count);
}

#[test]
fn gate_waits_for_all_or_opens_early() {
    let gate = Gate::new(3);
    std::thread::scope(|scope| {
        let waiting: Vec<_> = (0..2).map(|_| scope.spawn(|| gate.wait())).collect();
        std::thread::sleep(Duration::from_millis(20));
        assert!(waiting.iter().all(|t| !t.is_finished()), "passed before all arrived");
        gate.open();
        waiting.into_iter().for_each(|t| t.join().unwrap());
    });
    let gate = Gate::new(2);
    std::thread::scope(|scope| {
        scope.spawn(|| gate.wait());
        gate.wait();
    });
}

#[test]
fn seconds_parse() {
    assert_eq!(parse_seconds("10"), Ok(Duration::from_secs(10)));
    assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
    assert!(parse_seconds("-1").is_err());
    assert!(parse_seconds("x").is_err());
}
