use super::*;

fn write(client: usize, key: u64, value: u64, called: u64, returned: Option<u64>) -> Event {
    Event { client, op: Op::Write { key, value }, called, returned }
}

fn read(client: usize, key: u64, seen: Option<u64>, called: u64, returned: u64) -> Event {
    Event { client, op: Op::Read { key, seen }, called, returned: Some(returned) }
}

fn violation(history: &[Event]) -> Violation {
    match check(history) {
        Err(CheckError::NotLinearizable(violation)) => violation,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn sequential_read_after_write_is_linearizable() {
    let mut history = History::new();
    let id = history.invoke(0, Op::Read { key: 1, seen: None }, 0);
    history.complete_read(id, 5, None);
    let id = history.invoke(0, Op::Write { key: 1, value: 5 }, 10);
    history.complete(id, 20);
    let id = history.invoke(1, Op::Read { key: 1, seen: None }, 30);
    history.complete_read(id, 40, Some(5));
    let stats = history.check().unwrap();
    assert_eq!(stats, Stats { keys: 1, events: 3, ignored: 0, states: stats.states });
    assert!(stats.states >= 3);
}

#[test]
fn stale_read_after_completed_write_is_rejected() {
    let history =
        [write(0, 1, 5, 0, Some(10)), write(0, 1, 6, 20, Some(30)), read(1, 1, Some(5), 40, 50)];
    let found = violation(&history);
    assert_eq!(found.key, 1);
    assert_eq!(found.placed.len(), 2);
    assert_eq!(found.value, Some(6));
    assert_eq!(found.stuck, [(2, history[2])]);
    let text = found.to_string();
    assert!(text.contains("#2 client 1: read -> 5 [40, 50]"), "{text}");
    assert!(text.contains("#1 client 0: write 6 [20, 30]"), "{text}");
}

#[test]
fn concurrent_read_may_see_old_or_new_value() {
    for seen in [1, 2] {
        let history = [
            write(0, 1, 1, 0, Some(10)),
            write(0, 1, 2, 20, Some(40)),
            read(1, 1, Some(seen), 25, 35),
        ];
        check(&history).unwrap();
    }
    // Intervals that merely touch overlap.
    check(&[write(0, 1, 1, 0, Some(10)), read(1, 1, None, 10, 20)]).unwrap();
}

#[test]
fn read_of_value_never_written_is_rejected() {
    let history = [write(0, 1, 1, 0, Some(10)), read(1, 1, Some(9), 5, 15)];
    let found = violation(&history);
    assert_eq!(found.placed, [(0, history[0])]);
    assert_eq!(found.stuck, [(1, history[1])]);
}

#[test]
fn flicker_between_clients_is_rejected() {
    let mut history = vec![
        write(0, 1, 1, 0, Some(10)),
        write(0, 1, 2, 20, Some(100)),
        read(1, 1, Some(2), 30, 40),
        read(2, 1, Some(2), 50, 60),
    ];
    check(&history).unwrap();
    history[3] = read(2, 1, Some(1), 50, 60);
    assert_eq!(violation(&history).stuck, [(3, history[3])]);
    // The same reads overlapping each other are fine.
    history[3] = read(2, 1, Some(1), 35, 60);
    check(&history).unwrap();
}

#[test]
fn unanswered_write_seen_later_is_linearizable() {
    let mut history = vec![
        write(0, 1, 7, 0, None),
        read(1, 1, None, 10, 20),
        read(1, 1, Some(7), 100, 110),
        read(2, 1, Some(7), 120, 130),
    ];
    check(&history).unwrap();
    // Once seen, it cannot be unseen.
    history.push(read(2, 1, None, 140, 150));
    violation(&history);
}

#[test]
fn unanswered_write_nobody_sees_is_linearizable() {
    let history = [
        write(0, 1, 3, 0, Some(5)),
        write(0, 1, 7, 10, None),
        read(1, 1, Some(3), 100, 110),
        read(2, 1, Some(3), 120, 130),
    ];
    assert_eq!(check(&history).unwrap().ignored, 1);
    // An answered write must take effect.
    let mut answered = history;
    answered[1].returned = Some(20);
    violation(&answered);
}

#[test]
fn independent_keys_do_not_interfere() {
    let history = [
        write(0, 1, 1, 0, Some(10)),
        read(1, 2, None, 20, 30),
        write(1, 2, 2, 40, Some(50)),
        read(0, 1, Some(1), 60, 70),
        read(0, u64::MAX, None, 80, 90),
    ];
    assert_eq!(check(&history).unwrap().keys, 3);
}

#[test]
fn violation_names_its_key() {
    let history = [
        write(0, 1, 1, 0, Some(10)),
        read(1, 1, Some(1), 20, 30),
        write(0, 9, 4, 0, Some(10)),
        read(1, 9, None, 20, 30),
    ];
    let found = violation(&history);
    assert_eq!(found.key, 9);
    assert_eq!(found.stuck, [(3, history[3])]);
    assert!(found.to_string().starts_with("key 9 is not linearizable"));
}

#[test]
fn reversed_interval_is_an_error() {
    let history = [write(0, 1, 1, 0, Some(10)), read(1, 1, None, 30, 20)];
    assert_eq!(check(&history), Err(CheckError::InvalidEvent { index: 1, event: history[1] }));
}

#[test]
fn effort_limit_is_reported() {
    // Ten concurrent writes then a read of a value none wrote: every order is tried, but the memo
    // folds the orders into (set written, last value) pairs: 10 * 2^9 of them.
    let mut history: Vec<Event> = (0..10).map(|v| write(v, 1, v as u64, 0, Some(100))).collect();
    history.push(read(10, 1, Some(99), 200, 210));
    assert!(matches!(check_with_limit(&history, 5120), Err(CheckError::NotLinearizable(_))));
    assert_eq!(
        check_with_limit(&history, 100),
        Err(CheckError::LimitExceeded { key: 1, limit: 100 })
    );
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % bound
    }
}

/// A history linearizable by construction: each client issues operations one at a time, each
/// taking effect at a random instant within its interval, in the order of those instants. Every
/// write stores a fresh value; one in fifty goes unanswered and takes effect or not.
fn generated(seed: u64, clients: usize, per_client: usize, keys: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    // (instant of effect, takes effect, event)
    let mut timed = Vec::new();
    for client in 0..clients {
        let mut now = rng.below(20);
        for _ in 0..per_client {
            let key = rng.below(keys);
            let called = now;
            let effect = called + rng.below(30);
            let returned = effect + rng.below(30);
            now = returned + 1 + rng.below(10);
            let (op, returned, effective) = if rng.below(2) == 0 {
                (Op::Read { key, seen: None }, Some(returned), true)
            } else if rng.below(50) == 0 {
                (Op::Write { key, value: 0 }, None, rng.below(2) == 0)
            } else {
                (Op::Write { key, value: 0 }, Some(returned), true)
            };
            timed.push((effect, effective, Event { client, op, called, returned }));
        }
    }
    timed.sort_by_key(|&(effect, _, event)| (effect, event.client));
    let mut registers = HashMap::new();
    let mut fresh = 0;
    for (_, effective, event) in &mut timed {
        match &mut event.op {
            Op::Write { key, value } => {
                fresh += 1;
                *value = fresh;
                if *effective {
                    registers.insert(*key, fresh);
                }
            }
            Op::Read { key, seen } => *seen = registers.get(key).copied(),
        }
    }
    let mut history: Vec<Event> = timed.into_iter().map(|(_, _, event)| event).collect();
    history.sort_by_key(|event| (event.called, event.client));
    history
}

#[test]
fn generated_history_is_linearizable() {
    for seed in 0..3 {
        let history = generated(seed, 8, 250, 20);
        let stats = check(&history).unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        assert_eq!(stats.events + stats.ignored, 2000);
        assert_eq!(stats.keys, 20);
    }
}

#[test]
fn generated_history_with_stale_read_is_rejected() {
    let mut history = generated(1, 8, 250, 20);
    // A read made to see a write that an answered write overwrote before the read began. Values
    // are fresh, so nothing else wrote it.
    let answered = |event: &Event, before: u64| {
        matches!(event.op, Op::Write { .. }) && event.returned.is_some_and(|t| t < before)
    };
    let (index, stale) = history
        .iter()
        .enumerate()
        .find_map(|(index, event)| {
            let Op::Read { key, .. } = event.op else { return None };
            let on_key = |w: &&Event| w.op.key() == key;
            let newer = history
                .iter()
                .filter(on_key)
                .filter(|w| answered(w, event.called))
                .max_by_key(|w| w.called)?;
            let older = history.iter().filter(on_key).find(|w| answered(w, newer.called))?;
            let Op::Write { value, .. } = older.op else { return None };
            Some((index, Op::Read { key, seen: Some(value) }))
        })
        .unwrap();
    history[index].op = stale;
    let found = violation(&history);
    assert_eq!(found.key, stale.key());
    assert!(found.stuck.iter().any(|&(i, _)| i == index), "{found}");
}
