//! The V-PR protocol on simulated TCCs, in one process: initialization (thesis Fig 5.3), the
//! normal case (Fig 5.4) with blinded replies, exactly-once execution, and refusal of every
//! altered or replayed message.

mod common;

use common::cluster::Cluster;
use vpr_host::tcc::TccBackend;
use vpr_proto::client::ClientError;
use vpr_proto::msg::{Outcome, ReadLevel, Value};

/// The values `$value` of every effect in `$effects` that matches `$pattern`, e.g.
/// `pick!(effects, Effect::Update(u) => u.clone())`.
macro_rules! pick {
    ($effects:expr, $pattern:pat => $value:expr) => {
        $effects
            .iter()
            .filter_map(|e| match e {
                $pattern => Some($value),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
}

fn sql(s: &str) -> String {
    s.to_owned()
}

fn ok(outcome: &Outcome) -> &Outcome {
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    outcome
}

/// Fig 5.4 end to end on 3 and 5 replicas: every reply verifies, every replica converges.
#[test]
fn fig_5_4_normal_case_converges_on_3_and_5_replicas() {
    for n in [3u16, 5] {
        let mut c = Cluster::form(n);
        let mut client = c.client();
        let create = client.request(sql("CREATE TABLE kv(k INTEGER PRIMARY KEY, v TEXT)"), vec![]);
        c.submit(vec![create.clone()]);
        ok(client.verify(&create, c.reply_to(&create).expect("reply")).expect("verifies"));
        for i in 0..200 {
            let r = client.request(
                sql("INSERT INTO kv(v) VALUES (?1)"),
                vec![Value::Text(format!("v{i}").into_bytes())],
            );
            c.submit(vec![r.clone()]);
            ok(client.verify(&r, c.reply_to(&r).expect("reply")).expect("verifies"));
        }
        let read = client.request(sql("SELECT count(*), max(v) FROM kv"), vec![]);
        c.submit(vec![read.clone()]);
        let out =
            ok(client.verify(&read, c.reply_to(&read).expect("reply")).expect("verifies")).clone();
        assert_eq!(out.results[0].rows[0], [Value::Integer(200), Value::Text(b"v99".to_vec())]);
        assert!(c.refused.is_empty(), "{:?}", c.refused);
        let digests = c.digests();
        assert!(digests.iter().all(|d| *d == digests[0]), "replicas diverged ({n})");
        // 201 writes, and the linearizable read's empty update that confirmed the view.
        assert!(c.replicas.iter().all(|r| r.manager().committed() == 202));
    }
}

/// Several requests in one execution become one update.
#[test]
fn a_batch_is_one_update() {
    let mut c = Cluster::form(3);
    let mut a = c.client();
    let mut b = c.client();
    let setup = a.request(sql("CREATE TABLE t(x)"), vec![]);
    c.submit(vec![setup]);
    let batch = vec![
        a.request(sql("INSERT INTO t VALUES (1)"), vec![]),
        b.request(sql("INSERT INTO t VALUES (2)"), vec![]),
        a.request(sql("SELECT count(*) FROM t"), vec![]),
    ];
    let before = c.updates.len();
    c.submit(batch.clone());
    assert_eq!(c.updates.len(), before + 1);
    assert_eq!(c.updates.last().expect("update").entries.len(), 2, "the read is not an entry");
    for (req, session) in batch.iter().zip([&a, &b, &a]) {
        ok(session.verify(req, c.reply_to(req).expect("reply")).expect("verifies"));
    }
    let d = c.digests();
    assert!(d.iter().all(|x| *x == d[0]));
}

/// A reply is never verifiable before f backups acknowledged its update.
#[test]
fn replies_stay_blinded_until_f_acks() {
    let mut c = Cluster::form(3);
    let mut client = c.client();
    let create = client.request(sql("CREATE TABLE t(x)"), vec![]);
    c.submit(vec![create]);
    c.withhold_acks = true;
    let write = client.request(sql("INSERT INTO t VALUES (42)"), vec![]);
    c.submit(vec![write.clone()]);
    assert!(c.reply_to(&write).is_none(), "reply released without acks");
    let blinded =
        c.held.values().flatten().find(|r| r.seq == write.seq).expect("held reply").clone();
    assert_eq!(client.verify(&write, &blinded), Err(ClientError::BadTag), "blinded reply verified");
    // A read issued meanwhile may show the write: it is blinded by the same update.
    let read = client.request(sql("SELECT x FROM t"), vec![]);
    c.submit(vec![read.clone()]);
    assert!(c.reply_to(&read).is_none(), "read of undurable state released");
    c.release_acks();
    ok(client.verify(&write, c.reply_to(&write).expect("released")).expect("verifies"));
    let out =
        ok(client.verify(&read, c.reply_to(&read).expect("released")).expect("verifies")).clone();
    assert_eq!(out.results[0].rows, [[Value::Integer(42)]]);
}

/// A retransmitted request is executed once and answered with the same outcome.
#[test]
fn duplicate_requests_execute_once() {
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    let insert = client.request(sql("INSERT INTO t VALUES (random())"), vec![]);
    c.submit(vec![insert.clone()]);
    let first =
        client.verify(&insert, c.reply_to(&insert).expect("reply")).expect("verifies").clone();
    let updates = c.updates.len();
    c.submit(vec![insert.clone()]);
    let again =
        client.verify(&insert, c.reply_to(&insert).expect("reply")).expect("verifies").clone();
    assert_eq!(first, again);
    assert_eq!(c.updates.len(), updates, "the retransmission made an update");
    let count = client.request(sql("SELECT count(*) FROM t"), vec![]);
    c.submit(vec![count.clone()]);
    let out = client.verify(&count, c.reply_to(&count).expect("reply")).expect("verifies").clone();
    assert_eq!(out.results[0].rows, [[Value::Integer(1)]]);
    // Once a later write is recorded, the older sequence number is refused.
    c.submit(vec![client.request(sql("INSERT INTO t VALUES (0)"), vec![])]);
    c.submit(vec![insert]);
    let stale = c.submit_count_refused();
    assert!(stale >= 1, "stale request accepted");
}

/// Client SQL cannot see or change the service's own tables.
#[test]
fn the_session_table_is_out_of_reach() {
    let mut c = Cluster::form(3);
    let mut client = c.client();
    for q in [
        "SELECT * FROM vpr_session",
        "DELETE FROM vpr_session",
        "DROP TABLE vpr_session",
        "CREATE TABLE vpr_x(a)",
    ] {
        let r = client.request(sql(q), vec![]);
        c.submit(vec![r.clone()]);
        let out = client.verify(&r, c.reply_to(&r).expect("reply")).expect("verifies");
        assert!(out.error.as_ref().is_some_and(|e| e.code == 23), "{q}: {out:?}");
    }
}

/// Altered messages are refused wherever they arrive, and nothing diverges.
#[test]
fn tampered_messages_are_refused() {
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    // A request altered in transit.
    let mut req = client.request(sql("INSERT INTO t VALUES (1)"), vec![]);
    req.sql = sql("INSERT INTO t VALUES (666)");
    c.submit(vec![req.clone()]);
    assert!(c.reply_to(&req).is_none());
    assert!(c.refused.iter().any(|(_, why)| why.contains("request")), "{:?}", c.refused);
    // A reply altered in transit, or meant for another client.
    let mut other = c.client();
    let mine = client.request(sql("INSERT INTO t VALUES (2)"), vec![]);
    let theirs = other.request(sql("INSERT INTO t VALUES (3)"), vec![]);
    c.submit(vec![mine.clone(), theirs.clone()]);
    let mut altered = c.reply_to(&mine).expect("reply").clone();
    altered.outcome.results[0].changes = 5;
    assert_eq!(client.verify(&mine, &altered), Err(ClientError::BadTag));
    let mut swapped = c.reply_to(&theirs).expect("reply").clone();
    assert_eq!(client.verify(&mine, &swapped), Err(ClientError::WrongRequest));
    swapped.client = mine.client;
    swapped.seq = mine.seq;
    assert_eq!(client.verify(&mine, &swapped), Err(ClientError::WrongRequest));
    swapped.request = mine.digest();
    assert_eq!(client.verify(&mine, &swapped), Err(ClientError::BadTag));
    // Updates altered on the way to a backup: a page byte, the chain link, the tag.
    let update = c.updates.last().expect("update").clone();
    let digest = c.digests();
    let mut bad = Vec::new();
    let mut u = update.clone();
    if let Some(p) = u.state.pages.first_mut() {
        p.data[100] ^= 1;
    }
    bad.push(u);
    let mut u = update.clone();
    u.seq += 1;
    bad.push(u);
    let mut u = update.clone();
    u.tag[0] ^= 1;
    bad.push(u);
    for u in bad {
        let out = c.replicas[1].call(vpr_pal::Call::Update(u));
        assert!(matches!(out.as_slice(), [vpr_pal::Effect::Refused(_)]), "{out:?}");
    }
    assert_eq!(c.digests(), digest, "a refused update changed a replica");
}

impl Cluster {
    fn submit_count_refused(&self) -> usize {
        self.refused.iter().filter(|(_, why)| why.contains("older")).count()
    }
}

/// Status reports are authenticated for the asking client: a host cannot forge or replay them.
#[test]
fn status_reports_are_authenticated() {
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    let request = client.status_request([9; 32]);
    for r in 0..3u16 {
        let report =
            match c.replicas[usize::from(r)].call(vpr_pal::Call::Status(request.clone())).pop() {
                Some(vpr_pal::Effect::Status(report)) => report,
                other => panic!("status: {other:?}"),
            };
        assert_eq!(report.replica, r);
        client.verify_status(&request, &report).expect("genuine report verifies");
        let mut forged = report.clone();
        forged.committed += 1;
        assert_eq!(client.verify_status(&request, &forged), Err(ClientError::BadTag));
        let fresh = client.status_request([10; 32]);
        assert_eq!(
            client.verify_status(&fresh, &report),
            Err(ClientError::WrongRequest),
            "replayed"
        );
    }
    let mut forged_request = request.clone();
    forged_request.client[0] ^= 1;
    let out = c.replicas[0].call(vpr_pal::Call::Status(forged_request));
    assert!(matches!(out.as_slice(), [vpr_pal::Effect::Refused(_)]));
}

/// Each of `replicas` suspects the primary; returns their Probes.
fn suspect(c: &mut Cluster, replicas: &[usize]) -> Vec<vpr_proto::msg::Probe> {
    replicas
        .iter()
        .flat_map(|b| {
            pick!(c.replicas[*b].call(vpr_pal::Call::Suspect), vpr_pal::Effect::Probe(p) => p.clone())
        })
        .collect()
}

/// Delivers `probes` to each of `replicas`; returns their ViewChanges.
fn view_changes(
    c: &mut Cluster,
    replicas: &[usize],
    probes: &[vpr_proto::msg::Probe],
) -> Vec<vpr_proto::msg::ViewChange> {
    replicas
        .iter()
        .flat_map(|b| {
            pick!(c.replicas[*b].call(vpr_pal::Call::Probes(probes.to_vec())), vpr_pal::Effect::ViewChange(vc) => vc.clone())
        })
        .collect()
}

/// §5.2.5: the primary crashes with an update held by the backups but not committed. The
/// backups move to view 1 (f+1 Probes, trusted view counter), the new primary adopts the held
/// update and proposes it again, it commits, the client's retransmission is answered from the
/// exactly-once table, and the new view makes progress. The old primary's Acks no longer count.
#[test]
fn section_5_2_5_primary_change_keeps_every_acknowledged_write() {
    use vpr_pal::{Call, Effect};
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    c.submit(vec![client.request(sql("INSERT INTO t VALUES (1)"), vec![])]);
    // Update 3 reaches both backups; their Acks are lost; the primary crashes.
    c.withhold_acks = true;
    let write = client.request(sql("INSERT INTO t VALUES (2)"), vec![]);
    c.submit(vec![write.clone()]);
    assert!(c.reply_to(&write).is_none());
    let (b1, b2) = (1usize, 2usize);
    // Both backups suspect the primary and exchange Probes.
    let probes = suspect(&mut c, &[b1, b2]);
    assert_eq!(probes.len(), 2);
    // One Probe is not enough (f + 1 = 2 needed).
    assert!(matches!(
        c.replicas[b1].call(Call::Probes(probes[..1].to_vec())).as_slice(),
        [Effect::Refused(_)]
    ));
    let vcs = view_changes(&mut c, &[b1, b2], &probes);
    assert_eq!(vcs.len(), 2);
    assert!(c.replicas[b1].manager().is_primary() && c.replicas[b1].manager().view() == 1);
    // The new primary adopts the held update and announces the view.
    let effects = c.replicas[b1].call(Call::ViewChanges(vcs));
    let nv =
        pick!(effects, Effect::NewView(nv) => nv.clone()).into_iter().next().expect("new view");
    assert_eq!((nv.view, nv.base, nv.head()), (1, 2, 3), "update 3 carried over uncommitted");
    let carried: Vec<_> = pick!(effects, Effect::Update(u) => u.clone());
    assert!(c.replicas[b2].call(Call::NewView(nv)).is_empty());
    // The other backup acknowledges the carried-over update in the new view; it commits.
    let mut acks = Vec::new();
    for u in carried {
        acks.extend(pick!(c.replicas[b2].call(Call::Update(u)), Effect::Ack(a) => a.clone()));
    }
    let ack = acks.into_iter().find(|a| a.seq == 3).expect("ack of update 3");
    assert_eq!(ack.view, 1);
    let out = c.replicas[b1].call(Call::Ack(ack));
    let commit = pick!(out, Effect::Commit(cm) => cm.clone()).into_iter().next().expect("commit");
    assert_eq!(commit.seq, 3);
    assert!(c.replicas[b2].call(Call::Commit(commit)).is_empty());
    assert_eq!(c.replicas[b1].manager().digest(), c.replicas[b2].manager().digest());
    // The client retransmits to the new primary: answered once, from the exactly-once table.
    let out = c.replicas[b1].call(Call::Requests(vec![write.clone()]));
    let reply = pick!(out, Effect::Reply { reply, blinded_until: None } => reply.clone())
        .into_iter()
        .next()
        .expect("reply");
    ok(client.verify(&write, &reply).expect("verifies"));
    let count =
        client.request_at(ReadLevel::Primary, sql("SELECT count(*), sum(x) FROM t"), vec![]);
    let out = c.replicas[b1].call(Call::Requests(vec![count.clone()]));
    let reply =
        pick!(out, Effect::Reply { reply, .. } => reply.clone()).into_iter().next().expect("reply");
    let outcome = client.verify(&count, &reply).expect("verifies").clone();
    assert_eq!(
        outcome.results[0].rows,
        [[Value::Integer(2), Value::Integer(3)]],
        "each write once"
    );
    // The old primary's view is over: its Acks and Updates are refused by the new view.
    let stale_ack = c.withheld.first().expect("withheld ack").clone();
    assert!(matches!(c.replicas[b1].call(Call::Ack(stale_ack)).as_slice(), [Effect::Refused(_)]));
    let old_update = c.updates.last().expect("update").clone();
    let mut newer = old_update.clone();
    newer.seq = 4;
    assert!(matches!(c.replicas[b2].call(Call::Update(newer)).as_slice(), [Effect::Refused(_)]));
    // And the new view makes progress with a new write.
    let next = client.request(sql("INSERT INTO t VALUES (3)"), vec![]);
    let out = c.replicas[b1].call(Call::Requests(vec![next]));
    let update = pick!(out, Effect::Update(u) => u.clone()).into_iter().next().expect("update");
    assert_eq!((update.view, update.seq), (1, 4));
    let acks = pick!(c.replicas[b2].call(Call::Update(update)), Effect::Ack(a) => a.clone());
    let out = c.replicas[b1].call(Call::Ack(acks[0].clone()));
    assert!(out.iter().any(|e| matches!(e, Effect::Release { seq: 4, .. })));
}

/// The write the client saw acknowledged was held by only one backup when the primary crashed
/// (its Commit lost). The new primary never saw it, finds it in that backup's ViewChange, and
/// the write survives.
#[test]
fn section_5_2_5_an_acknowledged_write_held_by_one_backup_survives() {
    use vpr_pal::{Call, Effect};
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    let write = client.request(sql("INSERT INTO t VALUES (42)"), vec![]);
    let out = c.replicas[0].call(Call::Requests(vec![write.clone()]));
    let update = pick!(out, Effect::Update(u) => u.clone()).into_iter().next().expect("update");
    let mut reply =
        pick!(out, Effect::Reply { reply, .. } => reply.clone()).into_iter().next().expect("reply");
    // Only backup 2 receives the update; its Ack lets the primary commit and release the reply.
    let ack = pick!(c.replicas[2].call(Call::Update(update)), Effect::Ack(a) => a.clone());
    let out = c.replicas[0].call(Call::Ack(ack[0].clone()));
    let secret =
        pick!(out, Effect::Release { secret, .. } => *secret).into_iter().next().expect("release");
    let blinder = vpr_proto::crypto::reply_blinder(&secret, &reply.client, reply.seq);
    vpr_proto::crypto::xor(&mut reply.tag, &blinder);
    ok(client.verify(&write, &reply).expect("the client accepts the write"));
    // The primary crashes before its Commit leaves. Backups 1 and 2 change view.
    let probes = suspect(&mut c, &[1, 2]);
    let vcs = view_changes(&mut c, &[1, 2], &probes);
    let effects = c.replicas[1].call(Call::ViewChanges(vcs));
    let nv =
        pick!(effects, Effect::NewView(nv) => nv.clone()).into_iter().next().expect("new view");
    assert_eq!(nv.head(), 2, "the held write is carried over");
    assert!(c.replicas[2].call(Call::NewView(nv)).is_empty());
    for u in pick!(effects, Effect::Update(u) => u.clone()) {
        for a in pick!(c.replicas[2].call(Call::Update(u)), Effect::Ack(a) => a.clone()) {
            for e in c.replicas[1].call(Call::Ack(a)) {
                if let Effect::Commit(cm) = e {
                    assert!(c.replicas[2].call(Call::Commit(cm)).is_empty());
                }
            }
        }
    }
    assert_eq!(c.replicas[1].manager().digest(), c.replicas[2].manager().digest());
    let read = client.request_at(ReadLevel::Primary, sql("SELECT x FROM t"), vec![]);
    let out = c.replicas[1].call(Call::Requests(vec![read.clone()]));
    let reply = pick!(out, Effect::Reply { reply, blinded_until: None } => reply.clone())
        .into_iter()
        .next()
        .expect("reply");
    assert_eq!(
        client.verify(&read, &reply).expect("verifies").results[0].rows,
        [[Value::Integer(42)]]
    );
}

/// Read consistency after a partition: the old primary (cut off, still in view 0) runs a read
/// after the others moved to view 1 and committed a write there. At the `primary` level its
/// stale answer goes out at once (as in the thesis); at the `linearizable` level the answer
/// waits for Acks of an update made after the read, which backups of view 1 no longer give,
/// so the client never sees the stale value.
#[test]
fn linearizable_reads_never_come_from_a_deposed_primary() {
    use vpr_pal::{Call, Effect};
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x); INSERT INTO t VALUES (1)"), vec![])]);
    // Backups 1 and 2 move to view 1; replica 1 starts it and commits a write with 2's Ack.
    let probes = suspect(&mut c, &[1, 2]);
    let vcs = view_changes(&mut c, &[1, 2], &probes);
    let effects = c.replicas[1].call(Call::ViewChanges(vcs));
    let nv = pick!(effects, Effect::NewView(nv) => nv.clone()).into_iter().next().expect("nv");
    assert!(c.replicas[2].call(Call::NewView(nv)).is_empty());
    let mut other = c.client();
    let write = other.request(sql("UPDATE t SET x = 2"), vec![]);
    let out = c.replicas[1].call(Call::Requests(vec![write]));
    let update = pick!(out, Effect::Update(u) => u.clone()).into_iter().next().expect("update");
    let ack = pick!(c.replicas[2].call(Call::Update(update)), Effect::Ack(a) => a.clone());
    let out = c.replicas[1].call(Call::Ack(ack[0].clone()));
    assert!(out.iter().any(|e| matches!(e, Effect::Release { .. })), "the write commits");

    // The deposed primary, at the primary level: an immediate, verifiable, stale answer.
    let fast = client.request_at(ReadLevel::Primary, sql("SELECT x FROM t"), vec![]);
    let out = c.replicas[0].call(Call::Requests(vec![fast.clone()]));
    let reply = pick!(out, Effect::Reply { reply, blinded_until: None } => reply.clone());
    let stale = client.verify(&fast, &reply[0]).expect("verifies").results[0].rows.clone();
    assert_eq!(stale, [[Value::Integer(1)]], "the primary level may be stale");

    // At the linearizable level: blinded until an empty update commits, which no backup of
    // view 1 acknowledges.
    let read = client.request(sql("SELECT x FROM t"), vec![]);
    let out = c.replicas[0].call(Call::Requests(vec![read]));
    let blinded = pick!(out, Effect::Reply { blinded_until: Some(s), .. } => *s);
    assert_eq!(blinded.len(), 1, "the linearizable read waits for a commit");
    let barrier = pick!(out, Effect::Update(u) => u.clone()).into_iter().next().expect("barrier");
    assert!(barrier.entries.is_empty() && barrier.state.pages.is_empty(), "an empty update");
    for b in [1, 2] {
        let out = c.replicas[b].call(Call::Update(barrier.clone()));
        assert!(
            out.iter().all(|e| matches!(e, Effect::Refused(_))),
            "replica {b} of view 1 acknowledged view 0's update: {out:?}"
        );
    }
    // Even a forged Ack for view 0 from a backup's host changes nothing.
    let forged = vpr_proto::msg::Ack {
        replica: 1,
        view: 0,
        seq: barrier.seq,
        chain: barrier.chain(),
        tag: [7; 32],
    };
    let out = c.replicas[0].call(Call::Ack(forged));
    assert!(!out.iter().any(|e| matches!(e, Effect::Release { .. })));
}

/// A primary that loses its view with updates in flight takes their pages back (its undo
/// records) and holds the updates like a backup: its database is its committed state again,
/// and it still serves a snapshot of that state.
#[test]
fn a_deposed_primary_takes_back_its_uncommitted_pages() {
    use vpr_pal::{Call, Effect};
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    let committed = c.replicas[0].manager().digest();
    let before = c.replicas[0].manager().committed();
    // Two writes in flight at the primary; no backup sees them.
    for i in 0..2 {
        let w = client.request(sql(&format!("INSERT INTO t VALUES ({i})")), vec![]);
        let out = c.replicas[0].call(Call::Requests(vec![w]));
        assert_eq!(pick!(out, Effect::Update(u) => u.seq).len(), 1);
    }
    assert_ne!(c.replicas[0].manager().digest(), committed, "the writes are applied");
    // A snapshot from the primary is of its committed state, not of what is in flight.
    let snap = pick!(c.replicas[0].call(Call::MakeSnapshot), Effect::Snapshot(s) => s.clone());
    assert_eq!(snap[0].seq, before);
    assert_eq!(vpr_pal::merkle::digest_of(&whole(&snap[0].state)), committed);
    // The backups move to view 1; the old primary follows with their Probes.
    let probes = suspect(&mut c, &[1, 2]);
    let out = c.replicas[0].call(Call::Probes(probes));
    assert!(!out.iter().any(|e| matches!(e, Effect::Refused(_))), "{out:?}");
    let m = c.replicas[0].manager();
    assert_eq!((m.view(), m.committed(), m.needs_state()), (1, before, None));
    assert_eq!(m.digest(), committed, "its database is back at the committed state");
    // Its ViewChange carries the two updates it now holds.
    let vc = pick!(out, Effect::ViewChange(vc) => vc.clone());
    assert_eq!(vc[0].held.iter().filter(|h| h.update.seq > before).count(), 2);
}

/// The bytes of a whole-file state update.
fn whole(state: &vpr_proto::update::StateUpdate) -> Vec<u8> {
    let mut file = vec![0; usize::try_from(state.file_size).expect("small")];
    let ps = state.page_size as usize;
    for p in &state.pages {
        let start = p.index as usize * ps;
        file[start..start + p.data.len()].copy_from_slice(&p.data);
    }
    file
}

/// Restart: a backup's process dies (its TCC memory with it) and comes back with the group key
/// from sealed storage. It refuses altered or foreign sealed state, and snapshots older than
/// its trusted state counter or not made under K; it adopts a current one, then applies new
/// updates. Until it has committed past everything it may have acknowledged before, its
/// account does not count in a view change.
#[test]
fn a_restarted_backup_recovers_only_a_state_at_least_as_new_as_its_counter() {
    use vpr_pal::{Call, Effect};
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    c.submit(vec![client.request(sql("INSERT INTO t VALUES (1)"), vec![])]);
    let old = pick!(c.replicas[1].call(Call::MakeSnapshot), Effect::Snapshot(s) => s.clone());
    for i in 2..4 {
        c.submit(vec![client.request(sql(&format!("INSERT INTO t VALUES ({i})")), vec![])]);
    }
    let counter = c.replicas[2].manager().committed();
    assert!(counter > old[0].seq);
    let sealed = c.sealed.get(&2).expect("replica 2 sealed its state").clone();
    let mut altered = sealed.clone();
    altered[20] ^= 1;
    assert!(c.restart(2, &altered).is_err(), "an altered blob restores");
    let foreign = c.sealed.get(&1).expect("replica 1 sealed its state").clone();
    assert!(c.restart(2, &foreign).is_err(), "replica 1's blob restores replica 2");
    c.restart(2, &sealed).expect("restart from sealed state");
    assert_eq!(c.replicas[2].manager().needs_state(), Some(counter));
    // It acts on nothing until it has state.
    let hb = pick!(c.replicas[0].call(Call::Heartbeat), Effect::Commit(cm) => cm.clone());
    assert!(matches!(
        c.replicas[2].call(Call::Commit(hb[0].clone())).as_slice(),
        [Effect::Refused(_)]
    ));
    // An older snapshot (a replay by its host) and one altered in transit are refused.
    let out = c.replicas[2].call(Call::Snapshot(old[0].clone()));
    assert!(matches!(out.as_slice(), [Effect::Refused(why)] if why.contains("older")), "{out:?}");
    let mut fresh = pick!(c.replicas[1].call(Call::MakeSnapshot), Effect::Snapshot(s) => s.clone());
    let mut tampered = fresh[0].clone();
    let last = tampered.state.pages.last_mut().expect("pages");
    last.data[0] ^= 1;
    assert!(matches!(
        c.replicas[2].call(Call::Snapshot(tampered)).as_slice(),
        [Effect::Refused(_)]
    ));
    assert!(c.replicas[2].call(Call::Snapshot(fresh.remove(0))).is_empty());
    let m = c.replicas[2].manager();
    assert_eq!((m.needs_state(), m.committed()), (None, counter));
    assert_eq!(m.digest(), c.replicas[1].manager().digest());
    // It takes part in the normal case again.
    c.submit(vec![client.request(sql("INSERT INTO t VALUES (9)"), vec![])]);
    assert_eq!(c.replicas[2].manager().committed(), counter + 1);
    let digests = c.digests();
    assert!(digests.iter().all(|d| *d == digests[0]));
    // Its ViewChange is withheld: it may have acknowledged updates it no longer holds.
    let probes = suspect(&mut c, &[1, 2]);
    let out = c.replicas[2].call(Call::Probes(probes.clone()));
    assert_eq!(c.replicas[2].manager().view(), 1, "it follows the view change");
    assert!(!out.iter().any(|e| matches!(e, Effect::ViewChange(_))), "{out:?}");
    let out = c.replicas[1].call(Call::Probes(probes));
    assert_eq!(pick!(out, Effect::ViewChange(vc) => vc.replica), [1]);
}

/// Results within a batch share what one PAL output holds: a read of thousands of rows is
/// answered in full, and once a batch's replies fill the room, a later request of the batch
/// is answered with SQLITE_TOOBIG instead of growing the output (or the PAL's heap) further.
#[test]
fn a_batchs_replies_share_the_output_budget() {
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    c.submit(vec![client.request(
        sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             INSERT INTO t SELECT i FROM n"),
        vec![],
    )]);
    let all = client.request(sql("SELECT x FROM t"), vec![]);
    c.submit(vec![all.clone()]);
    let out = ok(client.verify(&all, c.reply_to(&all).expect("reply")).expect("verifies")).clone();
    assert_eq!(out.results[0].rows.len(), 5000);
    // Two reads of 2 MB each: the first fits, the second finds the room taken.
    let big = "SELECT zeroblob(2000000)";
    let (first, second) = (client.request(sql(big), vec![]), client.request(sql(big), vec![]));
    c.submit(vec![first.clone(), second.clone()]);
    ok(client.verify(&first, c.reply_to(&first).expect("reply")).expect("verifies"));
    let refused = client.verify(&second, c.reply_to(&second).expect("reply")).expect("verifies");
    assert_eq!(refused.error.as_ref().map(|e| e.code), Some(18), "{refused:?}");
    // SQLITE_TOOBIG
}
