//! The X.509 links of the attestation chain, and the CA that issues one of them.
//!
//! `vpr verify` trusts nothing but the root certificate of the CA that plays the TPM
//! manufacturer. Two links of the chain it checks are X.509 certificates:
//!
//! 1. the TPM's **EK certificate** (RSA-2048 endorsement key), written by `swtpm_setup` and
//!    signed by the CA's intermediate, itself signed by the root;
//! 2. an **attestation-key (AK) certificate**, which the same CA issues
//!    ([`Ca::issue_attestation_key_certificate`]) once credential activation (see
//!    [`super::credential`]) has proven that the AK, an ECC P-256 restricted signing key,
//!    lives on the TPM of that EK. Its subject names the EK certificate by its SHA-256
//!    ([`ek_binding`]).
//!
//! [`verify_chain`] checks either kind against the root, following RFC 5280 §6.1 (basic
//! path validation) without policies, name constraints or revocation:
//!
//! * the root must be self-signed (§3.2, §6.1.1 (d));
//! * the path leaf → intermediate(s) → root is built by *issuer*/*subject* name equality
//!   (§4.1.2.4, §6.1.3 (a)(4)); names are compared as DER encodings, stricter than the
//!   §7.1 rules, which is harmless when a CA copies its subject into the issuer field, as
//!   every conforming CA does;
//! * every signature verifies with the issuer's key (§4.1.1.3, §6.1.3 (a)(1));
//! * every certificate is within its validity period at the given time (§4.1.2.5,
//!   §6.1.3 (a)(2));
//! * every issuer is a CA: basicConstraints with cA TRUE (§4.2.1.9, §6.1.4 (k)), keyCertSign
//!   in keyUsage when that extension is present (§4.2.1.3, §6.1.4 (n)), pathLenConstraint
//!   respected (§6.1.4 (l), (m)), and no critical extension this module does not process
//!   (§4.2, §6.1.4 (o)).
//!
//! The *leaf's* extensions are the application's business (§6.1.5 (f) leaves the final
//! certificate's unrecognised critical extensions to it): TCG EK certificates carry a
//! critical subjectAltName whose directoryName holds the TPM's manufacturer, model and
//! firmware version, an EK extended key usage (2.23.133.8.1) and subjectDirectoryAttributes
//! with the TPM specification version; none of these make verification fail.
//!
//! Signatures: sha256WithRSAEncryption (what swtpm's CA uses), sha384WithRSAEncryption and
//! sha512WithRSAEncryption (RFC 4055 §5), ecdsa-with-SHA256 and ecdsa-with-SHA384 with P-256
//! issuer keys (RFC 5758 §3.2). Anything else, including P-384 issuer keys, is refused with
//! [`X509Error::UnsupportedSignatureAlgorithm`] or [`X509Error::WrongKeyType`].
//!
//! A signature is checked over the DER re-encoding of the decoded `tbsCertificate`. The
//! decoder only accepts DER, whose encoding is unique, so this is the signed byte string; a
//! certificate that is not strict DER fails to decode or fails verification (never the
//! reverse).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rand_core::RngCore;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::der::asn1::{
    BitString, GeneralizedTime, ObjectIdentifier, OctetString, PrintableStringRef, SetOfVec,
    UtcTime, Utf8StringRef,
};
use x509_cert::der::oid::db::{rfc4519, rfc5280, rfc5912};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::referenced::OwnedToRef;
use x509_cert::der::{Any, DateTime, Decode, DecodePem, Encode, Tag, Tagged};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{DynSignatureAlgorithmIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

pub use x509_cert::Certificate;

/// The common name (OID 2.5.4.3) in the subject of every attestation-key certificate.
pub const ATTESTATION_KEY_COMMON_NAME: &str = "vpr attestation key";

/// The root certificate in a CA folder made by `qemu/tpm-setup.sh`, relative to `CA_DIR`.
pub const ROOT_CERTIFICATE_FILE: &str = "ca/swtpm-localca-rootca-cert.pem";
/// The intermediate (issuing) certificate, relative to `CA_DIR`.
pub const INTERMEDIATE_CERTIFICATE_FILE: &str = "ca/issuercert.pem";
/// The intermediate's private key (GnuTLS text, then a PKCS#1 PEM block), relative to `CA_DIR`.
pub const SIGNING_KEY_FILE: &str = "ca/signkey.pem";

/// Smallest RSA issuer key accepted, in bytes (2048 bits).
const MIN_RSA_ISSUER_KEY_BYTES: usize = 256;
/// Length of the EK binding as written in the subject serialNumber: 64 lowercase hex digits.
const EK_BINDING_HEX_LEN: usize = 64;

const PEM_CERTIFICATE_BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const PEM_CERTIFICATE_END: &[u8] = b"-----END CERTIFICATE-----";

/// Extensions an *issuer* certificate may mark critical: those this module processes
/// (basicConstraints, keyUsage) and those whose processing for path validation is a no-op
/// here (key identifiers, alternative names; RFC 5280 §6.1 processes names only for name
/// constraints, which an issuer cannot use here since nameConstraints is refused).
const ISSUER_CRITICAL_EXTENSIONS_UNDERSTOOD: [ObjectIdentifier; 6] = [
    rfc5280::ID_CE_BASIC_CONSTRAINTS,
    rfc5280::ID_CE_KEY_USAGE,
    rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER,
    rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER,
    rfc5280::ID_CE_SUBJECT_ALT_NAME,
    rfc5280::ID_CE_ISSUER_ALT_NAME,
];

/// Why a certificate could not be read, issued or verified.
///
/// Variants that concern one certificate name it by its subject (RFC 4514 string).
#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    /// A file of the CA could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The input has no PEM `CERTIFICATE` block and is not a DER certificate either.
    #[error("not an X.509 certificate: no PEM CERTIFICATE block, and not DER: {0}")]
    NotCertificate(#[source] x509_cert::der::Error),
    /// A PEM `CERTIFICATE` block is malformed (bad base64, or its content is not a DER
    /// certificate).
    #[error("malformed PEM CERTIFICATE block: {0}")]
    BadPem(#[source] x509_cert::der::Error),
    /// A PEM `CERTIFICATE` block has no `-----END CERTIFICATE-----` line.
    #[error("a PEM CERTIFICATE block has no END line")]
    UnterminatedPem,
    /// A file that should hold exactly one certificate holds several.
    #[error("{path} holds {count} certificates, expected exactly one")]
    CertificateCount {
        /// The file.
        path: PathBuf,
        /// How many certificates it holds.
        count: usize,
    },
    /// The CA's private key could not be parsed.
    #[error("no usable RSA private key in {path}: {reason}")]
    PrivateKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA's private key is not the key of its intermediate certificate.
    #[error("the private key in {path} does not belong to the intermediate certificate {subject}")]
    KeyMismatch {
        /// The key file.
        path: PathBuf,
        /// Subject of the intermediate certificate.
        subject: String,
    },
    /// A certificate could not be DER-encoded.
    #[error("cannot DER-encode a certificate: {0}")]
    Encode(#[source] x509_cert::der::Error),
    /// A signature does not verify with the key of the certificate named as its issuer
    /// (RFC 5280 §6.1.3 (a)(1)).
    #[error(
        "the signature on certificate {subject} does not verify with the key of its issuer \
         {issuer} (RFC 5280 §6.1.3 (a)(1))"
    )]
    BadSignature {
        /// Subject of the signed certificate.
        subject: String,
        /// Subject of the issuer certificate whose key was tried.
        issuer: String,
    },
    /// No certificate among the root and the intermediates has the issuer name of a
    /// certificate of the path (RFC 5280 §4.1.2.4, §6.1.3 (a)(4)).
    #[error(
        "no certificate among the root and the intermediates is named {issuer}, the issuer of \
         {subject} (RFC 5280 §6.1.3 (a)(4))"
    )]
    IssuerNotFound {
        /// Subject of the certificate whose issuer is missing.
        subject: String,
        /// The issuer name it carries.
        issuer: String,
    },
    /// An issuer has no basicConstraints extension with cA TRUE (RFC 5280 §4.2.1.9,
    /// §6.1.4 (k)).
    #[error(
        "certificate {subject} signs other certificates but is not a CA: basicConstraints is \
         missing or has cA FALSE (RFC 5280 §4.2.1.9, §6.1.4 (k))"
    )]
    IssuerNotCa {
        /// Subject of the issuer.
        subject: String,
    },
    /// An issuer's keyUsage lacks keyCertSign (RFC 5280 §4.2.1.3, §6.1.4 (n)).
    #[error(
        "certificate {subject} signs other certificates but its keyUsage lacks keyCertSign \
         (RFC 5280 §4.2.1.3, §6.1.4 (n))"
    )]
    IssuerKeyUsage {
        /// Subject of the issuer.
        subject: String,
    },
    /// An issuer's pathLenConstraint is exceeded (RFC 5280 §4.2.1.9, §6.1.4 (l), (m)).
    #[error(
        "certificate {subject} allows {allowed} intermediate certificate(s) below it, the path \
         has {found} (pathLenConstraint, RFC 5280 §4.2.1.9, §6.1.4 (m))"
    )]
    PathTooLong {
        /// Subject of the issuer.
        subject: String,
        /// Its pathLenConstraint.
        allowed: u8,
        /// Non-self-issued intermediates between it and the leaf.
        found: usize,
    },
    /// An issuer carries a critical extension this module does not process (RFC 5280 §4.2,
    /// §6.1.4 (o)).
    #[error(
        "issuer certificate {subject} has a critical extension {oid} that is not processed \
         here (RFC 5280 §4.2, §6.1.4 (o))"
    )]
    UnsupportedCriticalExtension {
        /// Subject of the issuer.
        subject: String,
        /// The extension.
        oid: ObjectIdentifier,
    },
    /// An extension appears twice, or basicConstraints/keyUsage does not decode (RFC 5280
    /// §4.2: "a certificate MUST NOT include more than one instance of a particular
    /// extension").
    #[error("certificate {subject} has a repeated or malformed extension {oid} (RFC 5280 §4.2)")]
    BadExtension {
        /// Subject of the certificate.
        subject: String,
        /// The extension.
        oid: ObjectIdentifier,
    },
    /// A certificate is not valid at the time of verification (RFC 5280 §4.1.2.5,
    /// §6.1.3 (a)(2)).
    #[error(
        "certificate {subject} is valid from {not_before} through {not_after}, not at the time \
         of verification (RFC 5280 §4.1.2.5, §6.1.3 (a)(2))"
    )]
    NotValidAt {
        /// Subject of the certificate.
        subject: String,
        /// Its notBefore.
        not_before: String,
        /// Its notAfter.
        not_after: String,
    },
    /// A certificate is signed with an algorithm this module does not verify.
    #[error("certificate {subject} is signed with unsupported algorithm {oid}")]
    UnsupportedSignatureAlgorithm {
        /// Subject of the certificate.
        subject: String,
        /// The signature algorithm.
        oid: ObjectIdentifier,
    },
    /// The parameters of a signature algorithm are not the ones its specification mandates
    /// (NULL for RSA, RFC 4055 §5; absent for ECDSA, RFC 5758 §3.2).
    #[error(
        "certificate {subject}: parameters of signature algorithm {oid} are not as specified \
         (RFC 4055 §5, RFC 5758 §3.2)"
    )]
    BadSignatureParameters {
        /// Subject of the certificate.
        subject: String,
        /// The signature algorithm.
        oid: ObjectIdentifier,
    },
    /// The algorithm inside the signed part differs from the outer signatureAlgorithm
    /// (RFC 5280 §4.1.1.2, §4.1.2.3).
    #[error(
        "certificate {subject}: the signature algorithm of tbsCertificate differs from \
         signatureAlgorithm (RFC 5280 §4.1.1.2)"
    )]
    SignatureAlgorithmMismatch {
        /// Subject of the certificate.
        subject: String,
    },
    /// The certificate given as root is not self-signed (RFC 5280 §3.2, §6.1.1 (d)).
    #[error("the root {subject} is not a self-signed certificate: {reason}")]
    RootNotSelfSigned {
        /// Subject of the root.
        subject: String,
        /// Which check failed.
        reason: &'static str,
    },
    /// A certificate's public key is not of the required type.
    #[error("certificate {subject} holds a {found} key where an {expected} key is required")]
    WrongKeyType {
        /// Subject of the certificate.
        subject: String,
        /// The required key type.
        expected: &'static str,
        /// The key type found.
        found: String,
    },
    /// A certificate's public key is malformed or too weak.
    #[error("certificate {subject} holds a malformed or too weak public key: {reason}")]
    BadPublicKey {
        /// Subject of the certificate.
        subject: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate is not an attestation-key certificate (its subject lacks the common
    /// name [`ATTESTATION_KEY_COMMON_NAME`]).
    #[error("certificate {subject} is not a vpr attestation-key certificate: {reason}")]
    NotAttestationKeyCertificate {
        /// Subject of the certificate.
        subject: String,
        /// What is missing.
        reason: &'static str,
    },
    /// An attestation-key certificate does not name an EK certificate the way
    /// [`Ca::issue_attestation_key_certificate`] does.
    #[error(
        "attestation-key certificate {subject} has no well-formed EK binding (one subject \
         serialNumber holding the lowercase hex SHA-256 of the EK certificate): {reason}"
    )]
    MissingEkBinding {
        /// Subject of the certificate.
        subject: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The validity period asked for a new certificate is unusable.
    #[error("invalid validity period for a new certificate: {reason}")]
    InvalidValidity {
        /// What is wrong.
        reason: &'static str,
    },
    /// The serial number asked for a new certificate is unusable (RFC 5280 §4.1.2.2).
    #[error("invalid serial number for a new certificate: {reason} (RFC 5280 §4.1.2.2)")]
    InvalidSerial {
        /// What is wrong.
        reason: &'static str,
    },
    /// The EK certificate to bind an attestation key to is not a DER certificate.
    #[error("the EK certificate to bind the attestation key to is not a DER certificate: {0}")]
    BadEkCertificate(#[source] x509_cert::der::Error),
    /// Building the new certificate failed.
    #[error("cannot build the certificate: {0}")]
    Build(String),
    /// Signing the new certificate failed.
    #[error("cannot sign the certificate: {0}")]
    Sign(#[source] rsa::signature::Error),
}

/// Reads one or more certificates: every PEM `CERTIFICATE` block of `bytes` (RFC 7468 §5;
/// text before, between and after the blocks is ignored), or, if there is none, `bytes` as
/// exactly one DER certificate (RFC 5280 §4.1).
///
/// Never panics, whatever the input.
pub fn read_certificates(bytes: &[u8]) -> Result<Vec<Certificate>, X509Error> {
    if find(bytes, PEM_CERTIFICATE_BEGIN).is_none() {
        return Certificate::from_der(bytes)
            .map(|certificate| vec![certificate])
            .map_err(X509Error::NotCertificate);
    }
    let mut certificates = Vec::new();
    let mut rest = bytes;
    while let Some(start) = find(rest, PEM_CERTIFICATE_BEGIN) {
        let block_and_rest = rest.get(start..).unwrap_or_default();
        let end = find(block_and_rest, PEM_CERTIFICATE_END).ok_or(X509Error::UnterminatedPem)?;
        let block_len = end + PEM_CERTIFICATE_END.len();
        let block = block_and_rest.get(..block_len).unwrap_or_default();
        certificates.push(Certificate::from_pem(block).map_err(X509Error::BadPem)?);
        rest = block_and_rest.get(block_len..).unwrap_or_default();
    }
    Ok(certificates)
}

/// The DER encoding of `certificate` (RFC 5280 §4.1); for a decoded certificate, the bytes it
/// was decoded from.
pub fn der(certificate: &Certificate) -> Result<Vec<u8>, X509Error> {
    certificate.to_der().map_err(X509Error::Encode)
}

/// The SHA-256 of a DER EK certificate: what an attestation-key certificate issued for that EK
/// carries as its EK binding ([`ek_binding`]).
pub fn ek_certificate_digest(ek_certificate_der: &[u8]) -> [u8; 32] {
    Sha256::digest(ek_certificate_der).into()
}

/// A fresh random serial number for [`Ca::issue_attestation_key_certificate`] (128 bits from
/// the operating system: unique without any state kept by the CA, RFC 5280 §4.1.2.2).
pub fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut serial);
    serial
}

