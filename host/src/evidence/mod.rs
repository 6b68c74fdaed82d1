//! Attestation evidence rooted in a TPM, and its check (`vpr verify`): the CA's side of
//! credential activation ([`credential`]), X.509 chains to the CA that plays the TPM
//! manufacturer ([`x509`]), and the chain of the whole (docs/hypervisor.md, "Evidence"):
//!
//! 1. the TPM's **EK certificate** chains to the CA's root (through the CA's intermediate);
//! 2. the **attestation key's certificate** chains to the same root and names that EK
//!    certificate: the CA issued it after a credential activation proved the attestation
//!    key (AK) is on the EK's TPM ([`credential`]);
//! 3. a **TPM quote** by the AK over the verifier's nonce covers PCR 17 (the hypervisor's
//!    measured launch), PCR 18 (the PALs it registered, whose event log is replayed) and
//!    PCR 19 (the hash of the hypervisor's TCC key);
//! 4. a **uTPM quote** (`vpr_proto::utpm`) by that TCC key over the same nonce and the
//!    caller's data (labelled, `utpm::caller_data`: the PAL does not vouch for it) covers
//!    uPCR 0, which holds the PAL's identity.
//!
//! The launch is what PCR 17's history shows ([`Launch`]), not what the evidence says of it.
//! Evidence from the simulation backend has no TPM part: its TCC key vouches for itself.
//! It is refused unless the verifier allows simulation explicitly.

pub mod credential;
pub mod x509;

use serde::{Deserialize, Serialize};
use std::time::SystemTime;
use vpr_proto::crypto::{self, PublicKey};
use vpr_proto::utpm::{self, Quote, QuoteError, QuoteInfo, TpmEvidenceParts, Upcrs};
use vpr_proto::Digest;

/// The format tag of an evidence file.
pub const FORMAT: &str = "vpr-evidence-1";
/// The PCRs a TPM quote in evidence covers: the measured launch, the PALs, the TCC key.
pub const QUOTED_PCRS: [u32; 3] = [17, 18, 19];
/// The value PCRs 17-22 hold after TPM2_Startup(CLEAR) (PC Client PTP: dynamic-launch PCRs
/// start at all ones).
pub(crate) const DYNAMIC_PCR_START: [u8; 32] = [0xFF; 32];

/// The line every tool that accepts TPM evidence of a [`Launch::Simulated`] prints.
pub const SIMULATED_LAUNCH_WARNING: &str = "simulated late launch: under QEMU any boot loader \
can extend PCR 17 with the expected value; the measurement is not rooted in a DRTM";

/// How PCR 17 came to hold the hypervisor's measurement, as its quoted value shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Launch {
    /// PCR 17 = SHA-256(ones || measurement): extended once from its power-on value, with no
    /// reset by locality 4 in between (a DRTM such as SKINIT resets it to zero first). QEMU
    /// gates only locality 4, so any boot loader can give this value: the only launch vpr's
    /// hypervisor makes, and the only one the verifier can check.
    Simulated,
}

impl Launch {
    /// Every launch the verifier can check.
    pub const ALL: [Launch; 1] = [Launch::Simulated];

    /// Its name in an evidence file's `launch` field.
    pub fn name(self) -> &'static str {
        match self {
            Launch::Simulated => "simulated-late-launch",
        }
    }

    /// PCR 17 after this launch of the hypervisor of measurement `hypervisor`.
    pub fn pcr17(self, hypervisor: &[u8; 32]) -> [u8; 32] {
        match self {
            Launch::Simulated => utpm::extended(&DYNAMIC_PCR_START, hypervisor),
        }
    }

    /// The launch whose history gives `pcr17` for `hypervisor`, if any.
    pub fn of_pcr17(pcr17: &[u8; 32], hypervisor: &[u8; 32]) -> Option<Launch> {
        Launch::ALL.into_iter().find(|launch| launch.pcr17(hypervisor) == *pcr17)
    }

    /// The line to print wherever evidence of this launch is accepted.
    pub fn warning(self) -> &'static str {
        match self {
            Launch::Simulated => SIMULATED_LAUNCH_WARNING,
        }
    }
}

impl std::fmt::Display for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Launch::Simulated => "simulated late launch",
        })
    }
}

/// Evidence that a PAL on a TCC quoted its caller's data after a fresh nonce, as `vpr verify` reads it (JSON, byte
/// strings in lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// [`FORMAT`].
    pub format: String,
    /// The TCC key (P-256, SEC1 uncompressed) that signed the uTPM quote.
    #[serde(with = "hex::serde")]
    pub tcc_key: Vec<u8>,
    /// The uTPM quote (`TPM2B_ATTEST` ‖ `TPMT_SIGNATURE`, `vpr_proto::utpm::Quote`).
    #[serde(with = "hex::serde")]
    pub pal_quote: Vec<u8>,
    /// The values of the uPCRs the uTPM quote selects, in index order (uPCR 0 first).
    pub upcrs: Vec<HexDigest>,
    /// The TPM part; `None` for evidence of the simulation backend.
    pub tpm: Option<TpmEvidence>,
}

