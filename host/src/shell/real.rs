//! SQLite's text for a REAL: a port of the double-to-text conversion of SQLite 3.54.1.
//!
//! SQLite (public domain) renders a REAL as text, in `CAST(x AS TEXT)`, `sqlite3_column_text`
//! and therefore in the sqlite3 shell's list mode, with `printf("%!.17g")`: `sqlite3FpDecode`
//! computes 18 significant digits with a 128-bit multiplication by a power of ten, rounds them
//! to 17, and then, if the 16th and 15th digits are both 9 (or the 14th-16th are all 0, or the
//! value is an integer of 18 or more digits), tries a shorter text and keeps it when it converts
//! back to the same double. The code below follows `powerOfTen`, `sqlite3Multiply128`,
//! `sqlite3Multiply160`, `sqlite3Fp2Convert10`, `sqlite3Fp10Convert2`, `sqlite3FpDecode` and
//! the `etGENERIC` branch of `sqlite3_str_vappendf` step by step, with C's unsigned wrap-around
//! made explicit; a shift that C leaves undefined yields 0 here instead of a panic.

/// The smallest power of ten [`power_of_ten`] covers.
const POW10_FIRST: i32 = -348;
/// The largest power of ten [`power_of_ten`] covers.
const POW10_LAST: i32 = 347;

/// The high 64 bits of `10^p` for `p` in `0..27` (SQLite's `aBase`).
const BASE: [u64; 27] = [
    0x8000000000000000,
    0xa000000000000000,
    0xc800000000000000,
    0xfa00000000000000,
    0x9c40000000000000,
    0xc350000000000000,
    0xf424000000000000,
    0x9896800000000000,
    0xbebc200000000000,
    0xee6b280000000000,
    0x9502f90000000000,
    0xba43b74000000000,
    0xe8d4a51000000000,
    0x9184e72a00000000,
    0xb5e620f480000000,
    0xe35fa931a0000000,
    0x8e1bc9bf04000000,
    0xb1a2bc2ec5000000,
    0xde0b6b3a76400000,
    0x8ac7230489e80000,
    0xad78ebc5ac620000,
    0xd8d726b7177a8000,
    0x878678326eac9000,
    0xa968163f0a57b400,
    0xd3c21bcecceda100,
    0x84595161401484a0,
    0xa56fa5b99019a5c8,
];

/// The high 64 bits of `10^(27 * (i - 13))`, and `10^-1` at index 13 (SQLite's `aScale`).
const SCALE: [u64; 26] = [
    0x8049a4ac0c5811ae,
    0xcf42894a5dce35ea,
    0xa76c582338ed2621,
    0x873e4f75e2224e68,
    0xda7f5bf590966848,
    0xb080392cc4349dec,
    0x8e938662882af53e,
    0xe65829b3046b0afa,
    0xba121a4650e4ddeb,
    0x964e858c91ba2655,
    0xf2d56790ab41c2a2,
    0xc428d05aa4751e4c,
    0x9e74d1b791e07e48,
    0xcccccccccccccccc,
    0xcecb8f27f4200f3a,
    0xa70c3c40a64e6c51,
    0x86f0ac99b4e8dafd,
    0xda01ee641a708de9,
    0xb01ae745b101e9e4,
    0x8e41ade9fbebc27d,
    0xe5d3ef282a242e81,
    0xb9a74a0637ce2ee1,
    0x95f83d0a1fb69cd9,
    0xf24a01a73cf2dccf,
    0xc3b8358109e84f07,
    0x9e19db92b4e31ba9,
];

/// The next 32 bits of each [`SCALE`] entry (SQLite's `aScaleLo`).
const SCALE_LO: [u32; 26] = [
    0x205b896d, 0x52064cad, 0xaf2af2b8, 0x5a7744a7, 0xaf39a475, 0xbd8d794e, 0x547eb47b, 0x0cb4a5a3,
    0x92f34d62, 0x3a6a07f9, 0xfae27299, 0xaa97e14c, 0x775ea265, 0xcccccccc, 0x00000000, 0x999090b6,
    0x69a028bb, 0xe80e6f48, 0x5ec05dd0, 0x14588f14, 0x8f1668c9, 0x6d953e2c, 0x4abdaf10, 0xbc633b39,
    0x0a862f81, 0x6c07a2c2,
];

