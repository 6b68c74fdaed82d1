//! TPM response codes.

use core::fmt;

/// A TPM response code, `TPM_RC` (Part 2 §6.6). `Display` names the common ones and, for
/// format-one codes, the parameter, handle or session they are about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseCode(pub u32);

/// Format-one codes (bit 7 set) carry an error number in bits 0 to 5 and, in bits 8 to 11,
/// a parameter number (bit 6 set), or a handle (bit 11 clear) or session (bit 11 set)
/// number in bits 8 to 10 (Part 2 §6.6.2).
const RC_FMT1: u32 = 0x080;
/// Format-one: bits 8 to 11 are a parameter number.
const RC_P: u32 = 0x040;
/// Format-zero: a TPM 2.0 code (not a TPM 1.2 one).
const RC_VER1: u32 = 0x100;
/// Format-zero: a vendor-defined code.
const RC_T: u32 = 0x400;
/// Format-zero: a warning (the command was not executed; it may succeed later).
const RC_S: u32 = 0x800;

impl ResponseCode {
    /// `TPM_RC_SUCCESS`.
    pub const SUCCESS: ResponseCode = ResponseCode(0x000);
    /// `TPM_RC_BAD_TAG`: the command's tag was bad (the response's tag is then
    /// [`super::TPM_ST_RSP_COMMAND`]).
    pub const BAD_TAG: ResponseCode = ResponseCode(0x01E);
    /// `TPM_RC_INITIALIZE`: TPM2_Startup has already run (or has not, for other commands).
    pub const INITIALIZE: ResponseCode = ResponseCode(0x100);
    /// `TPM_RC_FAILURE`: the TPM is in failure mode.
    pub const FAILURE: ResponseCode = ResponseCode(0x101);
    /// `TPM_RC_COMMAND_CODE`: command code not supported.
    pub const COMMAND_CODE: ResponseCode = ResponseCode(0x143);
    /// `TPM_RC_NV_RANGE`: an NV read or write beyond the index's data.
    pub const NV_RANGE: ResponseCode = ResponseCode(0x146);
    /// `TPM_RC_NV_LOCKED`: the NV index is locked against this access.
    pub const NV_LOCKED: ResponseCode = ResponseCode(0x148);
    /// `TPM_RC_NV_AUTHORIZATION`: the index's attributes do not allow this authorization.
    pub const NV_AUTHORIZATION: ResponseCode = ResponseCode(0x149);
    /// `TPM_RC_NV_UNINITIALIZED`: the NV index has never been written.
    pub const NV_UNINITIALIZED: ResponseCode = ResponseCode(0x14A);
    /// `TPM_RC_NV_DEFINED`: TPM2_NV_DefineSpace of an index that is already defined.
    pub const NV_DEFINED: ResponseCode = ResponseCode(0x14C);
    /// `TPM_RC_POLICY_FAIL` on session 1 (format one, `TPM_RC_S + TPM_RC_1`): the policy
    /// session in the first slot of the authorization area does not satisfy the entity's
    /// `authPolicy` — for a PCR policy, the PCR changed. The same error on another session
    /// or without a number is [`ResponseCode::is_policy_failure`] too.
    pub const POLICY_FAIL: ResponseCode = ResponseCode(0x99D);
    /// `TPM_RC_LOCALITY`: the command is not allowed at this locality (a warning).
    pub const LOCALITY: ResponseCode = ResponseCode(0x907);
    /// `TPM_RC_YIELDED`: the TPM suspended the command; it may be retried.
    pub const YIELDED: ResponseCode = ResponseCode(0x908);
    /// `TPM_RC_CANCELED`: the command was canceled.
    pub const CANCELED: ResponseCode = ResponseCode(0x909);
    /// `TPM_RC_TESTING`: the TPM is running self-tests.
    pub const TESTING: ResponseCode = ResponseCode(0x90A);
    /// `TPM_RC_RETRY`: the TPM was busy; retry the command.
    pub const RETRY: ResponseCode = ResponseCode(0x922);

    /// Whether this is `TPM_RC_INITIALIZE`: TPM2_Startup after the TPM was started (or a
    /// command before it was).
    pub fn is_initialize(&self) -> bool {
        *self == ResponseCode::INITIALIZE
    }

    /// Whether this is `TPM_RC_NV_DEFINED`: the NV index TPM2_NV_DefineSpace was to define
    /// already exists.
    pub fn is_nv_defined(&self) -> bool {
        *self == ResponseCode::NV_DEFINED
    }

