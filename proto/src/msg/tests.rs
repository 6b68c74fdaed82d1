//! Tests of the message encoding.
use super::*;
use crate::crypto;
use crate::update::{page_len, pages_in_file, PageWrite, MAX_UPDATE_BYTES};
use crate::wire::{DecodeError, Writer};
use core::fmt::Debug;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------------
// Equality that compares reals by their bits (NaN payloads, -0.0).

trait BitEq {
    fn bit_eq(&self, other: &Self) -> bool;
}

impl BitEq for Value {
    fn bit_eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits(),
            _ => self == other,
        }
    }
}

impl<T: BitEq> BitEq for Vec<T> {
    fn bit_eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a.bit_eq(b))
    }
}

impl BitEq for StatementResult {
    fn bit_eq(&self, o: &Self) -> bool {
        self.columns == o.columns && self.rows.bit_eq(&o.rows) && self.changes == o.changes
    }
}

impl BitEq for Outcome {
    fn bit_eq(&self, o: &Self) -> bool {
        self.results.bit_eq(&o.results) && self.error == o.error
    }
}

impl BitEq for Request {
    fn bit_eq(&self, o: &Self) -> bool {
        (self.client, self.seq, self.level, &self.sql, self.tag)
            == (o.client, o.seq, o.level, &o.sql, o.tag)
            && self.params.bit_eq(&o.params)
    }
}

impl BitEq for Reply {
    fn bit_eq(&self, o: &Self) -> bool {
        (self.client, self.seq, self.request, self.view, self.state, self.tag)
            == (o.client, o.seq, o.request, o.view, o.state, o.tag)
            && self.outcome.bit_eq(&o.outcome)
    }
}

impl BitEq for Message {
    fn bit_eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Message::Request(a), Message::Request(b)) => a.bit_eq(b),
            (Message::Reply(a), Message::Reply(b)) => a.bit_eq(b),
            _ => self == other,
        }
    }
}

macro_rules! bit_eq_is_eq {
    ($($t:ty),*) => { $(impl BitEq for $t { fn bit_eq(&self, o: &Self) -> bool { self == o } })* };
}
bit_eq_is_eq!(
    SqlError,
    Attestation,
    ClientHello,
    Welcome,
    Join,
    KeyGrant,
    Accept,
    AckInit,
    Entry,
    Update,
    Ack,
    Commit
);

// ---------------------------------------------------------------------------------------------
// Strategies.

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..8)
}

fn text() -> impl Strategy<Value = String> {
    ".{0,6}"
}

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest)
}

fn real() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::from_bits(0x7ff0_0000_0000_0001)), // signalling NaN
        Just(-0.0),
        Just(0.0),
        Just(f64::NEG_INFINITY),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::Integer),
        real().prop_map(Value::Real),
        bytes().prop_map(Value::Text),
        bytes().prop_map(Value::Blob),
    ]
}

fn statement_result() -> impl Strategy<Value = StatementResult> {
    (vec(text(), 0..3), vec(vec(value(), 0..3), 0..3), any::<u64>())
        .prop_map(|(columns, rows, changes)| StatementResult { columns, rows, changes })
}

fn sql_error() -> impl Strategy<Value = SqlError> {
    (any::<i32>(), text()).prop_map(|(code, message)| SqlError { code, message })
}

fn outcome() -> impl Strategy<Value = Outcome> {
    (vec(statement_result(), 0..3), option::of(sql_error()))
        .prop_map(|(results, error)| Outcome { results, error })
}

fn request() -> impl Strategy<Value = Request> {
    (any::<[u8; 16]>(), any::<u64>(), any::<bool>(), text(), vec(value(), 0..4), any::<[u8; 32]>())
        .prop_map(|(client, seq, fast, sql, params, tag)| Request {
            client,
            seq,
            level: if fast { ReadLevel::Primary } else { ReadLevel::Linearizable },
            sql,
            params,
            tag,
        })
}

fn reply() -> impl Strategy<Value = Reply> {
    (any::<[u8; 16]>(), any::<[u64; 3]>(), digest(), outcome(), any::<[u8; 32]>()).prop_map(
        |(client, [seq, view, state], request, outcome, tag)| Reply {
            client,
            seq,
            request,
            view,
            state,
            outcome,
            tag,
        },
    )
}

fn attestation() -> impl Strategy<Value = Attestation> {
    (any::<bool>(), digest(), digest(), any::<[u8; 65]>(), any::<[u8; 64]>(), any::<[u8; 64]>())
        .prop_map(|(simulated, identity, data, tcc_key, certificate, signature)| Attestation {
            simulated,
            identity,
            data,
            tcc_key,
            certificate,
            signature,
        })
}

