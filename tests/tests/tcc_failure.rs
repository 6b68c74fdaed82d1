//! A trusted-counter increment that fails (as a TPM NV write can: the host's swtpm answers an
//! error, or a hardware TPM answers TPM_RC_NV_RATE) after the Manager popped and applied a
//! held update. Had the Manager answered `Refused` and gone on, it would have forgotten an
//! update it acknowledged — amnesia without the restart that makes its account count only
//! from what it committed (`counts_from`) — and a committed update would be lost at the next
//! view change (docs/safety.md). The Manager stops instead: the TCC fails only by crashing.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use rand_core::OsRng;
use vpr_pal::{Call, Counter, Effect, GroupConfig, Manager, ServiceOptions, Tcc, TccError};
use vpr_proto::client::{Pending, Trust};
use vpr_proto::crypto::{self, Key, KeyPair, Signature};
use vpr_proto::digest::Digest;
use vpr_proto::msg::{Attestation, Commit, Update};

/// An in-memory TCC whose next `fail` increments fail (nothing changes), as a TPM write that
/// the TPM refused.
#[derive(Clone)]
struct FlakyTcc {
    counters: Rc<RefCell<[u64; 4]>>,
    fail: Rc<Cell<u32>>,
    key: KeyPair,
    certificate: Signature,
    sealing: Key,
}

fn slot(c: Counter) -> usize {
    match c {
        Counter::View => 0,
        Counter::State => 1,
        Counter::Incarnation => 2,
        Counter::Log => 3,
    }
}

fn identity() -> Digest {
    crypto::hash(&[b"review pal"])
}

impl Tcc for FlakyTcc {
    fn identity(&self) -> Digest {
        identity()
    }
    fn random(&mut self, buf: &mut [u8]) {
        rand_core::RngCore::fill_bytes(&mut OsRng, buf);
    }
    fn attest(&mut self, data: &Digest) -> Attestation {
        Attestation::make(&self.key, self.certificate, true, identity(), *data)
    }
    fn counter(&mut self, c: Counter) -> Result<u64, TccError> {
        Ok(self.counters.borrow()[slot(c)])
    }
    fn increment(&mut self, c: Counter) -> Result<u64, TccError> {
        if self.fail.get() > 0 {
            self.fail.set(self.fail.get() - 1);
            return Err(TccError("incrementing: Unavailable (TPM NV write failed)".into()));
        }
        let mut counters = self.counters.borrow_mut();
        counters[slot(c)] += 1;
        Ok(counters[slot(c)])
    }
    fn seal(&mut self, data: &[u8]) -> Result<Vec<u8>, TccError> {
        Ok(crypto::aead_seal(&self.sealing, [0; 12], b"review", data))
    }
    fn unseal(&mut self, blob: &[u8]) -> Result<Vec<u8>, TccError> {
        crypto::aead_open(&self.sealing, b"review", blob).ok_or_else(|| TccError("no".into()))
    }
}

fn pick<T>(effects: &[Effect], f: impl Fn(&Effect) -> Option<T>) -> Vec<T> {
    effects.iter().filter_map(f).collect()
}

