//! The durable Manager's write-ahead log (docs/design.md, "Durable state"), in one process
//! with a hand-driven host: nothing a record covers leaves before the host confirms it, a
//! replica restarted from its log holds what it acknowledged and counts at once, records past
//! the trusted log counter are ignored, and a host that hides a confirmed record is refused.

mod common;

use common::cluster::Cluster;
use common::effects::{reply_in, secret_in, unblind};
use vpr_host::tcc::simulation::Simulation;
use vpr_host::tcc::TccBackend;
use vpr_pal::{Call, Effect};
use vpr_proto::msg::{NewView, Outcome, Value};

/// The update among `effects` (the primary's execution 1 makes one).
fn update_in(effects: &[Effect]) -> vpr_proto::msg::Update {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Update(u) => Some(u.clone()),
            _ => None,
        })
        .expect("an update")
}

fn ok(outcome: &Outcome) -> &Outcome {
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    outcome
}

/// A durable 3-replica group with a table and `rows` committed rows.
fn with_rows(rows: i64) -> (Cluster, vpr_proto::client::Session) {
    let mut c = Cluster::form_durable(3);
    let mut client = c.client();
    let create = client.request("CREATE TABLE t(v INTEGER)".into(), vec![]);
    c.submit(vec![create.clone()]);
    ok(client.verify(&create, c.reply_to(&create).expect("reply")).expect("verifies"));
    for v in 0..rows {
        let r = client.request("INSERT INTO t VALUES (?1)".into(), vec![Value::Integer(v)]);
        c.submit(vec![r.clone()]);
        ok(client.verify(&r, c.reply_to(&r).expect("reply")).expect("verifies"));
    }
    assert!(c.refused.is_empty(), "{:?}", c.refused);
    (c, client)
}

/// A backup acknowledges an update only once its record is confirmed on the host's disk, and
/// the primary releases a reply only once the commit's record is: held confirmations hold
/// every Ack and every reply. (Without the log's gating the Acks leave with the call.)
#[test]
fn nothing_leaves_before_its_record_is_confirmed() {
    let (mut c, mut client) = with_rows(2);
    c.hold_confirmations = true;
    let r = client.request("INSERT INTO t VALUES (100)".into(), vec![]);
    let effects = c.call(0, vpr_pal::Call::Requests(vec![r.clone()]));
    // The primary's own record (the update it proposes) waits: not even the Update left.
    assert!(
        effects.is_empty() && c.unconfirmed.iter().any(|(i, _)| *i == 0),
        "the primary acted before its record was confirmed: {effects:?}"
    );
    c.confirm_held();
    assert!(c.reply_to(&r).is_some(), "no reply after the confirmations");
    // Now a backup's confirmation alone is held: its Ack waits with it.
    c.hold_confirmations = true;
    let r2 = client.request("INSERT INTO t VALUES (101)".into(), vec![]);
    let effects = c.replicas[0].call(Call::Requests(vec![r2.clone()]));
    let Some(Effect::Persist { index, record, .. }) = effects.first().cloned() else {
        panic!("the primary made no record: {effects:?}");
    };
    c.logs.entry(0).or_default().push(record);
    let released = c.replicas[0].call(Call::Persisted { index });
    // The update leaves once its record is confirmed.
    let update = update_in(&released);
    for b in 1..3 {
        let out = c.call(b, Call::Update(update.clone()));
        assert!(
            !out.iter().any(|e| matches!(e, Effect::Ack(_))),
            "backup {b} acknowledged before its record was confirmed: {out:?}"
        );
    }
    assert_eq!(c.unconfirmed.iter().filter(|(i, _)| *i != 0).count(), 2);
    let rest = released.into_iter().filter(|e| !matches!(e, Effect::Update(_))).collect();
    c.process(0, rest);
    assert!(c.reply_to(&r2).is_none(), "a reply left before f backups held the update");
    c.confirm_held();
    ok(client.verify(&r2, c.reply_to(&r2).expect("reply")).expect("verifies"));
    assert!(c.refused.is_empty(), "{:?}", c.refused);
}

