//! The in-memory VFS: database files live in PAL memory and writes to main databases are
//! tracked, so the pages a request wrote can be shipped as a state update.
//!
//! Methods follow "The OS Interface Object" (`sqlite3_vfs`, v2) and `sqlite3_io_methods` (v1)
//! of `sqlite3.h`. Every callback runs while the engine lock is held (see `engine`), and the
//! file registry is a lock of its own only so that it can be a safe `static`.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_double, c_int, c_void, CStr};
use core::ptr;

use spin::Mutex;

use crate::dirty::DirtySet;
use crate::ffi;
use crate::platform;
use crate::undo::Undo;

/// Name under which the VFS is registered (as the default).
pub(crate) const VFS_NAME: &CStr = c"vpr-mem";

/// Offset of the Unix epoch in the Julian-day milliseconds SQLite counts in.
const UNIX_EPOCH_JULIAN_MS: i64 = 210_866_760_000_000;

/// Largest file the VFS lets SQLite write: 1 TiB, the state update format's limit.
const MAX_FILE_BYTES: u64 = 1 << 40;

/// One file's contents and, for main databases, the sectors written since the last capture.
#[derive(Debug, Default)]
pub(crate) struct FileData {
    pub(crate) bytes: Vec<u8>,
    pub(crate) dirty: DirtySet,
    /// Tracked writes and truncations so far (never reset).
    pub(crate) writes: u64,
    /// While set, what tracked writes overwrite (see `undo`).
    pub(crate) undo: Option<Undo>,
    /// The sectors of a main database changed since the digest last looked
    /// (`Database::with_file_and_stale`), unless `stale_all`.
    pub(crate) stale: DirtySet,
    /// Everything changed as far as the digest knows (`stale` could not grow).
    pub(crate) stale_all: bool,
}

/// Makes room in `bytes` for `additional` more bytes: an eighth of the file more when that
/// can be had, so that a file growing a page at a time is not copied whole at every page
/// (Vec's own doubling could fail where the PAL's heap has room for the file and an eighth);
/// exactly `additional` otherwise. `false` if not even that can be had.
pub(crate) fn reserve_file(bytes: &mut Vec<u8>, additional: usize) -> bool {
    if bytes.capacity() - bytes.len() >= additional {
        return true;
    }
    let headroom = additional.max(bytes.len() / 8);
    bytes.try_reserve_exact(headroom).is_ok() || bytes.try_reserve_exact(additional).is_ok()
}

impl FileData {
    /// Notes for the digest that `[offset, offset + len)` changed.
    pub(crate) fn mark_stale(&mut self, offset: u64, len: u64) {
        if !self.stale_all && !self.stale.mark(offset, len) {
            self.stale.clear();
            self.stale_all = true;
        }
    }

    /// Notes for the digest that the file's length went from `old` to what it is now: grown
    /// bytes are new, and a cut may have shortened the sector that now ends the file.
    pub(crate) fn mark_resized(&mut self, old: usize) {
        let new = self.bytes.len();
        if new > old {
            self.mark_stale(old as u64, (new - old) as u64);
        } else if new < old && new > 0 {
            self.mark_stale(new as u64 - 1, 1);
        }
    }
}

pub(crate) type SharedFile = Arc<Mutex<FileData>>;

/// Files by name. Anonymous files (SQLite's temporary databases, which have no name) are
/// owned by their handle only.
static FILES: Mutex<BTreeMap<String, SharedFile>> = Mutex::new(BTreeMap::new());

/// Creates (or replaces) the file `name` and returns its storage.
pub(crate) fn create_file(name: &str) -> SharedFile {
    let file = SharedFile::default();
    FILES.lock().insert(String::from(name), file.clone());
    file
}

/// Removes `name` from the registry; open handles keep their storage alive.
pub(crate) fn remove_file(name: &str) {
    FILES.lock().remove(name);
}

