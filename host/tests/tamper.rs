//! A Byzantine network between clients and the primary: a ZeroMQ proxy that alters, replays
//! or swaps replies. The client must never accept an altered reply (it reports an error), and
//! the service's state must not diverge.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vpr_host::client::{Client, ClientError};
use vpr_host::config::ClusterConfig;
use vpr_host::launcher::LocalCluster;
use vpr_proto::msg::{Message, Value};

const VPR: &str = env!("CARGO_BIN_EXE_vpr");

/// What the proxy does to replies.
const PASS: u8 = 0;
const FLIP: u8 = 1;
const REPLAY: u8 = 2;
const SWAP: u8 = 3;
const ALTER_ROWS: u8 = 4;

/// Forwards between clients (on `front`) and the primary (at `back`), applying `mode` to
/// replies. One DEALER per client keeps the client's identity towards the primary.
fn proxy(front: String, back: String, mode: Arc<AtomicU8>, stop: Arc<AtomicBool>) {
    let ctx = zmq::Context::new();
    let frontend = ctx.socket(zmq::ROUTER).expect("router");
    frontend.set_linger(0).expect("linger");
    frontend.bind(&front).expect("bind proxy");
    let mut dealers: Vec<(Vec<u8>, zmq::Socket)> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    // The first reply each client got: replayed in place of later ones.
    let mut first_reply: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut swap_slot: Option<(Vec<u8>, Vec<u8>)> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut items = vec![frontend.as_poll_item(zmq::POLLIN)];
        items.extend(dealers.iter().map(|(_, d)| d.as_poll_item(zmq::POLLIN)));
        zmq::poll(&mut items, 10).expect("poll");
        let readable: Vec<bool> = items.iter().map(zmq::PollItem::is_readable).collect();
        drop(items);
        if readable[0] {
            let parts = frontend.recv_multipart(0).expect("recv");
            let (id, payload) = (parts[0].clone(), parts[1].clone());
            let i = *index.entry(id.clone()).or_insert_with(|| {
                let d = ctx.socket(zmq::DEALER).expect("dealer");
                d.set_identity(&id).expect("identity");
                d.set_linger(0).expect("linger");
                d.connect(&back).expect("connect");
                dealers.push((id.clone(), d));
                dealers.len() - 1
            });
            dealers[i].1.send(payload, 0).expect("forward");
        }
        for (i, ready) in readable.iter().enumerate().skip(1) {
            if !ready {
                continue;
            }
            let (id, dealer) = &dealers[i - 1];
            let mut payload = dealer.recv_bytes(0).expect("recv reply");
            let is_reply = matches!(Message::decode(&payload), Ok(Message::Reply(_)));
            if is_reply {
                let old = first_reply.entry(id.clone()).or_insert_with(|| payload.clone()).clone();
                match mode.load(Ordering::Relaxed) {
                    FLIP => {
                        let at = payload.len() - 40;
                        payload[at] ^= 0x01;
                    }
                    REPLAY => payload = old,
                    ALTER_ROWS => {
                        if let Ok(Message::Reply(mut r)) = Message::decode(&payload) {
                            if let Some(row) =
                                r.outcome.results.first_mut().and_then(|s| s.rows.first_mut())
                            {
                                row[0] = Value::Integer(666);
                            }
                            payload = Message::Reply(r).encode();
                        }
                    }
                    SWAP => match swap_slot.take() {
                        // Hold the first client's reply; give it to the second, and the
                        // second's to the first.
                        None => {
                            swap_slot = Some((id.clone(), payload));
                            continue;
                        }
                        Some((other, held)) => {
                            frontend
                                .send_multipart([other.as_slice(), payload.as_slice()], 0)
                                .expect("send");
                            payload = held;
                        }
                    },
                    _ => {}
                }
            }
            frontend.send_multipart([id.as_slice(), payload.as_slice()], 0).expect("send");
        }
    }
}

#[test]
fn clients_reject_every_altered_reply() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = LocalCluster::start(dir.path(), 3, None, Path::new(VPR)).expect("start");
    let path = cluster.wait_ready(Duration::from_secs(30)).expect("ready");
    let real = ClusterConfig::load(&path).expect("config");
    let port = vpr_host::ports::one().expect("port");
    let mut through_proxy = real.clone();
    through_proxy.replicas[0].address = format!("127.0.0.1:{port}");
    through_proxy.timeouts.request_ms = 400;
    through_proxy.timeouts.request_attempts = 2;
    let (mode, stop) = (Arc::new(AtomicU8::new(PASS)), Arc::new(AtomicBool::new(false)));
    let proxy_thread = {
        let (front, back) = (format!("tcp://127.0.0.1:{port}"), real.endpoint(0).expect("primary"));
        let (mode, stop) = (mode.clone(), stop.clone());
        std::thread::spawn(move || proxy(front, back, mode, stop))
    };
    let mut a = Client::connect(&through_proxy).expect("connect through the proxy");
    let mut b = Client::connect(&through_proxy).expect("connect through the proxy");
    a.execute("CREATE TABLE t(x)", vec![]).expect("honest proxy");
    a.execute("INSERT INTO t VALUES (1)", vec![]).expect("honest proxy");

    for (m, what) in
        [(FLIP, "flipped byte"), (REPLAY, "replayed reply"), (ALTER_ROWS, "altered rows")]
    {
        mode.store(m, Ordering::Relaxed);
        match a.execute("SELECT count(*) FROM t", vec![]) {
            Err(ClientError::Verification(_) | ClientError::Unreachable(_)) => {}
            other => panic!("{what}: the client accepted {other:?}"),
        }
    }
    // Two clients' replies swapped in flight: each must refuse the other's.
    mode.store(SWAP, Ordering::Relaxed);
    let ta = std::thread::spawn(move || a.execute("INSERT INTO t VALUES (2)", vec![]).map(|_| ()));
    let tb = std::thread::spawn(move || b.execute("INSERT INTO t VALUES (3)", vec![]).map(|_| ()));
    for r in [ta.join().expect("a"), tb.join().expect("b")] {
        assert!(
            matches!(r, Err(ClientError::Verification(_) | ClientError::Unreachable(_))),
            "a swapped reply was accepted: {r:?}"
        );
    }
    // Nothing diverged: a direct client sees every committed write exactly once.
    stop.store(true, Ordering::Relaxed);
    proxy_thread.join().expect("proxy");
    let mut direct = Client::connect(&real).expect("direct");
    let out = direct.execute("SELECT count(*), sum(x) FROM t", vec![]).expect("verified");
    assert_eq!(out.results[0].rows, [[Value::Integer(3), Value::Integer(6)]]);
    cluster.stop();
}
