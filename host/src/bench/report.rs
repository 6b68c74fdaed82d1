//! What a benchmark run reports, and how it prints.

use super::*;
use crate::client::ReadConsistency;

/// Latency statistics of one kind of request, in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Requests recorded.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Stats {
    /// The statistics of a histogram of nanoseconds (all zero if it is empty). Percentiles are
    /// HdrHistogram's: the highest value equivalent to the recorded one at the histogram's
    /// precision.
    pub fn from_histogram(h: &Histogram<u64>) -> Stats {
        if h.is_empty() {
            return Stats::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Stats {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

/// The unreplicated baseline's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Baseline {
    /// SQLite connections used: always 1 (one thread, requests one after another).
    pub connections: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Requests completed while measuring.
    pub ops: u64,
    /// Requests per second.
    pub throughput: f64,
    /// All requests.
    pub all: Stats,
    /// Reads (read and mixed workloads).
    pub read: Option<Stats>,
    /// Writes (write and mixed workloads).
    pub write: Option<Stats>,
}

/// A benchmark's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The workload.
    pub workload: Workload,
    /// How fresh reads were.
    pub reads: ReadConsistency,
    /// Concurrent clients.
    pub clients: usize,
    /// Replicas in the cluster.
    pub replicas: usize,
    /// Rows preloaded.
    pub rows: usize,
    /// Warm-up seconds (not recorded).
    pub warmup_s: f64,
    /// Measured seconds.
    pub duration_s: f64,
    /// Requests completed (and verified) while measuring.
    pub ops: u64,
    /// Requests that failed, warm-up included.
    pub errors: u64,
    /// Requests per second while measuring.
    pub throughput: f64,
    /// All requests.
    pub all: Stats,
    /// Reads (read and mixed workloads).
    pub read: Option<Stats>,
    /// Writes (write and mixed workloads).
    pub write: Option<Stats>,
    /// The same workload against an unreplicated in-process SQLite.
    pub baseline: Baseline,
    /// Median latency of all requests, cluster over baseline (how many times slower).
    pub ratio_p50: f64,
    /// Throughput, cluster over baseline (below 1: the cluster does less).
    pub ratio_throughput: f64,
    /// The same workload against an unreplicated SQLite on disk (WAL, synchronous=FULL).
    pub baseline_disk: Baseline,
    /// Median latency of all requests, cluster over the on-disk baseline.
    pub ratio_p50_disk: f64,
    /// Throughput, cluster over the on-disk baseline.
    pub ratio_throughput_disk: f64,
}

impl Report {
    /// Writes the report as a table.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "vpr bench: {} workload ({} reads), {} client{}, {} replicas, {} rows preloaded, \
             {:.1} s measured after {:.1} s warm-up",
            self.workload,
            self.reads,
            self.clients,
            if self.clients == 1 { "" } else { "s" },
            self.replicas,
            self.rows,
            self.duration_s,
            self.warmup_s,
        )?;
        writeln!(
            out,
            "{:<16}{:>10}{:>8}{:>12}{:>10}{:>10}{:>10}{:>10}{:>10}",
            "", "ops", "errors", "ops/s", "p50 us", "p90 us", "p99 us", "max us", "mean us"
        )?;
        let mixed = self.workload == Workload::Mixed;
        if mixed {
            write_row(out, "cluster all", self.ops, Some(self.errors), self.throughput, &self.all)?;
        }
        for (kind, stats) in [("read", &self.read), ("write", &self.write)] {
            if let Some(s) = stats {
                let errors = if mixed { None } else { Some(self.errors) };
                let name = format!("cluster {kind}");
                write_row(out, &name, s.count, errors, ratio(s.count as f64, self.duration_s), s)?;
            }
        }
        for (label, b) in [("baseline", &self.baseline), ("disk", &self.baseline_disk)] {
            if mixed {
                write_row(out, &format!("{label} all"), b.ops, Some(0), b.throughput, &b.all)?;
            }
            for (kind, stats) in [("read", &b.read), ("write", &b.write)] {
                if let Some(s) = stats {
                    let name = format!("{label} {kind}");
                    let per_s = ratio(s.count as f64, b.duration_s);
                    write_row(out, &name, s.count, Some(0), per_s, s)?;
                }
            }
        }
        writeln!(
            out,
            "cluster / baseline: p50 {:.1}x, throughput {:.3}x; cluster / disk: p50 {:.1}x, \
             throughput {:.3}x",
            self.ratio_p50, self.ratio_throughput, self.ratio_p50_disk, self.ratio_throughput_disk
        )?;
        writeln!(
            out,
            "baseline: {} rusqlite connection in this process (in memory, journal_mode=MEMORY), \
             one request at a time, {:.1} s; disk: the same on a file beside the configuration \
             (journal_mode=WAL, synchronous=FULL), {:.1} s",
            self.baseline.connections, self.baseline.duration_s, self.baseline_disk.duration_s
        )
    }
}

/// One line of the report's table.
fn write_row(
    out: &mut impl Write,
    name: &str,
    ops: u64,
    errors: Option<u64>,
    throughput: f64,
    s: &Stats,
) -> std::io::Result<()> {
    let errors = errors.map_or_else(|| "-".to_owned(), |e| e.to_string());
    writeln!(
        out,
        "{name:<16}{ops:>10}{errors:>8}{throughput:>12.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}{:>10.1}",
        s.p50_us, s.p90_us, s.p99_us, s.max_us, s.mean_us
    )
}
