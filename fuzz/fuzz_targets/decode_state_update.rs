//! Decodes arbitrary bytes as a `StateUpdate`. Decoding must never panic, and whatever decodes
//! must be canonical: re-encoding it reproduces the input exactly, with the same digest.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpr_proto::StateUpdate;

fuzz_target!(|data: &[u8]| {
    if let Ok((update, digest)) = StateUpdate::decode_with_digest(data) {
        assert_eq!(update.validate(), Ok(()));
        assert_eq!(update.content_digest(), digest);
        assert_eq!(update.encode(), data, "decoded update does not re-encode to its input");
    }
});
