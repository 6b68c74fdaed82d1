//! Enrolling a replica machine's TCC with the cluster, before its replica starts: the
//! cluster's operator (the launcher, holding the TPM manufacturer's CA and the cluster's
//! certifying key) checks the machine's TPM evidence up to the CA and then certifies its TCC
//! key, so that its Manager's evidence verifies against the cluster's key — attested joins
//! and client sessions without simulated evidence.
//!
//! The machine runs [`agent`] (a process of the hypervisor's Linux guest); the operator
//! connects and runs [`enroll`]. Over one TCP connection, each message a u32 (little-endian)
//! length and its bytes:
//!
//! 1. operator → agent: a fresh 32-byte nonce;
//! 2. agent → operator: the TPM evidence over it (the `evidence` hypercall:
//!    `vpr_proto::utpm::TpmEvidenceParts`), then the PAL's uTPM quote over the same nonce and
//!    [`ENROLLMENT_DATA`]'s hash (empty when the agent has no PAL image): with them the
//!    operator can write evidence files that `vpr verify` checks offline;
//! 3. operator → agent: a credential for the attestation key, made against the EK in the EK
//!    certificate ([`credential::make_credential`]);
//! 4. agent → operator: the secret the TPM gave back (the `activate` hypercall) — the
//!    attestation key is on that EK's TPM;
//! 5. the operator checks the EK certificate against the CA, issues the attestation key's
//!    certificate, checks the quote: PCR 17 the expected hypervisor's launch (which launch,
//!    [`Enrolled::launch`]: the caller says it), PCR 19 the TCC key;
//!    operator → agent: the cluster key's certificate of the TCC key;
//! 6. agent → operator: `ok` once the `certify` hypercall took it;
//! 7. operator → agent, once every machine of the cluster is enrolled: the cluster
//!    configuration (TOML) the machine's replica runs with, which names each replica's TCC
//!    key; agent → operator: `ok` once it is stored. (The configuration is not trusted: the
//!    Manager refuses to run if it does not name this TCC for its id, and clients check its
//!    digest.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime};

use vpr_proto::crypto::{KeyPair, PublicKey};
use vpr_proto::msg::Attestation;
use vpr_proto::utpm::TpmEvidenceParts;
use vpr_proto::Digest;

use crate::evidence::{credential, x509, Evidence, Launch, TpmQuote};
use crate::tcc::hypercall::Hypervisor;

