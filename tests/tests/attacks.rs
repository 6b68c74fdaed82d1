//! Planned attacks on the protocol by Byzantine hosts, each at the Manager's API: the host
//! schedules every message, runs client sessions of its own, and can start a twin of its
//! replica (the same registration's counters and sealing secret, restored from a sealed blob).
//! Each test is named after the attack of docs/safety.md it replays and checks the promise it
//! broke: a reply a client accepts belongs to an update every later view keeps; no committed
//! update is lost; a request takes effect once.

mod common;

use common::cluster::Cluster;
use common::effects::{reply_in, secret_in, unblind};
use vpr_host::tcc::TccBackend;
use vpr_pal::{Call, Effect};
use vpr_proto::client::{ClientError, Session};
use vpr_proto::crypto;
use vpr_proto::msg::{Ack, NewView, Outcome, ReadLevel, Reply, Request, Update, Value};

fn sql(s: &str) -> String {
    s.to_owned()
}

fn updates(effects: &[Effect]) -> Vec<Update> {
    effects
        .iter()
        .filter_map(|e| if let Effect::Update(u) = e { Some(u.clone()) } else { None })
        .collect()
}

fn acks(effects: &[Effect]) -> Vec<Ack> {
    effects
        .iter()
        .filter_map(|e| if let Effect::Ack(a) = e { Some(a.clone()) } else { None })
        .collect()
}

fn new_view_in(effects: &[Effect]) -> NewView {
    effects
        .iter()
        .find_map(|e| if let Effect::NewView(nv) = e { Some(nv.clone()) } else { None })
        .unwrap_or_else(|| panic!("no NewView in {effects:?}"))
}

fn refused(effects: &[Effect]) -> bool {
    effects.iter().any(|e| matches!(e, Effect::Refused(_)))
}

fn accepts(session: &Session, request: &Request, reply: &Reply) -> Outcome {
    let out = session.verify(request, reply).expect("the client accepts the reply");
    out.clone()
}

/// The host's own client session is in the victim's batch: it knows its own client key, so
/// it can work out the blinder of its own reply (tag XOR its own MAC). With one blinder per
/// update, that blinder unblinded the victim's reply before any backup held the update, and
/// a view change without the update then lost the write the client accepted. Each reply now
/// has its own blinder, derived from a secret the TCC releases only at commit.
#[test]
fn attack_1_the_hosts_own_client_cannot_unblind_a_victims_reply() {
    let mut c = Cluster::form(3);
    let mut victim = c.client();
    let mut own = c.client();
    c.submit(vec![victim.request(sql("CREATE TABLE t(x)"), vec![])]);
    let v = victim.request(sql("INSERT INTO t VALUES (42)"), vec![]);
    let o = own.request(sql("INSERT INTO t VALUES (1)"), vec![]);
    // The batch runs; the update goes nowhere yet (no Ack, no commit).
    let out = c.replicas[0].call(Call::Requests(vec![v.clone(), o.clone()]));
    let update = updates(&out).remove(0);
    let (blinded_v, blinded_o) = (reply_in(&out, &v), reply_in(&out, &o));
    let own_key = *own.key();
    let own_blinder = |blinded: &Reply| {
        let mut b = crypto::mac(&own_key, &[&blinded.signed_bytes()]);
        crypto::xor(&mut b, &blinded.tag);
        b
    };
    let mut forged = blinded_v.clone();
    crypto::xor(&mut forged.tag, &own_blinder(&blinded_o));
    assert_eq!(victim.verify(&v, &forged), Err(ClientError::BadTag), "unblinded by the host");
    // The same with a read of its own at `primary` level while the update is in flight.
    let read = own.request_at(ReadLevel::Primary, sql("SELECT count(*) FROM t"), vec![]);
    let out = c.replicas[0].call(Call::Requests(vec![read.clone()]));
    let blinded_read = reply_in(&out, &read);
    let mut forged = blinded_v.clone();
    crypto::xor(&mut forged.tag, &own_blinder(&blinded_read));
    assert_eq!(victim.verify(&v, &forged), Err(ClientError::BadTag), "unblinded by a read");
    // Once a backup holds the update, the released secret unblinds every one of them.
    let ack = acks(&c.replicas[1].call(Call::Update(update.clone())));
    let secret = secret_in(&c.replicas[0].call(Call::Ack(ack[0].clone())), update.seq);
    let secret = secret.expect("the update commits");
    accepts(&victim, &v, &unblind(blinded_v, &secret));
    accepts(&own, &o, &unblind(blinded_o, &secret));
    accepts(&own, &read, &unblind(blinded_read, &secret));
}