/// The TPM part of [`Evidence`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmEvidence {
    /// The TPM's EK certificate (DER), as its manufacturer wrote it into the TPM.
    #[serde(with = "hex::serde")]
    pub ek_certificate: Vec<u8>,
    /// The attestation key's certificate (DER), issued by the CA after credential activation.
    #[serde(with = "hex::serde")]
    pub ak_certificate: Vec<u8>,
    /// Intermediate CA certificates (DER) between the root and the two above.
    pub intermediates: Vec<HexBytes>,
    /// The TPM quote of [`QUOTED_PCRS`] (`TPM2B_ATTEST` ‖ `TPMT_SIGNATURE`).
    #[serde(with = "hex::serde")]
    pub quote: Vec<u8>,
    /// The values of PCRs 17, 18 and 19 the quote covers.
    pub pcrs: Vec<HexDigest>,
    /// The PAL identities extended into PCR 18, in order (its event log).
    pub pal_log: Vec<HexDigest>,
    /// The launch the evidence claims ([`Launch::name`]). Unsigned: it decides nothing, and
    /// evidence is refused unless it names the launch PCR 17's quoted value shows.
    pub launch: String,
}

/// 32 bytes in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HexDigest(#[serde(with = "hex::serde")] pub [u8; 32]);

/// Bytes in hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HexBytes(#[serde(with = "hex::serde")] pub Vec<u8>);

/// What the verifier expects.
#[derive(Clone, Debug)]
pub struct Expected<'a> {
    /// The CA's root certificate(s): the only trust anchor.
    pub roots: &'a [x509::Certificate],
    /// The verifier's fresh nonce.
    pub nonce: [u8; 32],
    /// The PAL's identity (SHA-256 of its image).
    pub identity: [u8; 32],
    /// The caller's data the PAL's quote must carry (labelled), if the verifier knows it.
    pub data: Option<[u8; 32]>,
    /// The hypervisor's measurement (what it extends into PCR 17); required for TPM evidence.
    pub hypervisor: Option<[u8; 32]>,
    /// Accept evidence of the simulation backend (no TPM).
    pub allow_simulation: bool,
    /// The time certificates must be valid at.
    pub now: SystemTime,
}

/// What verified evidence says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The PAL's identity.
    pub identity: [u8; 32],
    /// What the quote carries after the nonce: [`utpm::caller_data`] of the data its
    /// caller chose (the PAL does not vouch for that data).
    pub data: [u8; 32],
    /// SHA-256 of the TCC key.
    pub tcc_key: [u8; 32],
    /// SHA-256 of the EK certificate (`None`: simulated).
    pub ek_certificate: Option<[u8; 32]>,
    /// The launch PCR 17's quoted value shows (`None`: simulated).
    pub launch: Option<Launch>,
    /// The PALs registered before the quote, in order (`None`: simulated).
    pub pal_log: Option<Vec<[u8; 32]>>,
}