fn client_hello() -> impl Strategy<Value = ClientHello> {
    (any::<[u8; 65]>(), any::<[u8; 32]>())
        .prop_map(|(public_key, nonce)| ClientHello { public_key, nonce })
}

fn welcome() -> impl Strategy<Value = Welcome> {
    let fields = (any::<[u8; 16]>(), digest(), any::<u64>(), any::<[u8; 65]>(), any::<[u8; 48]>());
    (fields, attestation()).prop_map(
        |((client, config, view, ephemeral, sealed_key), attestation)| Welcome {
            client,
            config,
            view,
            ephemeral,
            sealed_key,
            attestation,
        },
    )
}

fn join() -> impl Strategy<Value = Join> {
    (any::<u16>(), any::<[u8; 65]>(), attestation())
        .prop_map(|(replica, public_key, attestation)| Join { replica, public_key, attestation })
}

fn key_grant() -> impl Strategy<Value = KeyGrant> {
    (any::<u16>(), any::<[u8; 48]>())
        .prop_map(|(replica, sealed_key)| KeyGrant { replica, sealed_key })
}

fn accept() -> impl Strategy<Value = Accept> {
    (digest(), digest(), any::<[u8; 65]>(), vec(key_grant(), 0..3), attestation()).prop_map(
        |(config, genesis, ephemeral, grants, attestation)| Accept {
            config,
            genesis,
            ephemeral,
            grants,
            attestation,
        },
    )
}

