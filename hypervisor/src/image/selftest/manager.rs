//! V-PR under the hypervisor: three registrations of the PAL image run the Manager (the code
//! the simulation backend runs in-process) as replicas 0, 1 and 2 of one group, and the test
//! plays their untrusted hosts and a client, carrying every message between them as encoded
//! `tcc::Call`s and `tcc::Effect`s through `execute` (thesis Fig 5.3 and 5.4).
//!
//! Each replica's PAL is registered in a registry of its own, as on a machine of its own:
//! trusted counters belong to a PAL identity on one TCC, and three replicas of the same image
//! on one TCC would share them. The boot's attestation key certifies all three.

use super::pal::tcc_key;
use super::sql::{execute, image, register};
use super::TestResult;
use crate::cpu;
use crate::pal::Pals;
use crate::svm::Svm;
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
            Some(Outcome::Effects(effects)) => Ok(effects),
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
    let blinder = one(&effects, "Release", |e| match e {
        Effect::Release { seq, blinder } if *seq == update.seq => Some(*blinder),
        _ => None,
    })?;
    let commit = one(&effects, "Commit", |e| match e {
        Effect::Commit(c) => Some(c.clone()),
        _ => None,
    })?;
    crypto::xor(&mut reply.tag, &blinder);
    g.call(0, Call::Ack(acks.remove(0)))?;
    for r in [1, 2] {
        g.call(r, Call::Commit(commit.clone()))?;
    }
    Ok(reply)
}

/// Initialization (Join, Accept, AckInit), a client's attested key exchange, a write and a
/// linearizable read replicated through update, Acks and commit with the reply blinded until
/// then; a tampered update and a forged request refused; all three database files equal.
pub fn manager_group_under_the_hypervisor(svm: &Svm) -> TestResult {
    let mut pals = [Pals::new(svm), Pals::new(svm), Pals::new(svm)];
    let manufacturer = tcc_key(svm, &mut pals[0])?;
    let mut handles = [0; 3];
    for (h, p) in handles.iter_mut().zip(pals.iter_mut()) {
        *h = register(svm, p)?.0;
    }
    let mut g = Group3 { svm, pals, handles };
    let identity = Digest::of(image()?);
    for me in 0..3u16 {
        let group = Group {
            replicas: 3,
            me,
            manufacturer,
            allow_simulated: true,
            cluster: [0x76; 32],
            max_in_flight: 4,
            page_size: None,
            max_sql_bytes: 1 << 20,
            max_vm_steps: Some(1 << 32),
        };
        let outcome = execute(
            svm,
            &mut g.pals[usize::from(me)],
            handles[usize::from(me)],
            &[Command::Start { group }],
        )?;
        if !matches!(outcome.first(), Some(Outcome::Status(_))) {
            return Err(format!("start {me}: {outcome:?}"));
        }
    }
    // Initialization (Fig 5.3).
    let mut joins = Vec::new();
    for r in [1, 2] {
        let effects = g.call(r, Call::Join)?;
        joins.push(one(&effects, "Join", |e| match e {
            Effect::Join(j) => Some(j.clone()),
            _ => None,
        })?);
    }
    let effects = g.call(0, Call::Joins { joins, require_all: true })?;
    let accept = one(&effects, "Accept", |e| match e {
        Effect::Accept(a) => Some(a.clone()),
        _ => None,
    })?;
    let mut ack_inits = Vec::new();
    for r in [1, 2] {
        let effects = g.call(r, Call::Accept(Box::new(accept.clone())))?;
        ack_inits.push(one(&effects, "AckInit", |e| match e {
            Effect::AckInit(a) => Some(a.clone()),
            _ => None,
        })?);
    }
    for ack in ack_inits {
        g.call(0, Call::AckInit(ack))?;
    }
    for r in 0..3 {
        if !g.status(r)?.ready {
            return Err(format!("replica {r} is not in the group"));
        }
    }
    // A client's key exchange with the primary, checked against the TCC key and the image.
    let pending = Pending::new(&mut Rdrand);
    let effects = g.call(0, Call::Hello(Box::new(pending.hello().clone())))?;
    let welcome = one(&effects, "Welcome", |e| match e {
        Effect::Welcome(w) => Some(w.clone()),
        _ => None,
    })?;
    let trust = Trust { manufacturer, identity, allow_simulated: true };
    let mut session = pending.finish(&welcome, &trust).map_err(|e| format!("welcome: {e}"))?;
    let strict = Trust { allow_simulated: false, ..trust };
    if pending.finish(&welcome, &strict).is_ok() {
        return Err(String::from("simulated evidence accepted without allow_simulated"));
    }
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
    if first.0 != 3 || !backups_agree {
        return Err(format!("statuses differ: {statuses:?}"));
    }
    log::info!("hv: V-PR group of 3 PALs: committed {} updates, database {}", first.0, first.1);
    Ok(())
}