/// A backup restarted from its log holds the database and the updates it acknowledged, needs
/// no snapshot, and its account counts at once; the others go on with it.
#[test]
fn a_backup_restarted_from_its_log_needs_no_snapshot() {
    let (mut c, mut client) = with_rows(5);
    // Replica 2 holds an update it acknowledged and has not applied (its Commit is lost).
    let r = client.request("INSERT INTO t VALUES (50)".into(), vec![]);
    let effects = c.call(0, Call::Requests(vec![r.clone()]));
    let update = update_in(&effects);
    let acks = c.call(2, Call::Update(update.clone()));
    assert!(matches!(acks.as_slice(), [Effect::Ack(_)]), "{acks:?}");
    let before = c.replicas[2].manager().committed();
    let digest = c.replicas[2].manager().digest();
    let log = c.logs[&2].clone();
    let sealed = c.sealed[&2].clone();
    c.restart_with_log(2, &sealed, Some(&log)).expect("restarts from its log");
    let m = c.replicas[2].manager();
    assert_eq!(m.needs_state(), None, "a replica restarted from its log asked for a snapshot");
    assert_eq!((m.committed(), m.digest()), (before, digest));
    // It still holds the update it acknowledged: a retransmission is acknowledged again.
    let again = c.call(2, Call::Update(update));
    assert!(matches!(again.as_slice(), [Effect::Ack(_)]), "{again:?}");
    // The update reaches replica 1 too; the primary commits, both backups apply.
    c.process(0, effects);
    ok(client.verify(&r, c.reply_to(&r).expect("reply")).expect("verifies"));
    let digests = c.digests();
    assert!(digests.iter().all(|d| *d == digests[0]), "replicas diverged");
    assert!(c.refused.is_empty(), "{:?}", c.refused);
}

/// Records the Manager made and never had confirmed (the host wrote them; the process died
/// before the confirmation) are ignored at the restart, and the fence takes the first
/// number after the trusted log counter.
#[test]
fn unconfirmed_records_are_ignored_and_the_fence_follows_the_counter() {
    let (mut c, mut client) = with_rows(3);
    let committed = c.replicas[2].manager().committed();
    let r = client.request("INSERT INTO t VALUES (7)".into(), vec![]);
    let effects = c.call(0, Call::Requests(vec![r]));
    let update = update_in(&effects);
    // Replica 2's record of the update is on "disk" but never confirmed.
    let confirmed_len = c.logs[&2].len();
    c.hold_confirmations = true;
    let out = c.call(2, Call::Update(update.clone()));
    assert!(out.is_empty(), "{out:?}");
    c.hold_confirmations = false;
    assert_eq!(c.logs[&2].len(), confirmed_len + 1);
    let log = c.logs[&2].clone();
    let sealed = c.sealed[&2].clone();
    c.unconfirmed.clear();
    // The restart drops nothing from the host's copy; the Manager reads up to its counter.
    c.restart_with_log(2, &sealed, Some(&log)).expect("restarts");
    let fence = c.logs[&2].last().expect("the fence").clone();
    let index = u64::from_le_bytes(fence[6..14].try_into().expect("8 bytes"));
    assert_eq!(index, confirmed_len as u64 + 1, "the fence's number");
    let m = c.replicas[2].manager();
    // Applies ride with the next record: the last one may be held again rather than applied.
    assert!(m.committed() + 1 >= committed && m.committed() <= committed, "{}", m.committed());
    assert_eq!(m.needs_state(), None);
    let heartbeat = c.call(0, Call::Heartbeat);
    let Some(Effect::Commit(commit)) = heartbeat.first().cloned() else {
        panic!("no commit: {heartbeat:?}");
    };
    assert!(c.call(2, Call::Commit(commit)).is_empty());
    assert_eq!(c.replicas[2].manager().committed(), committed);
    // It does not hold the update: taking it now makes a new record, and an Ack.
    let before = c.logs[&2].len();
    let ack = c.call(2, Call::Update(update));
    assert!(matches!(ack.as_slice(), [Effect::Ack(_)]), "{ack:?}");
    assert_eq!(c.logs[&2].len(), before + 1, "the update was held already");
}

