//! SHA-256 digests: the [`Digest`] value type and the streaming [`Sha256`] hasher.

use core::fmt;

use sha2::Digest as _;

/// A SHA-256 digest (32 bytes). `Debug` and `Display` print it as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Length of a digest in bytes.
    pub const LEN: usize = 32;

    /// SHA-256 of `data`.
    #[must_use]
    pub fn of(data: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(data);
        h.finalize()
    }

    /// The digest bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Wraps 32 bytes as a digest.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<[u8; 32]> for Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<Digest> for [u8; 32] {
    fn from(d: Digest) -> Self {
        d.0
    }
}

impl AsRef<[u8]> for Digest {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A streaming SHA-256 hasher producing a [`Digest`].
#[derive(Clone, Default)]
pub struct Sha256(sha2::Sha256);

impl Sha256 {
    /// A fresh hasher.
    #[must_use]
    pub fn new() -> Self {
        Self(sha2::Sha256::new())
    }

    /// Feeds `data` into the hash.
    pub fn update(&mut self, data: &[u8]) -> &mut Self {
        self.0.update(data);
        self
    }

    /// Finishes the hash.
    #[must_use]
    pub fn finalize(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sha256").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        let empty = Digest::of(b"");
        assert_eq!(
            format!("{empty}"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            format!("{:?}", Digest::of(b"abc")),
            "Digest(ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad)"
        );
    }

    #[test]
    fn streaming_matches_one_shot() {
        let mut h = Sha256::new();
        h.update(b"a").update(b"bc");
        let d = h.finalize();
        assert_eq!(d, Digest::of(b"abc"));
        assert_eq!(Digest::from_bytes(*d.as_bytes()), d);
        assert_eq!(<[u8; 32]>::from(d), d.0);
        assert_eq!(d.as_ref(), &d.0[..]);
    }
}
