//! What the local-cluster tests share.

use std::path::Path;
use std::time::Duration;

use vpr_host::launcher::files;
use vpr_host::status::Reported;

/// Reported statuses once every replica of the `n` in cluster folder `dir` reports the same
/// committed update and database digest. Status files are rewritten at most every 100 ms and
/// the primary's digest includes updates it has in flight, so a moment when all show the same
/// update can still show different digests: keep polling until the cluster has settled (or
/// give up after 20 s and show the last reports).
pub fn converged(dir: &Path, n: u16) -> Vec<Reported> {
    let mut last = Vec::new();
    for _ in 0..400 {
        let reports: Vec<_> = (0..n)
            .filter_map(|id| vpr_host::status::read(&dir.join(files::status(id))).ok())
            .collect();
        if reports.len() == usize::from(n)
            && reports
                .iter()
                .all(|r| r.committed == reports[0].committed && r.digest == reports[0].digest)
        {
            return reports;
        }
        last = reports;
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("replicas did not converge: {last:?}");
}