/// Why evidence was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not evidence of this format.
    #[error("not vpr evidence: {0}")]
    Format(String),
    /// Simulation-backend evidence without `--allow-simulation`.
    #[error("simulated evidence (no TPM: the TCC key vouches for itself); pass --allow-simulation to accept it")]
    Simulated,
    /// An X.509 link failed.
    #[error("{what}: {source}")]
    Certificate {
        /// Which certificate.
        what: &'static str,
        /// Why.
        source: x509::X509Error,
    },
    /// The AK certificate names another TPM's EK certificate.
    #[error("the attestation key's certificate was issued for another TPM (EK certificate {certified}, evidence has {found})")]
    OtherTpm {
        /// The EK certificate digest the AK certificate names.
        certified: Digest,
        /// The digest of the EK certificate in the evidence.
        found: Digest,
    },
    /// A quote failed.
    #[error("{what}: {source}")]
    Quote {
        /// Which quote.
        what: &'static str,
        /// Why.
        source: QuoteError,
    },
    /// A quote is over another nonce (a replay, or evidence for another verifier).
    #[error("{0} is over another nonce (replayed or not made for this request)")]
    Nonce(&'static str),
    /// The TPM quote covers other PCRs than 17, 18 and 19.
    #[error("the TPM quote covers PCRs {0:?}, not 17, 18 and 19")]
    PcrSelection(Vec<u32>),
    /// PCR 17 is not the expected hypervisor's launch.
    #[error(
        "PCR 17 is not the simulated late launch of hypervisor {expected} (the only launch \
         vpr can check)"
    )]
    Hypervisor {
        /// The expected measurement.
        expected: Digest,
    },
    /// The evidence's `launch` field names another launch than PCR 17 shows.
    #[error(
        "the evidence claims launch {claimed:?}; the quoted PCR 17 shows a {derived} \
         (extended from its power-on value, not reset by a DRTM), the only launch vpr can \
         check"
    )]
    LaunchClaim {
        /// What the field says (unsigned).
        claimed: String,
        /// What PCR 17 shows.
        derived: Launch,
    },
    /// TPM evidence needs the expected hypervisor measurement.
    #[error("TPM evidence is checked against a hypervisor measurement: give --hypervisor")]
    NoHypervisor,
    /// PCR 18 does not replay from its event log, or the PAL is not in it.
    #[error("PCR 18 {0}")]
    PalLog(&'static str),
    /// PCR 19 does not hold the TCC key that signed the uTPM quote.
    #[error("PCR 19 does not bind the TCC key that signed the PAL's quote")]
    TccKey,
    /// The uTPM quote is not for the expected PAL.
    #[error("the PAL's quote is for identity {found}, not {expected}")]
    Identity {
        /// The expected identity.
        expected: Digest,
        /// The identity whose uPCR 0 the quote covers.
        found: Digest,
    },
    /// The uTPM quote carries other data.
    #[error("the PAL's quote carries the labelled caller data {found}, not {expected}")]
    Data {
        /// The expected data.
        expected: Digest,
        /// What it carries.
        found: Digest,
    },
    /// The uTPM quote is malformed in a way the quote format allows.
    #[error("the PAL's quote {0}")]
    PalQuote(&'static str),
}

impl Evidence {
    /// Reads evidence from JSON.
    ///
    /// # Errors
    /// [`VerifyError::Format`] for anything but evidence of [`FORMAT`].
    pub fn from_json(text: &str) -> Result<Evidence, VerifyError> {
        let evidence: Evidence =
            serde_json::from_str(text).map_err(|e| VerifyError::Format(e.to_string()))?;
        if evidence.format != FORMAT {
            return Err(VerifyError::Format(format!("format {:?}", evidence.format)));
        }
        Ok(evidence)
    }

    /// The evidence as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Evidence from a machine's TPM half (`evidence` hypercall), a certificate of its
    /// attestation key with the intermediates it chains through, and the PAL's uTPM quote of
    /// its uPCR 0 (the PAL `identity`), claiming a simulated late launch (QEMU has no SKINIT).
    pub fn from_tpm(
        parts: &TpmEvidenceParts,
        ak_certificate: Vec<u8>,
        intermediates: Vec<Vec<u8>>,
        pal_quote: Vec<u8>,
        identity: &[u8; 32],
    ) -> Evidence {
        Evidence {
            format: FORMAT.into(),
            tcc_key: parts.tcc_key.to_vec(),
            pal_quote,
            upcrs: vec![HexDigest(utpm::extended(&[0; 32], identity))],
            tpm: Some(TpmEvidence {
                ek_certificate: parts.ek_certificate.clone(),
                ak_certificate,
                intermediates: intermediates.into_iter().map(HexBytes).collect(),
                quote: parts.quote.clone(),
                pcrs: parts.pcrs.iter().copied().map(HexDigest).collect(),
                pal_log: parts.pal_log.iter().copied().map(HexDigest).collect(),
                launch: Launch::Simulated.name().into(),
            }),
        }
    }

    /// Evidence of the simulation backend: a uTPM quote of uPCR 0 of `identity` over `nonce`
    /// and `data`, signed by `tcc`, with no TPM part.
    pub fn simulated(
        tcc: &crypto::KeyPair,
        identity: &[u8; 32],
        nonce: &[u8; 32],
        data: &[u8; 32],
    ) -> Evidence {
        let upcrs = Upcrs::new(identity);
        let selected = upcrs.selected(1);
        let info = QuoteInfo {
            qualified_signer: utpm::signer_name(&tcc.public()).to_vec(),
            extra_data: [&nonce[..], &utpm::caller_data(data)[..]].concat(),
            reset_count: 0,
            firmware_version: 0,
            pcr_select: [1, 0, 0],
            pcr_digest: utpm::pcr_digest(&selected),
        };
        Evidence {
            format: FORMAT.into(),
            tcc_key: tcc.public().to_vec(),
            pal_quote: Quote::sign(tcc, &info).to_bytes(),
            upcrs: selected.into_iter().map(HexDigest).collect(),
            tpm: None,
        }
    }

    /// Checks the whole chain against `expected`; what it proves.
    ///
    /// # Errors
    /// The first link that fails, as a [`VerifyError`].
    pub fn verify(&self, expected: &Expected<'_>) -> Result<Verified, VerifyError> {
        let tcc_key: PublicKey = self
            .tcc_key
            .as_slice()
            .try_into()
            .map_err(|_| VerifyError::Format(String::from("tcc_key is not 65 bytes")))?;
        let mut verified = match &self.tpm {
            None if !expected.allow_simulation => return Err(VerifyError::Simulated),
            None => Verified {
                identity: [0; 32],
                data: [0; 32],
                tcc_key: Digest::of(&tcc_key).0,
                ek_certificate: None,
                launch: None,
                pal_log: None,
            },
            Some(tpm) => tpm.verify(expected, &tcc_key)?,
        };
        let (identity, data) = self.verify_pal_quote(expected, &tcc_key)?;
        verified.identity = identity;
        verified.data = data;
        Ok(verified)
    }

    /// Link 4: the uTPM quote, by the TCC key, over the nonce, of uPCR 0 = the identity.
    fn verify_pal_quote(
        &self,
        expected: &Expected<'_>,
        tcc_key: &PublicKey,
    ) -> Result<([u8; 32], [u8; 32]), VerifyError> {
        let what = "the PAL's uTPM quote";
        let quote_error = |source| VerifyError::Quote { what, source };
        let quote = Quote::from_bytes(&self.pal_quote).map_err(quote_error)?;
        let values: Vec<[u8; 32]> = self.upcrs.iter().map(|v| v.0).collect();
        let info = quote.verify(tcc_key, &values).map_err(quote_error)?;
        if info.qualified_signer != utpm::signer_name(tcc_key) {
            return Err(VerifyError::PalQuote("names another signer"));
        }
        if info.pcr_select[0] & 1 == 0 || info.pcr_select[1..] != [0, 0] {
            return Err(VerifyError::PalQuote("does not cover uPCR 0 (the identity) alone"));
        }
        let selected = info.pcr_select[0].count_ones() as usize;
        if selected != values.len() {
            return Err(VerifyError::PalQuote("comes with another number of uPCR values"));
        }
        let (nonce, data) = info
            .extra_data
            .split_at_checked(32)
            .ok_or(VerifyError::PalQuote("has no nonce and data in extraData"))?;
        let data: [u8; 32] = data
            .try_into()
            .map_err(|_| VerifyError::PalQuote("has data of other than 32 bytes"))?;
        if nonce != expected.nonce {
            return Err(VerifyError::Nonce("the PAL's uTPM quote"));
        }
        let expected_upcr0 = utpm::extended(&[0; 32], &expected.identity);
        if values.first() != Some(&expected_upcr0) {
            // uPCR 0 is SHA-256(0 || identity): the identity itself cannot be read back, so
            // report the first uPCR's value.
            return Err(VerifyError::Identity {
                expected: Digest(expected.identity),
                found: Digest(values.first().copied().unwrap_or_default()),
            });
        }
        if let Some(want) = expected.data {
            if data != utpm::caller_data(&want) {
                return Err(VerifyError::Data {
                    expected: Digest(utpm::caller_data(&want)),
                    found: Digest(data),
                });
            }
        }
        Ok((expected.identity, data))
    }
}

impl TpmEvidence {
    /// Links 1-3: certificates, the TPM quote and what its PCRs say.
    fn verify(
        &self,
        expected: &Expected<'_>,
        tcc_key: &PublicKey,
    ) -> Result<Verified, VerifyError> {
        let certificate = |what, bytes: &[u8]| {
            let mut certs = x509::read_certificates(bytes)
                .map_err(|source| VerifyError::Certificate { what, source })?;
            match certs.len() {
                1 => Ok(certs.remove(0)),
                n => Err(VerifyError::Format(format!("{what}: {n} certificates, not one"))),
            }
        };
        let ek = certificate("the EK certificate", &self.ek_certificate)?;
        let ak = certificate("the attestation key's certificate", &self.ak_certificate)?;
        let intermediates = self
            .intermediates
            .iter()
            .map(|c| certificate("an intermediate certificate", &c.0))
            .collect::<Result<Vec<_>, _>>()?;
        chain_to_a_root(expected, &intermediates, &ek, "the EK certificate")?;
        chain_to_a_root(expected, &intermediates, &ak, "the attestation key's certificate")?;
        let ek_digest = x509::ek_certificate_digest(&self.ek_certificate);
        let certified = x509::ek_binding(&ak).map_err(|source| VerifyError::Certificate {
            what: "the attestation key's certificate",
            source,
        })?;
        if certified != ek_digest {
            return Err(VerifyError::OtherTpm {
                certified: Digest(certified),
                found: Digest(ek_digest),
            });
        }
        let ak_key = x509::p256_public_key(&ak).map_err(|source| VerifyError::Certificate {
            what: "the attestation key's certificate",
            source,
        })?;
        let ak_key: PublicKey =
            p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&ak_key, false)
                .as_bytes()
                .try_into()
                .map_err(|_| {
                    VerifyError::Format(String::from("attestation key is not a P-256 point"))
                })?;

        let hypervisor = expected.hypervisor.ok_or(VerifyError::NoHypervisor)?;
        let pcrs: Vec<[u8; 32]> = self.pcrs.iter().map(|v| v.0).collect();
        let log: Vec<[u8; 32]> = self.pal_log.iter().map(|v| v.0).collect();
        let quoted = TpmQuote { quote: &self.quote, pcrs: &pcrs, pal_log: &log, tcc_key };
        let launch = quoted.check(&ak_key, &expected.nonce, &hypervisor)?;
        if self.launch != launch.name() {
            return Err(VerifyError::LaunchClaim { claimed: self.launch.clone(), derived: launch });
        }
        if !log.contains(&expected.identity) {
            return Err(VerifyError::PalLog("does not show the PAL registered"));
        }
        let key_digest = Digest::of(tcc_key).0;
        Ok(Verified {
            identity: expected.identity,
            data: [0; 32],
            tcc_key: key_digest,
            ek_certificate: Some(ek_digest),
            launch: Some(launch),
            pal_log: Some(log),
        })
    }
}

