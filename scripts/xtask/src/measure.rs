//! The hypervisor's measurement, recomputed from its image file: the SHA-256 of the bytes the
//! loader puts between `__image_start` and `__data_start` (the multiboot header, code and
//! read-only data), which the image hashes at boot, logs, and extends into PCR 17. A run
//! whose logged measurement differs from the file's fails: the log would not describe the
//! image that was built.

use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;
use std::process::Command;

/// The lowercase hex SHA-256 of the image's constant part, from the file at `image`.
pub fn expected(image: &Path) -> Result<String, String> {
    let bytes = fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    let symbols = Command::new("nm")
        .arg("--defined-only")
        .arg(image)
        .output()
        .map_err(|e| format!("cannot run nm: {e}"))?;
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    let start = symbol(&symbols, "__image_start")?;
    let end = symbol(&symbols, "__data_start")?;
    let range = file_range(&bytes, start, end)?;
    let digest = Sha256::digest(&bytes[range]);
    Ok(hex::encode(digest))
}

/// The measurement a boot log line reports, if `line` is the image's measurement line.
pub fn logged(line: &str) -> Option<&str> {
    let rest = line.split("hv: measurement sha256=").nth(1)?;
    let hex = rest.split_whitespace().next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// The value of `name` in `nm` output (lines "<hex> <type> <name>").
fn symbol(nm: &str, name: &str) -> Result<u64, String> {
    nm.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (value, _kind, symbol) = (parts.next()?, parts.next()?, parts.next()?);
            (symbol == name).then(|| u64::from_str_radix(value, 16).ok()).flatten()
        })
        .next()
        .ok_or_else(|| format!("the image has no symbol {name}"))
}

/// The file bytes holding virtual addresses `[start, end)`: both inside the file part of
/// one ELF64 `PT_LOAD` segment (ELF-64 Object File Format 1.5: e_phoff at 32, e_phentsize at
/// 54, e_phnum at 56; p_type, p_offset at 8, p_vaddr at 16, p_filesz at 32).
fn file_range(elf: &[u8], start: u64, end: u64) -> Result<std::ops::Range<usize>, String> {
    let malformed = || String::from("malformed ELF image");
    let u16_at = |at: usize| -> Result<u64, String> {
        let b = elf.get(at..at + 2).ok_or_else(malformed)?;
        Ok(u64::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let u64_at = |at: usize| -> Result<u64, String> {
        let b = elf.get(at..at + 8).ok_or_else(malformed)?;
        let mut word = [0; 8];
        word.copy_from_slice(b);
        Ok(u64::from_le_bytes(word))
    };
    if elf.get(..4) != Some(b"\x7fELF") || end < start {
        return Err(malformed());
    }
    let (phoff, phentsize, phnum) = (u64_at(32)?, u16_at(54)?, u16_at(56)?);
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).map_err(|_| malformed())?;
        let kind = u16_at(at)?;
        let (offset, vaddr, filesz) = (u64_at(at + 8)?, u64_at(at + 16)?, u64_at(at + 32)?);
        if kind == 1 && vaddr <= start && end <= vaddr + filesz {
            let first = usize::try_from(offset + (start - vaddr)).map_err(|_| malformed())?;
            let last = usize::try_from(offset + (end - vaddr)).map_err(|_| malformed())?;
            if last <= elf.len() {
                return Ok(first..last);
            }
        }
    }
    Err(format!("no PT_LOAD segment holds [{start:#x}, {end:#x}) in the file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_line_is_recognized_exactly() {
        let hex = "ab".repeat(32);
        let line = format!("[0][INFO][vpr_hypervisor] hv: measurement sha256={hex} (header...)");
        assert_eq!(logged(&line), Some(hex.as_str()));
        assert_eq!(logged("hv: measurement sha256=abc (x)"), None);
        assert_eq!(logged("hv: module 0 (the PAL image): 1 bytes, sha256=00"), None);
    }

    #[test]
    fn symbols_and_segments() {
        let nm = "0000000000100000 T __image_start\n0000000000140000 R __data_start\n";
        assert_eq!(symbol(nm, "__data_start"), Ok(0x14_0000));
        assert!(symbol(nm, "__bss_end").is_err());
        // An ELF header with one PT_LOAD: file offset 0x1000 holds vaddr 0x100000, 0x100 bytes.
        let mut elf = vec![0u8; 0x1100];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes());
        elf[72..80].copy_from_slice(&0x1000u64.to_le_bytes());
        elf[80..88].copy_from_slice(&0x10_0000u64.to_le_bytes());
        elf[96..104].copy_from_slice(&0x100u64.to_le_bytes());
        assert_eq!(file_range(&elf, 0x10_0000, 0x10_0080), Ok(0x1000..0x1080));
        assert!(file_range(&elf, 0x10_0000, 0x10_0200).is_err());
        assert!(file_range(&elf[..40], 0x10_0000, 0x10_0080).is_err());
        assert!(file_range(b"not an elf", 0, 1).is_err());
    }
}
