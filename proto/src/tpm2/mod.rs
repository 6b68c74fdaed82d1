//! TPM 2.0 structures, one reader and writer for all of them: what the hypervisor's TPM
//! driver sends and reads, the uTPM's quotes and what the verifier (`vpr verify`, credential
//! activation) checks.
//!
//! - [`Reader`] and [`Writer`]: big-endian fields and `TPM2B_*` sized buffers, commands
//!   with their size; a [`Error`] names what was short or wrong;
//! - PCR selections of the SHA-256 bank ([`pcr_bitmap`], [`Writer::pcr_selection_sha256`]);
//! - a quote's `TPMS_ATTEST` ([`QuoteInfo`]) and ECDSA `TPMT_SIGNATURE`
//!   ([`Writer::ecdsa_signature`], [`Reader::ecdsa_signature`]);
//! - the `TPMT_PUBLIC` of an ECDSA P-256 signing key ([`Writer::ecc_signing_public`],
//!   [`EccPublic`]) and object names ([`sha256_name`]);
//! - the algorithm identifiers, structure tags and object attributes they use.
//!
//! Everything cites the TPM 2.0 Library specification, revision 1.59: Part 1
//! (Architecture), Part 2 (Structures).

mod attest;
mod marshal;
mod pcr;
mod public;

pub use attest::{QuoteInfo, MAX_ATTEST, P256_LEN};
pub use marshal::{Error, Reader, Writer};
pub use pcr::{pcr_bitmap, selected_pcrs, PCR_COUNT, PCR_SELECT_LEN, PCR_SELECT_MIN};
pub use public::EccPublic;

/// The largest `TPM2B_DIGEST` (Part 2 §10.4.2: the size of `TPMU_HA`, a SHA-512 digest).
pub const MAX_DIGEST: usize = 64;
/// The largest `TPM2B_NAME` (Part 2 §10.5.3: the size of `TPMU_NAME`, a `TPMT_HA` — an
/// algorithm identifier and the largest digest), and of a quote's `extraData`.
pub const MAX_NAME: usize = 2 + MAX_DIGEST;
/// Size of a SHA-256 digest.
pub const SHA256_LEN: usize = 32;

/// `TPM_ALG_RSA` (Part 2 §6.3): the RSA object type.
pub const TPM_ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_AES` (Part 2 §6.3).
pub const TPM_ALG_AES: u16 = 0x0006;
/// `TPM_ALG_SHA256` (Part 2 §6.3).
pub const TPM_ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_NULL` (Part 2 §6.3): "no algorithm" in a selector.
pub const TPM_ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_ECDSA` (Part 2 §6.3): the ECDSA signature scheme.
pub const TPM_ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_ECC` (Part 2 §6.3): an elliptic-curve object.
pub const TPM_ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_CFB` (Part 2 §6.3): the CFB block cipher mode.
pub const TPM_ALG_CFB: u16 = 0x0043;
/// `TPM_ECC_NIST_P256` (Part 2 §6.4): the NIST P-256 curve.
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
/// `TPM_ST_ATTEST_QUOTE` (Part 2 §6.9): the `type` of a `TPMS_ATTEST` made by TPM2_Quote.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_GENERATED_VALUE` (Part 2 §6.2): the `magic` opening every `TPMS_ATTEST` the TPM
/// made itself ("\xffTCG"), which a restricted signing key signs nothing without.
pub const TPM_GENERATED_VALUE: u32 = 0xFF54_4347;

// Object attributes, `TPMA_OBJECT` (Part 2 §8.3): a u32 of bits.

/// `fixedTPM` (bit 1): the object cannot be duplicated out of this TPM.
pub const TPMA_OBJECT_FIXEDTPM: u32 = 1 << 1;
/// `fixedParent` (bit 4): the object cannot be duplicated to another parent.
pub const TPMA_OBJECT_FIXEDPARENT: u32 = 1 << 4;
/// `sensitiveDataOrigin` (bit 5): the TPM generated the object's secret itself.
pub const TPMA_OBJECT_SENSITIVEDATAORIGIN: u32 = 1 << 5;
/// `userWithAuth` (bit 6): the object's authValue (here empty) authorizes its use.
pub const TPMA_OBJECT_USERWITHAUTH: u32 = 1 << 6;
/// `adminWithPolicy` (bit 7): the object's admin role needs its policy.
pub const TPMA_OBJECT_ADMINWITHPOLICY: u32 = 1 << 7;
/// `noDA` (bit 10): failed authorizations of the object do not count towards
/// dictionary-attack lockout.
pub const TPMA_OBJECT_NODA: u32 = 1 << 10;
/// `restricted` (bit 16): a signing key that signs only digests the TPM computed — data
/// that does not begin with [`TPM_GENERATED_VALUE`], or attestations it made.
pub const TPMA_OBJECT_RESTRICTED: u32 = 1 << 16;
/// `decrypt` (bit 17): a decryption (with `restricted`: a storage) key.
pub const TPMA_OBJECT_DECRYPT: u32 = 1 << 17;
/// `sign` (bit 18): a signing key.
pub const TPMA_OBJECT_SIGN: u32 = 1 << 18;
/// The `objectAttributes` of the hypervisor's attestation key: fixedTPM, fixedParent,
/// sensitiveDataOrigin, userWithAuth, noDA, restricted, sign.
pub const ATTESTATION_KEY_ATTRIBUTES: u32 = TPMA_OBJECT_FIXEDTPM
    | TPMA_OBJECT_FIXEDPARENT
    | TPMA_OBJECT_SENSITIVEDATAORIGIN
    | TPMA_OBJECT_USERWITHAUTH
    | TPMA_OBJECT_NODA
    | TPMA_OBJECT_RESTRICTED
    | TPMA_OBJECT_SIGN;
const _: () = assert!(ATTESTATION_KEY_ATTRIBUTES == 0x0005_0472);

/// The name (Part 1 §16) of an object with the SHA-256 name algorithm and the marshalled
/// `TPMT_PUBLIC` `public`: [`TPM_ALG_SHA256`] ‖ SHA-256(`public`).
#[must_use]
pub fn sha256_name(public: &[u8]) -> [u8; 34] {
    let mut name = [0; 34];
    name[..2].copy_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    name[2..].copy_from_slice(&crate::crypto::hash(&[public]).0);
    name
}
