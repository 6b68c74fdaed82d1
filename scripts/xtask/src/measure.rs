//! The hypervisor's measurement, recomputed from its image file: the SHA-256 of every byte the
//! loader puts between `__image_start` and `__load_end` (the multiboot header, code,
//! read-only data and `.data` with its GOT and vtables), which the image hashes at boot, logs,
//! and extends into PCR 17. A run
//! whose logged measurement differs from the file's fails: the log would not describe the
//! image that was built.

use std::path::Path;

/// The lowercase hex SHA-256 of the image's loaded bytes, from the file at `image`.
pub fn expected(image: &Path) -> Result<String, String> {
    vpr_host::machine::hypervisor_measurement(image)
}

/// The measurement a boot log line reports, if `line` is the image's measurement line.
pub fn logged(line: &str) -> Option<&str> {
    let rest = line.split("hv: measurement sha256=").nth(1)?;
    let hex = rest.split_whitespace().next()?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
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
}