/// The RSA public key of `certificate` (subjectPublicKeyInfo with algorithm rsaEncryption,
/// RFC 3279 §2.3.1), e.g. an EK certificate's.
pub fn rsa_public_key(certificate: &Certificate) -> Result<RsaPublicKey, X509Error> {
    rsa_key(certificate)
}

/// The ECC P-256 public key of `certificate` (subjectPublicKeyInfo with algorithm
/// id-ecPublicKey and named curve secp256r1, RFC 5480 §2), e.g. an attestation key's.
pub fn p256_public_key(certificate: &Certificate) -> Result<p256::PublicKey, X509Error> {
    p256_key(certificate)
}

/// The EK binding of an attestation-key certificate: the SHA-256 of the DER EK certificate of
/// the TPM the attestation key was activated on, which the certificate's subject carries as
/// its serialNumber attribute (OID 2.5.4.5) in lowercase hex.
///
/// Refuses a certificate whose subject does not have exactly one common name, equal to
/// [`ATTESTATION_KEY_COMMON_NAME`], and exactly one serialNumber, a PrintableString of 64
/// lowercase hex digits. This reads the certificate only: check it first with
/// [`verify_chain`].
pub fn ek_binding(ak_certificate: &Certificate) -> Result<[u8; 32], X509Error> {
    let subject = &ak_certificate.tbs_certificate.subject;
    let attributes = || subject.0.iter().flat_map(|rdn| rdn.0.iter());
    let not_ak =
        |reason| X509Error::NotAttestationKeyCertificate { subject: name_string(subject), reason };
    let mut common_names = attributes().filter(|atv| atv.oid == rfc4519::CN);
    match (common_names.next(), common_names.next()) {
        (Some(cn), None) => {
            let is_ours = matches!(cn.value.tag(), Tag::Utf8String | Tag::PrintableString)
                && cn.value.value() == ATTESTATION_KEY_COMMON_NAME.as_bytes();
            if !is_ours {
                return Err(not_ak("its common name is not \"vpr attestation key\""));
            }
        }
        (None, _) => return Err(not_ak("its subject has no common name")),
        (Some(_), Some(_)) => return Err(not_ak("its subject has several common names")),
    }
    let missing = |reason| X509Error::MissingEkBinding { subject: name_string(subject), reason };
    let mut serial_numbers = attributes().filter(|atv| atv.oid == rfc4519::SERIAL_NUMBER);
    let value = match (serial_numbers.next(), serial_numbers.next()) {
        (Some(serial_number), None) => &serial_number.value,
        (None, _) => return Err(missing("its subject has no serialNumber")),
        (Some(_), Some(_)) => return Err(missing("its subject has several serialNumbers")),
    };
    if value.tag() != Tag::PrintableString {
        return Err(missing("the serialNumber is not a PrintableString"));
    }
    let hex_digits = value.value();
    let well_formed = hex_digits.len() == EK_BINDING_HEX_LEN
        && hex_digits.iter().all(|digit| matches!(digit, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(missing("the serialNumber is not 64 lowercase hexadecimal digits"));
    }
    let mut binding = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut binding)
        .map_err(|_| missing("the serialNumber is not hexadecimal"))?;
    Ok(binding)
}

