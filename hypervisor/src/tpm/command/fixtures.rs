//! Responses as a TPM sends them, and helpers, for the tests of every command family.

use alloc::vec;
use alloc::vec::Vec;

pub(crate) const DIGEST: [u8; 32] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 0xFF,
    0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10,
];

pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub(crate) fn startup_ok() -> Vec<u8> {
    vec![0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0, 0]
}

pub(crate) fn get_random_ok() -> Vec<u8> {
    let mut r = vec![0x80, 0x01, 0, 0, 0, 0x1C, 0, 0, 0, 0, 0x00, 0x10];
    r.extend(1..=16);
    r
}

pub(crate) fn pcr_extend_ok() -> Vec<u8> {
    cat(&[
        &[0x80, 0x02, 0, 0, 0, 0x13, 0, 0, 0, 0],
        &[0, 0, 0, 0], // parameterSize
        &[0, 0],       // nonceTPM
        &[0x01],       // sessionAttributes: continueSession
        &[0, 0],       // hmac
    ])
}

pub(crate) fn pcr_read_ok(bitmap: [u8; 3]) -> Vec<u8> {
    cat(&[
        &[0x80, 0x01, 0, 0, 0, 0x3E, 0, 0, 0, 0],
        &[0, 0, 0, 0x2A],             // pcrUpdateCounter
        &[0, 0, 0, 1, 0x00, 0x0B, 3], // one selection, SHA-256, 3 bytes
        &bitmap,
        &[0, 0, 0, 1, 0x00, 0x20], // one digest of 32 bytes
        &DIGEST,
    ])
}

/// Attributes of swtpm's EK certificate index: PPWRITE, WRITELOCKED, WRITEDEFINE,
/// PPREAD, OWNERREAD, AUTHREAD, NO_DA, WRITTEN, PLATFORMCREATE (Part 2 §13.4).
pub(crate) const EK_CERT_ATTRIBUTES: u32 = 0x6207_2801;

pub(crate) fn nv_read_public_ok() -> Vec<u8> {
    cat(&[
        &[0x80, 0x01, 0, 0, 0, 0x3E, 0, 0, 0, 0],
        &[0, 14],                  // nvPublic: 14 bytes
        &[0x01, 0xC0, 0x00, 0x02], // nvIndex
        &[0x00, 0x0B],             // nameAlg: SHA-256
        &EK_CERT_ATTRIBUTES.to_be_bytes(),
        &[0, 0],              // authPolicy: empty
        &[0x04, 0x4C],        // dataSize 1100
        &[0, 34, 0x00, 0x0B], // nvName: SHA-256 ...
        &DIGEST,              // ... of the public area
    ])
}

pub(crate) fn nv_read_ok() -> Vec<u8> {
    let mut data = vec![0, 16];
    data.extend(1..=16);
    cat(&[
        &[0x80, 0x02, 0, 0, 0, 0x25, 0, 0, 0, 0],
        &[0, 0, 0, 18], // parameterSize
        &data,          // data: 16 bytes
        &[0, 0],        // nonceTPM
        &[0x01],        // sessionAttributes: continueSession
        &[0, 0],        // hmac
    ])
}

/// The response to TPM2_NV_DefineSpace or TPM2_NV_Write: like that to PCR_Extend.
pub(crate) fn nv_no_parameters_ok() -> Vec<u8> {
    cat(&[
        &[0x80, 0x02, 0, 0, 0, 0x13, 0, 0, 0, 0],
        &[0, 0, 0, 0], // parameterSize
        &[0, 0],       // nonceTPM
        &[0x01],       // sessionAttributes: continueSession
        &[0, 0],       // hmac
    ])
}

/// The nonce of [`start_auth_session_ok`] and [`nv_read_policy_ok`].
pub(crate) fn nonce_tpm() -> Vec<u8> {
    (0x40..0x60).collect()
}

pub(crate) fn start_auth_session_ok() -> Vec<u8> {
    cat(&[
        &[0x80, 0x01, 0, 0, 0, 0x30, 0, 0, 0, 0],
        &[0x03, 0, 0, 0], // sessionHandle: policy session 0
        &[0, 32],         // nonceTPM: 32 bytes
        &nonce_tpm(),
    ])
}

/// The response to TPM2_PolicyPCR or TPM2_FlushContext: the header alone.
pub(crate) fn no_body_ok() -> Vec<u8> {
    vec![0x80, 0x01, 0, 0, 0, 0x0A, 0, 0, 0, 0]
}

pub(crate) fn nv_read_policy_ok() -> Vec<u8> {
    let mut data = vec![0, 16];
    data.extend(1..=16);
    cat(&[
        &[0x80, 0x02, 0, 0, 0, 0x45, 0, 0, 0, 0],
        &[0, 0, 0, 18], // parameterSize
        &data,          // data: 16 bytes
        &[0, 32],       // nonceTPM: 32 bytes
        &nonce_tpm(),
        &[0x00], // sessionAttributes: continueSession clear
        &[0, 0], // hmac: empty
    ])
}

/// `bytes` with its size field set to its length.
pub(crate) fn resized(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() >= 6 {
        let len = u32::try_from(bytes.len()).unwrap();
        bytes[2..6].copy_from_slice(&len.to_be_bytes());
    }
    bytes
}

pub(crate) const POINT_X: [u8; 32] = [0x1F; 32];