/// The head of view 1's NewView, and the update the old primary committed (seq 1), when
/// replica 1's counter write on the Commit fails (`fault`) or not.
fn view_one_head(fault: bool) -> (Option<u64>, u64) {
    let manufacturer = KeyPair::generate(&mut OsRng);
    let tccs: Vec<FlakyTcc> = (0..3)
        .map(|_| {
            let key = KeyPair::generate(&mut OsRng);
            let certificate =
                manufacturer.sign(&Attestation::certificate_bytes(true, &key.public()));
            FlakyTcc {
                counters: Rc::new(RefCell::new([0; 4])),
                fail: Rc::new(Cell::new(0)),
                key,
                certificate,
                sealing: [9; 32],
            }
        })
        .collect();
    let members: Vec<_> = tccs.iter().map(|t| t.key.public()).collect();
    let group = |me| GroupConfig {
        replicas: 3,
        me,
        manufacturer: manufacturer.public(),
        allow_simulated: true,
        cluster: [7; 32],
        max_in_flight: 8,
        service: ServiceOptions::default(),
        members: members.clone(),
        durable: false,
    };
    let mut m: Vec<Manager<FlakyTcc>> =
        (0..3u16).map(|r| Manager::new(tccs[usize::from(r)].clone(), group(r)).unwrap()).collect();

    // Initialization (Fig 5.3).
    let joins: Vec<_> = (1..3)
        .flat_map(|i| {
            pick(&m[i].handle(Call::Join), |e| match e {
                Effect::Join(j) => Some(j.clone()),
                _ => None,
            })
        })
        .collect();
    let accept = pick(&m[0].handle(Call::Joins { joins, require_all: true }), |e| match e {
        Effect::Accept(a) => Some(a.clone()),
        _ => None,
    })
    .remove(0);
    for i in 1..3 {
        for e in m[i].handle(Call::Accept(Box::new(accept.clone()))) {
            if let Effect::AckInit(ack) = e {
                m[0].handle(Call::AckInit(ack));
            }
        }
    }
    assert!(m.iter().all(Manager::is_ready));

    // A client.
    let pending = Pending::new(&mut OsRng);
    let welcome = pick(&m[0].handle(Call::Hello(Box::new(pending.hello().clone()))), |e| match e {
        Effect::Welcome(w) => Some(w.clone()),
        _ => None,
    })
    .remove(0);
    let trust = Trust {
        config: group(0).digest(&identity()),
        manufacturer: manufacturer.public(),
        identity: identity(),
        allow_simulated: true,
    };
    let mut session = pending.finish(&welcome, &trust).unwrap();

    // Update 1: the adversary's network delivers it to replica 1 only; replica 1 acks; the
    // primary commits it (f = 1 Ack) and releases the client's reply.
    let request = session.request("CREATE TABLE t(v TEXT)".into(), vec![]);
    let effects = m[0].handle(Call::Requests(vec![request]));
    let update: Update = pick(&effects, |e| match e {
        Effect::Update(u) => Some(u.clone()),
        _ => None,
    })
    .remove(0);
    let acks = pick(&m[1].handle(Call::Update(update.clone())), |e| match e {
        Effect::Ack(a) => Some(a.clone()),
        _ => None,
    });
    let effects = m[0].handle(Call::Ack(acks[0].clone()));
    assert_eq!(m[0].committed(), update.seq, "the primary committed it: the client has its reply");
    assert!(effects.iter().any(|e| matches!(e, Effect::Release { .. })));
    let commit: Commit = pick(&effects, |e| match e {
        Effect::Commit(c) => Some(c.clone()),
        _ => None,
    })
    .remove(0);

    // Replica 1's host makes its next counter write fail (swtpm answers an error).
    tccs[1].fail.set(u32::from(fault));
    let answer = m[1].handle(Call::Commit(commit));
    if fault {
        assert!(answer.iter().all(|e| matches!(e, Effect::Refused(_))), "{answer:?}");
        assert_eq!(m[1].committed(), 0);
        assert!(m[1].is_stopped(), "the Manager goes on after its TCC failed");
        assert!(m[1].wire_status().stopped, "its status does not say it stopped");
        // Every later call is refused, saying why.
        let later = m[1].handle(Call::Heartbeat);
        assert!(
            matches!(&later[..], [Effect::Refused(r)] if r.starts_with("this Manager stopped")),
            "{later:?}"
        );
    } else {
        assert_eq!(m[1].committed(), update.seq);
    }

    // The adversary partitions the old primary away. Replicas 1 and 2 move to view 1 (primary:
    // replica 1) and the new primary gathers their ViewChanges (f + 1 = 2).
    let mut probes = Vec::new();
    for manager in &mut m[1..3] {
        probes.extend(pick(&manager.handle(Call::Suspect), |e| match e {
            Effect::Probe(p) => Some(p.clone()),
            _ => None,
        }));
    }
    let mut vcs = Vec::new();
    for manager in &mut m[1..3] {
        vcs.extend(pick(&manager.handle(Call::Probes(probes.clone())), |e| match e {
            Effect::ViewChange(v) => Some(v.clone()),
            _ => None,
        }));
    }
    let effects = m[1].handle(Call::ViewChanges(vcs));
    let new_view = pick(&effects, |e| match e {
        Effect::NewView(nv) => Some(nv.clone()),
        _ => None,
    });

    (new_view.first().map(|nv| nv.head()), update.seq)
}

#[test]
fn without_the_fault_view_one_carries_the_committed_update() {
    let (head, committed) = view_one_head(false);
    assert!(head.is_some_and(|h| h >= committed));
}

/// The committed update (whose reply the client accepted) is in every later view: the
/// Manager whose counter failed stops, so no view 1 forms without it (before the fix, view 1
/// started at #0 without committed update #1).
#[test]
fn a_failed_state_increment_does_not_lose_a_committed_update() {
    let (head, committed) = view_one_head(true);
    assert!(
        head.is_none_or(|h| h >= committed),
        "view 1 starts at #{head:?} without committed update #{committed}"
    );
}
