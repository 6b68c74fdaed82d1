//! The C library functions that freestanding SQLite (and compiled Rust) call, for images that
//! link no libc: `mem*`, `bcmp` and the `str*` family SQLite's amalgamation references.
//!
//! Link this crate only into freestanding images; in a hosted process libc provides these.
//! `no_builtins` stops LLVM from recognising the loops below as `memcpy`/`memset` and
//! compiling them into calls to themselves. Each function follows its C17 §7.24 contract.

#![no_std]
#![no_builtins]
// C converts `int` arguments to `unsigned char` (C17 §7.24.1p1): the truncating casts are the contract.
#![allow(clippy::cast_possible_truncation)]

use core::ffi::{c_char, c_int, c_void};

/// C17 §7.24.2.1.
///
/// # Safety
/// `dst` and `src` are valid for `n` bytes and do not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    let (d, s) = (dst.cast::<u8>(), src.cast::<u8>());
    let mut i = 0;
    // Word copies while 8 bytes remain, then bytes; unaligned accesses are fine on x86_64.
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`, both regions valid for `n` bytes (caller's contract).
        unsafe { d.add(i).cast::<u64>().write_unaligned(s.add(i).cast::<u64>().read_unaligned()) };
        i += 8;
    }
    while i < n {
        // SAFETY: `i < n`.
        unsafe { *d.add(i) = *s.add(i) };
        i += 1;
    }
    dst
}

/// C17 §7.24.2.2.
///
/// # Safety
/// `dst` and `src` are valid for `n` bytes; they may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut c_void, src: *const c_void, n: usize) -> *mut c_void {
    let (d, s) = (dst.cast::<u8>(), src.cast::<u8>());
    if (d as usize).wrapping_sub(s as usize) >= n {
        // Destination starts before the source or after its end: copy forwards.
        // SAFETY: forward byte order never reads a byte already overwritten here.
        unsafe { forward(d, s, n) };
    } else {
        let mut i = n;
        while i > 0 {
            i -= 1;
            // SAFETY: `i < n`; backwards order is safe when `dst` lies inside `src`.
            unsafe { *d.add(i) = *s.add(i) };
        }
    }
    dst
}

/// Byte-wise forward copy.
///
/// # Safety
/// Both regions valid for `n` bytes; if they overlap, `d <= s`.
unsafe fn forward(d: *mut u8, s: *const u8, n: usize) {
    for i in 0..n {
        // SAFETY: `i < n` (caller's contract).
        unsafe { *d.add(i) = *s.add(i) };
    }
}

/// C17 §7.24.6.1.
///
/// # Safety
/// `dst` is valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut c_void, c: c_int, n: usize) -> *mut c_void {
    let d = dst.cast::<u8>();
    let byte = c as u8;
    let word = u64::from_ne_bytes([byte; 8]);
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n`.
        unsafe { d.add(i).cast::<u64>().write_unaligned(word) };
        i += 8;
    }
    while i < n {
        // SAFETY: `i < n`.
        unsafe { *d.add(i) = byte };
        i += 1;
    }
    dst
}

/// C17 §7.24.4.1.
///
/// # Safety
/// `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const c_void, b: *const c_void, n: usize) -> c_int {
    let (a, b) = (a.cast::<u8>(), b.cast::<u8>());
    for i in 0..n {
        // SAFETY: `i < n`.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return c_int::from(x) - c_int::from(y);
        }
    }
    0
}

/// `bcmp`: zero if and only if the regions are equal (LLVM emits it for equality tests).
///
/// # Safety
/// `a` and `b` are valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const c_void, b: *const c_void, n: usize) -> c_int {
    // SAFETY: same contract.
    unsafe { memcmp(a, b, n) }
}

/// C17 §7.24.5.1.
///
/// # Safety
/// `s` is valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memchr(s: *const c_void, c: c_int, n: usize) -> *mut c_void {
    let p = s.cast::<u8>();
    for i in 0..n {
        // SAFETY: `i < n`.
        if unsafe { *p.add(i) } == c as u8 {
            // SAFETY: in bounds.
            return unsafe { p.add(i) }.cast_mut().cast();
        }
    }
    core::ptr::null_mut()
}

/// C17 §7.24.6.3.
///
/// # Safety
/// `s` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: reads stop at the terminating NUL (caller's contract).
    while unsafe { *s.add(n) } != 0 {
        n += 1;
    }
    n
}

/// C17 §7.24.4.2.
///
/// # Safety
/// Both strings are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcmp(a: *const c_char, b: *const c_char) -> c_int {
    // SAFETY: strncmp stops at the first NUL of either string.
    unsafe { strncmp(a, b, usize::MAX) }
}

/// C17 §7.24.4.4.
///
/// # Safety
/// Both strings are NUL-terminated or valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strncmp(a: *const c_char, b: *const c_char, n: usize) -> c_int {
    for i in 0..n {
        // SAFETY: `i` does not pass either string's NUL or `n` (caller's contract).
        let (x, y) = unsafe { (*a.add(i) as u8, *b.add(i) as u8) };
        if x != y || x == 0 {
            return c_int::from(x) - c_int::from(y);
        }
    }
    0
}

