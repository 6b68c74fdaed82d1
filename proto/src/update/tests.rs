//! Tests of the state update encoding.
use super::*;
use proptest::prelude::*;

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    // A cheap xorshift stream: distinct per seed, deterministic.
    let mut x = seed.wrapping_mul(0x9e37_79b9) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn page(ps: u32, fs: u64, index: u32) -> PageWrite {
    let len = page_len(ps, fs, index).expect("page inside file");
    PageWrite { index, data: pattern(index, len) }
}

fn update(ps: u32, fs: u64, indices: &[u32]) -> StateUpdate {
    StateUpdate {
        page_size: ps,
        file_size: fs,
        pages: indices.iter().map(|&i| page(ps, fs, i)).collect(),
    }
}

/// A header with arbitrary field values (digest zeroed).
fn header(ps: u32, fs: u64, count: u32) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(MAGIC).u8(VERSION).bytes(&[0; 3]).u32(ps).u64(fs).u32(count).bytes(&[0; 32]);
    w.into_vec()
}

fn small() -> StateUpdate {
    update(512, 1000, &[0, 1])
}

#[test]
fn magic_spells_vpru() {
    assert_eq!(MAGIC.to_le_bytes(), *b"VPRU");
    assert_eq!(MAGIC, 0x5552_5056);
}

#[test]
fn known_answer() {
    let p0: Vec<u8> = (0..512u32).map(|i| u8::try_from(i % 251).unwrap()).collect();
    let p1: Vec<u8> = (0..512u32).map(|i| u8::try_from(255 - i % 256).unwrap()).collect();
    let u = StateUpdate {
        page_size: 512,
        file_size: 1024,
        pages: vec![
            PageWrite { index: 0, data: p0.clone() },
            PageWrite { index: 1, data: p1.clone() },
        ],
    };
    assert_eq!(u.validate(), Ok(()));
    let enc = u.encode();
    assert_eq!(enc.len(), 56 + 2 * (4 + 512));
    assert_eq!(enc.len(), u.encoded_len());
    assert_eq!(enc.capacity(), enc.len());
    assert_eq!(u.payload_len(), 1024);
    assert_eq!(&enc[0..4], b"VPRU");
    assert_eq!(enc[4], 1);
    assert_eq!(&enc[5..8], &[0, 0, 0]);
    assert_eq!(&enc[8..12], &512u32.to_le_bytes());
    assert_eq!(&enc[8..12], &[0x00, 0x02, 0x00, 0x00]);
    assert_eq!(&enc[12..20], &[0x00, 0x04, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&enc[20..24], &[2, 0, 0, 0]);
    assert_eq!(&enc[56..60], &[0, 0, 0, 0]);
    assert_eq!(&enc[60..572], &p0[..]);
    assert_eq!(&enc[572..576], &[1, 0, 0, 0]);
    assert_eq!(&enc[576..1088], &p1[..]);

    let mut input = Vec::new();
    input.extend_from_slice(b"VPRU\x01\x00\x00\x00");
    input.extend_from_slice(&[0x00, 0x02, 0x00, 0x00]);
    input.extend_from_slice(&[0x00, 0x04, 0, 0, 0, 0, 0, 0]);
    input.extend_from_slice(&[2, 0, 0, 0]);
    input.extend_from_slice(&[0, 0, 0, 0]);
    input.extend_from_slice(&p0);
    input.extend_from_slice(&[1, 0, 0, 0]);
    input.extend_from_slice(&p1);
    let expected = Digest::of(&input);
    assert_eq!(&enc[24..56], expected.as_bytes());
    assert_eq!(u.content_digest(), expected);

    let (back, digest) = StateUpdate::decode_with_digest(&enc).unwrap();
    assert_eq!(back, u);
    assert_eq!(digest, expected);
    assert_eq!(back.pages.capacity(), 2);
}

#[test]
fn empty_updates_roundtrip() {
    for u in [StateUpdate::new(4096, 0), StateUpdate::new(65536, MAX_FILE_SIZE)] {
        assert!(u.is_empty());
        assert_eq!(u.payload_len(), 0);
        let enc = u.encode();
        assert_eq!(enc.len(), HEADER_LEN);
        assert_eq!(StateUpdate::decode(&enc), Ok(u));
    }
}

#[test]
fn partial_last_page() {
    let u = update(1024, 3 * 1024 + 7, &[1, 3]);
    assert_eq!(u.pages[1].data.len(), 7);
    assert_eq!(u.expected_page_len(3), Some(7));
    assert_eq!(u.expected_page_len(4), None);
    assert_eq!(StateUpdate::decode(&u.encode()), Ok(u));
}

#[test]
fn every_strict_prefix_fails() {
    let enc = small().encode();
    for n in 0..enc.len() {
        let err = StateUpdate::decode(&enc[..n]).unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { .. }), "prefix {n}: {err:?}");
    }
}