/// n = 3. X is acknowledged by replica 1 alone and commits (the client accepts it). Replica
/// 1 becomes primary of view 1, but its host withholds the ViewChanges it needs; moving on
/// to view 2 it used to forget the updates it held. View 2 must still carry X.
#[test]
fn attack_2_a_primary_that_never_started_its_view_keeps_what_it_held() {
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    let x = client.request(sql("INSERT INTO t VALUES (42)"), vec![]);
    let out = c.replicas[0].call(Call::Requests(vec![x.clone()]));
    let update = updates(&out).remove(0);
    let ack = acks(&c.replicas[1].call(Call::Update(update.clone())));
    let done = c.replicas[0].call(Call::Ack(ack[0].clone()));
    let secret = secret_in(&done, update.seq).expect("X commits with one Ack");
    accepts(&client, &x, &unblind(reply_in(&out, &x), &secret));
    // View 1: replica 1 leads it, but never gets the ViewChanges.
    let _withheld = c.change_view(&[1, 2], &[1, 2]);
    assert!(c.replicas[1].manager().is_primary() && !c.replicas[1].manager().view_started());
    // View 2: replica 2 leads, with the accounts of replicas 1 and 2.
    let vcs = c.change_view(&[1, 2], &[1, 2]);
    let effects = c.replicas[2].call(Call::ViewChanges(vcs));
    let nv = new_view_in(&effects);
    assert_eq!(nv.chain_at(update.seq), Some(update.chain()), "view 2 lost X: {nv:?}");
}

/// n = 3. X is made in view 0 and held only by its primary; Y is made in view 1 at the same
/// sequence number and held only by its primary. View 2 carries X over unchanged (still
/// "view 0") and commits it; the client accepts it. View 3's quorum (X's holder and Y's)
/// used to pick the update *made* in the highest view, Y: X was lost. It must pick the one
/// *accepted* in the highest view.
#[test]
fn attack_3_view_change_picks_the_highest_accepted_view_not_the_creation_view() {
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    // View 0: X, held by replica 0 only.
    let x = client.request(sql("INSERT INTO t VALUES (1)"), vec![]);
    let out = c.replicas[0].call(Call::Requests(vec![x.clone()]));
    let update_x = updates(&out).remove(0);
    let blinded_x = reply_in(&out, &x);
    // View 1 (replica 1) starts without replica 0; Y at the same number, held by 1 only.
    let vcs = c.change_view(&[1, 2], &[0, 1, 2]);
    let vcs: Vec<_> = vcs.into_iter().filter(|vc| vc.replica != 0).collect();
    let nv1 = new_view_in(&c.replicas[1].call(Call::ViewChanges(vcs)));
    assert!(c.replicas[2].call(Call::NewView(nv1)).is_empty());
    let mut other = Session::resume(client.client, *client.key(), 100);
    let y = other.request(sql("INSERT INTO t VALUES (2)"), vec![]);
    let update_y = updates(&c.replicas[1].call(Call::Requests(vec![y]))).remove(0);
    assert_eq!((update_x.seq, update_y.seq), (update_y.seq, update_x.seq));
    // View 2 (replica 2) with replica 0's account carries X over; replica 0 acknowledges it
    // in view 2 and X commits: the client accepts X.
    let vcs = c.change_view(&[0, 2], &[0, 1, 2]);
    let vcs: Vec<_> = vcs.into_iter().filter(|vc| vc.replica != 1).collect();
    let effects = c.replicas[2].call(Call::ViewChanges(vcs));
    let nv2 = new_view_in(&effects);
    assert_eq!(nv2.chain_at(update_x.seq), Some(update_x.chain()));
    assert!(c.replicas[0].call(Call::NewView(nv2)).is_empty());
    let resent = updates(&effects).into_iter().find(|u| u.seq == update_x.seq).expect("X again");
    let ack = acks(&c.replicas[0].call(Call::Update(resent)));
    let done = c.replicas[2].call(Call::Ack(ack[0].clone()));
    let secret = secret_in(&done, update_x.seq).expect("X commits in view 2");
    accepts(&client, &x, &unblind(blinded_x, &secret));
    // View 3 (replica 0) with the accounts of replicas 0 (X, accepted in view 2) and 1 (Y,
    // accepted in view 1): X is committed and must be carried on.
    let vcs = c.change_view(&[0, 1], &[0, 1]);
    let nv3 = new_view_in(&c.replicas[0].call(Call::ViewChanges(vcs)));
    assert_eq!(nv3.chain_at(update_x.seq), Some(update_x.chain()), "view 3 lost X: {nv3:?}");
}