pub(crate) const POINT_Y: [u8; 32] = [0x2E; 32];

/// The `TPMT_PUBLIC` of the attestation key with point (`x`, `y`) as a TPM returns it.
pub(crate) fn ecc_public(x: &[u8], y: &[u8]) -> Vec<u8> {
    let x_len = u16::try_from(x.len()).unwrap().to_be_bytes();
    let y_len = u16::try_from(y.len()).unwrap().to_be_bytes();
    cat(&[
        &[0x00, 0x23, 0x00, 0x0B, 0x00, 0x05, 0x04, 0x72, 0, 0],
        &[0x00, 0x10, 0x00, 0x18, 0x00, 0x0B, 0x00, 0x03, 0x00, 0x10],
        &x_len,
        x,
        &y_len,
        y,
    ])
}

/// A response to TPM2_CreatePrimary with `public` as the `TPMT_PUBLIC`.
pub(crate) fn create_primary_with(public: &[u8]) -> Vec<u8> {
    let creation_data: &[u8] = &[
        0, 0, 0, 0, // pcrSelect: none
        0, 0,    // pcrDigest: empty
        0x01, // locality 0
        0x00, 0x23, // parentNameAlg: TPM_ALG_ECC... (any)
        0, 4, 0x40, 0, 0, 0x0B, // parentName: the hierarchy's handle
        0, 4, 0x40, 0, 0, 0x0B, // parentQualifiedName
        0, 0, // outsideInfo
    ];
    let public_len = u16::try_from(public.len()).unwrap().to_be_bytes();
    let data_len = u16::try_from(creation_data.len()).unwrap().to_be_bytes();
    let parameters = cat(&[
        &public_len,
        public,
        &data_len,
        creation_data,
        &[0, 32],
        &DIGEST,                                // creationHash
        &[0x80, 0x21, 0x40, 0, 0, 0x0B, 0, 32], // creationTicket: TPM_ST_CREATION, EH
        &DIGEST,
        &[0, 34, 0x00, 0x0B], // name: SHA-256 ...
        &DIGEST,              // ... of the public area
    ]);
    let parameter_size = u32::try_from(parameters.len()).unwrap().to_be_bytes();
    resized(cat(&[
        &[0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0],
        &[0x80, 0, 0, 0], // objectHandle
        &parameter_size,
        &parameters,
        &[0, 0], // nonceTPM
        &[0x01], // sessionAttributes: continueSession
        &[0, 0], // hmac
    ]))
}

pub(crate) fn create_primary_ok() -> Vec<u8> {
    create_primary_with(&ecc_public(&POINT_X, &POINT_Y))
}

/// A `TPMS_ATTEST` of a quote of PCRs 0 and 17 with 16 bytes of extraData.
pub(crate) fn attest_quote() -> Vec<u8> {
    let extra: Vec<u8> = (1..=16).collect();
    cat(&[
        &[0xFF, 0x54, 0x43, 0x47], // magic: TPM_GENERATED_VALUE
        &[0x80, 0x18],             // type: TPM_ST_ATTEST_QUOTE
        &[0, 34, 0x00, 0x0B],      // qualifiedSigner: SHA-256 ...
        &DIGEST,                   // ... name
        &[0, 16],                  // extraData: 16 bytes
        &extra,
        &[0, 0, 0, 0, 0, 0x01, 0x23, 0x45],             // clock
        &[0, 0, 0, 3],                                  // resetCount
        &[0, 0, 0, 0],                                  // restartCount
        &[0x01],                                        // safe
        &[0x20, 0x19, 0x10, 0x23, 0, 0x16, 0x36, 0x36], // firmwareVersion
        &[0, 0, 0, 1, 0x00, 0x0B, 3, 0x01, 0x00, 0x02], // pcrSelect: PCRs 0, 17
        &[0, 32],                                       // pcrDigest
        &DIGEST,
    ])
}

/// A response to TPM2_Quote of `attest` with `r` and `s` as given.
pub(crate) fn quote_with(attest: &[u8], r: &[u8], s: &[u8]) -> Vec<u8> {
    let sized = |b: &[u8]| cat(&[&u16::try_from(b.len()).unwrap().to_be_bytes(), b]);
    let parameters = cat(&[
        &sized(attest),
        &[0x00, 0x18, 0x00, 0x0B], // sigAlg: ECDSA, hash: SHA-256
        &sized(r),
        &sized(s),
    ]);
    resized(cat(&[
        &[0x80, 0x02, 0, 0, 0, 0, 0, 0, 0, 0],
        &u32::try_from(parameters.len()).unwrap().to_be_bytes(),
        &parameters,
        &[0, 0], // nonceTPM
        &[0x01], // sessionAttributes: continueSession
        &[0, 0], // hmac
    ]))
}

pub(crate) fn quote_ok() -> Vec<u8> {
    quote_with(&attest_quote(), &[0xA1; 32], &[0xB2; 32])
}

/// The authorization area of a command authorized by the empty password: size 9,
/// `TPM_RS_PW`, an empty `nonceCaller`, `sessionAttributes` 0, an empty `hmac`.
pub(crate) const EMPTY_PASSWORD_AUTH: [u8; 13] = [0, 0, 0, 9, 0x40, 0, 0, 9, 0, 0, 0, 0, 0];
