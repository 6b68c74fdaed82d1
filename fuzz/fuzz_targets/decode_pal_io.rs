//! Decodes arbitrary bytes as what crosses the PAL's `execute` boundary: a command (what the
//! untrusted side sends the PAL) and an outcome (what a driver reads back). Decoding must never
//! panic, and whatever decodes must re-encode to its input (the encodings are canonical).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpr_proto::pal_io::{Command, Outcome};

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = Command::decode(data) {
        assert_eq!(command.encode(), data, "a decoded command does not re-encode to its input");
    }
    if let Ok(outcome) = Outcome::decode(data) {
        assert_eq!(outcome.encode(), data, "a decoded outcome does not re-encode to its input");
    }
});
