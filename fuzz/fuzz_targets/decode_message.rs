//! Decodes arbitrary bytes as a protocol `Message`. Decoding must never panic, and whatever
//! decodes must be canonical: re-encoding it reproduces the input exactly.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpr_proto::msg::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        assert_eq!(message.encode(), data, "decoded message does not re-encode to its input");
    }
});