/// The object SQLite allocates `os_file_size` bytes for; `base` must come first.
#[repr(C)]
struct MemFile {
    base: ffi::sqlite3_file,
    /// From `Arc::into_raw`; released in `close`.
    data: *const Mutex<FileData>,
    /// Main database files record written sectors.
    track: bool,
}

/// The VFS object. SQLite links it into its VFS list (`next`) at registration.
struct VfsCell(UnsafeCell<ffi::sqlite3_vfs>);

// SAFETY: SQLite is built with SQLITE_THREADSAFE=0 and every call into it, which is the only
// place that touches the VFS object, is made with the engine lock held.
unsafe impl Sync for VfsCell {}

/// Size of the file object SQLite allocates for us (a few pointers: far below `c_int::MAX`).
#[allow(clippy::cast_possible_truncation)]
const MEM_FILE_SIZE: c_int = size_of::<MemFile>() as c_int;

static VFS: VfsCell = VfsCell(UnsafeCell::new(ffi::sqlite3_vfs {
    version: 2,
    os_file_size: MEM_FILE_SIZE,
    max_pathname: 512,
    next: ptr::null_mut(),
    name: VFS_NAME.as_ptr(),
    app_data: ptr::null_mut(),
    open: x_open,
    delete: x_delete,
    access: x_access,
    full_pathname: x_full_pathname,
    dl_open: None,
    dl_error: None,
    dl_sym: None,
    dl_close: None,
    randomness: x_randomness,
    sleep: x_sleep,
    current_time: x_current_time,
    get_last_error: x_get_last_error,
    current_time_int64: x_current_time_int64,
}));

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    version: 1,
    close: x_close,
    read: x_read,
    write: x_write,
    truncate: x_truncate,
    sync: x_sync,
    file_size: x_file_size,
    lock: x_lock,
    unlock: x_lock,
    check_reserved_lock: x_check_reserved_lock,
    file_control: x_file_control,
    sector_size: x_sector_size,
    device_characteristics: x_device_characteristics,
    shm_map: None,
    shm_lock: None,
    shm_barrier: None,
    shm_unmap: None,
    fetch: None,
    unfetch: None,
};

/// `sqlite3_os_init`, called by `sqlite3_initialize`: registers this VFS as the default.
#[unsafe(no_mangle)]
extern "C" fn vpr_sqlite3_os_init() -> c_int {
    // SAFETY: VFS is a static that lives forever; SQLite only links it into its list, and this
    // runs inside sqlite3_initialize under the engine lock.
    unsafe { ffi::sqlite3_vfs_register(VFS.0.get(), 1) }
}

/// `sqlite3_os_end`, called by `sqlite3_shutdown`: nothing to release.
#[unsafe(no_mangle)]
extern "C" fn vpr_sqlite3_os_end() -> c_int {
    ffi::SQLITE_OK
}

/// Reads a NUL-terminated name from SQLite, if it is present and UTF-8.
///
/// # Safety
/// `name` is null or points to a NUL-terminated string that outlives the returned reference.
unsafe fn name_of<'a>(name: *const c_char) -> Option<&'a str> {
    if name.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(name) }.to_str().ok()
}