#[test]
fn every_single_bit_flip_fails() {
    let enc = small().encode();
    for bit in 0..enc.len() * 8 {
        let mut bad = enc.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(StateUpdate::decode(&bad).is_err(), "bit {bit} flip accepted");
    }
}

#[test]
fn flips_in_data_and_digest_are_digest_mismatches() {
    let enc = small().encode();
    for byte in (24..56).chain(60..572).chain(576..enc.len()) {
        let mut bad = enc.clone();
        bad[byte] ^= 0x80;
        assert_eq!(StateUpdate::decode(&bad), Err(DecodeError::DigestMismatch), "{byte}");
    }
}

#[test]
fn file_size_is_bound_by_the_digest() {
    // Growing the file keeps every page full-length, so only the digest catches it.
    let enc = update(512, 1024, &[0, 1]).encode();
    let mut bad = enc.clone();
    bad[12..20].copy_from_slice(&4096u64.to_le_bytes());
    assert_eq!(StateUpdate::decode(&bad), Err(DecodeError::DigestMismatch));
}

#[test]
fn rejects_bad_header_fields() {
    let enc = small().encode();
    let with = |at: usize, bytes: &[u8]| {
        let mut b = enc.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        StateUpdate::decode(&b)
    };
    assert_eq!(with(0, b"VPRV"), Err(DecodeError::BadMagic(u32::from_le_bytes(*b"VPRV"))));
    assert_eq!(with(4, &[2]), Err(DecodeError::UnsupportedVersion(2)));
    assert_eq!(with(4, &[0]), Err(DecodeError::UnsupportedVersion(0)));
    assert_eq!(with(5, &[1]), Err(DecodeError::Invalid { field: "reserved", value: 1 }));
    assert_eq!(with(7, &[0x80]), Err(DecodeError::Invalid { field: "reserved", value: 0x80_0000 }));
    for ps in [0u32, 1, 256, 1000, 131_072, u32::MAX] {
        assert_eq!(
            with(8, &ps.to_le_bytes()),
            Err(DecodeError::Invalid { field: "page_size", value: u64::from(ps) }),
            "{ps}"
        );
    }
    assert_eq!(
        with(12, &(MAX_FILE_SIZE + 1).to_le_bytes()),
        Err(DecodeError::TooLarge {
            field: "file_size",
            value: MAX_FILE_SIZE + 1,
            max: MAX_FILE_SIZE
        })
    );
    // The file (1000 bytes, 512-byte pages) only has 2 pages.
    assert_eq!(
        with(20, &3u32.to_le_bytes()),
        Err(DecodeError::TooLarge { field: "page_count", value: 3, max: 2 })
    );
    assert_eq!(with(20, &1u32.to_le_bytes()), Err(DecodeError::TrailingBytes(4 + 488)));
}