/// The most bytes of one message.
const MAX_MESSAGE: usize = 64 << 10;
/// How long either side waits for the other's next message.
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent waits for the configuration (the operator enrolls the other machines
/// first).
const CONFIG_TIMEOUT: Duration = Duration::from_secs(3600);

/// The caller's data in the enrollment's uTPM quote (labelled: the PAL does not vouch for it;
/// the quote shows the PAL and its TCC key, fresh).
pub const ENROLLMENT_DATA: &[u8] = b"vpr enrollment";

/// Why an enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The connection failed or a message broke the protocol.
    #[error("enrollment connection: {0}")]
    Io(#[from] std::io::Error),
    /// The machine's evidence does not hold.
    #[error("the machine's evidence is refused: {0}")]
    Evidence(String),
    /// The machine's TCC failed.
    #[error("the machine's TCC: {0}")]
    Tcc(String),
}

fn send(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    stream.write_all(&len.to_le_bytes())?;
    stream.write_all(bytes)?;
    stream.flush()
}

fn receive(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = usize::try_from(u32::from_le_bytes(len)).unwrap_or(usize::MAX);
    if len > MAX_MESSAGE {
        return Err(std::io::Error::other(format!("a {len}-byte message")));
    }
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// The machine's side: waits on `listen` for the operator, answers one enrollment with the
/// hypervisor's TPM hypercalls, and returns once its TCC key is certified.
///
/// # Errors
/// Not on the hypervisor, a hypercall refused, or the connection failed.
pub fn agent(
    listen: &str,
    pal: Option<&std::path::Path>,
    config: &std::path::Path,
) -> Result<(), EnrollError> {
    let hv = Hypervisor::open().map_err(|e| EnrollError::Tcc(e.to_string()))?;
    let listener = TcpListener::bind(listen)?;
    let (mut stream, peer) = listener.accept()?;
    tracing::info!("enrollment by {peer}");
    stream.set_read_timeout(Some(TIMEOUT))?;
    let nonce: [u8; 32] = receive(&mut stream)?
        .try_into()
        .map_err(|_| EnrollError::Evidence(String::from("the nonce is not 32 bytes")))?;
    // The PAL first: its registration is then in PCR 18 when the TPM quotes it.
    let quote = match pal {
        Some(pal) => pal_quote(&hv, pal, &nonce)?,
        None => Vec::new(),
    };
    let evidence = hv.evidence(&nonce).map_err(|e| EnrollError::Tcc(e.to_string()))?;
    send(&mut stream, &evidence)?;
    send(&mut stream, &quote)?;
    let credential = receive(&mut stream)?;
    let secret = hv.activate(&credential).map_err(|e| EnrollError::Tcc(e.to_string()))?;
    send(&mut stream, &secret)?;
    let certificate: [u8; 64] = receive(&mut stream)?
        .try_into()
        .map_err(|_| EnrollError::Evidence(String::from("the certificate is not 64 bytes")))?;
    match hv.certify(&certificate) {
        Ok(()) => send(&mut stream, b"ok")?,
        Err(e) => {
            send(&mut stream, e.to_string().as_bytes())?;
            return Err(EnrollError::Tcc(e.to_string()));
        }
    }
    stream.set_read_timeout(Some(CONFIG_TIMEOUT))?;
    store_configuration(&mut stream, config)
}

/// Step 7, the machine's side: takes the configuration, checks that it is one, and stores it
/// at `path` (through a temporary file and a rename).
fn store_configuration(stream: &mut TcpStream, path: &std::path::Path) -> Result<(), EnrollError> {
    let bytes = receive(stream)?;
    let checked = std::str::from_utf8(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|text| {
            toml::from_str::<crate::config::ClusterConfig>(text).map_err(|e| e.to_string())
        })
        .and_then(|config| config.validate().map_err(|e| e.to_string()));
    if let Err(e) = checked {
        let why = format!("the configuration is refused: {e}");
        send(stream, why.as_bytes())?;
        return Err(EnrollError::Evidence(why));
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)?;
    send(stream, b"ok")?;
    Ok(())
}

/// An enrolled machine whose agent waits for its configuration (step 7).
#[derive(Debug)]
pub struct Enrollment {
    /// What the enrollment established.
    pub enrolled: Enrolled,
    stream: TcpStream,
}

impl Enrollment {
    /// Sends the configuration (TOML) the machine's replica runs with and waits until the
    /// agent stored it.
    ///
    /// # Errors
    /// The connection failed, or the agent refused the configuration.
    pub fn configure(mut self, config: &str) -> Result<Enrolled, EnrollError> {
        send(&mut self.stream, config.as_bytes())?;
        let answer = receive(&mut self.stream)?;
        if answer != b"ok" {
            return Err(EnrollError::Tcc(String::from_utf8_lossy(&answer).into_owned()));
        }
        Ok(self.enrolled)
    }
}

/// The PAL's uTPM quote of its uPCR 0 over `nonce` and [`ENROLLMENT_DATA`]'s hash: the PAL
/// image at `pal` registered for it, then unregistered.
fn pal_quote(
    hv: &Hypervisor,
    pal: &std::path::Path,
    nonce: &[u8; 32],
) -> Result<Vec<u8>, EnrollError> {
    use vpr_proto::pal_io::{Command, Outcome};
    let tcc = |e: crate::tcc::hypercall::HypercallError| EnrollError::Tcc(e.to_string());
    let image = std::fs::read(pal)?;
    let registered = hv.register(&image).map_err(tcc)?;
    let command =
        Command::Quote { nonce: Digest(*nonce), data: Digest::of(ENROLLMENT_DATA), selection: 1 };
    let output = hv.execute(registered.handle, &command.encode(), 64 << 10).map_err(tcc);
    let unregistered = hv.unregister(registered.handle).map_err(tcc);
    let outcome = Outcome::decode(&output?).map_err(|e| EnrollError::Tcc(e.to_string()))?;
    unregistered?;
    match outcome {
        Outcome::Quote { quote } => Ok(quote),
        other => Err(EnrollError::Tcc(format!("the PAL's quote: {other:?}"))),
    }
}

/// What the operator trusts and expects.
#[derive(Debug)]
pub struct Operator<'a> {
    /// The TPM manufacturer's CA (root and intermediate; the key that issues AK certificates).
    pub ca: &'a x509::Ca,
    /// The cluster's certifying key: the `manufacturer` of its replicas' configuration.
    pub cluster_key: &'a KeyPair,
    /// The hypervisor measurement PCR 17 must show.
    pub hypervisor: [u8; 32],
    /// The TCC key the machine must show, if it was enrolled before (a machine booted again
    /// derives the same key from its TPM-held secret): checked before anything is certified.
    pub tcc_key: Option<PublicKey>,
}

/// The quote of `parts` by the attestation key `ak` ([`TpmQuote::check`]); the launch PCR 17
/// shows.
fn check_quote(
    parts: &TpmEvidenceParts,
    ak: &PublicKey,
    nonce: &[u8; 32],
    hypervisor: &[u8; 32],
) -> Result<Launch, String> {
    let quote = TpmQuote {
        quote: &parts.quote,
        pcrs: &parts.pcrs,
        pal_log: &parts.pal_log,
        tcc_key: &parts.tcc_key,
    };
    quote.check(ak, nonce, hypervisor).map_err(|e| e.to_string())
}

/// What an enrollment established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The machine's TCC key, now certified.
    pub tcc_key: PublicKey,
    /// SHA-256 of its TPM's EK certificate.
    pub ek_certificate: [u8; 32],
    /// The launch its quoted PCR 17 shows ([`Launch::warning`]: what to tell the operator).
    pub launch: Launch,
    /// The PALs its hypervisor had registered (PCR 18's log).
    pub pal_log: Vec<[u8; 32]>,
    /// The operator's nonce.
    pub nonce: [u8; 32],
    /// The machine's TPM evidence, as checked.
    pub parts: TpmEvidenceParts,
    /// The attestation key (on the EK's TPM: its credential was activated).
    pub ak: p256::PublicKey,
    /// The PAL's uTPM quote over the nonce (empty if the agent had no PAL image).
    pub pal_quote: Vec<u8>,
}

