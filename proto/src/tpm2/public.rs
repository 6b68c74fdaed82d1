//! The public area (`TPMT_PUBLIC`, Part 2 §12.2.4) of an ECDSA P-256 signing key such as
//! the hypervisor's attestation key: written from its template, read from a TPM's answer
//! or a verifier's evidence.

use super::{Error, Reader, Writer};
use super::{TPM_ALG_ECC, TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_ALG_SHA256, TPM_ECC_NIST_P256};

impl Writer {
    /// The `TPMT_PUBLIC` of an ECDSA P-256 signing key with `attributes`: `type`
    /// [`TPM_ALG_ECC`], `nameAlg` [`TPM_ALG_SHA256`], `objectAttributes` `attributes`, an
    /// empty `authPolicy`, then `parameters`, a `TPMS_ECC_PARMS` (Part 2 §12.2.3.6) —
    /// `symmetric` (a `TPMT_SYM_DEF_OBJECT`: [`TPM_ALG_NULL`], nothing more), `scheme` (a
    /// `TPMT_ECC_SCHEME`: [`TPM_ALG_ECDSA`] and its `hashAlg` [`TPM_ALG_SHA256`]),
    /// `curveID` [`TPM_ECC_NIST_P256`], `kdf` (a `TPMT_KDF_SCHEME`: [`TPM_ALG_NULL`],
    /// nothing more) — then `unique`, a `TPMS_ECC_POINT` (Part 2 §11.2.5.2) of `x` and `y`
    /// (`TPM2B_ECC_PARAMETER`s: the two coordinates of a key, both empty in a template).
    pub fn ecc_signing_public(self, attributes: u32, x: &[u8], y: &[u8]) -> Self {
        let head = self.u16(TPM_ALG_ECC).u16(TPM_ALG_SHA256).u32(attributes).sized(&[]);
        let parameters = head.u16(TPM_ALG_NULL).u16(TPM_ALG_ECDSA).u16(TPM_ALG_SHA256);
        parameters.u16(TPM_ECC_NIST_P256).u16(TPM_ALG_NULL).sized(x).sized(y)
    }
}

/// The fields of an ECC key's `TPMT_PUBLIC`, as read and not checked: see
/// [`EccPublic::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EccPublic<'a> {
    /// `type`.
    pub object_type: u16,
    /// `nameAlg`.
    pub name_alg: u16,
    /// `objectAttributes` (`TPMA_OBJECT`, Part 2 §8.3).
    pub attributes: u32,
    /// `authPolicy`.
    pub auth_policy: &'a [u8],
    /// `parameters.symmetric.algorithm`.
    pub symmetric: u16,
    /// `parameters.scheme.scheme`.
    pub scheme: u16,
    /// `parameters.scheme.details.hashAlg`.
    pub scheme_hash: u16,
    /// `parameters.curveID`.
    pub curve: u16,
    /// `parameters.kdf.scheme`.
    pub kdf: u16,
    /// `unique.x`.
    pub x: &'a [u8],
    /// `unique.y`.
    pub y: &'a [u8],
}

impl<'a> EccPublic<'a> {
    /// Reads a `TPMT_PUBLIC` laid out as [`Writer::ecc_signing_public`] writes it — `type`,
    /// `nameAlg`, `objectAttributes`, `authPolicy` (a `TPM2B_DIGEST`), then `symmetric`,
    /// `scheme` and its `hashAlg`, `curveID` and `kdf` (u16s: the layout of a key whose
    /// `symmetric` and `kdf` are [`TPM_ALG_NULL`]), then the `TPM2B`s `x` and `y` — failing
    /// with `short` if the bytes end first. The values are the caller's to check (a key of
    /// another layout has other values where they are read); so is what follows.
    pub fn read(r: &mut Reader<'a>, short: &'static str) -> Result<Self, Error> {
        Ok(EccPublic {
            object_type: r.u16(short)?,
            name_alg: r.u16(short)?,
            attributes: r.u32(short)?,
            auth_policy: r.sized(short)?,
            symmetric: r.u16(short)?,
            scheme: r.u16(short)?,
            scheme_hash: r.u16(short)?,
            curve: r.u16(short)?,
            kdf: r.u16(short)?,
            x: r.sized(short)?,
            y: r.sized(short)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm2::ATTESTATION_KEY_ATTRIBUTES;

    #[test]
    fn ecc_signing_public_round_trips() {
        let public =
            Writer::new().ecc_signing_public(ATTESTATION_KEY_ATTRIBUTES, &[1; 32], &[2; 32]);
        let public = public.finish();
        assert_eq!(
            public[..20],
            [0, 0x23, 0, 0x0B, 0, 0x05, 0x04, 0x72, 0, 0, 0, 0x10, 0, 0x18, 0, 0x0B, 0, 3, 0, 0x10]
        );
        assert_eq!(public.len(), 20 + 2 * 34);
        let mut r = Reader::new(&public);
        let read = EccPublic::read(&mut r, "short").unwrap();
        assert_eq!(r.finish("trailing"), Ok(()));
        assert_eq!((read.object_type, read.name_alg), (TPM_ALG_ECC, TPM_ALG_SHA256));
        assert_eq!((read.attributes, read.auth_policy), (ATTESTATION_KEY_ATTRIBUTES, &[][..]));
        assert_eq!([read.symmetric, read.scheme, read.scheme_hash], [0x10, 0x18, 0x0B]);
        assert_eq!([read.curve, read.kdf], [TPM_ECC_NIST_P256, TPM_ALG_NULL]);
        assert_eq!((read.x, read.y), (&[1; 32][..], &[2; 32][..]));
        for len in 0..public.len() {
            let mut r = Reader::new(&public[..len]);
            assert_eq!(EccPublic::read(&mut r, "short"), Err(Error::Truncated("short")));
        }
        // A template: no point.
        assert_eq!(Writer::new().ecc_signing_public(0, &[], &[]).finish().len(), 24);
    }
}