/// C17 §7.24.5.2.
///
/// # Safety
/// `s` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strchr(s: *const c_char, c: c_int) -> *mut c_char {
    let c = c as c_char;
    let mut p = s;
    loop {
        // SAFETY: `p` has not passed the NUL (caller's contract).
        let ch = unsafe { *p };
        if ch == c {
            return p.cast_mut();
        }
        if ch == 0 {
            return core::ptr::null_mut();
        }
        // SAFETY: `ch != 0`, so the string continues.
        p = unsafe { p.add(1) };
    }
}

/// C17 §7.24.5.5.
///
/// # Safety
/// `s` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strrchr(s: *const c_char, c: c_int) -> *mut c_char {
    let c = c as c_char;
    let mut found = core::ptr::null_mut();
    let mut p = s;
    loop {
        // SAFETY: `p` has not passed the NUL.
        let ch = unsafe { *p };
        if ch == c {
            found = p.cast_mut();
        }
        if ch == 0 {
            return found;
        }
        // SAFETY: `ch != 0`.
        p = unsafe { p.add(1) };
    }
}

/// Whether `set` (NUL-terminated) contains `ch`.
///
/// # Safety
/// `set` is NUL-terminated.
unsafe fn in_set(set: *const c_char, ch: c_char) -> bool {
    let mut p = set;
    loop {
        // SAFETY: `p` has not passed the NUL.
        let s = unsafe { *p };
        if s == 0 {
            return false;
        }
        if s == ch {
            return true;
        }
        // SAFETY: `s != 0`.
        p = unsafe { p.add(1) };
    }
}

/// C17 §7.24.5.6.
///
/// # Safety
/// Both strings are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strspn(s: *const c_char, accept: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: stops at the NUL of `s`, which is never in the set.
    while unsafe { *s.add(n) != 0 && in_set(accept, *s.add(n)) } {
        n += 1;
    }
    n
}

/// C17 §7.24.5.3.
///
/// # Safety
/// Both strings are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strcspn(s: *const c_char, reject: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: stops at the NUL of `s`.
    while unsafe { *s.add(n) != 0 && !in_set(reject, *s.add(n)) } {
        n += 1;
    }
    n
}

// The unwinder stubs clash with std's own definitions, which a test binary links.

/// Never called: images are built with `panic = "abort"`, but the prebuilt `core` and `alloc`
/// (compiled with unwinding) still reference the unwinder from their landing pads.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    trap()
}

/// Never called; see [`_Unwind_Resume`].
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() -> ! {
    trap()
}

/// Stops on an invalid-opcode trap.
#[cfg(not(test))]
fn trap() -> ! {
    // SAFETY: `ud2` raises #UD and never returns; it touches no memory.
    unsafe { core::arch::asm!("ud2", options(noreturn, nomem, nostack)) }
}

#[cfg(test)]
mod tests {
    //! In this test binary these definitions replace libc's for the whole process, so the
    //! test harness itself exercises them too.
    use super::*;

    #[test]
    fn memory_functions_follow_c() {
        let src: [u8; 37] = core::array::from_fn(|i| i as u8);
        let mut dst = [0u8; 37];
        // SAFETY: both buffers hold 37 bytes.
        unsafe { memcpy(dst.as_mut_ptr().cast(), src.as_ptr().cast(), 37) };
        assert_eq!(dst, src);
        // SAFETY: overlapping moves within one 37-byte buffer.
        unsafe { memmove(dst.as_mut_ptr().add(3).cast(), dst.as_ptr().cast(), 30) };
        assert_eq!(&dst[3..33], &src[..30]);
        let mut back = src;
        // SAFETY: within the buffer.
        unsafe { memmove(back.as_mut_ptr().cast(), back.as_ptr().add(5).cast(), 30) };
        assert_eq!(&back[..30], &src[5..35]);
        // SAFETY: within the buffer.
        unsafe { memset(dst.as_mut_ptr().add(1).cast(), 0x1AB, 20) };
        assert!(dst[1..21].iter().all(|b| *b == 0xAB) && dst[0] == 0);
        // SAFETY: 37-byte buffers; a NUL-free search region.
        unsafe {
            assert_eq!(memcmp(src.as_ptr().cast(), src.as_ptr().cast(), 37), 0);
            assert!(memcmp(src.as_ptr().cast(), dst.as_ptr().cast(), 37) < 0);
            assert_eq!(
                memchr(src.as_ptr().cast(), 20, 37).cast::<u8>(),
                src.as_ptr().add(20).cast_mut()
            );
            assert!(memchr(src.as_ptr().cast(), 200, 37).is_null());
        }
    }

    #[test]
    fn string_functions_follow_c() {
        let s = c"hello, world";
        let p = s.as_ptr();
        // SAFETY: NUL-terminated literals.
        unsafe {
            assert_eq!(strlen(p), 12);
            assert_eq!(strcmp(p, c"hello, world".as_ptr()), 0);
            assert!(strcmp(p, c"hello".as_ptr()) > 0);
            assert!(strncmp(p, c"help".as_ptr(), 3) == 0 && strncmp(p, c"help".as_ptr(), 4) < 0);
            assert_eq!(strchr(p, i32::from(b'o')).cast_const(), p.add(4));
            assert_eq!(strrchr(p, i32::from(b'o')).cast_const(), p.add(8));
            assert_eq!(strchr(p, 0).cast_const(), p.add(12));
            assert!(strchr(p, i32::from(b'z')).is_null());
            assert_eq!(strspn(p, c"leho".as_ptr()), 5);
            assert_eq!(strcspn(p, c" ,".as_ptr()), 5);
        }
    }
}
