//! Parses arbitrary bytes as the TPM's answer to each command the hypervisor sends. A TPM (or
//! whatever answers at its address) is outside the hypervisor: no answer may make a parser
//! panic, and what parses must be what the bytes say.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpr_hypervisor::tpm::command;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = command::response(data) {
        assert!(response.body.len() + command::HEADER_LEN == data.len());
    }
    let _ = command::parse_startup(data);
    if let Ok(bytes) = command::parse_get_random(data) {
        assert!(bytes.len() <= data.len());
    }
    let _ = command::parse_pcr_extend(data);
    for pcr in [0, 17, 23] {
        let _ = command::parse_pcr_read_sha256(data, pcr);
    }
    let _ = command::parse_create_primary_ecc(data);
    if let Ok((_, modulus)) = command::parse_create_primary_rsa_ek(data) {
        assert_eq!(modulus.len(), command::RSA2048_LEN);
    }
    let _ = command::parse_policy_secret(data);
    if let Ok(credential) = command::parse_activate_credential(data) {
        assert!(credential.len() <= 64);
    }
    let _ = command::parse_quote(data);
});