    /// Whether this is `TPM_RC_POLICY_FAIL` (format one, error number 0x1D), whatever
    /// session, handle or parameter it names: a policy session's `policyDigest` did not
    /// match the `authPolicy` of what it was to authorize.
    pub fn is_policy_failure(&self) -> bool {
        self.0 & !0xFFF == 0 && self.0 & RC_FMT1 != 0 && self.0 & 0x3F == 0x1D
    }

    /// Whether this is a TCG-defined warning (format zero, severity bit set, `TPM_RC_WARN` +
    /// n): the
    /// command was not executed and may succeed if sent again (`TPM_RC_RETRY`,
    /// `TPM_RC_TESTING`, `TPM_RC_YIELDED`, ...).
    pub fn is_warning(&self) -> bool {
        self.0 & !0xFFF == 0 && self.0 & (RC_FMT1 | RC_VER1 | RC_T | RC_S) == (RC_VER1 | RC_S)
    }

    /// The name of a code without parameter, handle or session number (Part 2 §6.6.3).
    fn name(code: u32) -> Option<&'static str> {
        Some(match code {
            0x000 => "TPM_RC_SUCCESS",
            0x01E => "TPM_RC_BAD_TAG",
            // Format zero, TPM_RC_VER1 + n.
            0x100 => "TPM_RC_INITIALIZE",
            0x101 => "TPM_RC_FAILURE",
            0x103 => "TPM_RC_SEQUENCE",
            0x10B => "TPM_RC_PRIVATE",
            0x119 => "TPM_RC_HMAC",
            0x120 => "TPM_RC_DISABLED",
            0x121 => "TPM_RC_EXCLUSIVE",
            0x124 => "TPM_RC_AUTH_TYPE",
            0x125 => "TPM_RC_AUTH_MISSING",
            0x126 => "TPM_RC_POLICY",
            0x127 => "TPM_RC_PCR",
            0x128 => "TPM_RC_PCR_CHANGED",
            0x12D => "TPM_RC_UPGRADE",
            0x12E => "TPM_RC_TOO_MANY_CONTEXTS",
            0x12F => "TPM_RC_AUTH_UNAVAILABLE",
            0x130 => "TPM_RC_REBOOT",
            0x131 => "TPM_RC_UNBALANCED",
            0x142 => "TPM_RC_COMMAND_SIZE",
            0x143 => "TPM_RC_COMMAND_CODE",
            0x144 => "TPM_RC_AUTHSIZE",
            0x145 => "TPM_RC_AUTH_CONTEXT",
            0x146 => "TPM_RC_NV_RANGE",
            0x147 => "TPM_RC_NV_SIZE",
            0x148 => "TPM_RC_NV_LOCKED",
            0x149 => "TPM_RC_NV_AUTHORIZATION",
            0x14A => "TPM_RC_NV_UNINITIALIZED",
            0x14B => "TPM_RC_NV_SPACE",
            0x14C => "TPM_RC_NV_DEFINED",
            0x150 => "TPM_RC_BAD_CONTEXT",
            0x151 => "TPM_RC_CPHASH",
            0x152 => "TPM_RC_PARENT",
            0x153 => "TPM_RC_NEEDS_TEST",
            0x154 => "TPM_RC_NO_RESULT",
            0x155 => "TPM_RC_SENSITIVE",
            // Format one, TPM_RC_FMT1 + n.
            0x081 => "TPM_RC_ASYMMETRIC",
            0x082 => "TPM_RC_ATTRIBUTES",
            0x083 => "TPM_RC_HASH",
            0x084 => "TPM_RC_VALUE",
            0x085 => "TPM_RC_HIERARCHY",
            0x087 => "TPM_RC_KEY_SIZE",
            0x088 => "TPM_RC_MGF",
            0x089 => "TPM_RC_MODE",
            0x08A => "TPM_RC_TYPE",
            0x08B => "TPM_RC_HANDLE",
            0x08C => "TPM_RC_KDF",
            0x08D => "TPM_RC_RANGE",
            0x08E => "TPM_RC_AUTH_FAIL",
            0x08F => "TPM_RC_NONCE",
            0x090 => "TPM_RC_PP",
            0x092 => "TPM_RC_SCHEME",
            0x095 => "TPM_RC_SIZE",
            0x096 => "TPM_RC_SYMMETRIC",
            0x097 => "TPM_RC_TAG",
            0x098 => "TPM_RC_SELECTOR",
            0x09A => "TPM_RC_INSUFFICIENT",
            0x09B => "TPM_RC_SIGNATURE",
            0x09C => "TPM_RC_KEY",
            0x09D => "TPM_RC_POLICY_FAIL",
            0x09F => "TPM_RC_INTEGRITY",
            0x0A0 => "TPM_RC_TICKET",
            0x0A1 => "TPM_RC_RESERVED_BITS",
            0x0A2 => "TPM_RC_BAD_AUTH",
            0x0A3 => "TPM_RC_EXPIRED",
            0x0A4 => "TPM_RC_POLICY_CC",
            0x0A5 => "TPM_RC_BINDING",
            0x0A6 => "TPM_RC_CURVE",
            0x0A7 => "TPM_RC_ECC_POINT",
            // Warnings, TPM_RC_WARN + n.
            0x901 => "TPM_RC_CONTEXT_GAP",
            0x902 => "TPM_RC_OBJECT_MEMORY",
            0x903 => "TPM_RC_SESSION_MEMORY",
            0x904 => "TPM_RC_MEMORY",
            0x905 => "TPM_RC_SESSION_HANDLES",
            0x906 => "TPM_RC_OBJECT_HANDLES",
            0x907 => "TPM_RC_LOCALITY",
            0x908 => "TPM_RC_YIELDED",
            0x909 => "TPM_RC_CANCELED",
            0x90A => "TPM_RC_TESTING",
            0x920 => "TPM_RC_NV_RATE",
            0x921 => "TPM_RC_LOCKOUT",
            0x922 => "TPM_RC_RETRY",
            0x923 => "TPM_RC_NV_UNAVAILABLE",
            _ => return None,
        })
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rc = self.0;
        if rc & !0xFFF != 0 {
            // Not a TPM's: response codes have 12 bits.
            return write!(f, "unknown response code {rc:#x}");
        }
        if rc & RC_FMT1 == 0 {
            return match ResponseCode::name(rc) {
                Some(name) => write!(f, "{name} ({rc:#x})"),
                None if rc & RC_VER1 == 0 => write!(f, "TPM 1.2 response code {rc:#x}"),
                None if rc & RC_T != 0 => write!(f, "vendor-defined response code {rc:#x}"),
                None if rc & RC_S != 0 => write!(f, "unknown warning {rc:#x}"),
                None => write!(f, "unknown response code {rc:#x}"),
            };
        }
        let error = RC_FMT1 | (rc & 0x3F);
        match ResponseCode::name(error) {
            Some(name) => write!(f, "{name} ({rc:#x})")?,
            None => write!(f, "format-one error {error:#x} ({rc:#x})")?,
        }
        let n = (rc >> 8) & 0xF;
        if rc & RC_P != 0 {
            write!(f, " on parameter {n}")
        } else if n & 0x8 != 0 {
            write!(f, " on session {}", n & 0x7)
        } else if n != 0 {
            write!(f, " on handle {n}")
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::TpmError;
    use alloc::string::ToString;

    #[test]
    fn response_code_display() {
        let cases: [(u32, &str); 28] = [
            (0x99D, "TPM_RC_POLICY_FAIL (0x99d) on session 1"),
            (0xA9D, "TPM_RC_POLICY_FAIL (0xa9d) on session 2"),
            (0x09D, "TPM_RC_POLICY_FAIL (0x9d)"),
            (0x100, "TPM_RC_INITIALIZE (0x100)"),
            (0x101, "TPM_RC_FAILURE (0x101)"),
            (0x143, "TPM_RC_COMMAND_CODE (0x143)"),
            (0x907, "TPM_RC_LOCALITY (0x907)"),
            (0x908, "TPM_RC_YIELDED (0x908)"),
            (0x909, "TPM_RC_CANCELED (0x909)"),
            (0x90A, "TPM_RC_TESTING (0x90a)"),
            (0x922, "TPM_RC_RETRY (0x922)"),
            (0x084, "TPM_RC_VALUE (0x84)"),
            (0x1C4, "TPM_RC_VALUE (0x1c4) on parameter 1"),
            (0xFC4, "TPM_RC_VALUE (0xfc4) on parameter 15"),
            (0x18B, "TPM_RC_HANDLE (0x18b) on handle 1"),
            (0x98E, "TPM_RC_AUTH_FAIL (0x98e) on session 1"),
            (0x9A2, "TPM_RC_BAD_AUTH (0x9a2) on session 1"),
            (0x146, "TPM_RC_NV_RANGE (0x146)"),
            (0x147, "TPM_RC_NV_SIZE (0x147)"),
            (0x148, "TPM_RC_NV_LOCKED (0x148)"),
            (0x149, "TPM_RC_NV_AUTHORIZATION (0x149)"),
            (0x14A, "TPM_RC_NV_UNINITIALIZED (0x14a)"),
            (0x14B, "TPM_RC_NV_SPACE (0x14b)"),
            (0x14C, "TPM_RC_NV_DEFINED (0x14c)"),
            (0x08B, "TPM_RC_HANDLE (0x8b)"),
            (0x28B, "TPM_RC_HANDLE (0x28b) on handle 2"),
            (0x920, "TPM_RC_NV_RATE (0x920)"),
            (0x923, "TPM_RC_NV_UNAVAILABLE (0x923)"),
        ];
        for (code, text) in cases {
            assert_eq!(ResponseCode(code).to_string(), text);
        }
        assert_eq!(ResponseCode::NV_RANGE.0, 0x146);
        assert_eq!(ResponseCode::NV_LOCKED.0, 0x148);
        assert_eq!(ResponseCode::NV_AUTHORIZATION.0, 0x149);
        assert_eq!(ResponseCode::NV_UNINITIALIZED.0, 0x14A);
        assert_eq!(ResponseCode::NV_DEFINED.0, 0x14C);
        assert_eq!(ResponseCode::POLICY_FAIL.0, 0x99D);
        assert_eq!(
            TpmError::Tpm(ResponseCode::POLICY_FAIL).to_string(),
            "the TPM answered TPM_RC_POLICY_FAIL (0x99d) on session 1"
        );
        assert_eq!(ResponseCode(0x0BF).to_string(), "format-one error 0xbf (0xbf)");
        assert_eq!(ResponseCode(0x01E).to_string(), "TPM_RC_BAD_TAG (0x1e)");
        assert_eq!(ResponseCode(0x003).to_string(), "TPM 1.2 response code 0x3");
        assert_eq!(ResponseCode(0x57F).to_string(), "vendor-defined response code 0x57f");
        assert_eq!(ResponseCode(0x97F).to_string(), "unknown warning 0x97f");
        assert_eq!(ResponseCode(0x17F).to_string(), "unknown response code 0x17f");
        assert_eq!(ResponseCode(0x8_0001).to_string(), "unknown response code 0x80001");
        assert_eq!(
            TpmError::Tpm(ResponseCode(0x1C4)).to_string(),
            "the TPM answered TPM_RC_VALUE (0x1c4) on parameter 1"
        );
        // Every code displays without panicking.
        for code in 0..=0x1000 {
            assert!(!ResponseCode(code).to_string().is_empty());
        }
    }

    #[test]
    fn response_code_predicates() {
        assert!(ResponseCode(0x100).is_initialize());
        assert!(!ResponseCode(0x101).is_initialize());
        assert!(!ResponseCode(0x1C4).is_initialize());
        assert!(ResponseCode(0x14C).is_nv_defined());
        for other in [0x000, 0x14A, 0x14B, 0x1CC, 0x94C, 0x1_014C] {
            assert!(!ResponseCode(other).is_nv_defined(), "{other:#x}");
        }
        for warning in [0x907, 0x908, 0x909, 0x90A, 0x922, 0x923] {
            assert!(ResponseCode(warning).is_warning(), "{warning:#x}");
        }
        for other in [0x000, 0x100, 0x101, 0x143, 0x1C4, 0x98E, 0x9A2, 0x1_0922, 0xD22] {
            assert!(!ResponseCode(other).is_warning(), "{other:#x}");
        }
        // TPM_RC_POLICY_FAIL on any session, handle or parameter, or none.
        for failure in [0x99D, 0x09D, 0xA9D, 0xF9D, 0x19D, 0x1DD] {
            assert!(ResponseCode(failure).is_policy_failure(), "{failure:#x}");
        }
        assert!(ResponseCode::POLICY_FAIL.is_policy_failure());
        // Not: TPM_RC_POLICY (format zero), TPM_RC_PCR_CHANGED, other format-one errors, a
        // format-zero code with the same low bits, a code beyond 12 bits.
        for other in [0x000, 0x126, 0x128, 0x98E, 0x99C, 0x99E, 0x01D, 0x11D, 0x91D, 0x1_099D] {
            assert!(!ResponseCode(other).is_policy_failure(), "{other:#x}");
        }
    }
}