/// Verifies that `leaf` chains to `root` through `intermediates` and that the whole path is
/// valid at `now` (RFC 5280 §6.1, without policies, name constraints or revocation).
///
/// * `root` is the trust anchor: it must be self-signed, subject equal to issuer and
///   signature verifying with its own key (RFC 5280 §3.2, §6.1.1 (d)), and valid at `now`.
/// * The path is built from the leaf upwards by name: each certificate's issuer must equal
///   the subject of the root or of a not yet used intermediate (RFC 5280 §4.1.2.4,
///   §6.1.3 (a)(4)). When several candidates share that name, the first whose key verifies
///   the signature is taken. `intermediates` may be given in any order and may include
///   unrelated certificates.
/// * Every signature verifies with the issuer's key (RFC 5280 §4.1.1.3, §6.1.3 (a)(1)), the
///   inner and outer signature algorithms agree (RFC 5280 §4.1.1.2), and RSA issuer keys have
///   at least 2048 bits.
/// * Every certificate of the path is valid at `now`, bounds included (RFC 5280 §4.1.2.5,
///   §6.1.3 (a)(2)), and repeats no extension (RFC 5280 §4.2).
/// * Every issuer, the root included, has basicConstraints cA TRUE (RFC 5280 §4.2.1.9,
///   §6.1.4 (k)), keyCertSign if it has keyUsage (RFC 5280 §4.2.1.3, §6.1.4 (n)), a
///   pathLenConstraint (if any) no smaller than the number of non-self-issued intermediates
///   below it (RFC 5280 §6.1.4 (l), (m)), and no critical extension outside basicConstraints,
///   keyUsage, key identifiers and alternative names (RFC 5280 §4.2, §6.1.4 (o)).
/// * The leaf's extensions, critical or not, are left to the caller (RFC 5280 §6.1.5 (f)):
///   TPM EK certificates carry TCG-specific ones.
pub fn verify_chain(
    root: &Certificate,
    intermediates: &[Certificate],
    leaf: &Certificate,
    now: SystemTime,
) -> Result<(), X509Error> {
    check_root(root)?;
    check_extensions_unique(root)?;
    check_validity(root, now)?;
    check_extensions_unique(leaf)?;
    check_validity(leaf, now)?;

    let mut used = vec![false; intermediates.len()];
    let mut current = leaf;
    // Non-self-issued intermediates between the issuer being looked for and the leaf.
    let mut below = 0usize;
    loop {
        let wanted = &current.tbs_certificate.issuer;
        let mut failure = None;
        if root.tbs_certificate.subject == *wanted {
            match verify_signed_by(current, root) {
                Ok(()) => return check_issuer(root, below),
                Err(error) => failure = Some(error),
            }
        }
        let mut next = None;
        for (index, candidate) in intermediates.iter().enumerate() {
            if used.get(index).copied().unwrap_or(true)
                || candidate.tbs_certificate.subject != *wanted
            {
                continue;
            }
            match verify_signed_by(current, candidate) {
                Ok(()) => {
                    next = Some((index, candidate));
                    break;
                }
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        let Some((index, issuer)) = next else {
            return Err(failure.unwrap_or_else(|| X509Error::IssuerNotFound {
                subject: subject_of(current),
                issuer: name_string(wanted),
            }));
        };
        if let Some(flag) = used.get_mut(index) {
            *flag = true;
        }
        check_extensions_unique(issuer)?;
        check_validity(issuer, now)?;
        check_issuer(issuer, below)?;
        if issuer.tbs_certificate.subject != issuer.tbs_certificate.issuer {
            below += 1;
        }
        current = issuer;
    }
}

/// The CA that plays the TPM manufacturer, as made by `qemu/tpm-setup.sh`: its root and
/// intermediate certificates, and the intermediate's private key, with which it issues
/// attestation-key certificates.
pub struct Ca {
    root: Certificate,
    root_der: Vec<u8>,
    intermediate: Certificate,
    intermediate_der: Vec<u8>,
    signing_key: pkcs1v15::SigningKey<Sha256>,
}

impl fmt::Debug for Ca {
    /// Names the certificates; never shows the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("root", &subject_of(&self.root))
            .field("intermediate", &subject_of(&self.intermediate))
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `ca_dir` (the `CA_DIR` of `qemu/tpm-setup.sh`):
    /// [`ROOT_CERTIFICATE_FILE`], [`INTERMEDIATE_CERTIFICATE_FILE`] (one PEM certificate
    /// each) and [`SIGNING_KEY_FILE`] (GnuTLS's text description followed by a PEM
    /// `RSA PRIVATE KEY` block, PKCS#1; a PKCS#8 `PRIVATE KEY` block is accepted too).
    ///
    /// Checks that the root is self-signed, that the root is a CA that signed the
    /// intermediate, that the intermediate is a CA, and that the private key is the
    /// intermediate's; validity periods are not checked here. The root's private key is never
    /// read.
    pub fn load(ca_dir: &Path) -> Result<Ca, X509Error> {
        let root = read_single_certificate(&ca_dir.join(ROOT_CERTIFICATE_FILE))?;
        let intermediate = read_single_certificate(&ca_dir.join(INTERMEDIATE_CERTIFICATE_FILE))?;
        let key_path = ca_dir.join(SIGNING_KEY_FILE);
        let key_text = read_file(&key_path)?;
        let private_key = parse_rsa_private_key(&key_text)
            .map_err(|reason| X509Error::PrivateKey { path: key_path.clone(), reason })?;
        if private_key.to_public_key() != rsa_key(&intermediate)? {
            return Err(X509Error::KeyMismatch {
                path: key_path,
                subject: subject_of(&intermediate),
            });
        }
        check_root(&root)?;
        check_issuer(&root, 0)?;
        if intermediate.tbs_certificate.issuer != root.tbs_certificate.subject {
            return Err(X509Error::IssuerNotFound {
                subject: subject_of(&intermediate),
                issuer: name_string(&intermediate.tbs_certificate.issuer),
            });
        }
        verify_signed_by(&intermediate, &root)?;
        check_issuer(&intermediate, 0)?;
        Ok(Ca {
            root_der: der(&root)?,
            intermediate_der: der(&intermediate)?,
            root,
            intermediate,
            signing_key: pkcs1v15::SigningKey::<Sha256>::new(private_key),
        })
    }

    /// The root certificate, the trust anchor a verifier needs.
    pub fn root(&self) -> &Certificate {
        &self.root
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The intermediate certificate, which signs EK and attestation-key certificates.
    pub fn intermediate(&self) -> &Certificate {
        &self.intermediate
    }

    /// The intermediate certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// Issues the certificate of attestation key `ak`, to be called once credential activation
    /// has proven that `ak` is on the TPM whose EK certificate is `ek_certificate_der` (DER).
    /// Returns the new certificate, DER.
    ///
    /// The certificate (RFC 5280 §4.1) is X.509 v3, signed sha256WithRSAEncryption by the
    /// intermediate (issuer = the intermediate's subject, §4.1.2.4), with serial number
    /// `serial` (a positive integer, §4.1.2.2: e.g. [`random_serial`]; all zeroes is refused)
    /// and validity from `not_before` through `not_after` (UTCTime through 2049, then
    /// GeneralizedTime, §4.1.2.5). Its subject is CN=[`ATTESTATION_KEY_COMMON_NAME`] (UTF8String)
    /// plus serialNumber (OID 2.5.4.5, PrintableString) = lowercase hex of the SHA-256 of
    /// `ek_certificate_der`: the EK binding read back by [`ek_binding`]. Extensions:
    /// basicConstraints cA FALSE, critical (§4.2.1.9); keyUsage digitalSignature only,
    /// critical (§4.2.1.3); subjectKeyIdentifier, SHA-1 of the key (§4.2.1.2, method 1);
    /// authorityKeyIdentifier = the intermediate's subjectKeyIdentifier, or the SHA-1 of its
    /// key if it has none (§4.2.1.1).
    pub fn issue_attestation_key_certificate(
        &self,
        ak: &p256::PublicKey,
        ek_certificate_der: &[u8],
        serial: [u8; 16],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Vec<u8>, X509Error> {
        Certificate::from_der(ek_certificate_der).map_err(X509Error::BadEkCertificate)?;
        if serial.iter().all(|&byte| byte == 0) {
            return Err(X509Error::InvalidSerial { reason: "it must be positive" });
        }
        if not_after < not_before {
            return Err(X509Error::InvalidValidity { reason: "notAfter is before notBefore" });
        }
        let build = |error: x509_cert::der::Error| X509Error::Build(error.to_string());
        let serial_number = SerialNumber::new(&serial).map_err(build)?;
        let validity = Validity {
            not_before: certificate_time(not_before)?,
            not_after: certificate_time(not_after)?,
        };
        let binding = hex::encode(ek_certificate_digest(ek_certificate_der));
        let subject = attestation_key_subject(&binding).map_err(build)?;
        let subject_public_key_info = SubjectPublicKeyInfoOwned::from_key(*ak)
            .map_err(|error| X509Error::Build(error.to_string()))?;
        let signature_algorithm = self
            .signing_key
            .signature_algorithm_identifier()
            .map_err(|error| X509Error::Build(error.to_string()))?;

        let subject_key_identifier =
            SubjectKeyIdentifier::try_from(subject_public_key_info.owned_to_ref())
                .map_err(build)?;
        let authority_key_identifier =
            match self.intermediate.tbs_certificate.get::<SubjectKeyIdentifier>() {
                Ok(Some((_, issuer_key_identifier))) => AuthorityKeyIdentifier {
                    key_identifier: Some(issuer_key_identifier.0),
                    ..AuthorityKeyIdentifier::default()
                },
                _ => AuthorityKeyIdentifier::try_from(
                    self.intermediate.tbs_certificate.subject_public_key_info.owned_to_ref(),
                )
                .map_err(build)?,
            };
        let extensions = vec![
            extension(&BasicConstraints { ca: false, path_len_constraint: None }, true)
                .map_err(build)?,
            extension(&KeyUsage(KeyUsages::DigitalSignature.into()), true).map_err(build)?,
            extension(&subject_key_identifier, false).map_err(build)?,
            extension(&authority_key_identifier, false).map_err(build)?,
        ];

        let tbs_certificate = TbsCertificate {
            version: Version::V3,
            serial_number,
            signature: signature_algorithm.clone(),
            issuer: self.intermediate.tbs_certificate.subject.clone(),
            validity,
            subject,
            subject_public_key_info,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };
        let signed_bytes = tbs_certificate.to_der().map_err(X509Error::Encode)?;
        let signature = self.signing_key.try_sign(&signed_bytes).map_err(X509Error::Sign)?;
        let certificate = Certificate {
            tbs_certificate,
            signature_algorithm,
            signature: BitString::from_bytes(&signature.to_bytes()).map_err(build)?,
        };
        der(&certificate)
    }
}

/// `haystack`'s first occurrence of `needle`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn read_file(path: &Path) -> Result<Vec<u8>, X509Error> {
    std::fs::read(path).map_err(|source| X509Error::Read { path: path.to_path_buf(), source })
}

fn read_single_certificate(path: &Path) -> Result<Certificate, X509Error> {
    let mut certificates = read_certificates(&read_file(path)?)?;
    match certificates.len() {
        1 => certificates
            .pop()
            .ok_or(X509Error::CertificateCount { path: path.to_path_buf(), count: 0 }),
        count => Err(X509Error::CertificateCount { path: path.to_path_buf(), count }),
    }
}

/// The RSA private key in `text`: its PEM `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY`
/// (PKCS#8) block, whatever surrounds it.
fn parse_rsa_private_key(text: &[u8]) -> Result<RsaPrivateKey, String> {
    const FORMATS: [(&[u8], &[u8], bool); 2] = [
        (b"-----BEGIN RSA PRIVATE KEY-----", b"-----END RSA PRIVATE KEY-----", true),
        (b"-----BEGIN PRIVATE KEY-----", b"-----END PRIVATE KEY-----", false),
    ];
    for (begin, end, pkcs1) in FORMATS {
        let Some(start) = find(text, begin) else {
            continue;
        };
        let block_and_rest = text.get(start..).unwrap_or_default();
        let block_len = find(block_and_rest, end)
            .ok_or("the PEM private key block has no END line")?
            + end.len();
        let block = block_and_rest.get(..block_len).unwrap_or_default();
        let block = std::str::from_utf8(block).map_err(|error| error.to_string())?;
        let key = if pkcs1 {
            RsaPrivateKey::from_pkcs1_pem(block).map_err(|error| error.to_string())
        } else {
            RsaPrivateKey::from_pkcs8_pem(block).map_err(|error| error.to_string())
        };
        return key;
    }
    Err("no PEM RSA PRIVATE KEY or PRIVATE KEY block".to_owned())
}

/// `name` as an RFC 4514 string, for messages.
fn name_string(name: &Name) -> String {
    if name.is_empty() {
        "<empty name>".to_owned()
    } else {
        name.to_string()
    }
}

fn subject_of(certificate: &Certificate) -> String {
    name_string(&certificate.tbs_certificate.subject)
}

/// The subject of an attestation-key certificate bound to the EK certificate whose SHA-256 is
/// `binding_hex`.
fn attestation_key_subject(binding_hex: &str) -> Result<Name, x509_cert::der::Error> {
    let common_name = AttributeTypeAndValue {
        oid: rfc4519::CN,
        value: Any::encode_from(&Utf8StringRef::new(ATTESTATION_KEY_COMMON_NAME)?)?,
    };
    // X.520 serialNumber is a PrintableString (RFC 5280 Appendix A.1, X520SerialNumber).
    let serial_number = AttributeTypeAndValue {
        oid: rfc4519::SERIAL_NUMBER,
        value: Any::encode_from(&PrintableStringRef::new(binding_hex)?)?,
    };
    let rdn = |attribute| -> Result<RelativeDistinguishedName, x509_cert::der::Error> {
        Ok(RelativeDistinguishedName(SetOfVec::try_from(vec![attribute])?))
    };
    Ok(RdnSequence(vec![rdn(common_name)?, rdn(serial_number)?]))
}

/// An extension holding `value`.
fn extension<T: Encode + AssociatedOid>(
    value: &T,
    critical: bool,
) -> Result<Extension, x509_cert::der::Error> {
    Ok(Extension { extn_id: T::OID, critical, extn_value: OctetString::new(value.to_der()?)? })
}

/// `time` as RFC 5280 §4.1.2.5 wants it: UTCTime through 2049, GeneralizedTime from 2050.
fn certificate_time(time: SystemTime) -> Result<Time, X509Error> {
    let date_time = DateTime::from_system_time(time)
        .map_err(|_| X509Error::InvalidValidity { reason: "a time before 1970 or after 9999" })?;
    if date_time.year() <= UtcTime::MAX_YEAR {
        UtcTime::from_date_time(date_time).map(Time::UtcTime).map_err(|_| {
            X509Error::InvalidValidity { reason: "a time not representable as UTCTime" }
        })
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(date_time)))
    }
}

/// A description of the key type of `key_info`, for messages.
fn key_type(key_info: &SubjectPublicKeyInfoOwned) -> String {
    let oid = key_info.algorithm.oid;
    if oid == rfc5912::RSA_ENCRYPTION {
        return "RSA".to_owned();
    }
    if oid == rfc5912::ID_EC_PUBLIC_KEY {
        return match named_curve(key_info) {
            Some(curve) if curve == rfc5912::SECP_256_R_1 => "ECC P-256".to_owned(),
            Some(curve) if curve == rfc5912::SECP_384_R_1 => "ECC P-384".to_owned(),
            Some(curve) => format!("ECC (curve {curve})"),
            None => "ECC (no named curve)".to_owned(),
        };
    }
    format!("{oid}")
}

/// The named curve in the parameters of an id-ecPublicKey algorithm (RFC 5480 §2.1.1).
fn named_curve(key_info: &SubjectPublicKeyInfoOwned) -> Option<ObjectIdentifier> {
    key_info
        .algorithm
        .parameters
        .as_ref()
        .and_then(|parameters| parameters.decode_as::<ObjectIdentifier>().ok())
}

fn rsa_key(certificate: &Certificate) -> Result<RsaPublicKey, X509Error> {
    let key_info = &certificate.tbs_certificate.subject_public_key_info;
    if key_info.algorithm.oid != rfc5912::RSA_ENCRYPTION {
        return Err(X509Error::WrongKeyType {
            subject: subject_of(certificate),
            expected: "RSA",
            found: key_type(key_info),
        });
    }
    RsaPublicKey::try_from(key_info.owned_to_ref()).map_err(|error| X509Error::BadPublicKey {
        subject: subject_of(certificate),
        reason: error.to_string(),
    })
}

fn p256_key(certificate: &Certificate) -> Result<p256::PublicKey, X509Error> {
    let key_info = &certificate.tbs_certificate.subject_public_key_info;
    if key_info.algorithm.oid != rfc5912::ID_EC_PUBLIC_KEY
        || named_curve(key_info) != Some(rfc5912::SECP_256_R_1)
    {
        return Err(X509Error::WrongKeyType {
            subject: subject_of(certificate),
            expected: "ECC P-256",
            found: key_type(key_info),
        });
    }
    let bad = |reason: &str| X509Error::BadPublicKey {
        subject: subject_of(certificate),
        reason: reason.to_owned(),
    };
    let point = key_info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| bad("the key's BIT STRING has unused bits"))?;
    p256::PublicKey::from_sec1_bytes(point).map_err(|_| bad("not a point of P-256"))
}

