//! Parses arbitrary bytes as a uTPM or TPM quote, as `vpr verify` reads them from evidence it
//! does not trust: no input may make a parser panic, and what parses must re-encode to the
//! same bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpr_proto::utpm::{Quote, QuoteInfo};

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = Quote::from_bytes(data) {
        // Signature values may be written shorter than 32 bytes; all else is canonical.
        assert!(quote.to_bytes().len() >= data.len());
        let _ = QuoteInfo::from_attest(&quote.attest);
    }
    if let Ok(info) = QuoteInfo::from_attest(data) {
        // The clock fields other than resetCount are not kept.
        assert_eq!(info.to_attest().len(), data.len());
    }
    let _ = Quote::signature_from_tpmt(data);
});
