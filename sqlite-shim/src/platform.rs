//! What the engine needs from its surroundings: randomness and the time of day.
//!
//! In the PAL both come from outside SQLite (the TCC's random source; a time the host
//! supplies, which is fine because only results replicate, never re-execution).

use spin::Once;

/// Services the VFS asks for.
#[derive(Clone, Copy, Debug)]
pub struct Platform {
    /// Fills the buffer with random bytes (seeds SQLite's PRNG behind `random()`).
    pub fill_random: fn(&mut [u8]),
    /// Milliseconds since the Unix epoch (`datetime('now')`).
    pub unix_time_ms: fn() -> i64,
}

static PLATFORM: Once<Platform> = Once::new();

/// Installs the platform; the first call wins.
pub(crate) fn install(platform: Platform) {
    PLATFORM.call_once(|| platform);
}

/// The installed platform, or one that yields zeros until one is installed.
pub(crate) fn get() -> Platform {
    PLATFORM.get().copied().unwrap_or(Platform { fill_random: |b| b.fill(0), unix_time_ms: || 0 })
}

#[cfg(feature = "std")]
impl Platform {
    /// The operating system's random source and clock.
    pub fn host() -> Self {
        Platform {
            fill_random: |buf| {
                if getrandom::fill(buf).is_err() {
                    buf.fill(0);
                }
            },
            unix_time_ms: || {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                now.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            },
        }
    }
}
