//! What the fuzz targets share: [`Input`], which reads a fuzzer's bytes as numbers without
//! ever running out, and [`seeds`], the valid inputs each target starts from.

pub mod seeds;

/// A fuzzer's bytes, read front to back as the numbers a target needs. Reads past the end
/// give zeros, so every input is a complete (if dull) case.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Input { bytes }
    }

    /// The next `N` bytes, zero-padded past the end.
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        out
    }

    /// The next byte.
    pub fn byte(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    /// The next little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// The next little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// The next little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// A number in few bytes: a tag byte whose low two bits give the width of the value that
    /// follows (1, 2, 4 or 8 bytes) and whose upper six bits a left shift. Small values,
    /// powers of two and page multiples (the limits and addresses of an ABI) take two or
    /// three bytes; any u64 is reachable. [`number_bytes`] encodes.
    pub fn number(&mut self) -> u64 {
        let tag = self.byte();
        let value = match tag & 3 {
            0 => u64::from(self.byte()),
            1 => u64::from(self.u16()),
            2 => u64::from(self.u32()),
            _ => self.u64(),
        };
        value.wrapping_shl(u32::from(tag >> 2))
    }

    /// Whether bytes are left.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.bytes
    }
}

/// The bytes [`Input::number`] reads as `value`: the widest tag, no shift.
pub fn number_bytes(value: u64) -> [u8; 9] {
    let mut out = [0; 9];
    out[0] = 3;
    out[1..].copy_from_slice(&value.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_back() {
        for value in [0, 1, 0x7670_0001, u64::MAX] {
            assert_eq!(Input::new(&number_bytes(value)).number(), value);
        }
        // Width 1, shift 22: MAX_IO_LEN in two bytes.
        assert_eq!(Input::new(&[22 << 2, 1]).number(), 1 << 22);
        let mut short = Input::new(&[1, 0xAB]);
        assert_eq!(short.number(), 0xAB);
        assert!(short.is_empty());
        assert_eq!(short.u64(), 0);
    }
}
