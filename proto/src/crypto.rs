//! The cryptography of the protocol: MACs, key derivation, sealing a key to a public key,
//! and P-256 signatures for attestation (docs/protocol.md, "Parties and keys").

use alloc::vec::Vec;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac as _};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;

use crate::digest::Digest;

/// A 32-byte symmetric key (the group key K, a client key Kc).
pub type Key = [u8; 32];
/// An HMAC-SHA256 tag.
pub type Tag = [u8; 32];
/// A SEC1 uncompressed P-256 public key (0x04 || x || y).
pub type PublicKey = [u8; 65];
/// A P-256 ECDSA signature (r || s).
pub type Signature = [u8; 64];
/// A 32-byte key sealed with ChaCha20-Poly1305: ciphertext || tag.
pub type SealedKey = [u8; 48];

/// HMAC-SHA256 under `key` of the concatenation of `parts`.
pub fn mac(key: &Key, parts: &[&[u8]]) -> Tag {
    let mut m = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The blinder of one reply: XORed into its tag until the update it waits for commits.
///
/// `secret` is the update's blinding secret, which its primary's TCC releases only when the
/// update commits; each reply's blinder also names its client and sequence number, so the
/// blinder a party can work out from a reply of its own (tag XOR the MAC under its own client
/// key) unblinds nothing else.
pub fn reply_blinder(secret: &Key, client: &[u8; 16], seq: u64) -> Tag {
    mac(secret, &[b"vpr reply blinder", client, &seq.to_le_bytes()])
}

/// Checks an HMAC-SHA256 tag in constant time.
pub fn mac_ok(key: &Key, parts: &[&[u8]], tag: &Tag) -> bool {
    let mut m = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.verify_slice(tag).is_ok()
}

/// SHA-256 of the concatenation of `parts`.
pub fn hash(parts: &[&[u8]]) -> Digest {
    let mut h = crate::digest::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// XORs `mask` into `tag` (blinding and unblinding a reply tag).
pub fn xor(tag: &mut Tag, mask: &Tag) {
    for (t, m) in tag.iter_mut().zip(mask) {
        *t ^= m;
    }
}

/// A P-256 key pair for signing (attestation) and key agreement.
#[derive(Clone)]
pub struct KeyPair {
    secret: p256::SecretKey,
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public()).finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh key pair from a cryptographic random source.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        KeyPair { secret: p256::SecretKey::random(rng) }
    }

    /// The key pair with this 32-byte secret scalar, if it is a valid one.
    pub fn from_secret(bytes: &[u8; 32]) -> Option<Self> {
        p256::SecretKey::from_slice(bytes).ok().map(|secret| KeyPair { secret })
    }

    /// The secret scalar (for sealing to storage).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes().into()
    }

    /// The public key, SEC1 uncompressed.
    pub fn public(&self) -> PublicKey {
        let point = self.secret.public_key().to_encoded_point(false);
        let mut out = [0u8; 65];
        out.copy_from_slice(point.as_bytes());
        out
    }

    /// ECDSA-P256-SHA256 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        let key = p256::ecdsa::SigningKey::from(&self.secret);
        let sig: p256::ecdsa::Signature = key.sign(message);
        sig.to_bytes().into()
    }

    /// Seals `key` so that only the holder of `recipient`'s secret can open it:
    /// ECDH between this (ephemeral) key and `recipient`, HKDF-SHA256 with `context`, then
    /// ChaCha20-Poly1305 with a zero nonce (every sealing key is used once).
    pub fn seal_to(&self, recipient: &PublicKey, context: &[u8], key: &Key) -> Option<SealedKey> {
        let aead = self.agree(recipient, context)?;
        let mut buf = *key;
        let tag = aead.encrypt_in_place_detached(&Default::default(), context, &mut buf).ok()?;
        let mut out = [0u8; 48];
        out[..32].copy_from_slice(&buf);
        out[32..].copy_from_slice(&tag);
        Some(out)
    }

    /// Opens a key sealed to this key pair by the holder of `sender` (see [`KeyPair::seal_to`]).
    pub fn open_from(&self, sender: &PublicKey, context: &[u8], sealed: &SealedKey) -> Option<Key> {
        let aead = self.agree(sender, context)?;
        let mut buf: Key = [0; 32];
        buf.copy_from_slice(&sealed[..32]);
        let tag = chacha20poly1305::Tag::from_slice(&sealed[32..]);
        aead.decrypt_in_place_detached(&Default::default(), context, &mut buf, tag).ok()?;
        Some(buf)
    }

    fn agree(&self, peer: &PublicKey, context: &[u8]) -> Option<ChaCha20Poly1305> {
        let peer = p256::PublicKey::from_sec1_bytes(peer).ok()?;
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        let hk = shared.extract::<Sha256>(Some(b"vpr seal v1"));
        let mut key = [0u8; 32];
        hk.expand(context, &mut key).ok()?;
        Some(ChaCha20Poly1305::new(&key.into()))
    }
}