/// Checks that the signature of `certificate` verifies with the key of `issuer` (RFC 5280
/// §4.1.1.3, §6.1.3 (a)(1)), after checking that its two signature algorithm fields agree
/// (RFC 5280 §4.1.1.2). The names are not compared here.
fn verify_signed_by(certificate: &Certificate, issuer: &Certificate) -> Result<(), X509Error> {
    let tbs = &certificate.tbs_certificate;
    if tbs.signature != certificate.signature_algorithm {
        return Err(X509Error::SignatureAlgorithmMismatch { subject: subject_of(certificate) });
    }
    let bad =
        || X509Error::BadSignature { subject: subject_of(certificate), issuer: subject_of(issuer) };
    let algorithm = &certificate.signature_algorithm;
    let oid = algorithm.oid;
    let bad_parameters =
        || X509Error::BadSignatureParameters { subject: subject_of(certificate), oid };
    let signed_bytes = tbs.to_der().map_err(X509Error::Encode)?;
    let signature = certificate.signature.as_bytes().ok_or_else(bad)?;

    let rsa_digest = [
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION,
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION,
    ]
    .contains(&oid);
    if rsa_digest {
        // RFC 4055 §5: the parameters MUST be NULL (absent is tolerated, as many verifiers do).
        if !algorithm.parameters.as_ref().is_none_or(Any::is_null) {
            return Err(bad_parameters());
        }
        let key = rsa_key(issuer)?;
        if key.size() < MIN_RSA_ISSUER_KEY_BYTES {
            return Err(X509Error::BadPublicKey {
                subject: subject_of(issuer),
                reason: format!("a {}-bit RSA issuer key is too short", key.size() * 8),
            });
        }
        let signature = pkcs1v15::Signature::try_from(signature).map_err(|_| bad())?;
        let verified = if oid == rfc5912::SHA_256_WITH_RSA_ENCRYPTION {
            pkcs1v15::VerifyingKey::<Sha256>::new(key).verify(&signed_bytes, &signature)
        } else if oid == rfc5912::SHA_384_WITH_RSA_ENCRYPTION {
            pkcs1v15::VerifyingKey::<Sha384>::new(key).verify(&signed_bytes, &signature)
        } else {
            pkcs1v15::VerifyingKey::<Sha512>::new(key).verify(&signed_bytes, &signature)
        };
        return verified.map_err(|_| bad());
    }

    let digest: Vec<u8> = if oid == rfc5912::ECDSA_WITH_SHA_256 {
        Sha256::digest(&signed_bytes).to_vec()
    } else if oid == rfc5912::ECDSA_WITH_SHA_384 {
        Sha384::digest(&signed_bytes).to_vec()
    } else {
        return Err(X509Error::UnsupportedSignatureAlgorithm {
            subject: subject_of(certificate),
            oid,
        });
    };
    // RFC 5758 §3.2: the parameters MUST be absent.
    if algorithm.parameters.is_some() {
        return Err(bad_parameters());
    }
    let key = p256::ecdsa::VerifyingKey::from(&p256_key(issuer)?);
    let signature = p256::ecdsa::Signature::from_der(signature).map_err(|_| bad())?;
    // FIPS 186-4 §6.4: a digest longer than the group order is truncated to its leftmost bits.
    key.verify_prehash(&digest, &signature).map_err(|_| bad())
}