const BIT52: u64 = 1 << 52;
const BIT55: u64 = 1 << 55;
const BIT63: u64 = 1 << 63;

/// The high 64 bits of `r`.
fn high(r: u128) -> u64 {
    u64::try_from(r >> 64).unwrap_or(u64::MAX)
}

/// The low 64 bits of `r`.
fn low(r: u128) -> u64 {
    u64::try_from(r & u128::from(u64::MAX)).unwrap_or(0)
}

/// The low 32 bits of `x`.
fn low32(x: u64) -> u32 {
    u32::try_from(x & u64::from(u32::MAX)).unwrap_or(0)
}

/// `x >> s`, or 0 where C's shift would be undefined (`s` negative or at least 64).
fn shr(x: u64, s: i32) -> u64 {
    u32::try_from(s).ok().and_then(|s| x.checked_shr(s)).unwrap_or(0)
}

/// `1 << s`, or 0 where C's shift would be undefined.
fn bit(s: i32) -> u64 {
    u32::try_from(s).ok().and_then(|s| 1u64.checked_shl(s)).unwrap_or(0)
}

/// `(high, low)` 64-bit halves of `a * b` (`sqlite3Multiply128`).
fn mul128(a: u64, b: u64) -> (u64, u64) {
    let r = u128::from(a) * u128::from(b);
    (high(r), low(r))
}

/// The upper 64 bits and the next 32 of the 96-bit `(a << 32) + a_lo` times `b`
/// (`sqlite3Multiply160`).
fn mul160(a: u64, a_lo: u32, b: u64) -> (u64, u32) {
    let mut r = u128::from(a) * u128::from(b);
    r += (u128::from(a_lo) * u128::from(b)) >> 32;
    (high(r), low32(low(r >> 32)))
}

/// The 64 most significant bits of `10^p` and the next 32 (`powerOfTen`); `p` is clamped to
/// the covered range.
fn power_of_ten(p: i32) -> (u64, u32) {
    let p = p.clamp(POW10_FIRST, POW10_LAST);
    let (g, n) = if p < 0 {
        if p == -1 {
            return (SCALE[13], SCALE_LO[13]);
        }
        let (g, n) = (p / 27, p % 27);
        if n != 0 {
            (g - 1, n + 27)
        } else {
            (g, n)
        }
    } else if p < 27 {
        return (BASE[usize::try_from(p).unwrap_or(0)], 0);
    } else {
        (p / 27, p % 27)
    };
    let index = usize::try_from(g + 13).unwrap_or(0);
    let s = SCALE[index];
    if n == 0 {
        return (s, SCALE_LO[index]);
    }
    let (mut x, mut lo) = mul160(s, SCALE_LO[index], BASE[usize::try_from(n).unwrap_or(0)]);
    if x & BIT63 == 0 {
        x = (x << 1) | u64::from((lo >> 31) & 1);
        lo = (lo << 1) | 1;
    }
    (x, lo)
}

/// `floor(log2(10^p))`, approximately (`pwr10to2`).
fn pwr10to2(p: i32) -> i32 {
    p.wrapping_mul(108853) >> 15
}

/// `floor(log10(2^p))`, approximately (`pwr2to10`).
fn pwr2to10(p: i32) -> i32 {
    p.wrapping_mul(78913) >> 18
}