/// Checks an ECDSA-P256-SHA256 signature.
pub fn verify(public: &PublicKey, message: &[u8], signature: &Signature) -> bool {
    let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(public) else { return false };
    let Ok(sig) = p256::ecdsa::Signature::from_slice(signature) else { return false };
    key.verify(message, &sig).is_ok()
}

/// Concatenates byte strings (for building signed or MACed messages).
pub fn concat(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// Encrypts and authenticates `data` under `key` with `aad` bound in: `nonce || ciphertext ||
/// tag` (ChaCha20-Poly1305). `nonce` must never repeat under one key (take it at random).
pub fn aead_seal(key: &Key, nonce: [u8; 12], aad: &[u8], data: &[u8]) -> Vec<u8> {
    let aead = ChaCha20Poly1305::new(key.into());
    let mut out = Vec::with_capacity(12 + data.len() + 16);
    out.extend_from_slice(&nonce);
    let mut body = data.to_vec();
    // Encryption fails only past ChaCha20's 256 GiB message limit.
    let tag = aead
        .encrypt_in_place_detached(&nonce.into(), aad, &mut body)
        .unwrap_or_else(|_| chacha20poly1305::Tag::default());
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    out
}

/// Opens what [`aead_seal`] made with the same `key` and `aad`; `None` if anything differs.
pub fn aead_open(key: &Key, aad: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
    if blob.len() < 12 + 16 {
        return None;
    }
    let (nonce, rest) = blob.split_at(12);
    let (body, tag) = rest.split_at(rest.len() - 16);
    let aead = ChaCha20Poly1305::new(key.into());
    let mut plain = body.to_vec();
    aead.decrypt_in_place_detached(
        nonce.into(),
        aad,
        &mut plain,
        chacha20poly1305::Tag::from_slice(tag),
    )
    .ok()?;
    Some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u64);
    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.next_u64().to_le_bytes()[0].into()
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.next_u64().to_le_bytes()[4];
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for Counter {}

    #[test]
    fn hmac_sha256_known_answer() {
        // RFC 4231, test case 2.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let tag = mac(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            crate::digest::Digest(tag).to_string(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(mac_ok(&key, &[b"what do ya want for nothing?"], &tag));
        let mut bad = tag;
        bad[0] ^= 1;
        assert!(!mac_ok(&key, &[b"what do ya want for nothing?"], &bad));
    }

    #[test]
    fn sealed_keys_open_only_for_the_recipient_and_context() {
        let mut rng = Counter(7);
        let (alice, bob, eve) =
            (KeyPair::generate(&mut rng), KeyPair::generate(&mut rng), KeyPair::generate(&mut rng));
        let k = [42u8; 32];
        let sealed = alice.seal_to(&bob.public(), b"ctx", &k).expect("seal");
        assert_eq!(bob.open_from(&alice.public(), b"ctx", &sealed), Some(k));
        assert_eq!(bob.open_from(&alice.public(), b"other", &sealed), None);
        assert_eq!(eve.open_from(&alice.public(), b"ctx", &sealed), None);
        let mut tampered = sealed;
        tampered[3] ^= 1;
        assert_eq!(bob.open_from(&alice.public(), b"ctx", &tampered), None);
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message() {
        let mut rng = Counter(9);
        let k = KeyPair::generate(&mut rng);
        let sig = k.sign(b"attested data");
        assert!(verify(&k.public(), b"attested data", &sig));
        assert!(!verify(&k.public(), b"attested date", &sig));
        assert!(!verify(&KeyPair::generate(&mut rng).public(), b"attested data", &sig));
        assert!(!verify(&[0u8; 65], b"attested data", &sig));
    }

    #[test]
    fn aead_opens_only_what_it_sealed() {
        let key = [7u8; 32];
        let blob = aead_seal(&key, [1; 12], b"ctx", b"secret data");
        assert_eq!(aead_open(&key, b"ctx", &blob).as_deref(), Some(&b"secret data"[..]));
        assert_eq!(aead_open(&key, b"other", &blob), None);
        assert_eq!(aead_open(&[8u8; 32], b"ctx", &blob), None);
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x10;
            assert_eq!(aead_open(&key, b"ctx", &bad), None, "byte {i} flipped");
        }
        assert_eq!(aead_open(&key, b"ctx", &blob[..20]), None);
    }
}