/// A host that hands back its replica's log without the last confirmed record is refused,
/// naming the check; the replica restarts without its log and waits for a snapshot.
#[test]
fn a_log_without_its_last_confirmed_record_is_refused() {
    let (mut c, _) = with_rows(3);
    let mut log = c.logs[&2].clone();
    log.pop();
    let sealed = c.sealed[&2].clone();
    let err = c.restart_with_log(2, &sealed, Some(&log)).expect_err("refused");
    assert!(err.to_string().contains("a truncated or older log"), "{err}");
    c.restart_with_log(2, &sealed, None).expect("restarts without its log");
    assert!(c.replicas[2].manager().needs_state().is_some());
}

// Planned attacks by a host that restarts its replica as it likes.

fn new_view_in(effects: &[Effect]) -> NewView {
    effects
        .iter()
        .find_map(|e| if let Effect::NewView(nv) = e { Some(nv.clone()) } else { None })
        .unwrap_or_else(|| panic!("no NewView in {effects:?}"))
}

/// The host restarts its replica with durability off (no log: snapshot, discounted account),
/// lets it catch up and acknowledge W alone, then restarts it with durability on from the log
/// it kept from before. A start without a log moves the log counter past every log, so the old
/// log is refused (a truncated or older log) and the replica restarts discounted again: view 1
/// keeps W. (Before, the old log checked out, the replica counted at once without W, and W,
/// accepted by its client, was lost.) Also when the old log ends with a record that was never
/// confirmed.
#[test]
fn a_run_without_the_log_makes_older_logs_stale() {
    for leftover in [false, true] {
        a_run_without_the_log_with(leftover);
    }
}

/// [`a_run_without_the_log_makes_older_logs_stale`]; with `leftover`, the old log ends with a
/// record the host never confirmed (it stands right after the log counter).
fn a_run_without_the_log_with(leftover: bool) {
    let (mut c, mut client) = with_rows(3);
    let sealed = c.sealed[&2].clone();
    if leftover {
        c.hold_confirmations = true;
        assert!(c.call(2, Call::Checkpoint).is_empty());
        c.hold_confirmations = false;
        c.unconfirmed.clear();
    }
    let old_log = c.logs[&2].clone();
    let mut memory = c.group(2);
    memory.durable = false;
    c.replicas[2] = Simulation::restore(&c.data(2), &c.manufacturer, memory, &sealed, None)
        .expect("restores with durability off");
    let Some(Effect::Snapshot(s)) = c.call(1, Call::MakeSnapshot).into_iter().next() else {
        panic!("snapshot")
    };
    assert!(c.call(2, Call::Snapshot(s)).is_empty());
    // W: replica 2 alone acknowledges it (replica 1 never sees it); it commits.
    let w = client.request("INSERT INTO t VALUES (999)".into(), vec![]);
    let out = c.call(0, Call::Requests(vec![w.clone()]));
    let update = update_in(&out);
    let Some(Effect::Ack(ack)) = c.call(2, Call::Update(update.clone())).into_iter().next() else {
        panic!("no ack")
    };
    let done = c.call(0, Call::Ack(ack));
    let secret = secret_in(&done, update.seq).expect("W commits");
    ok(client.verify(&w, &unblind(reply_in(&out, &w), &secret)).expect("the client accepts W"));
    // Durability on again, from the old log: refused; the host restarts it without.
    let err = c.restart_with_log(2, &sealed, Some(&old_log)).expect_err("the old log is refused");
    assert!(err.to_string().contains("a truncated or older log"), "{err}");
    c.restart_with_log(2, &sealed, None).expect("restarts without its log");
    // View 1 (replica 1) with the accounts of replicas 1 and 2; replica 0 is cut off.
    let vcs = c.change_view(&[1, 2], &[1, 2]);
    assert!(!vcs.iter().any(|v| v.replica == 2), "replica 2 counts without W: {vcs:?}");
    let out = c.call(1, Call::ViewChanges(vcs));
    assert!(
        !out.iter().any(|e| matches!(e, Effect::NewView(_))),
        "view 1 started without W: {out:?}"
    );
}