impl Enrolled {
    /// Evidence for `vpr verify` (over [`Enrolled::nonce`], the PAL quoting
    /// [`ENROLLMENT_DATA`]'s hash as its caller's data): the EK certificate, an attestation-key certificate the CA
    /// issues now, the TPM quote, the PAL's uTPM quote of `identity`. `None` without a PAL
    /// quote.
    ///
    /// # Errors
    /// The CA could not issue the certificate.
    pub fn evidence(
        &self,
        ca: &x509::Ca,
        identity: &[u8; 32],
    ) -> Result<Option<Evidence>, x509::X509Error> {
        if self.pal_quote.is_empty() {
            return Ok(None);
        }
        let now = SystemTime::now();
        let year = Duration::from_secs(365 * 24 * 3600);
        let ak_certificate = ca.issue_attestation_key_certificate(
            &self.ak,
            &self.parts.ek_certificate,
            x509::random_serial(),
            now,
            now + year,
        )?;
        let intermediates = vec![ca.intermediate_der().to_vec()];
        let pal_quote = self.pal_quote.clone();
        Ok(Some(Evidence::from_tpm(
            &self.parts,
            ak_certificate,
            intermediates,
            pal_quote,
            identity,
        )))
    }
}

/// The operator's side: enrolls the machine whose agent listens at `addr`.
///
/// # Errors
/// The connection, or any link of the machine's evidence that does not hold.
pub fn enroll(
    addr: impl ToSocketAddrs,
    operator: &Operator<'_>,
) -> Result<Enrollment, EnrollError> {
    let bad = |what: String| EnrollError::Evidence(what);
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut nonce = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    send(&mut stream, &nonce)?;
    let parts = TpmEvidenceParts::from_bytes(&receive(&mut stream)?)
        .map_err(|e| bad(format!("undecodable: {e}")))?;
    let pal_quote = receive(&mut stream)?;
    // EK certificate -> CA.
    let ek = x509::read_certificates(&parts.ek_certificate)
        .map_err(|e| bad(format!("EK certificate: {e}")))?;
    let ek = ek.first().ok_or_else(|| bad(String::from("no EK certificate")))?;
    x509::verify_chain(
        operator.ca.root(),
        std::slice::from_ref(operator.ca.intermediate()),
        ek,
        SystemTime::now(),
    )
    .map_err(|e| bad(format!("EK certificate: {e}")))?;
    // Attestation key -> EK, by credential activation.
    let ak = credential::parse_attestation_key(&parts.ak_public)
        .map_err(|e| bad(format!("attestation key: {e}")))?;
    let ek_key = x509::rsa_public_key(ek).map_err(|e| bad(format!("EK: {e}")))?;
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let made = credential::make_credential(&ek_key, &ak.name, &secret, &mut rand_core::OsRng)
        .map_err(|e| bad(format!("credential: {e}")))?;
    send(&mut stream, &[made.id_object, made.encrypted_secret].concat())?;
    if receive(&mut stream)? != secret {
        return Err(bad(String::from("the attestation key is not on the EK's TPM")));
    }
    // The quote: fresh, by that key, of PCR 17 = the hypervisor, PCR 19 = the TCC key.
    let ak_point: PublicKey =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&ak.key, false)
            .as_bytes()
            .try_into()
            .map_err(|_| bad(String::from("attestation key point")))?;
    let launch = check_quote(&parts, &ak_point, &nonce, &operator.hypervisor).map_err(bad)?;
    if operator.tcc_key.is_some_and(|known| known != parts.tcc_key) {
        return Err(bad(String::from(
            "another TCC key than at the machine's first enrollment: not certified",
        )));
    }
    // The TCC key is this TPM's hypervisor's: certify it for the cluster.
    let certificate =
        operator.cluster_key.sign(&Attestation::certificate_bytes(false, &parts.tcc_key));
    send(&mut stream, &certificate)?;
    let answer = receive(&mut stream)?;
    if answer != b"ok" {
        return Err(EnrollError::Tcc(String::from_utf8_lossy(&answer).into_owned()));
    }
    let enrolled = Enrolled {
        tcc_key: parts.tcc_key,
        ek_certificate: x509::ek_certificate_digest(&parts.ek_certificate),
        launch,
        pal_log: parts.pal_log.clone(),
        nonce,
        ak: ak.key,
        parts,
        pal_quote,
    };
    Ok(Enrollment { enrolled, stream })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::DYNAMIC_PCR_START;
    use vpr_proto::utpm::{self, Quote, QuoteInfo};

    const NONCE: [u8; 32] = [1; 32];
    const HYPERVISOR: [u8; 32] = [2; 32];

    /// Evidence as a machine running `HYPERVISOR` with `tcc` as its TCC key would give, its
    /// quote by `ak` over `nonce`.
    fn parts(ak: &KeyPair, tcc: &KeyPair, nonce: &[u8; 32]) -> TpmEvidenceParts {
        let log = vec![[5; 32]];
        let pcrs = [
            utpm::extended(&DYNAMIC_PCR_START, &HYPERVISOR),
            utpm::extended(&DYNAMIC_PCR_START, &log[0]),
            utpm::extended(&DYNAMIC_PCR_START, &Digest::of(&tcc.public()).0),
        ];
        let info = QuoteInfo {
            qualified_signer: vec![0, 0x0B],
            extra_data: nonce.to_vec(),
            reset_count: 0,
            firmware_version: 0,
            pcr_select: vpr_proto::tpm2::pcr_bitmap(&[17, 18, 19]),
            pcr_digest: utpm::pcr_digest(&pcrs),
        };
        TpmEvidenceParts {
            ak_public: Vec::new(),
            quote: Quote::sign(ak, &info).to_bytes(),
            pcrs,
            pal_log: log,
            tcc_key: tcc.public(),
            ek_certificate: Vec::new(),
        }
    }

    fn keys() -> (KeyPair, KeyPair) {
        (KeyPair::from_secret(&[3; 32]).unwrap(), KeyPair::from_secret(&[4; 32]).unwrap())
    }

    #[test]
    fn a_genuine_quote_passes() {
        let (ak, tcc) = keys();
        let genuine = parts(&ak, &tcc, &NONCE);
        assert_eq!(check_quote(&genuine, &ak.public(), &NONCE, &HYPERVISOR), Ok(Launch::Simulated));
    }

    #[test]
    fn every_link_of_the_quote_is_checked() {
        let (ak, tcc) = keys();
        let genuine = parts(&ak, &tcc, &NONCE);
        let refused = |p: &TpmEvidenceParts, key: &PublicKey, nonce: &[u8; 32], hv: &[u8; 32]| {
            check_quote(p, key, nonce, hv).unwrap_err()
        };
        // Another key's quote; an old nonce; another hypervisor.
        assert!(refused(&genuine, &tcc.public(), &NONCE, &HYPERVISOR).contains("signature"));
        assert!(refused(&genuine, &ak.public(), &[9; 32], &HYPERVISOR).contains("nonce"));
        assert!(refused(&genuine, &ak.public(), &NONCE, &[9; 32]).contains("PCR 17"));
        // PCR values that are not the quoted ones.
        let mut changed = genuine.clone();
        changed.pcrs[1][0] ^= 1;
        assert!(refused(&changed, &ak.public(), &NONCE, &HYPERVISOR).contains("pcrDigest"));
        // A log that does not replay.
        let mut changed = genuine.clone();
        changed.pal_log.push([6; 32]);
        assert!(refused(&changed, &ak.public(), &NONCE, &HYPERVISOR).contains("PCR 18"));
        // Another TCC key than PCR 19 holds.
        let mut changed = genuine.clone();
        changed.tcc_key = KeyPair::from_secret(&[7; 32]).unwrap().public();
        assert!(refused(&changed, &ak.public(), &NONCE, &HYPERVISOR).contains("PCR 19"));
    }

    #[test]
    fn messages_are_length_prefixed_and_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let got = receive(&mut stream).unwrap();
            send(&mut stream, &got).unwrap();
            // A lying length is refused before anything is allocated.
            stream.write_all(&u32::MAX.to_le_bytes()).unwrap();
        });
        let mut stream = TcpStream::connect(addr).unwrap();
        send(&mut stream, b"hello").unwrap();
        assert_eq!(receive(&mut stream).unwrap(), b"hello");
        assert!(receive(&mut stream).is_err());
        peer.join().unwrap();
    }

    #[test]
    fn an_agent_that_is_not_there_is_an_io_error() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let ca_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/evidence/testdata/x509/ca-a");
        let ca = x509::Ca::load(&ca_dir).unwrap();
        let key = KeyPair::from_secret(&[3; 32]).unwrap();
        let operator =
            Operator { ca: &ca, cluster_key: &key, hypervisor: HYPERVISOR, tcc_key: None };
        assert!(matches!(enroll(addr, &operator), Err(EnrollError::Io(_))));
    }
}