/// Checks that `root` is self-signed: subject equal to issuer, and a signature that verifies
/// with its own key (RFC 5280 §3.2, §6.1.1 (d)).
fn check_root(root: &Certificate) -> Result<(), X509Error> {
    if root.tbs_certificate.subject != root.tbs_certificate.issuer {
        return Err(X509Error::RootNotSelfSigned {
            subject: subject_of(root),
            reason: "its subject and issuer names differ",
        });
    }
    verify_signed_by(root, root).map_err(|error| match error {
        X509Error::BadSignature { .. } => X509Error::RootNotSelfSigned {
            subject: subject_of(root),
            reason: "its signature does not verify with its own key",
        },
        other => other,
    })
}

/// Checks that `certificate` is valid at `now`, from notBefore through notAfter inclusive
/// (RFC 5280 §4.1.2.5, §6.1.3 (a)(2)).
fn check_validity(certificate: &Certificate, now: SystemTime) -> Result<(), X509Error> {
    let validity = &certificate.tbs_certificate.validity;
    if now < validity.not_before.to_system_time() || now > validity.not_after.to_system_time() {
        return Err(X509Error::NotValidAt {
            subject: subject_of(certificate),
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    Ok(())
}

/// Checks that no extension of `certificate` appears twice (RFC 5280 §4.2).
fn check_extensions_unique(certificate: &Certificate) -> Result<(), X509Error> {
    let extensions = certificate.tbs_certificate.extensions.as_deref().unwrap_or_default();
    for (index, extension) in extensions.iter().enumerate() {
        let repeated =
            extensions.iter().skip(index + 1).any(|other| other.extn_id == extension.extn_id);
        if repeated {
            return Err(X509Error::BadExtension {
                subject: subject_of(certificate),
                oid: extension.extn_id,
            });
        }
    }
    Ok(())
}

/// Checks that `issuer` may issue the certificate below it, `below` non-self-issued
/// intermediates above the leaf: basicConstraints cA TRUE and pathLenConstraint (RFC 5280
/// §4.2.1.9, §6.1.4 (k)–(m)), keyCertSign if keyUsage is present (RFC 5280 §4.2.1.3,
/// §6.1.4 (n)), and no critical extension outside [`ISSUER_CRITICAL_EXTENSIONS_UNDERSTOOD`]
/// (RFC 5280 §4.2, §6.1.4 (o)).
fn check_issuer(issuer: &Certificate, below: usize) -> Result<(), X509Error> {
    let tbs = &issuer.tbs_certificate;
    let malformed = |oid| X509Error::BadExtension { subject: subject_of(issuer), oid };
    match tbs.get::<BasicConstraints>().map_err(|_| malformed(BasicConstraints::OID))? {
        Some((_, constraints)) if constraints.ca => {
            if let Some(allowed) = constraints.path_len_constraint {
                if below > usize::from(allowed) {
                    return Err(X509Error::PathTooLong {
                        subject: subject_of(issuer),
                        allowed,
                        found: below,
                    });
                }
            }
        }
        _ => return Err(X509Error::IssuerNotCa { subject: subject_of(issuer) }),
    }
    if let Some((_, key_usage)) = tbs.get::<KeyUsage>().map_err(|_| malformed(KeyUsage::OID))? {
        if !key_usage.key_cert_sign() {
            return Err(X509Error::IssuerKeyUsage { subject: subject_of(issuer) });
        }
    }
    for extension in tbs.extensions.as_deref().unwrap_or_default() {
        if extension.critical && !ISSUER_CRITICAL_EXTENSIONS_UNDERSTOOD.contains(&extension.extn_id)
        {
            return Err(X509Error::UnsupportedCriticalExtension {
                subject: subject_of(issuer),
                oid: extension.extn_id,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use std::time::{Duration, UNIX_EPOCH};

    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use x509_cert::der::pem::LineEnding;
    use x509_cert::der::EncodePem;
    use x509_cert::spki::AlgorithmIdentifierOwned;

    /// CA a (made by `qemu/tpm-setup.sh`): root, intermediate and the intermediate's key.
    const ROOT_A_PEM: &[u8] = include_bytes!("testdata/x509/ca-a/ca/swtpm-localca-rootca-cert.pem");
    const INTERMEDIATE_A_PEM: &[u8] = include_bytes!("testdata/x509/ca-a/ca/issuercert.pem");
    const SIGNKEY_A_PEM: &[u8] = include_bytes!("testdata/x509/ca-a/ca/signkey.pem");
    /// The RSA-2048 EK certificate of TPM a, signed by CA a's intermediate (DER).
    const EK_A_DER: &[u8] = include_bytes!("testdata/x509/ek-a-rsa2048.crt");
    /// CA b's root, and the EK certificate of TPM b, signed by CA b's intermediate (absent).
    const ROOT_B_PEM: &[u8] = include_bytes!("testdata/x509/root-b.pem");
    const EK_B_DER: &[u8] = include_bytes!("testdata/x509/ek-b-rsa2048.crt");

    /// 2027-06-01T00:00:00Z, when every fixture certificate is valid.
    fn june_2027() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_811_808_000)
    }

    fn one(bytes: &[u8]) -> Certificate {
        let mut certificates = read_certificates(bytes).unwrap();
        assert_eq!(certificates.len(), 1);
        certificates.pop().unwrap()
    }

    fn root_a() -> Certificate {
        one(ROOT_A_PEM)
    }

    fn intermediate_a() -> Certificate {
        one(INTERMEDIATE_A_PEM)
    }

    fn ek_a() -> Certificate {
        one(EK_A_DER)
    }

    fn root_b() -> Certificate {
        one(ROOT_B_PEM)
    }

    fn ca_a_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/evidence/testdata/x509/ca-a")
    }

    fn ca_a() -> Ca {
        Ca::load(&ca_a_dir()).unwrap()
    }

    fn fresh_p256() -> p256::SecretKey {
        p256::SecretKey::random(&mut rand_core::OsRng)
    }

    /// An attestation-key certificate for a fresh key, bound to EK a, valid 2027–2028.
    fn issue_for_ek_a(ca: &Ca) -> (p256::SecretKey, Vec<u8>) {
        let ak = fresh_p256();
        let der = ca
            .issue_attestation_key_certificate(
                &ak.public_key(),
                EK_A_DER,
                random_serial(),
                UNIX_EPOCH + Duration::from_secs(1_798_761_600), // 2027-01-01
                UNIX_EPOCH + Duration::from_secs(1_830_297_600), // 2028-01-01
            )
            .unwrap();
        (ak, der)
    }

    #[test]
    fn ek_certificate_verifies_against_its_root() {
        let ek = ek_a();
        verify_chain(&root_a(), &[intermediate_a()], &ek, june_2027()).unwrap();
        let key = rsa_public_key(&ek).unwrap();
        assert_eq!(key.size(), 256);
        assert_eq!(key.n().bits(), 2048);
        assert!(matches!(
            p256_public_key(&ek),
            Err(X509Error::WrongKeyType { expected: "ECC P-256", ref found, .. }) if found == "RSA"
        ));
        // Unrelated certificates among the intermediates, in any order, do no harm.
        verify_chain(&root_a(), &[root_b(), ek_a(), intermediate_a()], &ek, june_2027()).unwrap();
    }

    #[test]
    fn ek_certificate_carries_critical_tcg_extensions() {
        // The leaf's critical subjectAltName (TPM manufacturer, model, version as a
        // directoryName) and its other TCG extensions do not stop verification.
        let ek = ek_a();
        let extensions = ek.tbs_certificate.extensions.clone().unwrap();
        let san = extensions.iter().find(|e| e.extn_id == rfc5280::ID_CE_SUBJECT_ALT_NAME).unwrap();
        assert!(san.critical);
        let tcg_ek_key_purpose = ObjectIdentifier::new_unwrap("2.23.133.8.1");
        let eku =
            ek.tbs_certificate.get::<x509_cert::ext::pkix::ExtendedKeyUsage>().unwrap().unwrap().1;
        assert_eq!(eku.0, vec![tcg_ek_key_purpose]);
        let (critical, constraints) =
            ek.tbs_certificate.get::<BasicConstraints>().unwrap().unwrap();
        assert!(critical && !constraints.ca);
        verify_chain(&root_a(), &[intermediate_a()], &ek, june_2027()).unwrap();
    }

    #[test]
    fn der_reencoding_is_exact() {
        assert_eq!(der(&ek_a()).unwrap(), EK_A_DER);
        assert_eq!(der(&one(EK_B_DER)).unwrap(), EK_B_DER);
    }

    #[test]
    fn ek_certificate_refused_against_another_root() {
        // Root b has the same name as root a, so the path is found but a signature fails.
        let error = verify_chain(&root_b(), &[intermediate_a()], &ek_a(), june_2027()).unwrap_err();
        assert!(
            matches!(error, X509Error::BadSignature { ref subject, .. } if subject == "CN=swtpm-localca"),
            "{error}"
        );
        // EK b, whose issuer has the name of intermediate a but another key.
        let error =
            verify_chain(&root_a(), &[intermediate_a()], &one(EK_B_DER), june_2027()).unwrap_err();
        assert!(
            matches!(error, X509Error::BadSignature { ref subject, .. } if subject == "CN=unknown"),
            "{error}"
        );
        // EK b against root b, without its intermediate.
        let error = verify_chain(&root_b(), &[], &one(EK_B_DER), june_2027()).unwrap_err();
        assert!(matches!(error, X509Error::IssuerNotFound { .. }), "{error}");
    }

    #[test]
    fn ek_certificate_refused_without_the_intermediate() {
        let error = verify_chain(&root_a(), &[], &ek_a(), june_2027()).unwrap_err();
        assert!(
            matches!(error, X509Error::IssuerNotFound { ref issuer, .. } if issuer == "CN=swtpm-localca"),
            "{error}"
        );
    }

    #[test]
    fn ek_certificate_refused_with_a_bit_flipped() {
        let root = root_a();
        let intermediates = [intermediate_a()];
        let ek = ek_a();
        // One bit of the modulus (inside tbsCertificate).
        let modulus =
            ek.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes().to_vec();
        let offset = find(EK_A_DER, &modulus).unwrap() + modulus.len() / 2;
        let mut tampered = EK_A_DER.to_vec();
        tampered[offset] ^= 0x10;
        let tampered = one(&tampered);
        let error = verify_chain(&root, &intermediates, &tampered, june_2027()).unwrap_err();
        assert!(matches!(error, X509Error::BadSignature { .. }), "{error}");
        // One bit of the signature (the last byte of the certificate).
        let mut tampered = EK_A_DER.to_vec();
        *tampered.last_mut().unwrap() ^= 0x01;
        let tampered = one(&tampered);
        let error = verify_chain(&root, &intermediates, &tampered, june_2027()).unwrap_err();
        assert!(matches!(error, X509Error::BadSignature { .. }), "{error}");
        // Every single-bit change anywhere is refused: at parsing or at verification.
        for offset in 0..EK_A_DER.len() {
            for bit in 0..8 {
                let mut tampered = EK_A_DER.to_vec();
                tampered[offset] ^= 1 << bit;
                if let Ok(certificates) = read_certificates(&tampered) {
                    for certificate in &certificates {
                        assert!(
                            verify_chain(&root, &intermediates, certificate, june_2027()).is_err(),
                            "bit {bit} of byte {offset} flipped, still verifies"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn ek_certificate_refused_outside_its_validity() {
        let ek = ek_a();
        let root = root_a();
        let intermediates = [intermediate_a()];
        let not_before = ek.tbs_certificate.validity.not_before.to_system_time();
        let not_after = ek.tbs_certificate.validity.not_after.to_system_time();
        // Bounds are inclusive (and the CA's certificates are valid over the same period).
        verify_chain(&root, &intermediates, &ek, not_before).unwrap();
        verify_chain(&root, &intermediates, &ek, not_after).unwrap();
        for now in
            [not_before - Duration::from_secs(1), not_after + Duration::from_secs(1), UNIX_EPOCH]
        {
            let error = verify_chain(&root, &intermediates, &ek, now).unwrap_err();
            assert!(matches!(error, X509Error::NotValidAt { .. }), "{error}");
        }
    }

    #[test]
    fn ca_loads_and_checks_its_files() {
        let ca = ca_a();
        assert_eq!(ca.root(), &root_a());
        assert_eq!(ca.intermediate(), &intermediate_a());
        assert_eq!(ca.root_der(), der(&root_a()).unwrap());
        assert_eq!(ca.intermediate_der(), der(&intermediate_a()).unwrap());
        let debug = format!("{ca:?}");
        assert!(debug.contains("CN=swtpm-localca") && !debug.contains("signing_key"));

        let error = Ca::load(Path::new("/nonexistent/vpr-ca")).unwrap_err();
        assert!(matches!(error, X509Error::Read { .. }), "{error}");
        // The private key file parses despite GnuTLS's text preamble.
        let key = parse_rsa_private_key(SIGNKEY_A_PEM).unwrap();
        assert_eq!(key.to_public_key(), rsa_public_key(&intermediate_a()).unwrap());
        assert!(parse_rsa_private_key(b"Public Key Info:\n nothing").is_err());
    }

    #[test]
    fn issued_attestation_key_certificate_verifies() {
        let ca = ca_a();
        let (ak, der_bytes) = issue_for_ek_a(&ca);
        let certificate = one(&der_bytes);
        verify_chain(ca.root(), &[ca.intermediate().clone()], &certificate, june_2027()).unwrap();
        verify_chain(&root_a(), &[intermediate_a()], &certificate, june_2027()).unwrap();
        assert_eq!(p256_public_key(&certificate).unwrap(), ak.public_key());
        assert_eq!(ek_binding(&certificate).unwrap(), ek_certificate_digest(EK_A_DER));
        assert_eq!(
            ek_binding(&certificate).unwrap().as_slice(),
            Sha256::digest(EK_A_DER).as_slice()
        );
        assert!(matches!(
            rsa_public_key(&certificate),
            Err(X509Error::WrongKeyType { expected: "RSA", .. })
        ));
        // Outside its validity.
        let error = verify_chain(
            &root_a(),
            &[intermediate_a()],
            &certificate,
            UNIX_EPOCH + Duration::from_secs(1_830_297_601),
        )
        .unwrap_err();
        assert!(matches!(error, X509Error::NotValidAt { .. }), "{error}");
    }

    #[test]
    fn issued_attestation_key_certificate_has_the_profile() {
        let ca = ca_a();
        let ak = fresh_p256();
        let serial = [0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 42];
        let der_bytes = ca
            .issue_attestation_key_certificate(
                &ak.public_key(),
                EK_A_DER,
                serial,
                UNIX_EPOCH + Duration::from_secs(1_798_761_600),
                UNIX_EPOCH + Duration::from_secs(2_556_144_000), // 2051-01-01
            )
            .unwrap();
        let certificate = one(&der_bytes);
        let tbs = &certificate.tbs_certificate;
        assert_eq!(tbs.version, Version::V3);
        // A positive INTEGER: a leading zero octet keeps the sign bit clear (RFC 5280 §4.1.2.2).
        assert_eq!(tbs.serial_number.as_bytes()[0], 0);
        assert_eq!(&tbs.serial_number.as_bytes()[1..], serial.as_slice());
        assert_eq!(tbs.issuer, intermediate_a().tbs_certificate.subject);
        assert_eq!(certificate.signature_algorithm.oid, rfc5912::SHA_256_WITH_RSA_ENCRYPTION);
        assert!(matches!(tbs.validity.not_before, Time::UtcTime(_)));
        assert!(matches!(tbs.validity.not_after, Time::GeneralTime(_)));
        assert_eq!(
            tbs.subject.to_string(),
            format!(
                "SERIALNUMBER={},CN=vpr attestation key",
                hex::encode(Sha256::digest(EK_A_DER))
            )
        );
        let (critical, constraints) = tbs.get::<BasicConstraints>().unwrap().unwrap();
        assert!(critical && !constraints.ca && constraints.path_len_constraint.is_none());
        let (critical, key_usage) = tbs.get::<KeyUsage>().unwrap().unwrap();
        assert!(critical);
        assert_eq!(key_usage, KeyUsage(KeyUsages::DigitalSignature.into()));
        let (critical, subject_key_id) = tbs.get::<SubjectKeyIdentifier>().unwrap().unwrap();
        assert!(!critical);
        assert_eq!(subject_key_id.0.as_bytes().len(), 20);
        let (critical, authority_key_id) = tbs.get::<AuthorityKeyIdentifier>().unwrap().unwrap();
        assert!(!critical);
        let intermediate_key_id =
            intermediate_a().tbs_certificate.get::<SubjectKeyIdentifier>().unwrap().unwrap().1;
        assert_eq!(authority_key_id.key_identifier, Some(intermediate_key_id.0));
        assert_eq!(tbs.extensions.as_ref().unwrap().len(), 4);
        verify_chain(&root_a(), &[intermediate_a()], &certificate, june_2027()).unwrap();
    }

    #[test]
    fn issuing_refuses_bad_requests() {
        let ca = ca_a();
        let ak = fresh_p256().public_key();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_798_761_600);
        let t1 = UNIX_EPOCH + Duration::from_secs(1_830_297_600);
        assert!(matches!(
            ca.issue_attestation_key_certificate(&ak, EK_A_DER, [0; 16], t0, t1),
            Err(X509Error::InvalidSerial { .. })
        ));
        assert!(matches!(
            ca.issue_attestation_key_certificate(&ak, EK_A_DER, random_serial(), t1, t0),
            Err(X509Error::InvalidValidity { .. })
        ));
        assert!(matches!(
            ca.issue_attestation_key_certificate(
                &ak,
                b"not a certificate",
                random_serial(),
                t0,
                t1
            ),
            Err(X509Error::BadEkCertificate(_))
        ));
    }

    #[test]
    fn issued_attestation_key_certificate_refused_against_another_root() {
        let (_, der_bytes) = issue_for_ek_a(&ca_a());
        let certificate = one(&der_bytes);
        let error =
            verify_chain(&root_b(), &[intermediate_a()], &certificate, june_2027()).unwrap_err();
        assert!(matches!(error, X509Error::BadSignature { .. }), "{error}");
    }

    #[test]
    fn tampered_ek_binding_fails_signature_verification() {
        let (_, der_bytes) = issue_for_ek_a(&ca_a());
        let mut certificate = one(&der_bytes);
        // Rebind the certificate to TPM b's EK.
        let other = hex::encode(Sha256::digest(EK_B_DER));
        certificate.tbs_certificate.subject = attestation_key_subject(&other).unwrap();
        let tampered = one(&der(&certificate).unwrap());
        assert_eq!(ek_binding(&tampered).unwrap(), ek_certificate_digest(EK_B_DER));
        let error =
            verify_chain(&root_a(), &[intermediate_a()], &tampered, june_2027()).unwrap_err();
        assert!(
            matches!(error, X509Error::BadSignature { ref issuer, .. } if issuer == "CN=swtpm-localca"),
            "{error}"
        );
    }

    #[test]
    fn ek_binding_refuses_other_certificates() {
        assert!(matches!(ek_binding(&ek_a()), Err(X509Error::NotAttestationKeyCertificate { .. })));
        let (_, der_bytes) = issue_for_ek_a(&ca_a());
        let issued = one(&der_bytes);
        let with_subject = |subject: Name| {
            let mut certificate = issued.clone();
            certificate.tbs_certificate.subject = subject;
            ek_binding(&certificate)
        };
        let atv = |oid, value: Any| AttributeTypeAndValue { oid, value };
        let rdn =
            |attribute| RelativeDistinguishedName(SetOfVec::try_from(vec![attribute]).unwrap());
        let cn = atv(
            rfc4519::CN,
            Any::encode_from(&Utf8StringRef::new(ATTESTATION_KEY_COMMON_NAME).unwrap()).unwrap(),
        );
        let printable = |s: &str| Any::encode_from(&PrintableStringRef::new(s).unwrap()).unwrap();
        let good = hex::encode([0xabu8; 32]);
        assert_eq!(
            with_subject(RdnSequence(vec![
                rdn(cn.clone()),
                rdn(atv(rfc4519::SERIAL_NUMBER, printable(&good)))
            ]))
            .unwrap(),
            [0xabu8; 32]
        );
        for bad in [
            good.to_uppercase(),
            good[..62].to_owned(),
            format!("{good}00"),
            format!("{}zz", &good[..62]),
        ] {
            assert!(matches!(
                with_subject(RdnSequence(vec![
                    rdn(cn.clone()),
                    rdn(atv(rfc4519::SERIAL_NUMBER, printable(&bad)))
                ])),
                Err(X509Error::MissingEkBinding { .. })
            ));
        }
        // No serialNumber, two of them, or one that is not a PrintableString.
        assert!(matches!(
            with_subject(RdnSequence(vec![rdn(cn.clone())])),
            Err(X509Error::MissingEkBinding { .. })
        ));
        assert!(matches!(
            with_subject(RdnSequence(vec![
                rdn(cn.clone()),
                rdn(atv(rfc4519::SERIAL_NUMBER, printable(&good))),
                rdn(atv(rfc4519::SERIAL_NUMBER, printable(&good)))
            ])),
            Err(X509Error::MissingEkBinding { .. })
        ));
        let utf8 = Any::encode_from(&Utf8StringRef::new(&good).unwrap()).unwrap();
        assert!(matches!(
            with_subject(RdnSequence(vec![
                rdn(cn.clone()),
                rdn(atv(rfc4519::SERIAL_NUMBER, utf8))
            ])),
            Err(X509Error::MissingEkBinding { .. })
        ));
        // Another common name.
        assert!(matches!(
            with_subject(RdnSequence(vec![
                rdn(atv(rfc4519::CN, printable("vpr attestation kez"))),
                rdn(atv(rfc4519::SERIAL_NUMBER, printable(&good)))
            ])),
            Err(X509Error::NotAttestationKeyCertificate { .. })
        ));
    }

    #[test]
    fn read_certificates_accepts_pem_with_several_blocks_and_der() {
        let ek_pem = ek_a().to_pem(LineEnding::CRLF).unwrap();
        let mut text = b"Bag Attributes: something\nsubject=CN = swtpm-localca-rootca\n".to_vec();
        text.extend_from_slice(ROOT_A_PEM);
        text.extend_from_slice(b"\nsome text between blocks\n\n");
        text.extend_from_slice(INTERMEDIATE_A_PEM);
        text.extend_from_slice(ek_pem.as_bytes());
        text.extend_from_slice(b"trailing text -----END nothing\n");
        let certificates = read_certificates(&text).unwrap();
        assert_eq!(certificates, vec![root_a(), intermediate_a(), ek_a()]);
        let certificates = read_certificates(EK_A_DER).unwrap();
        assert_eq!(certificates, vec![ek_a()]);
    }

    #[test]
    fn read_certificates_refuses_garbage_without_panicking() {
        assert!(matches!(read_certificates(b""), Err(X509Error::NotCertificate(_))));
        assert!(matches!(
            read_certificates(b"\x30\x82\xff\xff garbage"),
            Err(X509Error::NotCertificate(_))
        ));
        // A PEM file of another kind (the CA's private key) holds no certificate.
        assert!(matches!(read_certificates(SIGNKEY_A_PEM), Err(X509Error::NotCertificate(_))));
        assert!(matches!(
            read_certificates(
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
            ),
            Err(X509Error::BadPem(_))
        ));
        assert!(matches!(
            read_certificates(b"-----BEGIN CERTIFICATE-----\nMIIB\n"),
            Err(X509Error::UnterminatedPem)
        ));
        // Trailing bytes after a DER certificate.
        let mut long = EK_A_DER.to_vec();
        long.push(0);
        assert!(read_certificates(&long).is_err());
        // Every truncation of a DER certificate and of a PEM one.
        for len in 0..EK_A_DER.len() {
            assert!(read_certificates(&EK_A_DER[..len]).is_err(), "DER cut at {len}");
        }
        let pem = ek_a().to_pem(LineEnding::LF).unwrap();
        for len in 0..pem.len() {
            let truncated = &pem.as_bytes()[..len];
            // Cutting only part of the END line's trailing newline still leaves a certificate.
            if let Ok(certificates) = read_certificates(truncated) {
                assert!(len >= pem.trim_end().len(), "PEM cut at {len} accepted");
                assert_eq!(certificates, vec![ek_a()]);
            }
        }
    }

    // ---- Path validation policy, on chains made here with P-256 keys (ecdsa-with-SHA*) ----

    /// A key and certificate made by these tests.
    struct Made {
        key: p256::ecdsa::SigningKey,
        certificate: Certificate,
    }

    fn ca_extensions(path_len_constraint: Option<u8>) -> Vec<Extension> {
        vec![
            extension(&BasicConstraints { ca: true, path_len_constraint }, true).unwrap(),
            extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign), true).unwrap(),
        ]
    }

    /// A certificate for a fresh P-256 key named `subject`, signed by `issuer` (self-signed
    /// if `None`) with ecdsa-with-SHA256, or ecdsa-with-SHA384 if `sha384`.
    fn make(
        subject: &str,
        issuer: Option<&Made>,
        extensions: Vec<Extension>,
        sha384: bool,
    ) -> Made {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let subject = Name::from_str(subject).unwrap();
        let algorithm = AlgorithmIdentifierOwned {
            oid: if sha384 { rfc5912::ECDSA_WITH_SHA_384 } else { rfc5912::ECDSA_WITH_SHA_256 },
            parameters: None,
        };
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::from(7u32),
            signature: algorithm.clone(),
            issuer: issuer
                .map_or_else(|| subject.clone(), |i| i.certificate.tbs_certificate.subject.clone()),
            validity: Validity {
                not_before: certificate_time(UNIX_EPOCH + Duration::from_secs(1_798_761_600))
                    .unwrap(),
                not_after: certificate_time(UNIX_EPOCH + Duration::from_secs(1_830_297_600))
                    .unwrap(),
            },
            subject,
            subject_public_key_info: SubjectPublicKeyInfoOwned::from_key(*key.verifying_key())
                .unwrap(),
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };
        let signer = issuer.map_or(&key, |i| &i.key);
        let signed = tbs.to_der().unwrap();
        let digest = if sha384 {
            Sha384::digest(&signed).to_vec()
        } else {
            Sha256::digest(&signed).to_vec()
        };
        let signature: p256::ecdsa::Signature = signer.sign_prehash(&digest).unwrap();
        let certificate = Certificate {
            tbs_certificate: tbs,
            signature_algorithm: algorithm,
            signature: BitString::from_bytes(signature.to_der().as_bytes()).unwrap(),
        };
        Made { key, certificate }
    }

    fn leaf_extensions() -> Vec<Extension> {
        vec![extension(&BasicConstraints { ca: false, path_len_constraint: None }, true).unwrap()]
    }

    #[test]
    fn ecdsa_chains_verify() {
        let root = make("CN=test root", None, ca_extensions(None), false);
        let intermediate = make("CN=test intermediate", Some(&root), ca_extensions(Some(0)), true);
        let leaf = make("CN=test leaf", Some(&intermediate), leaf_extensions(), false);
        verify_chain(
            &root.certificate,
            std::slice::from_ref(&intermediate.certificate),
            &leaf.certificate,
            june_2027(),
        )
        .unwrap();
        // A leaf directly under the root.
        let direct = make("CN=test leaf", Some(&root), leaf_extensions(), true);
        verify_chain(&root.certificate, &[], &direct.certificate, june_2027()).unwrap();
        // A self-signed root that is not the one trusted.
        let other_root = make("CN=test root", None, ca_extensions(None), false);
        let error = verify_chain(
            &other_root.certificate,
            std::slice::from_ref(&intermediate.certificate),
            &leaf.certificate,
            june_2027(),
        )
        .unwrap_err();
        assert!(matches!(error, X509Error::BadSignature { .. }), "{error}");
    }

    #[test]
    fn root_must_be_self_signed() {
        let root = make("CN=test root", None, ca_extensions(None), false);
        let intermediate = make("CN=test intermediate", Some(&root), ca_extensions(None), false);
        let leaf = make("CN=test leaf", Some(&intermediate), leaf_extensions(), false);
        let error = verify_chain(&intermediate.certificate, &[], &leaf.certificate, june_2027())
            .unwrap_err();
        assert!(matches!(error, X509Error::RootNotSelfSigned { .. }), "{error}");
        // Named as its own issuer, but signed by another key.
        let mut forged = make("CN=test root", None, ca_extensions(None), false).certificate;
        forged.signature = root.certificate.signature.clone();
        let error = verify_chain(&forged, &[], &leaf.certificate, june_2027()).unwrap_err();
        assert!(matches!(error, X509Error::RootNotSelfSigned { .. }), "{error}");
        // An RSA root (root a) checked the same way passes.
        check_root(&root_a()).unwrap();
        check_root(&root_b()).unwrap();
        assert!(matches!(check_root(&intermediate_a()), Err(X509Error::RootNotSelfSigned { .. })));
    }

    #[test]
    fn issuers_must_be_cas() {
        let root = make("CN=test root", None, ca_extensions(None), false);
        // An intermediate without basicConstraints, or with cA FALSE.
        for extensions in [vec![], leaf_extensions()] {
            let intermediate = make("CN=test intermediate", Some(&root), extensions, false);
            let leaf = make("CN=test leaf", Some(&intermediate), leaf_extensions(), false);
            let error = verify_chain(
                &root.certificate,
                &[intermediate.certificate],
                &leaf.certificate,
                june_2027(),
            )
            .unwrap_err();
            assert!(matches!(error, X509Error::IssuerNotCa { .. }), "{error}");
        }
        // keyUsage without keyCertSign.
        let mut extensions = ca_extensions(None);
        extensions[1] = extension(&KeyUsage(KeyUsages::DigitalSignature.into()), true).unwrap();
        let intermediate = make("CN=test intermediate", Some(&root), extensions, false);
        let leaf = make("CN=test leaf", Some(&intermediate), leaf_extensions(), false);
        let error = verify_chain(
            &root.certificate,
            &[intermediate.certificate],
            &leaf.certificate,
            june_2027(),
        )
        .unwrap_err();
        assert!(matches!(error, X509Error::IssuerKeyUsage { .. }), "{error}");
        // A root that is not a CA.
        let root = make("CN=test root", None, leaf_extensions(), false);
        let leaf = make("CN=test leaf", Some(&root), leaf_extensions(), false);
        let error =
            verify_chain(&root.certificate, &[], &leaf.certificate, june_2027()).unwrap_err();
        assert!(matches!(error, X509Error::IssuerNotCa { .. }), "{error}");
    }

    #[test]
    fn attestation_key_cannot_issue_certificates() {
        // Someone holding an AK's private key signs a certificate with it: the AK certificate
        // is not a CA, so the path is refused although every signature verifies.
        let ca = ca_a();
        let (ak, der_bytes) = issue_for_ek_a(&ca);
        let ak_made =
            Made { key: p256::ecdsa::SigningKey::from(&ak), certificate: one(&der_bytes) };
        let forged = make("CN=vpr attestation key", Some(&ak_made), leaf_extensions(), false);
        verify_signed_by(&forged.certificate, &ak_made.certificate).unwrap();
        let error = verify_chain(
            &root_a(),
            &[intermediate_a(), ak_made.certificate],
            &forged.certificate,
            june_2027(),
        )
        .unwrap_err();
        assert!(
            matches!(error, X509Error::IssuerNotCa { ref subject } if subject.contains("vpr attestation key")),
            "{error}"
        );
    }

    #[test]
    fn path_length_constraint_is_enforced() {
        let root = make("CN=test root", None, ca_extensions(Some(0)), false);
        let upper = make("CN=test upper", Some(&root), ca_extensions(None), false);
        let lower = make("CN=test lower", Some(&upper), ca_extensions(None), false);
        let leaf = make("CN=test leaf", Some(&lower), leaf_extensions(), false);
        let intermediates = [lower.certificate.clone(), upper.certificate.clone()];
        let error = verify_chain(&root.certificate, &intermediates, &leaf.certificate, june_2027())
            .unwrap_err();
        assert!(matches!(error, X509Error::PathTooLong { allowed: 0, found: 2, .. }), "{error}");
        let root = make("CN=test root", None, ca_extensions(Some(2)), false);
        let upper = make("CN=test upper", Some(&root), ca_extensions(Some(1)), false);
        let lower = make("CN=test lower", Some(&upper), ca_extensions(Some(0)), false);
        let leaf = make("CN=test leaf", Some(&lower), leaf_extensions(), false);
        let intermediates = [upper.certificate.clone(), lower.certificate.clone()];
        verify_chain(&root.certificate, &intermediates, &leaf.certificate, june_2027()).unwrap();
    }

    #[test]
    fn unknown_critical_extensions_refused_on_issuers_only() {
        let unknown = Extension {
            extn_id: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1"),
            critical: true,
            extn_value: OctetString::new(vec![0x05, 0x00]).unwrap(),
        };
        let root = make("CN=test root", None, ca_extensions(None), false);
        let mut extensions = leaf_extensions();
        extensions.push(unknown.clone());
        let leaf = make("CN=test leaf", Some(&root), extensions, false);
        verify_chain(&root.certificate, &[], &leaf.certificate, june_2027()).unwrap();

        let mut extensions = ca_extensions(None);
        extensions.push(unknown.clone());
        let intermediate = make("CN=test intermediate", Some(&root), extensions, false);
        let leaf = make("CN=test leaf", Some(&intermediate), leaf_extensions(), false);
        let error = verify_chain(
            &root.certificate,
            &[intermediate.certificate],
            &leaf.certificate,
            june_2027(),
        )
        .unwrap_err();
        assert!(
            matches!(error, X509Error::UnsupportedCriticalExtension { oid, .. } if oid == unknown.extn_id),
            "{error}"
        );
        // The same extension, not critical, is fine.
        let mut extensions = ca_extensions(None);
        extensions.push(Extension { critical: false, ..unknown });
        let intermediate = make("CN=test intermediate", Some(&root), extensions, false);
        let leaf = make("CN=test leaf", Some(&intermediate), leaf_extensions(), false);
        verify_chain(
            &root.certificate,
            &[intermediate.certificate],
            &leaf.certificate,
            june_2027(),
        )
        .unwrap();
    }

    #[test]
    fn repeated_extensions_are_refused() {
        let root = make("CN=test root", None, ca_extensions(None), false);
        let mut extensions = leaf_extensions();
        extensions.extend(leaf_extensions());
        let leaf = make("CN=test leaf", Some(&root), extensions, false);
        let error =
            verify_chain(&root.certificate, &[], &leaf.certificate, june_2027()).unwrap_err();
        assert!(matches!(error, X509Error::BadExtension { .. }), "{error}");
    }

    #[test]
    fn signature_algorithms_are_checked() {
        let root = make("CN=test root", None, ca_extensions(None), false);
        let leaf = make("CN=test leaf", Some(&root), leaf_extensions(), false);
        // Outer algorithm differing from the signed one.
        let mut mismatched = leaf.certificate.clone();
        mismatched.signature_algorithm.oid = rfc5912::ECDSA_WITH_SHA_384;
        let error = verify_chain(&root.certificate, &[], &mismatched, june_2027()).unwrap_err();
        assert!(matches!(error, X509Error::SignatureAlgorithmMismatch { .. }), "{error}");
        // An algorithm not supported (ecdsa-with-SHA512), in both places.
        let mut unsupported = leaf.certificate.clone();
        let sha512 = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
        unsupported.signature_algorithm.oid = sha512;
        unsupported.tbs_certificate.signature.oid = sha512;
        let error = verify_chain(&root.certificate, &[], &unsupported, june_2027()).unwrap_err();
        assert!(matches!(error, X509Error::UnsupportedSignatureAlgorithm { .. }), "{error}");
        // ECDSA parameters must be absent.
        let mut with_parameters = leaf.certificate.clone();
        with_parameters.signature_algorithm.parameters = Some(Any::null());
        with_parameters.tbs_certificate.signature.parameters = Some(Any::null());
        let error =
            verify_chain(&root.certificate, &[], &with_parameters, june_2027()).unwrap_err();
        assert!(matches!(error, X509Error::BadSignatureParameters { .. }), "{error}");
        // An RSA-signed certificate claimed to be issued by an ECDSA key.
        let mut wrong_key = ek_a();
        wrong_key.tbs_certificate.issuer = root.certificate.tbs_certificate.subject.clone();
        let error = verify_signed_by(&wrong_key, &root.certificate).unwrap_err();
        assert!(matches!(error, X509Error::WrongKeyType { expected: "RSA", .. }), "{error}");
    }
}