#[test]
fn rejects_trailing_bytes() {
    let mut enc = small().encode();
    enc.push(0);
    assert_eq!(StateUpdate::decode(&enc), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn hostile_page_count_fails_before_allocating() {
    // Claims 2^20 full 512-byte pages of a 1 TiB file but carries 100 bytes.
    let mut bytes = header(512, MAX_FILE_SIZE, 1 << 20);
    bytes.extend_from_slice(&[0; 100]);
    assert_eq!(
        StateUpdate::decode(&bytes),
        Err(DecodeError::Truncated { needed: ((1 << 20) - 1) * 516 + 5, have: 100 })
    );
    // Over the page cap.
    let bytes = header(512, MAX_FILE_SIZE, (1 << 20) + 1);
    assert_eq!(
        StateUpdate::decode(&bytes),
        Err(DecodeError::TooLarge { field: "page_count", value: (1 << 20) + 1, max: 1 << 20 })
    );
    let bytes = header(512, MAX_FILE_SIZE, u32::MAX);
    assert!(matches!(
        StateUpdate::decode(&bytes),
        Err(DecodeError::TooLarge { field: "page_count", .. })
    ));
    // Two pages need at least 516 + 5 bytes of records.
    let mut bytes = header(512, 2048, 2);
    bytes.extend_from_slice(&[0; 520]);
    assert_eq!(StateUpdate::decode(&bytes), Err(DecodeError::Truncated { needed: 521, have: 520 }));
}

#[test]
fn decode_rejects_page_order_and_bounds() {
    // Records written by hand, with a correct digest, so only the structure is wrong.
    let encode_raw = |ps: u32, fs: u64, recs: &[(u32, usize)]| {
        let count = u32::try_from(recs.len()).unwrap();
        let mut w = Writer::new();
        w.u32(MAGIC).u8(VERSION).bytes(&[0; 3]).u32(ps).u64(fs).u32(count);
        let mut body = Writer::new();
        for &(i, len) in recs {
            body.u32(i).bytes(&pattern(i, len));
        }
        let mut h = Sha256::new();
        h.update(w.as_slice()).update(body.as_slice());
        w.bytes(h.finalize().as_bytes()).bytes(body.as_slice());
        StateUpdate::decode(&w.into_vec())
    };
    assert!(encode_raw(512, 2048, &[(0, 512), (2, 512)]).is_ok());
    assert_eq!(
        encode_raw(512, 2048, &[(2, 512), (0, 512)]),
        Err(DecodeError::PageOutOfOrder { prev: 2, index: 0 })
    );
    assert_eq!(
        encode_raw(512, 2048, &[(1, 512), (1, 512)]),
        Err(DecodeError::PageOutOfOrder { prev: 1, index: 1 })
    );
    assert_eq!(
        encode_raw(512, 2048, &[(0, 512), (4, 512)]),
        Err(DecodeError::PageOutsideFile { index: 4, page_size: 512, file_size: 2048 })
    );
    assert_eq!(
        encode_raw(512, 2048, &[(u32::MAX, 512)]),
        Err(DecodeError::PageOutsideFile { index: u32::MAX, page_size: 512, file_size: 2048 })
    );
    // A short last page where a full one is due: the records run out.
    assert!(matches!(
        encode_raw(512, 2048, &[(2, 512), (3, 500)]),
        Err(DecodeError::Truncated { .. })
    ));
    // A long page: bytes are left over.
    assert_eq!(encode_raw(512, 2000, &[(3, 512)]), Err(DecodeError::TrailingBytes(512 - 464)));
}

#[test]
fn validate_rejects_each_invariant() {
    let ok = update(512, 2000, &[0, 1, 3]);
    assert_eq!(ok.validate(), Ok(()));
    let with = |f: &dyn Fn(&mut StateUpdate)| {
        let mut u = ok.clone();
        f(&mut u);
        u.validate()
    };
    for ps in [0u32, 1, 1000, 131_072] {
        assert_eq!(
            with(&|u| u.page_size = ps),
            Err(DecodeError::Invalid { field: "page_size", value: u64::from(ps) })
        );
    }
    assert_eq!(
        with(&|u| u.file_size = MAX_FILE_SIZE + 1),
        Err(DecodeError::TooLarge {
            field: "file_size",
            value: MAX_FILE_SIZE + 1,
            max: MAX_FILE_SIZE
        })
    );
    assert_eq!(
        with(&|u| u.pages.swap(0, 1)),
        Err(DecodeError::PageOutOfOrder { prev: 1, index: 0 })
    );
    assert_eq!(
        with(&|u| u.pages[1] = u.pages[0].clone()),
        Err(DecodeError::PageOutOfOrder { prev: 0, index: 0 })
    );
    assert_eq!(
        with(&|u| u.pages[2].index = 4),
        Err(DecodeError::PageOutsideFile { index: 4, page_size: 512, file_size: 2000 })
    );
    assert_eq!(
        with(&|u| u.file_size = 1536),
        Err(DecodeError::PageOutsideFile { index: 3, page_size: 512, file_size: 1536 })
    );
    // Page 3 of a 2000-byte file holds 2000 - 1536 = 464 bytes.
    assert_eq!(
        with(&|u| u.pages[2].data.push(0)),
        Err(DecodeError::PageLength { index: 3, expected: 464, actual: 465 })
    );
    assert_eq!(
        with(&|u| {
            u.pages[0].data.pop();
        }),
        Err(DecodeError::PageLength { index: 0, expected: 512, actual: 511 })
    );
    assert_eq!(
        with(&|u| u.pages.push(page(512, 2000, 2))),
        Err(DecodeError::PageOutOfOrder { prev: 3, index: 2 })
    );
    // A 2000-byte file has 4 pages of 512 bytes.
    assert_eq!(
        with(&|u| u.pages.extend([page(512, 2000, 2), page(512, 2000, 2)])),
        Err(DecodeError::TooLarge { field: "page_count", value: 5, max: 4 })
    );
}

#[test]
fn page_len_edges() {
    assert_eq!(page_len(512, 0, 0), None);
    assert_eq!(page_len(512, 1, 0), Some(1));
    assert_eq!(page_len(512, 512, 0), Some(512));
    assert_eq!(page_len(512, 512, 1), None);
    assert_eq!(page_len(0, 512, 0), None);
    assert_eq!(page_len(65536, MAX_FILE_SIZE, u32::MAX), None);
    assert_eq!(page_len(512, MAX_FILE_SIZE, u32::MAX), None);
    assert_eq!(page_len(512, MAX_FILE_SIZE, (1 << 31) - 1), Some(512));
    assert_eq!(page_len(512, MAX_FILE_SIZE, 1 << 31), None);
    assert_eq!(pages_in_file(512, 1000), 2);
    assert_eq!(pages_in_file(512, 0), 0);
    assert_eq!(pages_in_file(0, 10), 0);
    assert!(page_size_is_valid(512) && page_size_is_valid(65536));
    assert!(!page_size_is_valid(256) && !page_size_is_valid(131_072));
}

#[test]
fn debug_does_not_dump_page_data() {
    let s = format!("{:?}", small());
    assert!(s.contains("PageWrite { index: 0, len: 512, .. }"), "{s}");
}

/// Arbitrary valid updates, kept small: at most 8 pages and 128 KiB of file.
fn valid_update() -> impl Strategy<Value = StateUpdate> {
    (9u32..=16, any::<u64>())
        .prop_flat_map(|(shift, r)| {
            let ps = 1u32 << shift;
            let max_file = (8 * u64::from(ps)).min(128 * 1024);
            let fs = r % (max_file + 1);
            let n = usize::try_from(pages_in_file(ps, fs)).unwrap();
            (Just(ps), Just(fs), proptest::collection::vec(any::<bool>(), n))
        })
        .prop_map(|(ps, fs, keep)| {
            let indices: Vec<u32> =
                (0u32..).zip(keep).filter_map(|(i, k)| k.then_some(i)).collect();
            update(ps, fs, &indices)
        })
}

proptest! {
    #[test]
    fn roundtrip(u in valid_update()) {
        prop_assert_eq!(u.validate(), Ok(()));
        let enc = u.encode();
        prop_assert_eq!(enc.len(), u.encoded_len());
        prop_assert_eq!(u.try_encode(), Some(enc.clone()));
        let (back, digest) = StateUpdate::decode_with_digest(&enc).unwrap();
        prop_assert_eq!(digest, u.content_digest());
        prop_assert_eq!(&back, &u);
        prop_assert_eq!(back.encode(), enc);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = StateUpdate::decode(&bytes);
    }

    #[test]
    fn random_body_after_valid_header_never_panics(
        shift in 9u32..=16,
        fs in prop_oneof![0u64..4096, 0..=MAX_FILE_SIZE, Just(MAX_FILE_SIZE)],
        count in prop_oneof![0u32..8, any::<u32>()],
        body in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut bytes = header(1 << shift, fs, count);
        bytes.extend_from_slice(&body);
        if let Ok(u) = StateUpdate::decode(&bytes) {
            prop_assert_eq!(u.encode(), bytes);
        }
    }

    #[test]
    fn mutated_valid_encodings_are_canonical_or_rejected(
        u in valid_update(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut bytes = u.encode();
        for (at, v) in edits {
            let at = at % bytes.len();
            bytes[at] = v;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        if let Ok(back) = StateUpdate::decode(&bytes) {
            prop_assert_eq!(back.encode(), bytes);
        }
    }
}