/// A TPM quote of PCRs 17-19 and what it is said to cover.
#[derive(Debug, Clone, Copy)]
pub struct TpmQuote<'a> {
    /// The quote (`Quote::to_bytes`).
    pub quote: &'a [u8],
    /// The values of PCRs 17, 18 and 19.
    pub pcrs: &'a [[u8; 32]],
    /// The PAL identities extended into PCR 18, in order.
    pub pal_log: &'a [[u8; 32]],
    /// The TCC key PCR 19 must hold.
    pub tcc_key: &'a PublicKey,
}

impl TpmQuote<'_> {
    /// Checks that the quote is by the attestation key `ak`, over `nonce`, of PCRs 17-19 with
    /// the values given; that PCR 17 is a launch of `hypervisor` the verifier can check, PCR 18
    /// replays from the PAL log and PCR 19 holds the TCC key's hash (the links `vpr verify`
    /// and the enrollment both check). The launch PCR 17 shows.
    ///
    /// # Errors
    /// The first link that does not hold.
    pub fn check(
        &self,
        ak: &PublicKey,
        nonce: &[u8; 32],
        hypervisor: &[u8; 32],
    ) -> Result<Launch, VerifyError> {
        let what = "the TPM quote";
        let quote_error = |source| VerifyError::Quote { what, source };
        let quote = Quote::from_bytes(self.quote).map_err(quote_error)?;
        let info = quote.verify(ak, self.pcrs).map_err(quote_error)?;
        let selected = vpr_proto::tpm2::selected_pcrs(&info.pcr_select);
        if selected != QUOTED_PCRS || self.pcrs.len() != QUOTED_PCRS.len() {
            return Err(VerifyError::PcrSelection(selected));
        }
        if info.extra_data != nonce {
            return Err(VerifyError::Nonce("the TPM quote"));
        }
        let launch = Launch::of_pcr17(&self.pcrs[0], hypervisor)
            .ok_or(VerifyError::Hypervisor { expected: Digest(*hypervisor) })?;
        let replayed =
            self.pal_log.iter().fold(DYNAMIC_PCR_START, |pcr, id| utpm::extended(&pcr, id));
        if replayed != self.pcrs[1] {
            return Err(VerifyError::PalLog("does not replay from the PAL log"));
        }
        if self.pcrs[2] != utpm::extended(&DYNAMIC_PCR_START, &Digest::of(self.tcc_key).0) {
            return Err(VerifyError::TccKey);
        }
        Ok(launch)
    }
}