/// The storage of an open file.
///
/// # Safety
/// `file` was initialised by `x_open` and not yet closed.
unsafe fn data<'a>(file: *mut ffi::sqlite3_file) -> (&'a Mutex<FileData>, bool) {
    // SAFETY: the caller guarantees `file` is a live MemFile; `data` holds a strong count.
    unsafe {
        let f = &*file.cast::<MemFile>();
        (&*f.data, f.track)
    }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes the file name it owns (or NULL for a temporary file).
    let name = unsafe { name_of(name) };
    let storage = match name {
        None => SharedFile::default(),
        Some(name) => {
            // Only files the shim created (`Database::open`) exist: SQL cannot make others
            // (`ATTACH 'x'`, a `-journal`), whose writes no state update would carry.
            match FILES.lock().get(name) {
                Some(f) => f.clone(),
                None => return ffi::SQLITE_CANTOPEN,
            }
        }
    };
    let mem = MemFile {
        base: ffi::sqlite3_file { methods: &IO_METHODS },
        data: Arc::into_raw(storage),
        track: flags & ffi::SQLITE_OPEN_MAIN_DB != 0,
    };
    // SAFETY: SQLite provides `os_file_size` (= size_of::<MemFile>()) writable bytes at `file`,
    // aligned for any type; `out_flags` is null or writable.
    unsafe {
        file.cast::<MemFile>().write(mem);
        if !out_flags.is_null() {
            *out_flags = flags;
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    _sync: c_int,
) -> c_int {
    // SAFETY: SQLite passes a NUL-terminated name.
    if let Some(name) = unsafe { name_of(name) } {
        remove_file(name);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    // SAFETY: SQLite passes a NUL-terminated name.
    let exists = unsafe { name_of(name) }.is_some_and(|n| FILES.lock().contains_key(n));
    // SAFETY: `out` is a valid int pointer supplied by SQLite.
    unsafe { *out = c_int::from(exists) };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: SQLite passes a NUL-terminated name.
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes_with_nul();
    let Ok(cap) = usize::try_from(n_out) else { return ffi::SQLITE_CANTOPEN };
    if bytes.len() > cap {
        return ffi::SQLITE_CANTOPEN;
    }
    // SAFETY: `out` has room for `n_out >= bytes.len()` bytes; the regions do not overlap.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), out, bytes.len()) };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_randomness(
    _vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let Ok(len) = usize::try_from(n) else { return 0 };
    // SAFETY: SQLite supplies a buffer of `n` bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(out.cast::<u8>(), len) };
    (platform::get().fill_random)(buf);
    n
}

unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, _micros: c_int) -> c_int {
    // Nothing else can hold a lock on an in-memory file, so nothing is worth waiting for.
    0
}

unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut c_double) -> c_int {
    let ms = UNIX_EPOCH_JULIAN_MS + (platform::get().unix_time_ms)();
    // SAFETY: `out` is a valid double pointer supplied by SQLite.
    unsafe { *out = ms as c_double / 86_400_000.0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_current_time_int64(_vfs: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    // SAFETY: `out` is a valid int64 pointer supplied by SQLite.
    unsafe { *out = UNIX_EPOCH_JULIAN_MS + (platform::get().unix_time_ms)() };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_get_last_error(
    _vfs: *mut ffi::sqlite3_vfs,
    _n: c_int,
    _out: *mut c_char,
) -> c_int {
    0
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: `file` was opened by x_open; this releases the strong count it took, once, since
    // SQLite never uses a file after closing it.
    unsafe {
        let f = &mut *file.cast::<MemFile>();
        drop(Arc::from_raw(f.data));
        f.data = ptr::null();
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    // SAFETY: `file` is open; SQLite passes a buffer of `amt` bytes.
    let (data, _) = unsafe { data(file) };
    let (Ok(amt), Ok(off)) = (usize::try_from(amt), usize::try_from(off)) else {
        return ffi::SQLITE_IOERR_SHORT_READ;
    };
    // SAFETY: as above, `buf` holds `amt` writable bytes.
    let out = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), amt) };
    let data = data.lock();
    let avail = data.bytes.get(off..).unwrap_or(&[]);
    let n = avail.len().min(amt);
    out[..n].copy_from_slice(&avail[..n]);
    if n < amt {
        out[n..].fill(0);
        return ffi::SQLITE_IOERR_SHORT_READ;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: i64,
) -> c_int {
    // SAFETY: `file` is open.
    let (data, track) = unsafe { data(file) };
    let (Ok(amt), Ok(off)) = (usize::try_from(amt), u64::try_from(off)) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let end = off.saturating_add(amt as u64);
    if end > MAX_FILE_BYTES {
        return ffi::SQLITE_FULL;
    }
    // SAFETY: SQLite passes `amt` readable bytes at `buf`.
    let src = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), amt) };
    let mut data = data.lock();
    if track {
        let FileData { bytes, undo, .. } = &mut *data;
        if let Some(undo) = undo {
            if !undo.record(bytes, off, amt as u64) {
                return ffi::SQLITE_IOERR_NOMEM;
            }
        }
    }
    let (Ok(off), Ok(end)) = (usize::try_from(off), usize::try_from(end)) else {
        return ffi::SQLITE_FULL;
    };
    let old_len = data.bytes.len();
    if end > data.bytes.len() {
        let grow = end - data.bytes.len();
        if !reserve_file(&mut data.bytes, grow) {
            return ffi::SQLITE_IOERR_NOMEM;
        }
        data.bytes.resize(end, 0);
    }
    if track {
        if !data.dirty.mark(off as u64, amt as u64) {
            return ffi::SQLITE_IOERR_NOMEM;
        }
        data.writes += 1;
    }
    data.bytes[off..end].copy_from_slice(src);
    if track {
        data.mark_resized(old_len);
        data.mark_stale(off as u64, amt as u64);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: `file` is open.
    let (data, track) = unsafe { data(file) };
    let Ok(size) = usize::try_from(size) else { return ffi::SQLITE_IOERR_TRUNCATE };
    if size as u64 > MAX_FILE_BYTES {
        return ffi::SQLITE_FULL;
    }
    let mut data = data.lock();
    let len = data.bytes.len();
    if size > len {
        // Growing by truncate leaves zeros that a backup must see too: track them.
        if !reserve_file(&mut data.bytes, size - len)
            || (track && !data.dirty.mark(len as u64, (size - len) as u64))
        {
            return ffi::SQLITE_IOERR_NOMEM;
        }
        data.bytes.resize(size, 0);
    } else {
        if track {
            let FileData { bytes, undo, .. } = &mut *data;
            if let Some(undo) = undo {
                if !undo.record(bytes, size as u64, (len - size) as u64) {
                    return ffi::SQLITE_IOERR_NOMEM;
                }
            }
        }
        data.bytes.truncate(size);
    }
    if track {
        data.writes += 1;
        data.mark_resized(len);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_sync(_file: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_size(file: *mut ffi::sqlite3_file, out: *mut i64) -> c_int {
    // SAFETY: `file` is open; `out` is a valid int64 pointer.
    unsafe {
        let (data, _) = data(file);
        *out = data.lock().bytes.len() as i64;
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_lock(_file: *mut ffi::sqlite3_file, _level: c_int) -> c_int {
    // One connection per file and one thread in the engine: locks always succeed.
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(
    _file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    // SAFETY: `out` is a valid int pointer.
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    _file: *mut ffi::sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_file: *mut ffi::sqlite3_file) -> c_int {
    512
}

unsafe extern "C" fn x_device_characteristics(_file: *mut ffi::sqlite3_file) -> c_int {
    0
}

#[cfg(test)]
mod tests {
    use super::reserve_file;
    use alloc::vec::Vec;

    #[test]
    fn a_growing_file_gets_an_eighth_of_headroom_not_a_doubling() {
        let mut bytes: Vec<u8> = Vec::new();
        bytes.resize(80_000, 1);
        bytes.shrink_to_fit();
        assert!(reserve_file(&mut bytes, 4096));
        let capacity = bytes.capacity();
        assert!((80_000 + 10_000..80_000 + 10_000 + 64).contains(&capacity), "{capacity}");
        // Room already there: nothing moves.
        bytes.resize(84_096, 0);
        let at = bytes.as_ptr();
        assert!(reserve_file(&mut bytes, 4096));
        assert_eq!((bytes.as_ptr(), bytes.capacity()), (at, capacity));
        // A growth larger than an eighth gets exactly what it needs.
        assert!(reserve_file(&mut bytes, 1 << 20));
        assert!(bytes.capacity() >= 84_096 + (1 << 20));
        assert!(bytes.capacity() < 84_096 + (1 << 20) + 64);
    }
}
