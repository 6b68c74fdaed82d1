//! One SQLite engine per process: its one-time set-up and the lock that serialises every call.
//!
//! SQLite is compiled with `SQLITE_THREADSAFE=0`, so it has no mutexes of its own; every entry
//! into it goes through [`lock`]. In the PAL there is one thread and the lock is never
//! contended; on a host, tests and the simulation backend may call from many threads.

use core::ffi::c_int;

use crate::error::Error;
use crate::ffi;
use crate::platform::{self, Platform};

/// Default size of SQLite's heap (memsys5 pool): 64 MiB.
pub const DEFAULT_HEAP_BYTES: usize = 64 << 20;

/// Smallest allocation memsys5 hands out; its block sizes are powers of two from here.
const MIN_ALLOCATION: c_int = 64;

/// How the engine is set up, once per process.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Bytes in SQLite's fixed heap (memsys5). All of SQLite's memory (page cache, statements)
    /// comes from it; running out gives `SQLITE_NOMEM`, never a crash. At most `i32::MAX`.
    pub heap_bytes: usize,
    /// Randomness and clock.
    pub platform: Platform,
}

#[cfg(feature = "std")]
impl Default for Config {
    fn default() -> Self {
        Config { heap_bytes: DEFAULT_HEAP_BYTES, platform: Platform::host() }
    }
}

/// State behind the engine lock.
#[derive(Debug)]
pub(crate) struct Engine {
    initialized: bool,
}

#[cfg(feature = "std")]
static ENGINE: std::sync::Mutex<Engine> = std::sync::Mutex::new(Engine { initialized: false });
#[cfg(not(feature = "std"))]
static ENGINE: spin::Mutex<Engine> = spin::Mutex::new(Engine { initialized: false });

#[cfg(feature = "std")]
pub(crate) type Guard = std::sync::MutexGuard<'static, Engine>;
#[cfg(not(feature = "std"))]
pub(crate) type Guard = spin::MutexGuard<'static, Engine>;

fn raw_lock() -> Guard {
    #[cfg(feature = "std")]
    {
        // Nothing panics while holding the lock; if something did, SQLite's state is still
        // consistent between API calls, so the lock stays usable.
        ENGINE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    #[cfg(not(feature = "std"))]
    {
        ENGINE.lock()
    }
}

/// Sets the engine up: SQLite's heap, the platform services, the VFS.
///
/// Call once before opening a database. A second call fails with `SQLITE_MISUSE`. With the
/// `std` feature, opening a database first sets the engine up with [`Config::default`].
pub fn initialize(config: Config) -> Result<(), Error> {
    let mut engine = raw_lock();
    if engine.initialized {
        return Err(Error::new(ffi::SQLITE_MISUSE, "the SQLite engine is already initialized"));
    }
    init_locked(&mut engine, config)
}

fn init_locked(engine: &mut Engine, config: Config) -> Result<(), Error> {
    let Ok(bytes) = c_int::try_from(config.heap_bytes) else {
        return Err(Error::new(ffi::SQLITE_TOOBIG, "heap_bytes must fit a C int"));
    };
    let pool = heap::allocate(config.heap_bytes)
        .ok_or_else(|| Error::new(ffi::SQLITE_NOMEM, "cannot allocate SQLite's heap"))?;
    platform::install(config.platform);
    // SAFETY: the engine lock is held and SQLite is not yet initialized, as SQLITE_CONFIG_HEAP
    // requires; `pool` is `bytes` bytes, 8-aligned, leaked for the life of the process.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_HEAP, pool, bytes, MIN_ALLOCATION) };
    if rc != ffi::SQLITE_OK {
        return Err(Error::from_code(rc));
    }
    // SAFETY: configured above; called under the engine lock.
    let rc = unsafe { ffi::sqlite3_initialize() };
    if rc != ffi::SQLITE_OK {
        return Err(Error::from_code(rc));
    }
    engine.initialized = true;
    Ok(())
}

/// Takes the engine lock, for a call into SQLite. Fails if the engine was never initialized
/// (without `std`), or cannot be (with `std`, which initializes it with defaults).
pub(crate) fn lock() -> Result<Guard, Error> {
    #[cfg_attr(not(feature = "std"), allow(unused_mut))]
    let mut engine = raw_lock();
    if !engine.initialized {
        #[cfg(feature = "std")]
        init_locked(&mut engine, Config::default())?;
        #[cfg(not(feature = "std"))]
        return Err(Error::new(ffi::SQLITE_MISUSE, "sqlite_shim::initialize was not called"));
    }
    Ok(engine)
}

mod heap {
    //! The memory handed to memsys5.

    use alloc::alloc::{alloc, Layout};
    use core::ffi::c_void;

    /// Allocates `bytes` (8-aligned) that are never freed, or `None`.
    pub(super) fn allocate(bytes: usize) -> Option<*mut c_void> {
        let layout = Layout::from_size_align(bytes.max(8), 8).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc(layout) };
        (!ptr.is_null()).then_some(ptr.cast())
    }
}
