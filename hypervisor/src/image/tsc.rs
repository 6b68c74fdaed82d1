//! The time-stamp counter, for the self-test's cost measurements.

/// The time-stamp counter (RDTSC).
pub fn read() -> u64 {
    // SAFETY: RDTSC only reads the counter; the hypervisor runs at CPL 0, where it is always
    // allowed.
    unsafe { core::arch::x86_64::_rdtsc() }
}