/// Given `r == m * 2^e` with the top bit of `m` set, `(d, p)` with `r ~= d * 10^p` and `d`
/// holding at least `n` significant digits (`sqlite3Fp2Convert10`).
fn fp2_convert10(m: u64, e: i32, n: i32) -> (u64, i32) {
    let p = n - 1 - pwr2to10(e + 63);
    let (pow, _) = power_of_ten(p);
    let (h, _) = mul128(m, pow);
    let d = if n == 18 {
        let h = shr(h, -(e + pwr10to2(p) + 2));
        h.wrapping_add((h << 1) & 2) >> 1
    } else {
        shr(h, -(e + pwr10to2(p) + 1))
    };
    (d, -p)
}

/// The double nearest `d * 10^p`, as SQLite computes it (`sqlite3Fp10Convert2`).
fn fp10_convert2(d: u64, p: i32) -> f64 {
    if p < POW10_FIRST || d == 0 {
        return 0.0;
    }
    if p > POW10_LAST {
        return f64::INFINITY;
    }
    let b = 64 - i32::try_from(d.leading_zeros()).unwrap_or(0);
    let lp = pwr10to2(p);
    let mut e = 53 - b - lp;
    if e > 1074 {
        if e >= 1130 {
            return 0.0;
        }
        e = 1074;
    }
    let s = -(e - (64 - b) + lp + 3);
    let (mut pow_hi, mut pow_lo) = power_of_ten(p);
    if pow_lo != 0 {
        pow_hi = pow_hi.wrapping_add(1);
        pow_lo = !pow_lo;
    }
    let x = d << (64 - b);
    let (mut hi, lo) = mul128(x, pow_hi);
    let mid1 = low32(lo >> 32);
    let mut sticky = 1;
    if hi & bit(s).wrapping_sub(1) == 0 {
        let mid2 = low32(mul128(x, u64::from(pow_lo) << 32).0 >> 32);
        sticky = u64::from(mid1.wrapping_sub(mid2) > 1);
        hi = hi.wrapping_sub(u64::from(mid1 < mid2));
    }
    let mut u = shr(hi, s) | sticky;
    if u >= BIT55 - 2 {
        u = (u >> 1) | (u & 1);
        e -= 1;
    }
    let mut m = u.wrapping_add(1).wrapping_add((u >> 2) & 1) >> 2;
    if e <= -972 {
        return f64::INFINITY;
    }
    if m & BIT52 != 0 {
        m = (m & !BIT52) | (u64::try_from(1075 - e).unwrap_or(0) << 52);
    }
    f64::from_bits(m)
}

/// A finite, non-negative double as significant digits: the value is `0.DIGITS * 10^dp`.
struct Decoded {
    /// ASCII digits, the first non-zero (or the single digit `0`), no trailing zeros.
    digits: Vec<u8>,
    /// Where the decimal point goes: `dp` digits precede it.
    dp: i32,
}

/// The number whose decimal digits are `digits`.
fn digits_value(digits: &[u8]) -> u64 {
    digits.iter().fold(0u64, |v, &c| v.wrapping_mul(10).wrapping_add(u64::from(c - b'0')))
}

