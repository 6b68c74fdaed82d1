//! The time-stamp counter, for the self-test's cost measurements.

/// The time-stamp counter (RDTSC).
pub fn read() -> u64 {
    // SAFETY: RDTSC only reads the counter; the hypervisor runs at CPL 0, where it is always
    // allowed.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(feature = "selftest")]
/// The median TSC ticks of `runs` (at least one) calls of `f`; the first error stops it.
pub fn median<E>(runs: usize, mut f: impl FnMut() -> Result<(), E>) -> Result<u64, E> {
    let mut ticks = alloc::vec::Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let start = read();
        f()?;
        ticks.push(read() - start);
    }
    ticks.sort_unstable();
    Ok(ticks[ticks.len() / 2])
}