/// The host registers its replica's PAL again and restores it from the sealed blob: a twin
/// with the same counters and keys. The original used to keep acknowledging while the twin
/// caught up by snapshot, so one replica counted twice. Now the twin's start raises the
/// incarnation counter, and the original refuses to act at all.
#[test]
fn attack_4_a_twin_of_a_replica_silences_the_original() {
    let mut c = Cluster::form(3);
    let mut client = c.client();
    c.submit(vec![client.request(sql("CREATE TABLE t(x)"), vec![])]);
    let sealed = c.sealed.get(&2).expect("sealed").clone();
    let mut twin = c.twin(2, &sealed).expect("a twin restores");
    assert!(twin.manager().needs_state().is_some(), "the twin starts as a restarted replica");
    let w = client.request(sql("INSERT INTO t VALUES (7)"), vec![]);
    let update = updates(&c.replicas[0].call(Call::Requests(vec![w]))).remove(0);
    let out = c.replicas[2].call(Call::Update(update.clone()));
    assert!(acks(&out).is_empty() && refused(&out), "the original acknowledged: {out:?}");
    let snapshot = c.replicas[1].call(Call::MakeSnapshot);
    let out = c.replicas[2].call(Call::Probes(vec![]));
    assert!(matches!(out.as_slice(), [Effect::Refused(why)] if why.contains("superseded")));
    let Some(Effect::Snapshot(s)) = snapshot.into_iter().next() else { panic!("snapshot") };
    // The twin is the replica now: a restarted one, whose account counts only later.
    assert!(twin.call(Call::Snapshot(s)).is_empty());
    assert!(!acks(&twin.call(Call::Update(update))).is_empty());
}