/// `sqlite3FpDecode(r, 17, 20)` for a finite `r > 0`: 17 significant digits, shortened when
/// the shorter text round-trips (see the module documentation).
fn decode(r: f64) -> Decoded {
    let bits = r.to_bits();
    let mut e = i32::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let mut v = bits & (BIT52 - 1);
    if e == 0 {
        let nn = v.leading_zeros();
        v <<= nn;
        e = -1074 - i32::try_from(nn).unwrap_or(0);
    } else {
        v = (v << 11) | BIT63;
        e -= 1086;
    }
    let (v, exp) = fp2_convert10(v, e, 18);
    let mut z = v.to_string().into_bytes();
    let mut n = z.len();
    let n_i32 = i32::try_from(n).unwrap_or(0);
    let mut dp = n_i32 + exp;
    let digit = |z: &[u8], i: usize| z.get(i).copied().unwrap_or(b'0');
    let mut round = 17usize;
    if round < n || n > 20 {
        // iRound == 17: try a shorter text that converts back to r.
        if digit(&z, 15) == b'9' && digit(&z, 14) == b'9' {
            let mut jj = 14;
            while jj > 0 && digit(&z, jj - 1) == b'9' {
                jj -= 1;
            }
            let v2 = if jj == 0 { 1 } else { digits_value(&z[..jj]).wrapping_add(1) };
            if r == fp10_convert2(v2, exp + n_i32 - i32::try_from(jj).unwrap_or(0)) {
                round = jj + 1;
            }
        } else if dp >= n_i32
            || (digit(&z, 15) == b'0' && digit(&z, 14) == b'0' && digit(&z, 13) == b'0')
        {
            let mut jj = 13;
            while jj > 1 && digit(&z, jj - 1) == b'0' {
                jj -= 1;
            }
            let v2 = digits_value(&z[..jj]);
            if r == fp10_convert2(v2, exp + n_i32 - i32::try_from(jj).unwrap_or(0)) {
                round = jj + 1;
            }
        }
        n = round;
        if digit(&z, round) >= b'5' {
            let mut j = round - 1;
            loop {
                z[j] += 1;
                if z[j] <= b'9' {
                    break;
                }
                z[j] = b'0';
                if j == 0 {
                    z.insert(0, b'1');
                    n += 1;
                    dp += 1;
                    break;
                }
                j -= 1;
            }
        }
    }
    z.truncate(n);
    while z.len() > 1 && z.last() == Some(&b'0') {
        z.pop();
    }
    Decoded { digits: z, dp }
}

/// The text SQLite 3.54.1 gives a REAL (`CAST(r AS TEXT)`, list mode of the sqlite3 shell):
/// `printf("%!.17g", r)`.
///
/// The significant digits are the 17 nearest to `r` with trailing zeros dropped, shortened
/// further where SQLite finds a shorter text that converts back to `r` (so `0.1` prints as
/// `0.1`, `1.0 / 3.0` as `0.33333333333333332`: SQLite's text is not always the shortest one
/// that round-trips). With `E` the decimal exponent of the first digit, the text is plain
/// decimal when `-4 <= E <= 16` and `D.DDDe±XX` otherwise (at least two exponent digits), and
/// always has a digit after the point (`1.0`, `100.0`, `1.0e+100`, `1.0e-05`). Zero of either
/// sign is `0.0`, infinities are `Inf` and `-Inf`, and NaN — which SQLite never stores, it
/// becomes NULL — is the empty text, as NULL prints.
pub fn real_to_text(r: f64) -> String {
    if r.is_nan() {
        return String::new();
    }
    if r.is_infinite() {
        return if r < 0.0 { "-Inf" } else { "Inf" }.to_owned();
    }
    if r == 0.0 {
        return "0.0".to_owned();
    }
    let Decoded { digits, dp } = decode(r.abs());
    let mut out = String::with_capacity(32);
    if r < 0.0 {
        out.push('-');
    }
    let exp = dp - 1;
    let take = |from: usize, to: usize| -> &str {
        std::str::from_utf8(digits.get(from..to.min(digits.len())).unwrap_or(&[])).unwrap_or("")
    };
    if !(-4..=16).contains(&exp) {
        out.push_str(take(0, 1));
        out.push('.');
        let rest = take(1, digits.len());
        out.push_str(if rest.is_empty() { "0" } else { rest });
        out.push_str(if exp < 0 { "e-" } else { "e+" });
        let exp = exp.unsigned_abs();
        if exp < 10 {
            out.push('0');
        }
        out.push_str(&exp.to_string());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-1 - exp) {
            out.push('0');
        }
        out.push_str(take(0, digits.len()));
    } else {
        let int_len = usize::try_from(dp).unwrap_or(0);
        out.push_str(take(0, int_len));
        for _ in digits.len()..int_len {
            out.push('0');
        }
        out.push('.');
        let frac = take(int_len, digits.len());
        out.push_str(if frac.is_empty() { "0" } else { frac });
    }
    out
}
