//! ZeroMQ at the edge: the event loop that drives a [`Replica`] and the client's socket.
//!
//! Each replica binds one ROUTER socket. Replicas reach each other through DEALER sockets
//! whose routing identity is `r<id>`; clients connect DEALER sockets with any other identity.
//! Every frame is one encoded [`Message`]. Sockets never block the loop: a full queue drops
//! the message, and the protocol's retransmissions recover.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use vpr_proto::msg::Message;

use crate::config::ClusterConfig;
use crate::replica::{Output, Replica, Source};
use crate::tcc::TccBackend;

/// Milliseconds the loop waits for input before it ticks.
const TICK_MS: i64 = 10;

/// The identity replica `id` uses on its DEALER sockets.
pub fn replica_identity(id: u16) -> Vec<u8> {
    format!("r{id}").into_bytes()
}

fn source(identity: &[u8]) -> Source {
    let parsed = identity
        .strip_prefix(b"r")
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .and_then(|s| s.parse::<u16>().ok());
    match parsed {
        Some(id) => Source::Replica(id),
        None => Source::Client(identity.to_vec()),
    }
}

/// Most messages taken in before the replica sends what it has to and ticks.
const MAX_RECEIVES_PER_ROUND: usize = 1024;

/// How often a replica rewrites its status file.
const STATUS_MS: u64 = 100;

/// Runs replica `id` until `stop` is set. If `status_file` is given, the replica keeps its
/// status there (view, primary, committed update, database digest) as its host sees it. What
/// the TCC seals for a restart is written to `sealed_file`.
pub fn run_replica<B: TccBackend>(
    config: &ClusterConfig,
    id: u16,
    backend: B,
    stop: &Arc<AtomicBool>,
    status_file: Option<&Path>,
    sealed_file: &Path,
) -> Result<()> {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER)?;
    router.set_linger(0)?;
    router.set_rcvhwm(100_000)?;
    router.set_sndhwm(100_000)?;
    let me = config.endpoint(id).context("replica id not in the configuration")?;
    router.bind(&me).with_context(|| format!("binding {me}"))?;
    let mut peers = Vec::new();
    for r in 0..config.n() {
        if r == id {
            peers.push(None);
            continue;
        }
        let dealer = ctx.socket(zmq::DEALER)?;
        dealer.set_identity(&replica_identity(id))?;
        dealer.set_linger(0)?;
        // Messages queue only for a connected peer, and not without bound: a peer that is down
        // misses them, and the protocol's retransmissions (or a snapshot) catch it up.
        dealer.set_sndhwm(10_000)?;
        dealer.set_immediate(true)?;
        let endpoint = config.endpoint(r).context("peer endpoint")?;
        dealer.connect(&endpoint).with_context(|| format!("connecting to {endpoint}"))?;
        peers.push(Some(dealer));
    }
    let mut replica = Replica::new(backend, config, id);
    let epoch = Instant::now();
    let now = || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(replica = id, endpoint = %me, "replica listening");
    let mut last_status: (Option<crate::tcc::Progress>, u64) = (None, 0);
    while !stop.load(Ordering::Relaxed) {
        if let Some(path) = status_file {
            // Hashing the database is the costly part: only when progress was made.
            let progress = replica.backend().progress();
            if last_status.0 != Some(progress) && now() >= last_status.1 + STATUS_MS {
                crate::status::write(path, &replica.backend().status())?;
                last_status = (Some(progress), now());
            }
        }
        let mut items = [router.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, TICK_MS)?;
        let mut outputs = Vec::new();
        // Bounded, so a flood of input cannot keep the replica from sending and ticking.
        for _ in 0..MAX_RECEIVES_PER_ROUND {
            match router.recv_multipart(zmq::DONTWAIT) {
                Ok(parts) => {
                    let [identity, payload] = parts.as_slice() else {
                        tracing::debug!(
                            frames = parts.len(),
                            "dropped a message with unexpected framing"
                        );
                        continue;
                    };
                    match Message::decode(payload) {
                        Ok(message) => {
                            outputs.extend(replica.receive(source(identity), message, now()))
                        }
                        Err(e) => tracing::debug!(%e, "dropped an undecodable message"),
                    }
                }
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => return Err(e.into()),
            }
        }
        outputs.extend(replica.flush(now()));
        outputs.extend(replica.tick(now()));
        for output in outputs {
            let sent = match &output {
                Output::Replica(r, bytes) => match peers.get(usize::from(*r)) {
                    Some(Some(socket)) => socket.send(&bytes[..], zmq::DONTWAIT),
                    _ => Ok(()),
                },
                Output::Client(route, bytes) => router
                    .send(&route[..], zmq::SNDMORE | zmq::DONTWAIT)
                    .and_then(|()| router.send(&bytes[..], zmq::DONTWAIT)),
                Output::Persist(blob) => {
                    crate::files::write_durably(sealed_file, blob).with_context(|| {
                        format!("storing sealed state in {}", sealed_file.display())
                    })?;
                    Ok(())
                }
            };
            if let Err(e) = sent {
                tracing::debug!(%e, "send dropped");
            }
        }
        // A stopped Manager answers nothing again: the process ends (crash-only), so that
        // whoever runs it restarts the replica from its sealed state — after this round's
        // outputs, the sealed state among them, are out.
        if let Some(why) = replica.stopped() {
            if let Some(path) = status_file {
                crate::status::write(path, &replica.backend().status())?;
            }
            bail!(
                "replica {id}: {why}. Start it again with the same data folder: it restarts \
                 from its sealed state and catches up from the others"
            );
        }
    }
    tracing::info!(replica = id, "replica stopping");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcc::{Progress, Status};
    use vpr_pal::{Call, Effect};
    use vpr_proto::digest::Digest;

    /// A backend whose Manager stopped for good: it refuses every call, as a stopped Manager
    /// does.
    struct Stopped;

    const REASON: &str = "this Manager stopped (the State counter: Unavailable): restart the \
                          replica from its sealed state";

    impl TccBackend for Stopped {
        fn status(&self) -> Status {
            Status { ready: true, view: 0, primary: 0, committed: 1, digest: Digest([0; 32]) }
        }
        fn primary(&self) -> u16 {
            0
        }
        fn progress(&self) -> Progress {
            let (ready, started, stopped) = (true, true, true);
            Progress { ready, view: 0, started, committed: 1, needs_state: None, stopped }
        }
        fn call(&mut self, _call: Call) -> Vec<Effect> {
            vec![Effect::Refused(String::from(REASON))]
        }
        fn identity(&self) -> Digest {
            Digest([0; 32])
        }
        fn is_isolated(&self) -> bool {
            false
        }
    }

    #[test]
    fn a_replica_whose_manager_stopped_ends_with_the_reason() {
        let ports = crate::ports::unused(3).expect("ports");
        let config = crate::config::three_replicas([ports[0], ports[1], ports[2]], |_| None);
        let dir = tempfile::tempdir().expect("temp dir");
        let stop = Arc::new(AtomicBool::new(false));
        let sealed = dir.path().join("group.sealed");
        let ended = run_replica(&config, 0, Stopped, &stop, None, &sealed);
        let why = format!("{:#}", ended.expect_err("the replica went on"));
        assert!(why.starts_with("replica 0: this Manager stopped"), "{why}");
        assert!(why.contains("Start it again with the same data folder"), "{why}");
    }
}
