//! V-PR under the hypervisor: three registrations of the PAL image run the Manager (the code
//! the simulation backend runs in-process) as replicas 0, 1 and 2 of one group, and the test
//! plays their untrusted hosts and a client, carrying every message between them as encoded
//! `tcc::Call`s and `tcc::Effect`s through `execute` (thesis Fig 5.3 and 5.4).
//!
//! Each replica's PAL is registered in a registry of its own, as on a machine of its own:
//! trusted counters belong to a PAL identity on one TCC, and three replicas of the same image
//! on one TCC would share them. The boot's attestation key certifies all three.

use super::pal::tcc_key;
use super::sql::{execute, image, register, SQLITE_TOOBIG};
use super::TestResult;
use crate::cpu;
use crate::pal::Pals;
use crate::svm::Svm;
use crate::tcc::Tcc;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use vpr_proto::client::{ClientError, Pending, Session, Trust};
use vpr_proto::crypto;
use vpr_proto::msg::{Ack, Reply, Request, Update, Value};
use vpr_proto::pal_io::{Command, Outcome};
use vpr_proto::tcc::{Call, Effect, Group, Status};
use vpr_proto::Digest;

/// Random bytes for the client's keys, from RDRAND.
struct Rdrand;

impl rand_core::RngCore for Rdrand {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // Without RDRAND the PAL tests fail earlier; zeroes here would only make the client
        // key predictable in a test.
        let _ = cpu::random(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Rdrand {}

/// The three replicas: their registries (one TCC each) and PAL handles, in replica order.
struct Group3<'s, 'p> {
    svm: &'s Svm,
    pals: [Pals<'p>; 3],
    handles: [u64; 3],
}

impl Group3<'_, '_> {
    /// One Manager call at replica `r`; its effects (a refusal fails the test unless
    /// `refusal_ok`).
    fn call(&mut self, r: usize, call: Call) -> Result<Vec<Effect>, String> {
        let what = format!("replica {r}: {}", call_name(&call));
        match execute(self.svm, &mut self.pals[r], self.handles[r], &[Command::Call(call)])?.pop() {
            Some(Outcome::Effects { effects, .. }) => Ok(effects),
            other => Err(format!("{what}: {other:?}")),
        }
    }

    fn status(&mut self, r: usize) -> Result<Status, String> {
        match execute(self.svm, &mut self.pals[r], self.handles[r], &[Command::Status])?.pop() {
            Some(Outcome::Status(status)) => Ok(status),
            other => Err(format!("status of replica {r}: {other:?}")),
        }
    }
}

fn call_name(call: &Call) -> &'static str {
    match call {
        Call::Join => "Join",
        Call::Joins { .. } => "Joins",
        Call::Accept(_) => "Accept",
        Call::AckInit(_) => "AckInit",
        Call::Hello(_) => "Hello",
        Call::Requests(_) => "Requests",
        Call::Update(_) => "Update",
        Call::Ack(_) => "Ack",
        Call::Commit(_) => "Commit",
        _ => "another call",
    }
}

/// The one effect of a kind among `effects`, or why not.
fn one<T>(
    effects: &[Effect],
    what: &str,
    pick: impl Fn(&Effect) -> Option<T>,
) -> Result<T, String> {
    let mut found: Vec<T> = effects.iter().filter_map(pick).collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(format!("{n} {what} effects in {effects:?}")),
    }
}

/// Both backups take `update`; their Acks.
fn backup_acks(g: &mut Group3<'_, '_>, update: &Update) -> Result<Vec<Ack>, String> {
    let mut acks = Vec::new();
    for r in [1, 2] {
        let effects = g.call(r, Call::Update(update.clone()))?;
        acks.push(one(&effects, "Ack", |e| match e {
            Effect::Ack(a) => Some(a.clone()),
            _ => None,
        })?);
    }
    Ok(acks)
}

/// A request through the primary and both backups: execution 1 (update, blinded reply),
/// the backups' Acks, execution 2 (release, commit), the backups apply. Returns the reply
/// as the client gets it after unblinding, and checks it was unusable before.
fn replicate(
    g: &mut Group3<'_, '_>,
    session: &Session,
    request: &Request,
) -> Result<Reply, String> {
    let effects = g.call(0, Call::Requests(Vec::from([request.clone()])))?;
    let update = one(&effects, "Update", |e| match e {
        Effect::Update(u) => Some(u.clone()),
        _ => None,
    })?;
    let (mut reply, blinded_until) = one(&effects, "Reply", |e| match e {
        Effect::Reply { reply, blinded_until } => Some((reply.clone(), *blinded_until)),
        _ => None,
    })?;
    if blinded_until != Some(update.seq) {
        return Err(format!("reply blinded until {blinded_until:?}, update {}", update.seq));
    }
    if session.verify(request, &reply) != Err(ClientError::BadTag) {
        return Err(String::from("a blinded reply verified before its update committed"));
    }
    let mut acks = backup_acks(g, &update)?;
    // f = 1: one Ack makes the update durable at a majority.
    let effects = g.call(0, Call::Ack(acks.remove(0)))?;
    let secret = one(&effects, "Release", |e| match e {
        Effect::Release { seq, secret } if *seq == update.seq => Some(*secret),
        _ => None,
    })?;
    let commit = one(&effects, "Commit", |e| match e {
        Effect::Commit(c) => Some(c.clone()),
        _ => None,
    })?;
    crypto::xor(&mut reply.tag, &crypto::reply_blinder(&secret, &reply.client, reply.seq));
    g.call(0, Call::Ack(acks.remove(0)))?;
    for r in [1, 2] {
        g.call(r, Call::Commit(commit.clone()))?;
    }
    Ok(reply)
}

/// The configuration of replica `me` of a 3-replica test cluster `cluster`.
fn group(me: u16, manufacturer: [u8; 65], cluster: [u8; 32]) -> Group {
    Group {
        replicas: 3,
        me,
        manufacturer,
        allow_simulated: true,
        cluster,
        max_in_flight: 4,
        page_size: None,
        max_sql_bytes: 1 << 20,
        max_vm_steps: Some(1 << 32),
        // One boot, one TCC key (self-certified: the manufacturer key) for all three: the
        // three registries stand for three machines' counters, not their keys.
        members: Vec::from([manufacturer; 3]),
        durable: false,
    }
}

/// Registers the PAL image in each registry of `pals` (one TCC each), starts replicas 0-2 of
/// cluster `cluster` and forms the group (Join, Accept, AckInit: Fig 5.3). The group, and the
/// group state each replica sealed once it was in.
fn form<'s, 'p>(
    svm: &'s Svm,
    mut pals: [Pals<'p>; 3],
    manufacturer: [u8; 65],
    cluster: [u8; 32],
) -> Result<(Group3<'s, 'p>, [Vec<u8>; 3]), String> {
    let mut handles = [0; 3];
    for (h, p) in handles.iter_mut().zip(pals.iter_mut()) {
        *h = register(svm, p)?.0;
    }
    let mut g = Group3 { svm, pals, handles };
    for me in 0..3u16 {
        let group = group(me, manufacturer, cluster);
        let r = usize::from(me);
        let outcome = execute(svm, &mut g.pals[r], handles[r], &[Command::Start { group }])?;
        if !matches!(outcome.first(), Some(Outcome::Status(_))) {
            return Err(format!("start {me}: {outcome:?}"));
        }
    }
    let mut sealed: [Vec<u8>; 3] = Default::default();
    let mut keep_sealed = |r: usize, effects: &[Effect]| {
        for e in effects {
            if let Effect::Sealed(blob) = e {
                sealed[r].clone_from(blob);
            }
        }
    };
    let mut joins = Vec::new();
    for r in [1, 2] {
        let effects = g.call(r, Call::Join)?;
        joins.push(one(&effects, "Join", |e| match e {
            Effect::Join(j) => Some(j.clone()),
            _ => None,
        })?);
    }
    let effects = g.call(0, Call::Joins { joins, require_all: true })?;
    keep_sealed(0, &effects);
    let accept = one(&effects, "Accept", |e| match e {
        Effect::Accept(a) => Some(a.clone()),
        _ => None,
    })?;
    let mut ack_inits = Vec::new();
    for r in [1, 2] {
        let effects = g.call(r, Call::Accept(Box::new(accept.clone())))?;
        keep_sealed(r, &effects);
        ack_inits.push(one(&effects, "AckInit", |e| match e {
            Effect::AckInit(a) => Some(a.clone()),
            _ => None,
        })?);
    }
    for ack in ack_inits {
        let effects = g.call(0, Call::AckInit(ack))?;
        keep_sealed(0, &effects);
    }
    for (r, blob) in sealed.iter().enumerate() {
        if !g.status(r)?.ready {
            return Err(format!("replica {r} is not in the group"));
        }
        if blob.is_empty() {
            return Err(format!("replica {r} sealed no group state"));
        }
    }
    Ok((g, sealed))
}

/// A client's key exchange with the primary (its Welcome checked against the TCC key, the
/// image and the configuration of cluster `cluster`); the session.
fn client(
    g: &mut Group3<'_, '_>,
    manufacturer: [u8; 65],
    cluster: [u8; 32],
) -> Result<Session, String> {
    let pending = Pending::new(&mut Rdrand);
    let effects = g.call(0, Call::Hello(Box::new(pending.hello().clone())))?;
    let welcome = one(&effects, "Welcome", |e| match e {
        Effect::Welcome(w) => Some(w.clone()),
        _ => None,
    })?;
    let identity = Digest::of(image()?);
    let g0 = group(0, manufacturer, cluster);
    let config = vpr_proto::client::config_digest(
        g0.replicas,
        &identity,
        &manufacturer,
        g0.allow_simulated,
        &g0.cluster,
        g0.max_in_flight,
        &g0.members,
    );
    let trust = Trust { config, manufacturer, identity, allow_simulated: true };
    let other = Trust { config: Digest([0; 32]), ..trust.clone() };
    if pending.finish(&welcome, &other).is_ok() {
        return Err(String::from("a Welcome accepted for another configuration"));
    }
    let session = pending.finish(&welcome, &trust).map_err(|e| format!("welcome: {e}"))?;
    let strict = Trust { allow_simulated: false, ..trust };
    if pending.finish(&welcome, &strict).is_ok() {
        return Err(String::from("simulated evidence accepted without allow_simulated"));
    }
    Ok(session)
}

/// Initialization (Join, Accept, AckInit), a client's attested key exchange, a write and a
/// linearizable read replicated through update, Acks and commit with the reply blinded until
/// then; a tampered update and a forged request refused; all three database files equal.
pub fn manager_group_under_the_hypervisor(svm: &Svm, tcc: &Tcc) -> TestResult {
    let mut pals = [Pals::new(svm, tcc), Pals::new(svm, tcc), Pals::new(svm, tcc)];
    let manufacturer = tcc_key(svm, &mut pals[0])?;
    let (mut g, _) = form(svm, pals, manufacturer, [0x76; 32])?;
    let mut session = client(&mut g, manufacturer, [0x76; 32])?;
    // A write, then a linearizable read of it.
    let write = session.request(
        String::from("CREATE TABLE kv (k TEXT PRIMARY KEY, v); INSERT INTO kv VALUES ('a', 7)"),
        Vec::new(),
    );
    let reply = replicate(&mut g, &session, &write)?;
    let outcome = session.verify(&write, &reply).map_err(|e| format!("write reply: {e}"))?;
    if outcome.error.is_some() {
        return Err(format!("write: {outcome:?}"));
    }
    let read = session.request(String::from("SELECT v FROM kv WHERE k = 'a'"), Vec::new());
    let reply = replicate(&mut g, &session, &read)?;
    let outcome = session.verify(&read, &reply).map_err(|e| format!("read reply: {e}"))?;
    let rows = outcome.results.last().map(|r| r.rows.clone());
    if rows != Some(Vec::from([Vec::from([Value::Integer(7)])])) {
        return Err(format!("read: {outcome:?}"));
    }
    // Results of 40 MB, beyond the PAL's heap: the result budget makes them an SQL error in
    // a verified reply, and the group goes on.
    let huge = session.request(
        String::from(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) \
             SELECT zeroblob(1000000) FROM n",
        ),
        Vec::new(),
    );
    let reply = replicate(&mut g, &session, &huge)?;
    let outcome = session.verify(&huge, &reply).map_err(|e| format!("huge reply: {e}"))?;
    match &outcome.error {
        Some(e) if e.code & 0xff == SQLITE_TOOBIG && outcome.results.is_empty() => {}
        _ => return Err(format!("huge results: {outcome:?}")),
    }
    // Hostile input: a forged request (wrong tag) and a tampered update change nothing.
    let mut forged = session.request(String::from("DELETE FROM kv"), Vec::new());
    forged.tag[0] ^= 1;
    let effects = g.call(0, Call::Requests(Vec::from([forged])))?;
    if effects.iter().any(|e| matches!(e, Effect::Update(_) | Effect::Reply { .. })) {
        return Err(format!("a forged request was executed: {effects:?}"));
    }
    let next = session.request(String::from("UPDATE kv SET v = 8"), Vec::new());
    let effects = g.call(0, Call::Requests(Vec::from([next])))?;
    let update = one(&effects, "Update", |e| match e {
        Effect::Update(u) => Some(u.clone()),
        _ => None,
    })?;
    let mut tampered = update.clone();
    tampered.view ^= 1 << 40;
    let effects = g.call(1, Call::Update(tampered))?;
    if !effects.iter().all(|e| matches!(e, Effect::Refused(_))) || effects.is_empty() {
        return Err(format!("a tampered update was not refused: {effects:?}"));
    }
    // The genuine update then goes through as usual.
    let mut commit = None;
    for ack in backup_acks(&mut g, &update)? {
        let effects = g.call(0, Call::Ack(ack))?;
        commit = commit.or(effects.into_iter().find_map(|e| match e {
            Effect::Commit(c) => Some(c),
            _ => None,
        }));
    }
    let commit = commit.ok_or("no Commit after both Acks")?;
    for r in [1, 2] {
        g.call(r, Call::Commit(commit.clone()))?;
    }
    // Every replica committed the same updates and holds the same file.
    let statuses: Vec<Status> = (0..3).map(|r| g.status(r)).collect::<Result<_, _>>()?;
    let first = (statuses[0].committed, statuses[0].digest);
    let backups_agree = statuses[1..].iter().all(|s| (s.committed, s.digest) == first);
    if first.0 != 4 || !backups_agree {
        return Err(format!("statuses differ: {statuses:?}"));
    }
    log::info!("hv: V-PR group of 3 PALs: committed {} updates, database {}", first.0, first.1);
    Ok(())
}

/// The cluster of the replicas that keep their counters in the TPM.
const TPM_CLUSTER: [u8; 32] = [0x54; 32];

/// A snapshot of replica `r`'s committed state (`MakeSnapshot`), as the command that hands
/// it to another replica.
fn snapshot(g: &mut Group3<'_, '_>, r: usize) -> Result<Command, String> {
    let effects = g.call(r, Call::MakeSnapshot)?;
    let snapshot = one(&effects, "Snapshot", |e| match e {
        Effect::Snapshot(s) => Some(s.clone()),
        _ => None,
    })?;
    Ok(Command::Call(Call::Snapshot(snapshot)))
}

/// Lowercase hex, for the log line `qemu-test` hands to the next boot.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Boot 1: three replicas whose view and state counters live in the machine's TPM (one TPM
/// for all three: their counters are apart by name) form a group and commit two writes; a
/// backup's snapshots after each. Logged for the next boot: the backup's restart command
/// (its configuration and sealed group state), the older and the newer snapshot, and the
/// database digest at the second write.
pub fn tpm_manager_for_next_boot(svm: &Svm, tcc: &Tcc) -> TestResult {
    use crate::pal::CounterStore;
    let manufacturer = tcc_key(svm, &mut Pals::new(svm, tcc))?;
    let pals = [
        Pals::with_counters(svm, tcc, CounterStore::Tpm),
        Pals::with_counters(svm, tcc, CounterStore::Tpm),
        Pals::with_counters(svm, tcc, CounterStore::Tpm),
    ];
    let (mut g, sealed) = form(svm, pals, manufacturer, TPM_CLUSTER)?;
    let mut session = client(&mut g, manufacturer, TPM_CLUSTER)?;
    let first = session.request(
        String::from("CREATE TABLE t (k INTEGER PRIMARY KEY, v); INSERT INTO t VALUES (1, 'one')"),
        Vec::new(),
    );
    replicate(&mut g, &session, &first)?;
    let old = snapshot(&mut g, 1)?;
    let second = session.request(String::from("UPDATE t SET v = 'two'"), Vec::new());
    replicate(&mut g, &session, &second)?;
    let new = snapshot(&mut g, 1)?;
    let status = g.status(1)?;
    if status.committed != 2 || g.status(0)?.digest != status.digest {
        return Err(format!("after two writes: {status:?}"));
    }
    let restore = Command::Restore {
        group: group(1, manufacturer, TPM_CLUSTER),
        sealed: sealed[1].clone(),
        log: None,
    };
    log::info!(
        "hv: manager for the next boot: restore={} old={} new={} digest={}",
        hex(&restore.encode()),
        hex(&old.encode()),
        hex(&new.encode()),
        status.digest
    );
    Ok(())
}

/// Boot 2: the backup restarts from its sealed group state (module 3, from boot 1's log) on
/// the same TPM: its trusted counters say where it was (update 2), so it waits for a snapshot
/// at least that new; the older snapshot boot 1 made — a replayed old state — is refused
/// for it, the newer one brings it back to boot 1's database.
pub fn tpm_manager_after_reboot(svm: &Svm, tcc: &Tcc) -> TestResult {
    let module = crate::mem::module(3).ok_or("no module 3: the Manager's state from boot 1")?;
    let mut parts = Vec::new();
    let mut rest = module;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let part = tail.get(..len).ok_or("module 3 is truncated")?;
        parts.push(part);
        rest = &tail[len..];
    }
    let [restore, old, new, digest] = parts[..] else {
        return Err(format!("module 3 has {} parts, not 4", parts.len()));
    };
    let decode = |bytes: &[u8]| Command::decode(bytes).map_err(|e| format!("module 3: {e}"));
    let (restore, old, new) = (decode(restore)?, decode(old)?, decode(new)?);
    let mut pals = Pals::with_counters(svm, tcc, crate::pal::CounterStore::Tpm);
    let (handle, _) = register(svm, &mut pals)?;
    let status = match execute(svm, &mut pals, handle, &[restore])?.pop() {
        Some(Outcome::Status(status)) => status,
        other => return Err(format!("restore: {other:?}")),
    };
    if !status.ready || status.needs_state != Some(2) {
        return Err(format!("restored from the sealed state: {status:?}"));
    }
    match execute(svm, &mut pals, handle, &[old])?.pop() {
        Some(Outcome::Effects { effects, .. })
            if !effects.is_empty() && effects.iter().all(|e| matches!(e, Effect::Refused(_))) =>
        {
            log::info!("hv: an older state replayed after the reboot: {effects:?}");
        }
        other => return Err(format!("the older snapshot was not refused: {other:?}")),
    }
    match execute(svm, &mut pals, handle, &[new])?.pop() {
        Some(Outcome::Effects { effects, .. })
            if !effects.iter().any(|e| matches!(e, Effect::Refused(_))) => {}
        other => return Err(format!("the newer snapshot: {other:?}")),
    }
    let status = match execute(svm, &mut pals, handle, &[Command::Status])?.pop() {
        Some(Outcome::Status(status)) => status,
        other => return Err(format!("status: {other:?}")),
    };
    if status.committed != 2 || status.needs_state.is_some() || status.digest.as_bytes() != digest {
        return Err(format!("after the newer snapshot: {status:?}"));
    }
    Ok(())
}