/// An enrolled host starts the PAL as a group of its own (one replica, the same cluster
/// name): its counters start at 0, and it used to welcome the real cluster's clients, whose
/// writes it then "committed" alone. The Welcome now names the group's configuration digest,
/// and a client refuses one that is not its configuration's. (The real configuration itself
/// cannot run on the adversary's TCCs: attack_5_one_tcc_cannot_hold_two_ids.)
#[test]
fn attack_5_a_welcome_from_another_group_is_refused() {
    let c = Cluster::form(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let rogue_group = vpr_pal::GroupConfig {
        replicas: 1,
        members: vec![vpr_host::tcc::simulation::tcc_key(dir.path()).expect("key")],
        durable: false,
        ..c.group(0)
    };
    let mut rogue =
        vpr_host::tcc::simulation::Simulation::start(dir.path(), &c.manufacturer, rogue_group)
            .expect("a group of its own");
    let formed = rogue.call(Call::Joins { joins: vec![], require_all: true });
    assert!(formed.iter().any(|e| matches!(e, Effect::Ready)), "{formed:?}");
    let pending = vpr_proto::client::Pending::new(&mut rand_core::OsRng);
    let welcome = match rogue.call(Call::Hello(Box::new(pending.hello().clone()))).pop() {
        Some(Effect::Welcome(w)) => w,
        other => panic!("hello: {other:?}"),
    };
    let refused = pending.finish(&welcome, &c.trust());
    assert!(matches!(refused, Err(ClientError::Configuration { .. })), "{refused:?}");
}

/// The host of replica 1 also wants id 2 (n = 3: with two ids it alone would make a
/// majority). Under the hypervisor its machine has one TCC key, and the PAL names its
/// counters after the cluster and the id, so a Manager as replica 2 on that machine used to
/// start with counters of its own, join, and be sealed K. Modelled here by a TCC with replica
/// 1's key and counters apart. Now the configuration binds each id to its TCC key: the real
/// configuration does not start on that TCC (nor on any TCC it does not name), and a
/// configuration that names replica 1's key for id 2 as well is another group, whose Join the
/// primary refuses (and which no client's configuration accepts: `ClusterConfig::validate`).
#[test]
fn attack_5_one_tcc_cannot_hold_two_ids() {
    use vpr_host::tcc::simulation::{tcc_key, Manufacturer, Simulation};
    let dir = tempfile::tempdir().expect("temp dir");
    let manufacturer = Manufacturer::generate();
    let folder = |name: &str| dir.path().join(name);
    let group = |me: u16| common::cluster::group(3, me, &manufacturer, dir.path());
    let mut primary = Simulation::start(&folder("r0"), &manufacturer, group(0)).expect("r0");
    let mut backup = Simulation::start(&folder("r1"), &manufacturer, group(1)).expect("r1");
    // Replica 1's machine: its key (the same secret), another id's counters.
    std::fs::create_dir_all(folder("evil")).expect("dir");
    std::fs::copy(folder("r1").join("sealing.key"), folder("evil").join("sealing.key"))
        .expect("copy");
    assert_eq!(tcc_key(&folder("evil")).expect("key"), tcc_key(&folder("r1")).expect("key"));
    let refused = Simulation::start(&folder("evil"), &manufacturer, group(2)).unwrap_err();
    assert!(refused.to_string().contains("not the key the configuration names for replica 2"));
    // Nor on a TCC the configuration does not name at all.
    let refused = Simulation::start(&folder("outsider"), &manufacturer, group(2)).unwrap_err();
    assert!(refused.to_string().contains("not the key the configuration names"), "{refused}");
    // A configuration of its own that names replica 1's TCC for id 2 too: it starts, but it is
    // another group; the primary refuses its Join.
    let mut twice = group(2);
    twice.members[2] = twice.members[1];
    // (A group of genuine TCCs refuses such a configuration outright; only simulated ones,
    // as here, may name a key twice.)
    let genuine = vpr_pal::GroupConfig { allow_simulated: false, ..twice.clone() };
    let refused = Simulation::start(&folder("evil"), &manufacturer, genuine).unwrap_err();
    assert!(refused.to_string().contains("one TCC key for two replicas"), "{refused}");
    let mut evil = Simulation::start(&folder("evil"), &manufacturer, twice).expect("evil");
    let Some(Effect::Join(evil_join)) = evil.call(Call::Join).pop() else { panic!("join") };
    let Some(Effect::Join(join)) = backup.call(Call::Join).pop() else { panic!("join") };
    let out = primary.call(Call::Joins { joins: vec![join, evil_join], require_all: true });
    assert!(matches!(out.as_slice(), [Effect::InvalidJoins(ids)] if ids == &[2]), "{out:?}");
}

/// n = 5. Z is made in view 0 and held by replica 4 alone; view 1 starts without it. Replica
/// 4's host withholds view 1's NewView and hands it a snapshot of view 1 instead. The
/// snapshot used to start the view, with Z still held and vouched for by nothing. Now a
/// snapshot starts no view while updates are held; the NewView decides, and Z goes.
#[test]
fn attack_6_a_snapshot_does_not_start_a_view_over_held_updates() {
    let mut c = Cluster::form(5);
    let mut client = c.client();
    // The table commits everywhere, but replica 4's host withholds its Commit: replica 4
    // holds the update unapplied.
    let create = client.request(sql("CREATE TABLE t(x)"), vec![]);
    let update_create = updates(&c.replicas[0].call(Call::Requests(vec![create]))).remove(0);
    let mut commit = None;
    for r in 1..5 {
        let ack = acks(&c.replicas[r].call(Call::Update(update_create.clone())));
        for e in c.replicas[0].call(Call::Ack(ack[0].clone())) {
            if let Effect::Commit(cm) = e {
                commit = Some(cm);
            }
        }
    }
    let commit = commit.expect("the table commits");
    for r in 1..4 {
        assert!(c.replicas[r].call(Call::Commit(commit.clone())).is_empty());
    }
    let z = client.request(sql("INSERT INTO t VALUES (9)"), vec![]);
    let update_z = updates(&c.replicas[0].call(Call::Requests(vec![z]))).remove(0);
    assert!(!acks(&c.replicas[4].call(Call::Update(update_z.clone()))).is_empty());
    // View 1 (replica 1) from the accounts of replicas 1, 2 and 3.
    let vcs = c.change_view(&[1, 2, 3], &[1, 2, 3, 4]);
    let vcs: Vec<_> = vcs.into_iter().filter(|vc| vc.replica != 4).collect();
    let nv = new_view_in(&c.replicas[1].call(Call::ViewChanges(vcs)));
    assert_eq!(nv.chain_at(update_z.seq), None, "view 1 does not carry Z");
    for r in [2, 3] {
        assert!(c.replicas[r].call(Call::NewView(nv.clone())).is_empty());
    }
    let Some(Effect::Snapshot(s)) = c.replicas[1].call(Call::MakeSnapshot).into_iter().next()
    else {
        panic!("snapshot")
    };
    let _ = c.replicas[4].call(Call::Snapshot(s));
    assert!(!c.replicas[4].manager().view_started(), "a snapshot started view 1 over Z");
    // View 1 writes W at Z's number and commits it with replicas 2 and 3.
    let mut other = Session::resume(client.client, *client.key(), 100);
    let w = other.request(sql("INSERT INTO t VALUES (5)"), vec![]);
    let update_w = updates(&c.replicas[1].call(Call::Requests(vec![w]))).remove(0);
    assert_eq!(update_w.seq, update_z.seq);
    let mut commit = None;
    for r in [2, 3] {
        let ack = acks(&c.replicas[r].call(Call::Update(update_w.clone())));
        for e in c.replicas[1].call(Call::Ack(ack[0].clone())) {
            if let Effect::Commit(cm) = e {
                commit = Some(cm);
            }
        }
    }
    let commit = commit.expect("W commits");
    assert!(refused(&c.replicas[4].call(Call::Commit(commit.clone()))), "applied before NewView");
    assert_eq!(c.replicas[4].manager().committed(), update_z.seq - 1);
    // The NewView arrives: Z is dropped, W taken, and replica 4 agrees with the others.
    assert!(c.replicas[4].call(Call::NewView(nv)).is_empty());
    assert!(!acks(&c.replicas[4].call(Call::Update(update_w.clone()))).is_empty());
    assert!(c.replicas[4].call(Call::Commit(commit)).is_empty());
    assert_eq!(c.replicas[4].manager().committed(), update_w.seq);
    assert_eq!(c.replicas[4].manager().digest(), c.replicas[1].manager().digest());
}

/// A client's INSERT fails on a constraint, so it writes nothing; another client deletes
/// the row; the host replays the first request. It used to run again and succeed: one
/// sequence number, two verified outcomes, and a write the client was told failed. Every
/// request that could write is now recorded, failed or not.
#[test]
fn attack_7_a_request_that_wrote_nothing_cannot_be_replayed_into_a_write() {
    let mut c = Cluster::form(3);
    let mut a = c.client();
    let mut b = c.client();
    c.submit(vec![a.request(sql("CREATE TABLE t(k INTEGER PRIMARY KEY)"), vec![])]);
    c.submit(vec![b.request(sql("INSERT INTO t VALUES (1)"), vec![])]);
    let insert = a.request(sql("INSERT INTO t VALUES (1)"), vec![]);
    c.submit(vec![insert.clone()]);
    let first = accepts(&a, &insert, c.reply_to(&insert).expect("reply"));
    assert!(first.error.is_some(), "the first run fails on the constraint");
    c.submit(vec![b.request(sql("DELETE FROM t"), vec![])]);
    c.submit(vec![insert.clone()]);
    let again = accepts(&a, &insert, c.reply_to(&insert).expect("reply"));
    assert_eq!(first, again, "one sequence number, two outcomes");
    let count = b.request(sql("SELECT count(*) FROM t"), vec![]);
    c.submit(vec![count.clone()]);
    let rows = accepts(&b, &count, c.reply_to(&count).expect("reply")).results[0].rows.clone();
    assert_eq!(rows, [[Value::Integer(0)]], "the replay wrote");
}

/// A client that reuses a sequence number for another request (a resumed session that lost
/// count) gets the first request's outcome refused, not passed off as the second's: the
/// exactly-once table keeps each request's digest, and replies name it.
#[test]
fn attack_10_a_reused_sequence_number_is_refused_and_replies_name_their_request() {
    let mut c = Cluster::form(3);
    let mut a = c.client();
    c.submit(vec![a.request(sql("CREATE TABLE t(x)"), vec![])]);
    let first = a.request(sql("INSERT INTO t VALUES (1)"), vec![]);
    c.submit(vec![first.clone()]);
    let reply = c.reply_to(&first).expect("reply").clone();
    let mut resumed = Session::resume(a.client, *a.key(), first.seq);
    let second = resumed.request(sql("INSERT INTO t VALUES (2)"), vec![]);
    assert_eq!((second.seq, second.client), (first.seq, first.client));
    assert_ne!(second.digest(), first.digest());
    assert_eq!(resumed.verify(&second, &reply), Err(ClientError::WrongRequest));
    let refusals = c.refused.len();
    c.submit(vec![second.clone()]);
    assert!(c.reply_to(&second).is_none_or(|r| r.request != second.digest()));
    assert!(
        c.refused[refusals..].iter().any(|(_, why)| why.contains("used by another request")),
        "{:?}",
        c.refused
    );
}

/// What exactly-once does not cover: a request that completed with read-only statements is
/// not recorded, so a host that replays it has it run again, and the answer is the state at
/// that time (a correct read when it ran; the client uses the first answer it gets). Every
/// request that could write is recorded instead (attack_7).
#[test]
fn a_replayed_read_runs_again_at_its_own_time() {
    let mut c = Cluster::form(3);
    let mut a = c.client();
    let mut b = c.client();
    c.submit(vec![b.request(sql("CREATE TABLE t(x)"), vec![])]);
    let read = a.request(sql("SELECT count(*) FROM t"), vec![]);
    c.submit(vec![read.clone()]);
    let first = accepts(&a, &read, c.reply_to(&read).expect("reply"));
    c.submit(vec![b.request(sql("INSERT INTO t VALUES (1)"), vec![])]);
    c.submit(vec![read.clone()]);
    let again = accepts(&a, &read, c.reply_to(&read).expect("reply"));
    assert_eq!(first.results[0].rows, [[Value::Integer(0)]]);
    assert_eq!(again.results[0].rows, [[Value::Integer(1)]]);
}

/// A hostile client's request that the session table cannot record (a sequence number above
/// SQLite's integers) in a victim's batch: it used to fail the batch half-way, after the
/// victim's write had run, leaving that write outside every update and undo record. It is
/// refused alone, before it runs; the victim's write commits, and the replicas agree.
#[test]
fn attack_9_one_clients_request_cannot_fail_a_batch_half_way() {
    let mut c = Cluster::form(3);
    let mut victim = c.client();
    let own = c.client();
    c.submit(vec![victim.request(sql("CREATE TABLE t(x)"), vec![])]);
    let v = victim.request(sql("INSERT INTO t VALUES (1)"), vec![]);
    let mut hostile = Session::resume(own.client, *own.key(), 1 << 63);
    let h = hostile.request(sql("INSERT INTO t VALUES (2)"), vec![]);
    let refusals = c.refused.len();
    c.submit(vec![v.clone(), h.clone()]);
    accepts(&victim, &v, c.reply_to(&v).expect("the victim is answered"));
    assert!(c.reply_to(&h).is_none());
    assert!(c.refused[refusals..].iter().any(|(_, why)| why.contains("sequence number")));
    let d = c.digests();
    assert!(d.iter().all(|x| *x == d[0]), "replicas diverged");
    let count = victim.request(sql("SELECT count(*) FROM t"), vec![]);
    c.submit(vec![count.clone()]);
    let rows = accepts(&victim, &count, c.reply_to(&count).expect("reply")).results[0].rows.clone();
    assert_eq!(rows, [[Value::Integer(1)]]);
}