/// `leaf` chains to one of the expected roots through `intermediates`.
fn chain_to_a_root(
    expected: &Expected<'_>,
    intermediates: &[x509::Certificate],
    leaf: &x509::Certificate,
    what: &'static str,
) -> Result<(), VerifyError> {
    let mut first_error = None;
    for root in expected.roots {
        match x509::verify_chain(root, intermediates, leaf, expected.now) {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(source) => Err(VerifyError::Certificate { what, source }),
        None => Err(VerifyError::Format(String::from("no CA root certificate to check against"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;
    use vpr_proto::crypto::KeyPair;

    const EK_A: &[u8] = include_bytes!("testdata/x509/ek-a-rsa2048.crt");
    const EK_B: &[u8] = include_bytes!("testdata/x509/ek-b-rsa2048.crt");
    const ROOT_A: &[u8] = include_bytes!("testdata/x509/ca-a/ca/swtpm-localca-rootca-cert.pem");
    const ROOT_B: &[u8] = include_bytes!("testdata/x509/root-b.pem");
    const NONCE: [u8; 32] = [1; 32];
    const DATA: [u8; 32] = [2; 32];
    const IDENTITY: [u8; 32] = [5; 32];
    const HYPERVISOR: [u8; 32] = [7; 32];

    fn ca() -> x509::Ca {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/evidence/testdata/x509/ca-a");
        x509::Ca::load(&dir).unwrap()
    }

    fn ak_certificate(ak: &KeyPair, ek: &[u8]) -> Vec<u8> {
        let key = p256::PublicKey::from_sec1_bytes(&ak.public()).unwrap();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        ca().issue_attestation_key_certificate(&key, ek, [9; 16], now - hour, now + 24 * hour)
            .unwrap()
    }

    /// The TPM quote an attestation key `ak` makes of PCRs 17-19 with these values.
    fn tpm_quote(ak: &KeyPair, nonce: &[u8; 32], pcrs: &[[u8; 32]; 3]) -> Vec<u8> {
        let info = QuoteInfo {
            qualified_signer: vec![0, 0x0B, 3, 3],
            extra_data: nonce.to_vec(),
            reset_count: 4,
            firmware_version: 0x2019_1023,
            pcr_select: vpr_proto::tpm2::pcr_bitmap(&QUOTED_PCRS),
            pcr_digest: utpm::pcr_digest(pcrs),
        };
        Quote::sign(ak, &info).to_bytes()
    }

    /// Genuine evidence of a TPM with EK certificate A, as a hypervisor of measurement
    /// `HYPERVISOR` that registered another PAL and then `IDENTITY` would give.
    fn genuine(tcc: &KeyPair) -> Evidence {
        genuine_with_pcr17(tcc, Launch::Simulated.pcr17(&HYPERVISOR))
    }

    /// [`genuine`], with the TPM quoting `pcr17` as PCR 17.
    fn genuine_with_pcr17(tcc: &KeyPair, pcr17: [u8; 32]) -> Evidence {
        let ak = KeyPair::from_secret(&[3; 32]).unwrap();
        let log = [[6; 32], IDENTITY];
        let start = DYNAMIC_PCR_START;
        let pcrs = [
            pcr17,
            log.iter().fold(start, |pcr, id| utpm::extended(&pcr, id)),
            utpm::extended(&start, &Digest::of(&tcc.public()).0),
        ];
        let mut evidence = Evidence::simulated(tcc, &IDENTITY, &NONCE, &DATA);
        evidence.tpm = Some(TpmEvidence {
            ek_certificate: EK_A.to_vec(),
            ak_certificate: ak_certificate(&ak, EK_A),
            intermediates: vec![HexBytes(ca().intermediate_der().to_vec())],
            quote: tpm_quote(&ak, &NONCE, &pcrs),
            pcrs: pcrs.into_iter().map(HexDigest).collect(),
            pal_log: log.into_iter().map(HexDigest).collect(),
            launch: String::from("simulated-late-launch"),
        });
        evidence
    }

    /// The launch is what PCR 17's quoted value shows; the `launch` field (unsigned) must
    /// name it, and nothing else is accepted.
    #[test]
    fn the_launch_is_derived_from_pcr_17_and_other_claims_are_refused() {
        let evidence = genuine(&tcc());
        assert_eq!(
            Launch::Simulated.pcr17(&HYPERVISOR),
            utpm::extended(&[0xFF; 32], &HYPERVISOR),
            "the simulated late launch extends PCR 17 from its power-on value"
        );
        let verified = check(&evidence, ROOT_A, |_| {}).unwrap();
        assert_eq!(verified.launch, Some(Launch::Simulated));
        // The field edited to claim a DRTM, or anything else.
        for claim in ["skinit", "", "simulated", "Simulated-Late-Launch", "simulated late launch"] {
            let mut edited = evidence.clone();
            edited.tpm.as_mut().unwrap().launch = String::from(claim);
            let edited = Evidence::from_json(&edited.to_json()).unwrap();
            let err = check(&edited, ROOT_A, |_| {}).unwrap_err();
            match &err {
                VerifyError::LaunchClaim { claimed, derived: Launch::Simulated } => {
                    assert_eq!(claimed, claim);
                }
                other => panic!("{claim:?}: {other}"),
            }
            let message = err.to_string();
            assert!(message.contains("PCR 17") && message.contains("simulated late launch"));
            assert!(message.contains(&format!("{claim:?}")), "{message}");
        }
        // Without the field: not evidence of this format.
        let json = evidence.to_json().replace("\"launch\"", "\"launched\"");
        assert!(matches!(Evidence::from_json(&json), Err(VerifyError::Format(_))));
        // A quoted PCR 17 with a DRTM's history (reset to zero by locality 4, then extended
        // with the measurement), claimed as SKINIT: not a launch the verifier can check.
        let mut drtm = genuine_with_pcr17(&tcc(), utpm::extended(&[0; 32], &HYPERVISOR));
        drtm.tpm.as_mut().unwrap().launch = String::from("skinit");
        let err = check(&drtm, ROOT_A, |_| {}).unwrap_err();
        assert!(matches!(err, VerifyError::Hypervisor { .. }), "{err}");
        assert!(err.to_string().contains("the only launch vpr can check"), "{err}");
    }

    fn tcc() -> KeyPair {
        KeyPair::from_secret(&[4; 32]).unwrap()
    }

    fn check(
        evidence: &Evidence,
        roots: &[u8],
        change: impl Fn(&mut Expected<'_>),
    ) -> Result<Verified, VerifyError> {
        let roots = x509::read_certificates(roots).unwrap();
        let mut expected = Expected {
            roots: &roots,
            nonce: NONCE,
            identity: IDENTITY,
            data: Some(DATA),
            hypervisor: Some(HYPERVISOR),
            allow_simulation: false,
            now: SystemTime::now(),
        };
        change(&mut expected);
        evidence.verify(&expected)
    }

    #[test]
    fn a_genuine_chain_verifies_and_round_trips_through_json() {
        let evidence = genuine(&tcc());
        let verified = check(&evidence, ROOT_A, |_| {}).unwrap();
        assert_eq!(verified.identity, IDENTITY);
        assert_eq!(verified.data, utpm::caller_data(&DATA));
        assert_eq!(verified.tcc_key, Digest::of(&tcc().public()).0);
        assert_eq!(verified.ek_certificate, Some(x509::ek_certificate_digest(EK_A)));
        assert_eq!(verified.pal_log, Some(vec![[6; 32], IDENTITY]));
        let again = Evidence::from_json(&evidence.to_json()).unwrap();
        assert_eq!(again, evidence);
        // Without expected data, the labelled data is reported.
        let unchecked = check(&evidence, ROOT_A, |e| e.data = None).unwrap();
        assert_eq!(unchecked.data, utpm::caller_data(&DATA));
    }

    #[test]
    fn other_anchors_and_other_tpms_are_refused() {
        let evidence = genuine(&tcc());
        let err = check(&evidence, ROOT_B, |_| {}).unwrap_err();
        assert!(
            matches!(err, VerifyError::Certificate { what: "the EK certificate", .. }),
            "{err}"
        );
        // An AK certificate the CA issued for another TPM's EK.
        let mut other = evidence.clone();
        let ak = KeyPair::from_secret(&[3; 32]).unwrap();
        other.tpm.as_mut().unwrap().ak_certificate = ak_certificate(&ak, EK_B);
        assert!(matches!(check(&other, ROOT_A, |_| {}), Err(VerifyError::OtherTpm { .. })));
        // The EK certificate of another TPM in the evidence (it chains to another root).
        let mut other = evidence.clone();
        other.tpm.as_mut().unwrap().ek_certificate = EK_B.to_vec();
        assert!(matches!(check(&other, ROOT_A, |_| {}), Err(VerifyError::Certificate { .. })));
        // No intermediate.
        let mut other = evidence.clone();
        other.tpm.as_mut().unwrap().intermediates.clear();
        assert!(matches!(check(&other, ROOT_A, |_| {}), Err(VerifyError::Certificate { .. })));
        // Certificates expired by the verifier's clock.
        let later = SystemTime::now() + Duration::from_secs(2 * 24 * 3600);
        let err = check(&evidence, ROOT_A, |e| e.now = later).unwrap_err();
        assert!(matches!(err, VerifyError::Certificate { .. }), "{err}");
    }

    #[test]
    fn the_tpm_quote_and_its_pcrs_are_checked() {
        let evidence = genuine(&tcc());
        for pcr in 0..3 {
            let mut changed = evidence.clone();
            changed.tpm.as_mut().unwrap().pcrs[pcr].0[31] ^= 1;
            let err = check(&changed, ROOT_A, |_| {}).unwrap_err();
            assert!(
                matches!(err, VerifyError::Quote { source: QuoteError::PcrDigest, .. }),
                "{err}"
            );
        }
        let mut changed = evidence.clone();
        changed.tpm.as_mut().unwrap().quote[40] ^= 1;
        assert!(matches!(check(&changed, ROOT_A, |_| {}), Err(VerifyError::Quote { .. })));
        let err = check(&evidence, ROOT_A, |e| e.nonce = [8; 32]).unwrap_err();
        assert!(matches!(err, VerifyError::Nonce("the TPM quote")), "{err}");
        let err = check(&evidence, ROOT_A, |e| e.hypervisor = Some([8; 32])).unwrap_err();
        assert!(matches!(err, VerifyError::Hypervisor { .. }), "{err}");
        let err = check(&evidence, ROOT_A, |e| e.hypervisor = None).unwrap_err();
        assert!(matches!(err, VerifyError::NoHypervisor), "{err}");
        // A log that does not replay to PCR 18, and a PAL that is not in it.
        let mut changed = evidence.clone();
        changed.tpm.as_mut().unwrap().pal_log.reverse();
        assert!(matches!(check(&changed, ROOT_A, |_| {}), Err(VerifyError::PalLog(_))));
        let err = check(&evidence, ROOT_A, |e| e.identity = [8; 32]).unwrap_err();
        assert!(matches!(err, VerifyError::PalLog("does not show the PAL registered")), "{err}");
    }

    #[test]
    fn the_pal_quote_must_come_from_the_key_in_pcr_19() {
        // Another TCC key signs the PAL's quote: PCR 19 names the first one.
        let mut evidence = genuine(&tcc());
        let other = KeyPair::from_secret(&[11; 32]).unwrap();
        let forged = Evidence::simulated(&other, &IDENTITY, &NONCE, &DATA);
        evidence.tcc_key = forged.tcc_key;
        evidence.pal_quote = forged.pal_quote;
        assert!(matches!(check(&evidence, ROOT_A, |_| {}), Err(VerifyError::TccKey)));
    }

    #[test]
    fn the_pal_quote_is_checked() {
        let evidence = genuine(&tcc());
        let mut changed = evidence.clone();
        changed.pal_quote[30] ^= 1;
        assert!(matches!(check(&changed, ROOT_A, |_| {}), Err(VerifyError::Quote { .. })));
        let err = check(&evidence, ROOT_A, |e| e.data = Some([8; 32])).unwrap_err();
        assert!(matches!(err, VerifyError::Data { .. }), "{err}");
        // The uTPM quote's own links, on simulated evidence (no PCR 18 to name the PAL).
        let simulated = Evidence::simulated(&tcc(), &IDENTITY, &NONCE, &DATA);
        let allow = |e: &mut Expected<'_>| e.allow_simulation = true;
        assert!(check(&simulated, ROOT_A, allow).is_ok());
        let err = check(&simulated, ROOT_A, |e| {
            e.allow_simulation = true;
            e.identity = [8; 32];
        })
        .unwrap_err();
        assert!(matches!(err, VerifyError::Identity { .. }), "{err}");
        let err = check(&simulated, ROOT_A, |e| {
            e.allow_simulation = true;
            e.nonce = [8; 32];
        })
        .unwrap_err();
        assert!(matches!(err, VerifyError::Nonce("the PAL's uTPM quote")), "{err}");
        let mut fewer = simulated.clone();
        fewer.upcrs.clear();
        assert!(check(&fewer, ROOT_A, allow).is_err());
    }

    /// The data in a PAL's quote is its caller's, labelled: what verifies is the labelled
    /// value, and a quote carrying the bare data (as if the PAL stated it) does not verify as
    /// that data.
    #[test]
    fn quoted_data_is_labelled_as_the_callers() {
        let allow = |e: &mut Expected<'_>| e.allow_simulation = true;
        let labelled = Evidence::simulated(&tcc(), &IDENTITY, &NONCE, &DATA);
        let verified = check(&labelled, ROOT_A, allow).expect("verifies");
        assert_eq!(verified.data, utpm::caller_data(&DATA));
        assert_ne!(verified.data, DATA);
        let upcrs = Upcrs::new(&IDENTITY).selected(1);
        let bare = QuoteInfo {
            qualified_signer: utpm::signer_name(&tcc().public()).to_vec(),
            extra_data: [&NONCE[..], &DATA[..]].concat(),
            reset_count: 0,
            firmware_version: 0,
            pcr_select: [1, 0, 0],
            pcr_digest: utpm::pcr_digest(&upcrs),
        };
        let unlabelled =
            Evidence { pal_quote: Quote::sign(&tcc(), &bare).to_bytes(), ..labelled.clone() };
        let err = check(&unlabelled, ROOT_A, allow).unwrap_err();
        assert!(matches!(err, VerifyError::Data { .. }), "{err}");
    }

    #[test]
    fn simulated_evidence_needs_the_flag() {
        let simulated = Evidence::simulated(&tcc(), &IDENTITY, &NONCE, &DATA);
        let err = check(&simulated, ROOT_A, |_| {}).unwrap_err();
        assert!(matches!(err, VerifyError::Simulated), "{err}");
        let verified = check(&simulated, ROOT_A, |e| e.allow_simulation = true).unwrap();
        assert_eq!((verified.ek_certificate, verified.launch), (None, None));
    }

    #[test]
    fn malformed_evidence_is_refused_without_panics() {
        assert!(matches!(Evidence::from_json("{}"), Err(VerifyError::Format(_))));
        assert!(matches!(Evidence::from_json("not json"), Err(VerifyError::Format(_))));
        let mut other = genuine(&tcc());
        other.format = String::from("vpr-evidence-0");
        assert!(matches!(Evidence::from_json(&other.to_json()), Err(VerifyError::Format(_))));
        let json = genuine(&tcc()).to_json();
        for len in (0..json.len()).step_by(97) {
            assert!(Evidence::from_json(&json[..len]).is_err());
        }
        let mut short = genuine(&tcc());
        short.tcc_key.pop();
        assert!(matches!(check(&short, ROOT_A, |_| {}), Err(VerifyError::Format(_))));
        let mut garbage = genuine(&tcc());
        garbage.tpm.as_mut().unwrap().ek_certificate = vec![0x30, 0x82, 0xFF];
        assert!(matches!(check(&garbage, ROOT_A, |_| {}), Err(VerifyError::Certificate { .. })));
        garbage.pal_quote = vec![0; 3];
        assert!(check(&garbage, ROOT_A, |_| {}).is_err());
    }
}