fn ack_init() -> impl Strategy<Value = AckInit> {
    (any::<u16>(), digest(), any::<[u8; 32]>()).prop_map(|(replica, accept, tag)| AckInit {
        replica,
        accept,
        tag,
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    (any::<[u8; 16]>(), any::<u64>(), digest()).prop_map(|(client, seq, request)| Entry {
        client,
        seq,
        request,
    })
}

/// A valid state update: 512-byte pages, a file of up to 4 pages, any subset of them.
fn state_update() -> impl Strategy<Value = StateUpdate> {
    (0u64..=2048, any::<u8>(), any::<u8>()).prop_map(|(file_size, mask, fill)| {
        let n = u32::try_from(pages_in_file(512, file_size)).unwrap();
        let pages = (0..n)
            .filter(|i| mask >> i & 1 == 1)
            .map(|index| {
                let len = page_len(512, file_size, index).unwrap();
                PageWrite { index, data: vec![fill ^ u8::try_from(index).unwrap(); len] }
            })
            .collect();
        StateUpdate { page_size: 512, file_size, pages }
    })
}

fn update() -> impl Strategy<Value = Update> {
    (any::<[u64; 2]>(), digest(), vec(entry(), 0..3), state_update(), any::<[u8; 32]>()).prop_map(
        |([view, seq], prev, entries, state, tag)| Update { view, seq, prev, entries, state, tag },
    )
}

fn ack() -> impl Strategy<Value = Ack> {
    (any::<u16>(), any::<[u64; 2]>(), digest(), any::<[u8; 32]>())
        .prop_map(|(replica, [view, seq], chain, tag)| Ack { replica, view, seq, chain, tag })
}

fn commit() -> impl Strategy<Value = Commit> {
    (any::<[u64; 2]>(), digest(), any::<[u8; 32]>()).prop_map(|([view, seq], chain, tag)| Commit {
        view,
        seq,
        chain,
        tag,
    })
}

fn status_request() -> impl Strategy<Value = StatusRequest> {
    (any::<[u8; 16]>(), any::<[u8; 32]>(), any::<[u8; 32]>())
        .prop_map(|(client, nonce, tag)| StatusRequest { client, nonce, tag })
}

fn status_report() -> impl Strategy<Value = StatusReport> {
    (any::<[u16; 2]>(), any::<[u64; 2]>(), digest(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(
        |([replica, primary], [view, committed], digest, nonce, tag)| StatusReport {
            replica,
            view,
            primary,
            committed,
            digest,
            nonce,
            tag,
        },
    )
}

fn probe() -> impl Strategy<Value = Probe> {
    (any::<u16>(), any::<u64>(), any::<[u8; 32]>()).prop_map(|(replica, view, tag)| Probe {
        replica,
        view,
        tag,
    })
}

fn view_change() -> impl Strategy<Value = ViewChange> {
    let held = (any::<u64>(), update()).prop_map(|(accepted, update)| Held { accepted, update });
    (any::<u16>(), any::<[u64; 2]>(), digest(), vec(held, 0..3), any::<[u8; 32]>()).prop_map(
        |(replica, [view, committed], committed_chain, held, tag)| ViewChange {
            replica,
            view,
            committed,
            committed_chain,
            held,
            tag,
        },
    )
}

fn new_view() -> impl Strategy<Value = NewView> {
    (any::<[u64; 3]>(), digest(), vec(digest(), 0..4), any::<[u8; 32]>()).prop_map(
        |([view, base, first], base_chain, chains, tag)| NewView {
            view,
            base,
            base_chain,
            first,
            chains,
            tag,
        },
    )
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (any::<u16>(), any::<[u64; 2]>(), digest(), state_update(), any::<[u8; 32]>()).prop_map(
        |(replica, [view, seq], chain, state, tag)| Snapshot {
            replica,
            view,
            seq,
            chain,
            state,
            tag,
        },
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        request().prop_map(Message::Request),
        reply().prop_map(Message::Reply),
        client_hello().prop_map(Message::ClientHello),
        welcome().prop_map(Message::Welcome),
        join().prop_map(Message::Join),
        accept().prop_map(Message::Accept),
        ack_init().prop_map(Message::AckInit),
        update().prop_map(Message::Update),
        ack().prop_map(Message::Ack),
        commit().prop_map(Message::Commit),
        status_request().prop_map(Message::StatusRequest),
        status_report().prop_map(Message::StatusReport),
        probe().prop_map(Message::Probe),
        view_change().prop_map(Message::ViewChange),
        new_view().prop_map(Message::NewView),
        (any::<u16>(), any::<u64>()).prop_map(|(replica, at_least)| Message::StateRequest(
            StateRequest { replica, at_least }
        )),
        snapshot().prop_map(Message::Snapshot),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers and fixed examples.

/// decode(encode(x)) == x, and the decoded value re-encodes to the same bytes.
fn roundtrip<T: Wire + BitEq + Debug>(x: &T) -> Result<(), TestCaseError> {
    let bytes = x.to_bytes();
    let back = T::from_bytes(&bytes);
    prop_assert!(back.is_ok(), "{x:?} did not decode: {back:?}");
    let back = back.unwrap();
    prop_assert!(back.bit_eq(x), "{x:?} decoded as {back:?}");
    prop_assert_eq!(back.to_bytes(), bytes);
    Ok(())
}

/// If `bytes` decodes as a message, it is the canonical encoding of that message.
fn canonical_if_accepted(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(m) = Message::decode(bytes) {
        prop_assert_eq!(m.encode(), bytes);
    }
    Ok(())
}

fn attestation_example() -> Attestation {
    Attestation {
        simulated: true,
        identity: Digest([1; 32]),
        data: Digest([2; 32]),
        tcc_key: [3; 65],
        certificate: [4; 64],
        signature: [5; 64],
    }
}

fn update_example() -> Update {
    Update {
        view: 3,
        seq: 7,
        prev: Digest([9; 32]),
        entries: vec![Entry { client: [1; 16], seq: 2, request: Digest([3; 32]) }],
        state: StateUpdate {
            page_size: 512,
            file_size: 1000,
            pages: vec![PageWrite { index: 1, data: vec![0x5a; 488] }],
        },
        tag: [4; 32],
    }
}

fn reply_example() -> Reply {
    Reply {
        client: [7; 16],
        seq: 5,
        request: Digest([0x5e; 32]),
        view: 1,
        state: 9,
        outcome: Outcome {
            results: vec![StatementResult {
                columns: vec!["a".into(), "b".into()],
                rows: vec![vec![Value::Integer(-1), Value::Real(f64::NAN)]],
                changes: 0,
            }],
            error: Some(SqlError { code: 19, message: "constraint failed".into() }),
        },
        tag: [8; 32],
    }
}

fn examples() -> Vec<Message> {
    let att = attestation_example();
    vec![
        Message::Request(Request {
            client: [1; 16],
            seq: 1,
            level: ReadLevel::Primary,
            sql: "SELECT ?".into(),
            params: vec![Value::Text(b"x".to_vec()), Value::Null],
            tag: [2; 32],
        }),
        Message::Reply(reply_example()),
        Message::ClientHello(ClientHello { public_key: [4; 65], nonce: [5; 32] }),
        Message::Welcome(Welcome {
            client: [1; 16],
            config: Digest([9; 32]),
            view: 0,
            ephemeral: [6; 65],
            sealed_key: [7; 48],
            attestation: att.clone(),
        }),
        Message::Join(Join { replica: 2, public_key: [8; 65], attestation: att.clone() }),
        Message::Accept(Accept {
            config: Digest([1; 32]),
            genesis: Digest([2; 32]),
            ephemeral: [3; 65],
            grants: vec![KeyGrant { replica: 1, sealed_key: [4; 48] }],
            attestation: att,
        }),
        Message::AckInit(AckInit { replica: 1, accept: Digest([5; 32]), tag: [6; 32] }),
        Message::Update(update_example()),
        Message::Ack(Ack { replica: 1, view: 2, seq: 3, chain: Digest([4; 32]), tag: [5; 32] }),
        Message::Commit(Commit { view: 2, seq: 3, chain: Digest([4; 32]), tag: [5; 32] }),
    ]
}

fn header(kind: u8) -> Vec<u8> {
    let mut v = b"VPRM".to_vec();
    v.extend_from_slice(&[1, kind, 0, 0]);
    v
}

fn le32(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap().to_le_bytes()
}

/// An encoded request with these raw SQL bytes and `params` Null parameters.
fn raw_request(sql: &[u8], params: usize) -> Vec<u8> {
    let mut v = vec![1; 16];
    v.extend_from_slice(&5u64.to_le_bytes());
    v.push(0); // level: linearizable
    v.extend_from_slice(&le32(sql.len()));
    v.extend_from_slice(sql);
    v.extend_from_slice(&le32(params));
    v.resize(v.len() + params, 0);
    v.extend_from_slice(&[2; 32]);
    v
}

fn too_large(field: &'static str, value: usize, max: usize) -> DecodeError {
    DecodeError::TooLarge {
        field,
        value: u64::try_from(value).unwrap(),
        max: u64::try_from(max).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #[test]
    fn values_roundtrip(x in value()) { roundtrip(&x)?; }

    #[test]
    fn statement_results_roundtrip(x in statement_result()) { roundtrip(&x)?; }

    #[test]
    fn sql_errors_roundtrip(x in sql_error()) { roundtrip(&x)?; }

    #[test]
    fn outcomes_roundtrip(x in outcome()) { roundtrip(&x)?; }

    #[test]
    fn requests_roundtrip(x in request()) { roundtrip(&x)?; }

    #[test]
    fn replies_roundtrip(x in reply()) { roundtrip(&x)?; }

    #[test]
    fn attestations_roundtrip(x in attestation()) { roundtrip(&x)?; }

    #[test]
    fn client_hellos_roundtrip(x in client_hello()) { roundtrip(&x)?; }

    #[test]
    fn welcomes_roundtrip(x in welcome()) { roundtrip(&x)?; }

    #[test]
    fn joins_roundtrip(x in join()) { roundtrip(&x)?; }

    #[test]
    fn key_grants_roundtrip(x in key_grant()) { roundtrip(&x)?; }

    #[test]
    fn accepts_roundtrip(x in accept()) { roundtrip(&x)?; }

    #[test]
    fn ack_inits_roundtrip(x in ack_init()) { roundtrip(&x)?; }

    #[test]
    fn entries_roundtrip(x in entry()) { roundtrip(&x)?; }

    #[test]
    fn updates_roundtrip(x in update()) { roundtrip(&x)?; }

    #[test]
    fn acks_roundtrip(x in ack()) { roundtrip(&x)?; }

    #[test]
    fn commits_roundtrip(x in commit()) { roundtrip(&x)?; }

    #[test]
    fn messages_roundtrip(m in message()) {
        roundtrip(&m)?;
        let bytes = m.encode();
        prop_assert_eq!(&bytes[..8], &header(m.kind())[..]);
        let back = Message::decode(&bytes).unwrap();
        prop_assert!(back.bit_eq(&m));
    }

    #[test]
    fn strict_prefixes_and_extensions_fail(m in message(), extra in 1usize..4) {
        let mut bytes = m.encode();
        for len in 0..bytes.len() {
            prop_assert!(Message::decode(&bytes[..len]).is_err(), "prefix of {len} accepted");
        }
        bytes.resize(bytes.len() + extra, 0);
        prop_assert_eq!(Message::decode(&bytes), Err(DecodeError::TrailingBytes(extra)));
    }

    #[test]
    fn mutated_messages_decode_canonically_or_fail(
        m in message(),
        at in any::<Index>(),
        byte in any::<u8>(),
        cut in any::<Index>(),
    ) {
        let mut bytes = m.encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        canonical_if_accepted(&bytes)?;
        // Dropping a byte in the middle must not panic either.
        bytes.remove(cut.index(bytes.len()));
        canonical_if_accepted(&bytes)?;
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        canonical_if_accepted(&bytes)?;
        let _ = Value::from_bytes(&bytes);
        let _ = StatementResult::from_bytes(&bytes);
        let _ = SqlError::from_bytes(&bytes);
        let _ = Outcome::from_bytes(&bytes);
        let _ = Request::from_bytes(&bytes);
        let _ = Reply::from_bytes(&bytes);
        let _ = Attestation::from_bytes(&bytes);
        let _ = KeyGrant::from_bytes(&bytes);
        let _ = Entry::from_bytes(&bytes);
        let _ = Accept::from_bytes(&bytes);
        let _ = Update::from_bytes(&bytes);
    }

    #[test]
    fn random_body_after_a_valid_header_never_panics(
        kind in 1u8..=15,
        body in vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = header(kind);
        bytes.extend_from_slice(&body);
        canonical_if_accepted(&bytes)?;
    }

    #[test]
    fn random_small_counts_after_a_valid_header_never_panic(
        kind in 1u8..=15,
        // Mostly small numbers: lengths and counts that fit the input, unlike random bytes.
        body in vec(prop_oneof![0u8..4, any::<u8>()], 0..512),
    ) {
        let mut bytes = header(kind);
        bytes.extend_from_slice(&body);
        canonical_if_accepted(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed cases.

#[test]
fn examples_roundtrip_and_prefixes_fail() {
    for (i, m) in examples().iter().enumerate() {
        assert_eq!(usize::from(m.kind()), i + 1);
        let bytes = m.encode();
        assert!(Message::decode(&bytes).unwrap().bit_eq(m));
        for len in 0..bytes.len() {
            assert!(Message::decode(&bytes[..len]).is_err());
        }
    }
}

#[test]
fn ack_known_answer() {
    let ack = Ack { replica: 0x0102, view: 2, seq: 3, chain: Digest([0xaa; 32]), tag: [0xbb; 32] };
    let bytes = Message::from(ack.clone()).encode();
    let mut expected = vec![b'V', b'P', b'R', b'M', 1, 9, 0, 0];
    expected.extend_from_slice(&[0x02, 0x01]);
    expected.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[0xaa; 32]);
    expected.extend_from_slice(&[0xbb; 32]);
    assert_eq!(bytes, expected);
    assert_eq!(bytes.len(), WIRE_HEADER_LEN + 82);
    assert_eq!(&bytes[..4], &WIRE_MAGIC);
    assert_eq!(Message::decode(&bytes), Ok(Message::Ack(ack)));
}

#[test]
fn value_known_answers() {
    assert_eq!(Value::Null.to_bytes(), [0]);
    assert_eq!(Value::Integer(-2).to_bytes(), [1, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(Value::Real(1.0).to_bytes(), [2, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
    assert_eq!(Value::Text(b"hi".to_vec()).to_bytes(), [3, 2, 0, 0, 0, b'h', b'i']);
    assert_eq!(Value::Blob(vec![]).to_bytes(), [4, 0, 0, 0, 0]);
    // Text is not required to be UTF-8.
    assert_eq!(Value::from_bytes(&[3, 1, 0, 0, 0, 0xff]), Ok(Value::Text(vec![0xff])));
    for bits in
        [f64::NAN.to_bits(), (-0.0f64).to_bits(), 0x7ff0_0000_0000_0001, 0xfff8_0000_dead_beef]
    {
        let Ok(Value::Real(x)) = Value::from_bytes(&Value::Real(f64::from_bits(bits)).to_bytes())
        else {
            panic!("real did not decode");
        };
        assert_eq!(x.to_bits(), bits);
    }
}

#[test]
fn header_errors() {
    let good = Message::from(Commit { view: 1, seq: 2, chain: Digest([3; 32]), tag: [4; 32] });
    let good = good.encode();
    let with = |i: usize, b: u8| {
        let mut v = good.clone();
        v[i] = b;
        Message::decode(&v)
    };
    assert_eq!(with(0, b'X'), Err(DecodeError::BadMagic(u32::from_le_bytes(*b"XPRM"))));
    assert_eq!(with(4, 2), Err(DecodeError::UnsupportedVersion(2)));
    assert_eq!(with(4, 0), Err(DecodeError::UnsupportedVersion(0)));
    assert_eq!(with(5, 0), Err(DecodeError::Invalid { field: "kind", value: 0 }));
    assert_eq!(with(5, 18), Err(DecodeError::Invalid { field: "kind", value: 18 }));
    assert_eq!(with(6, 1), Err(DecodeError::Invalid { field: "reserved", value: 1 }));
    assert_eq!(with(7, 1), Err(DecodeError::Invalid { field: "reserved", value: 256 }));
    assert_eq!(Message::decode(&[]), Err(DecodeError::Truncated { needed: 4, have: 0 }));
    assert_eq!(Message::decode(b"VPRM\x01"), Err(DecodeError::Truncated { needed: 1, have: 0 }));
    // A Commit header with an Ack's body length is misparsed into an error, not a panic.
    let mut v = good.clone();
    v[5] = 9;
    assert!(Message::decode(&v).is_err());
}

#[test]
fn overlong_input_is_refused_before_decoding() {
    // Zeroed memory is not touched by the length check.
    let huge = vec![0u8; MAX_WIRE_BYTES + 1];
    assert_eq!(
        Message::decode(&huge),
        Err(too_large("message_len", MAX_WIRE_BYTES + 1, MAX_WIRE_BYTES))
    );
}

#[test]
fn request_limits() {
    let ok = Request::from_bytes(&raw_request(b"SELECT 1", MAX_PARAMS)).unwrap();
    assert_eq!(ok.params.len(), MAX_PARAMS);
    assert_eq!(ok.to_bytes(), raw_request(b"SELECT 1", MAX_PARAMS));
    assert_eq!(
        Request::from_bytes(&raw_request(b"SELECT 1", MAX_PARAMS + 1)),
        Err(too_large("params", MAX_PARAMS + 1, MAX_PARAMS))
    );

    let sql = vec![b' '; MAX_SQL_BYTES];
    assert_eq!(Request::from_bytes(&raw_request(&sql, 0)).unwrap().sql.len(), MAX_SQL_BYTES);
    let mut bytes = raw_request(b"", 0);
    bytes[25..29].copy_from_slice(&le32(MAX_SQL_BYTES + 1));
    assert_eq!(
        Request::from_bytes(&bytes),
        Err(too_large("sql", MAX_SQL_BYTES + 1, MAX_SQL_BYTES))
    );

    // A declared count larger than the input is refused at once.
    let mut bytes = raw_request(b"", 0);
    bytes[29..33].copy_from_slice(&le32(MAX_PARAMS));
    assert_eq!(
        Request::from_bytes(&bytes),
        Err(DecodeError::Truncated { needed: MAX_PARAMS, have: 32 })
    );

    // An unknown read level is refused.
    let mut bytes = raw_request(b"", 0);
    bytes[24] = 2;
    assert_eq!(Request::from_bytes(&bytes), Err(DecodeError::Invalid { field: "level", value: 2 }));
}

#[test]
fn invalid_utf8_is_rejected() {
    assert_eq!(
        Request::from_bytes(&raw_request(b"SELECT \xff", 0)),
        Err(DecodeError::Invalid { field: "sql", value: 7 })
    );
    // Overlong encoding and a lone surrogate.
    assert!(Request::from_bytes(&raw_request(b"\xc0\x80", 0)).is_err());
    assert!(Request::from_bytes(&raw_request(b"\xed\xa0\x80", 0)).is_err());

    let mut error = SqlError { code: 1, message: "ok".into() }.to_bytes();
    error[8] = 0x80;
    assert_eq!(
        SqlError::from_bytes(&error),
        Err(DecodeError::Invalid { field: "message", value: 0 })
    );

    let mut result =
        StatementResult { columns: vec!["ab".into()], ..Default::default() }.to_bytes();
    result[9] = 0xfe;
    assert_eq!(
        StatementResult::from_bytes(&result),
        Err(DecodeError::Invalid { field: "column", value: 1 })
    );
}

#[test]
fn bad_tags_are_rejected() {
    let mut att = attestation_example().to_bytes();
    att[0] = 2;
    assert_eq!(
        Attestation::from_bytes(&att),
        Err(DecodeError::Invalid { field: "simulated", value: 2 })
    );
    att[0] = 0;
    assert!(!Attestation::from_bytes(&att).unwrap().simulated);

    assert_eq!(
        Outcome::from_bytes(&[0, 0, 0, 0, 2]),
        Err(DecodeError::Invalid { field: "error", value: 2 })
    );
    assert_eq!(Outcome::from_bytes(&[0, 0, 0, 0, 0]), Ok(Outcome::default()));

    assert_eq!(Value::from_bytes(&[9]), Err(DecodeError::Invalid { field: "value_tag", value: 9 }));
    assert_eq!(Value::from_bytes(&[5]), Err(DecodeError::Invalid { field: "value_tag", value: 5 }));
}

#[test]
fn value_and_message_limits() {
    let mut text = vec![3];
    text.extend_from_slice(&le32(MAX_VALUE_BYTES + 1));
    assert_eq!(
        Value::from_bytes(&text),
        Err(too_large("text", MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES))
    );
    text[0] = 4;
    assert_eq!(
        Value::from_bytes(&text),
        Err(too_large("blob", MAX_VALUE_BYTES + 1, MAX_VALUE_BYTES))
    );

    let long = "x".repeat(MAX_MESSAGE_BYTES);
    let ok = SqlError { code: 1, message: long.clone() };
    assert_eq!(SqlError::from_bytes(&ok.to_bytes()), Ok(ok));
    let bad = SqlError { code: 1, message: long + "x" };
    assert_eq!(
        SqlError::from_bytes(&bad.to_bytes()),
        Err(too_large("message", MAX_MESSAGE_BYTES + 1, MAX_MESSAGE_BYTES))
    );
}

#[test]
fn grant_and_entry_limits() {
    let Message::Accept(mut accept) = examples().swap_remove(5) else { panic!() };
    accept.grants = vec![KeyGrant { replica: 0, sealed_key: [0; 48] }; MAX_REPLICAS];
    assert_eq!(Accept::from_bytes(&accept.to_bytes()).as_ref(), Ok(&accept));
    accept.grants.push(KeyGrant { replica: 0, sealed_key: [0; 48] });
    assert_eq!(
        Accept::from_bytes(&accept.to_bytes()),
        Err(too_large("grants", MAX_REPLICAS + 1, MAX_REPLICAS))
    );

    let mut update = update_example();
    update.entries = vec![Entry { client: [0; 16], seq: 0, request: Digest([0; 32]) }; MAX_BATCH];
    assert_eq!(Update::from_bytes(&update.to_bytes()).as_ref(), Ok(&update));
    update.entries.push(update.entries[0].clone());
    assert_eq!(
        Update::from_bytes(&update.to_bytes()),
        Err(too_large("entries", MAX_BATCH + 1, MAX_BATCH))
    );
}

#[test]
fn huge_counts_fail_fast() {
    // Results: u32::MAX statement results in a few bytes.
    let mut outcome = le32(usize::try_from(u32::MAX).unwrap()).to_vec();
    outcome.push(0);
    assert!(matches!(Outcome::from_bytes(&outcome), Err(DecodeError::Truncated { have: 1, .. })));

    // Rows and columns: a result claiming u32::MAX of each.
    for at in [0, 4] {
        let mut result = StatementResult::default().to_bytes();
        result[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(StatementResult::from_bytes(&result), Err(DecodeError::Truncated { .. })));
    }

    // A row claiming u32::MAX values inside a reply.
    let mut reply = Reply { outcome: Outcome::default(), ..reply_example() };
    reply.outcome.results.push(StatementResult { rows: vec![vec![]], ..Default::default() });
    let mut bytes = reply.to_bytes();
    // client 16, seq 8, request 32, view/state 16, results count 4, columns 4, rows 4: the
    // row's count.
    bytes[84..88].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(Reply::from_bytes(&bytes), Err(DecodeError::Truncated { .. })));

    // A state update claiming to be huge.
    let mut bytes = update_example().to_bytes();
    let at = 8 + 8 + 32 + 4 + 56;
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Update::from_bytes(&bytes),
        Err(too_large("state_len", usize::try_from(u32::MAX).unwrap(), MAX_UPDATE_BYTES))
    );
    bytes[at..at + 4].copy_from_slice(&le32(MAX_UPDATE_BYTES));
    assert!(matches!(Update::from_bytes(&bytes), Err(DecodeError::Truncated { .. })));
}

#[test]
fn outcome_size_is_bounded() {
    // One result with one row holding one blob of `n` bytes: 30 + n bytes encoded.
    let encoded = |n: usize| {
        let mut v = Vec::with_capacity(30 + n);
        v.extend_from_slice(&le32(1)); // results
        v.extend_from_slice(&le32(0)); // columns
        v.extend_from_slice(&le32(1)); // rows
        v.extend_from_slice(&le32(1)); // values in the row
        v.push(4);
        v.extend_from_slice(&le32(n));
        v.resize(v.len() + n, 0xab);
        v.extend_from_slice(&0u64.to_le_bytes()); // changes
        v.push(0); // no error
        v
    };
    let largest = encoded(MAX_REPLY_BYTES - 30);
    assert_eq!(largest.len(), MAX_REPLY_BYTES);
    let outcome = Outcome::from_bytes(&largest).unwrap();
    assert_eq!(outcome.to_bytes(), largest);
    drop((outcome, largest));

    let over = encoded(MAX_REPLY_BYTES - 29);
    assert_eq!(
        Outcome::from_bytes(&over),
        Err(too_large("outcome", MAX_REPLY_BYTES + 1, MAX_REPLY_BYTES))
    );
    // The same outcome inside a reply (the tag after it does not count).
    let mut reply = reply_example().to_bytes();
    reply.truncate(40);
    reply.extend_from_slice(&over);
    reply.extend_from_slice(&[0; 32]);
    assert!(matches!(
        Reply::from_bytes(&reply),
        Err(DecodeError::TooLarge { field: "outcome", .. })
    ));
}

#[test]
fn embedded_state_update_is_checked() {
    let update = update_example();
    let mut bytes = update.to_bytes();
    // Flip a byte of page data: the state update's content digest no longer matches.
    let last_page_byte = bytes.len() - 33;
    bytes[last_page_byte] ^= 1;
    assert_eq!(Update::from_bytes(&bytes), Err(DecodeError::DigestMismatch));
}

#[test]
fn signed_bytes_layout() {
    let Message::Request(request) = examples().swap_remove(0) else { panic!() };
    let enc = request.to_bytes();
    assert_eq!(request.signed_bytes(), [b"vpr request", &enc[..enc.len() - 32]].concat());

    let reply = reply_example();
    let enc = reply.to_bytes();
    assert_eq!(reply.signed_bytes(), [b"vpr reply", &enc[..enc.len() - 32]].concat());

    let Message::Accept(accept) = examples().swap_remove(5) else { panic!() };
    let enc = accept.to_bytes();
    let att = accept.attestation.to_bytes();
    assert_eq!(att.len(), 1 + 32 + 32 + 65 + 64 + 64);
    assert_eq!(accept.signed_bytes(), [b"vpr accept", &enc[..enc.len() - att.len()]].concat());

    let key = [7u8; 65];
    assert_eq!(Attestation::certificate_bytes(true, &key), [&b"vpr tcc\x01"[..], &key].concat());
    assert_eq!(Attestation::certificate_bytes(false, &key), [&b"vpr tcc\x00"[..], &key].concat());
    let (id, data) = (Digest([1; 32]), Digest([2; 32]));
    assert_eq!(
        Attestation::signed_bytes(false, &id, &data),
        [&b"vpr attest\x00"[..], &[1; 32], &[2; 32]].concat()
    );
}

#[test]
fn chain_hash() {
    let update = update_example();
    let entry = &update.entries[0];
    let expected = crypto::hash(&[
        b"vpr chain",
        update.prev.as_bytes(),
        &3u64.to_le_bytes(),
        &7u64.to_le_bytes(),
        &1u32.to_le_bytes(),
        &entry.client,
        &entry.seq.to_le_bytes(),
        entry.request.as_bytes(),
        update.state.content_digest().as_bytes(),
    ]);
    assert_eq!(update.chain(), expected);

    // Every field but the tag is bound.
    let changed = |f: &dyn Fn(&mut Update)| {
        let mut u = update.clone();
        f(&mut u);
        u.chain()
    };
    assert_eq!(changed(&|u| u.tag = [0; 32]), expected);
    assert_ne!(changed(&|u| u.view += 1), expected);
    assert_ne!(changed(&|u| u.seq += 1), expected);
    assert_ne!(changed(&|u| u.prev = Digest([0; 32])), expected);
    assert_ne!(changed(&|u| u.entries.clear()), expected);
    assert_ne!(changed(&|u| u.state.pages[0].data[0] ^= 1), expected);
    assert_ne!(changed(&|u| u.state.file_size = 1024), expected);
}

#[test]
fn writer_prefix_is_reused() {
    // `put` appends: two messages written back to back decode in turn.
    let mut w = Writer::new();
    let [a, b] = [examples().swap_remove(8), examples().swap_remove(9)];
    a.put(&mut w);
    b.put(&mut w);
    let bytes = w.into_vec();
    let mut r = crate::wire::Reader::new(&bytes);
    assert_eq!(Message::get(&mut r).as_ref(), Ok(&a));
    assert_eq!(Message::get(&mut r).as_ref(), Ok(&b));
    assert_eq!(r.finish(), Ok(()));
}