/// A primary restarted from its log does not lead the view it had started again: a
/// ViewChange its host kept does not make it issue a second NewView for the same view (after
/// a checkpoint, one that would list nothing below its base).
#[test]
fn a_recovered_primary_does_not_lead_its_view_again() {
    let (mut c, _client) = with_rows(2);
    let sealed1 = c.sealed[&1].clone();
    let vcs = c.change_view(&[1, 2], &[1, 2]);
    let vc2: Vec<_> = vcs.into_iter().filter(|v| v.replica == 2).collect();
    let nv1 = new_view_in(&c.call(1, Call::ViewChanges(vc2.clone())));
    assert!(c.call(1, Call::Checkpoint).is_empty());
    let log1 = c.logs[&1].clone();
    c.restart_with_log(1, &sealed1, Some(&log1)).expect("replica 1 recovers");
    let second = |c: &mut Cluster| {
        c.call(1, Call::ViewChanges(vc2.clone())).into_iter().find_map(|e| match e {
            Effect::NewView(nv) => Some(nv),
            _ => None,
        })
    };
    let again = second(&mut c);
    assert!(again.is_none(), "a second NewView for view 1: {again:?} (first {nv1:?})");
    // Also after a checkpoint and another restart: the resignation is in the log.
    assert!(c.call(1, Call::Checkpoint).is_empty());
    let log1 = c.logs[&1].clone();
    c.restart_with_log(1, &sealed1, Some(&log1)).expect("replica 1 recovers again");
    let again = second(&mut c);
    assert!(again.is_none(), "a second NewView after a checkpoint: {again:?}");
}

/// A twin: the host restarts replica 2 from its log while the original still runs (same TCC,
/// same counters). The original no longer acts — not even to confirm the record it waits
/// with — and the twin goes on from the log, holding what the original acknowledged.
#[test]
fn a_twin_from_the_log_silences_the_original() {
    let (mut c, mut client) = with_rows(2);
    let r = client.request("INSERT INTO t VALUES (9)".into(), vec![]);
    let update = update_in(&c.call(0, Call::Requests(vec![r])));
    // The original takes the update; its record waits (the host holds the confirmation).
    c.hold_confirmations = true;
    assert!(c.call(2, Call::Update(update.clone())).is_empty());
    c.hold_confirmations = false;
    let (_, index) = c.unconfirmed.pop().expect("the original's record waits");
    let log = c.logs[&2].clone();
    let sealed = c.sealed[&2].clone();
    let mut twin =
        Simulation::restore(&c.data(2), &c.manufacturer, c.group(2), &sealed, Some(&log))
            .expect("the twin recovers from the log");
    // The original can no longer confirm its record, nor take anything else.
    let out = c.replicas[2].call(Call::Persisted { index });
    assert!(
        matches!(out.as_slice(), [Effect::Refused(why)] if why.contains("superseded")),
        "the original acted after the twin started: {out:?}"
    );
    // The twin's fence, then the update: it was never confirmed, so the twin takes it anew.
    let fence = twin.call(Call::Persisted { index: 0 });
    let Some(Effect::Persist { index: fence_index, .. }) = fence.first().cloned() else {
        panic!("no fence: {fence:?}");
    };
    assert_eq!(fence_index, index, "the fence takes the unconfirmed record's number");
    assert!(twin.call(Call::Persisted { index: fence_index }).is_empty());
    c.replicas[2] = twin;
    let acked = c.call(2, Call::Update(update));
    assert!(matches!(acked.as_slice(), [Effect::Ack(_)]), "{acked:?}");
}
