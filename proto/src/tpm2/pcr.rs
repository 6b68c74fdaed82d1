//! PCR selections of the SHA-256 bank of a PC Client TPM's 24 PCRs.

use super::{Writer, TPM_ALG_SHA256};
use alloc::vec::Vec;

/// PCRs of a PC Client TPM: 0 to 23 (PTP: 24 PCRs per bank).
pub const PCR_COUNT: u32 = 24;
/// Bytes of a PCR selection bitmap covering [`PCR_COUNT`] PCRs (Part 2 §10.6.1:
/// `PCR_SELECT_MIN`).
pub const PCR_SELECT_LEN: usize = PCR_SELECT_MIN as usize;
/// [`PCR_SELECT_LEN`] as the `sizeofSelect` byte.
pub const PCR_SELECT_MIN: u8 = 3;

/// The selection bitmap (`pcrSelect`, Part 2 §10.6.1) of the PCRs `pcrs`: bit `pcr % 8` of
/// byte `pcr / 8`; PCRs above 23 are left out.
#[must_use]
pub fn pcr_bitmap(pcrs: &[u32]) -> [u8; PCR_SELECT_LEN] {
    let mut bitmap = [0u8; PCR_SELECT_LEN];
    for &pcr in pcrs {
        if let Some(byte) = usize::try_from(pcr / 8).ok().and_then(|i| bitmap.get_mut(i)) {
            *byte |= 1 << (pcr % 8);
        }
    }
    bitmap
}

/// The PCRs a selection bitmap names, ascending.
#[must_use]
pub fn selected_pcrs(bitmap: &[u8; PCR_SELECT_LEN]) -> Vec<u32> {
    (0..PCR_COUNT).filter(|&p| bitmap[(p / 8) as usize] & (1 << (p % 8)) != 0).collect()
}

impl Writer {
    /// A `TPML_PCR_SELECTION` (Part 2 §10.9.7) of one `TPMS_PCR_SELECTION` (Part 2
    /// §10.6.2): `count` 1, `hash` [`TPM_ALG_SHA256`], `sizeofSelect` 3 and `bitmap`.
    pub fn pcr_selection_sha256(self, bitmap: &[u8; PCR_SELECT_LEN]) -> Self {
        self.u32(1).u16(TPM_ALG_SHA256).u8(PCR_SELECT_MIN).bytes(bitmap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_bitmaps() {
        assert_eq!(pcr_bitmap(&[17, 18, 19]), [0, 0, 0b1110]);
        assert_eq!(pcr_bitmap(&[0, 7, 8, 24, u32::MAX]), [0x81, 1, 0]);
        assert_eq!(selected_pcrs(&[0x81, 1, 0b1110]), vec![0, 7, 8, 17, 18, 19]);
        let selection = Writer::new().pcr_selection_sha256(&pcr_bitmap(&[17])).finish();
        assert_eq!(selection, [0, 0, 0, 1, 0x00, 0x0B, 3, 0, 0, 0x02]);
    }
}
