//! A durable replica's log on its disk, and the backend wrapper that keeps it.
//!
//! The Manager makes the records (encrypted and authenticated, `vpr_pal`'s `durable` module)
//! and checks them when it restarts; this side only stores them, in *segments*: files
//! `log/<number of the first record, 16 hex digits>.log` in the replica's data folder, each a
//! sequence of frames (a `u32` length, little-endian, and the record). A segment starts with a
//! checkpoint record; ordinary records are appended to the newest segment. Every write is
//! flushed to the disk (`fdatasync`, and the folder for a new segment) before the Manager
//! hears it is there.
//!
//! Records a Manager made and never had confirmed (the process died first) may remain at a
//! segment's end, or as a frame cut short: a record with the same number replaces them, and
//! everything after it goes. Only the two newest segments are kept: the older one serves a
//! restart whose newest checkpoint was never confirmed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use vpr_pal::{Call, Effect};
use vpr_proto::digest::Digest;

use crate::tcc::{Progress, Status, TccBackend};

/// The folder of the log, inside a replica's data folder.
pub const LOG_DIR: &str = "log";

/// Moves the log folder of the data folder `data` aside, unchanged, to `log.refused.<N>` (the
/// first free N): where a log the Manager refused is kept. Its new path.
///
/// # Errors
/// The rename failed.
pub fn set_aside(data: &Path) -> io::Result<PathBuf> {
    let mut n = 0;
    loop {
        let aside = data.join(format!("{LOG_DIR}.refused.{n}"));
        if !aside.exists() {
            fs::rename(data.join(LOG_DIR), &aside)?;
            crate::files::sync_folder(&aside)?;
            return Ok(aside);
        }
        n += 1;
    }
}

/// Bytes of a record's clear header before its number (magic, version, kind).
const INDEX_AT: usize = 6;

/// Longest record this side reads back (a checkpoint holds the whole database).
const MAX_FRAME: usize = vpr_proto::tcc::MAX_RECORD_BYTES;

/// One segment file: its first record's number and where each of its frames starts.
#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
    /// (record number, offset of the frame, length of the record).
    frames: Vec<(u64, u64, u32)>,
}

/// A replica's log folder.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    segments: Vec<Segment>,
}

impl Store {
    /// Opens (or makes) the log in the data folder `data`, reading what its segments hold.
    ///
    /// # Errors
    /// The folder cannot be made or read, or a file in it is not a segment.
    pub fn open(data: &Path) -> io::Result<Self> {
        let dir = data.join(LOG_DIR);
        fs::create_dir_all(&dir)?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some(first) =
                name.strip_suffix(".log").and_then(|n| u64::from_str_radix(n, 16).ok())
            else {
                if name.ends_with(".tmp") {
                    continue;
                }
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: not a log segment (expected <16 hex digits>.log)", path.display()),
                ));
            };
            let frames = read_frames(&path)?;
            segments.push(Segment { first, path, frames });
        }
        segments.sort_by_key(|s| s.first);
        Ok(Store { dir, segments })
    }

    /// Whether the log holds any record.
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.frames.is_empty())
    }

    /// Every record kept, oldest first: what a restarting Manager checks and replays.
    ///
    /// # Errors
    /// A segment cannot be read.
    pub fn records(&self) -> io::Result<Vec<Vec<u8>>> {
        let mut records = Vec::new();
        for segment in &self.segments {
            let bytes = fs::read(&segment.path)?;
            for &(_, offset, len) in &segment.frames {
                let at = usize::try_from(offset + 4).map_err(io::Error::other)?;
                let record = bytes.get(at..at + len as usize).ok_or_else(|| {
                    io::Error::other(format!("{}: shorter than when read", segment.path.display()))
                })?;
                records.push(record.to_vec());
            }
        }
        Ok(records)
    }

    /// Writes record `index` durably: a checkpoint starts a new segment, anything else goes
    /// at the end of the newest. Records numbered `index` or more that are already here were
    /// never confirmed, and go first.
    ///
    /// # Errors
    /// The disk refused a write or a flush, or an ordinary record has no segment to go to.
    pub fn append(&mut self, index: u64, checkpoint: bool, record: &[u8]) -> io::Result<()> {
        let len = u32::try_from(record.len())
            .ok()
            .filter(|&len| len as usize <= MAX_FRAME)
            .ok_or_else(|| io::Error::other(format!("record {index}: too long")))?;
        self.drop_from(index)?;
        if checkpoint {
            let path = self.dir.join(format!("{index:016x}.log"));
            let mut file = File::create(&path)?;
            file.write_all(&len.to_le_bytes())?;
            file.write_all(record)?;
            file.sync_data()?;
            crate::files::sync_folder(&path)?;
            self.segments.push(Segment { first: index, path, frames: vec![(index, 0, len)] });
            return Ok(());
        }
        let Some(segment) = self.segments.last_mut() else {
            return Err(io::Error::other(format!(
                "record {index}: the log has no checkpoint to follow"
            )));
        };
        let mut file = OpenOptions::new().append(true).open(&segment.path)?;
        let offset = file.metadata()?.len();
        file.write_all(&len.to_le_bytes())?;
        file.write_all(record)?;
        file.sync_data()?;
        segment.frames.push((index, offset, len));
        Ok(())
    }

    /// Forgets records numbered `index` or more (never confirmed), and segments they start.
    fn drop_from(&mut self, index: u64) -> io::Result<()> {
        while self.segments.last().is_some_and(|s| s.first >= index) {
            if let Some(segment) = self.segments.pop() {
                fs::remove_file(&segment.path)?;
            }
        }
        if let Some(segment) = self.segments.last_mut() {
            if let Some(at) = segment.frames.iter().position(|&(i, _, _)| i >= index) {
                let cut = segment.frames[at].1;
                OpenOptions::new().write(true).open(&segment.path)?.set_len(cut)?;
                segment.frames.truncate(at);
            } else {
                // A frame cut short at the end (the process died while writing it) goes too.
                let end = segment.frames.last().map_or(0, |&(_, o, l)| o + 4 + u64::from(l));
                let file = OpenOptions::new().write(true).open(&segment.path)?;
                if file.metadata()?.len() != end {
                    file.set_len(end)?;
                }
            }
        }
        Ok(())
    }

    /// After checkpoint `index` is confirmed: only it and the segment before stay.
    fn prune(&mut self) -> io::Result<()> {
        while self.segments.len() > 2 {
            let segment = self.segments.remove(0);
            fs::remove_file(&segment.path)?;
        }
        Ok(())
    }
}

/// Reads the frames of a segment: each record's number, offset and length. A frame cut short
/// at the end ends the list.
fn read_frames(path: &Path) -> io::Result<Vec<(u64, u64, u32)>> {
    let bytes = fs::read(path)?;
    let mut frames = Vec::new();
    let mut at = 0usize;
    while let Some(len) = bytes.get(at..at + 4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        let Some(record) = bytes.get(at + 4..at + 4 + len as usize) else { break };
        let Some(index) = record.get(INDEX_AT..INDEX_AT + 8) else { break };
        let mut number = [0; 8];
        number.copy_from_slice(index);
        frames.push((u64::from_le_bytes(number), at as u64, len));
        at += 4 + len as usize;
    }
    Ok(frames)
}

/// A backend whose Manager keeps a log: carries out its [`Effect::Persist`]s on a [`Store`]
/// (write, flush, confirm) inside each call, so the runtime above sees only the effects the
/// Manager hands out once its records are on disk. Asks for a checkpoint when the records
/// since the last one pass both the configured size and the last checkpoint's own size (so
/// checkpoints cost at most as many bytes as the records they replace).
#[derive(Debug)]
pub struct Durable<B: TccBackend> {
    inner: B,
    store: Store,
    /// Bytes of records written since the last checkpoint, and that checkpoint's size.
    since_checkpoint: u64,
    checkpoint_len: u64,
    /// Bytes of records between checkpoints at the least.
    checkpoint_bytes: u64,
}

/// The default bytes of records between two checkpoints.
pub const MIN_CHECKPOINT_BYTES: u64 = 16 << 20;

impl<B: TccBackend> Durable<B> {
    /// Wraps `inner`, whose Manager keeps its log in `store` and writes a checkpoint after
    /// `checkpoint_bytes` of records. A Manager that restarted waits for its first record (a
    /// fence) to be confirmed: it is written here.
    pub fn new(inner: B, store: Store, checkpoint_bytes: u64) -> Self {
        let mut durable =
            Durable { inner, store, since_checkpoint: 0, checkpoint_len: 0, checkpoint_bytes };
        // Asks for the record that waits, if any (a confirmation of a record that does not
        // wait is answered with the one that does, or refused).
        let effects = durable.inner.call(Call::Persisted { index: 0 });
        let effects = durable.settle(effects);
        for effect in effects {
            if let Effect::Refused(reason) = effect {
                tracing::debug!(%reason, "no log record waited at start");
            }
        }
        durable
    }

    /// Writes and confirms each record among `effects`; the effects the Manager hands out
    /// then take its place. A record the disk refused stays with the Manager (it hands it out
    /// again on the next call) and is left among the effects.
    fn settle(&mut self, mut effects: Vec<Effect>) -> Vec<Effect> {
        let mut from = 0;
        while let Some(at) = effects[from..]
            .iter()
            .position(|e| matches!(e, Effect::Persist { .. }))
            .map(|i| i + from)
        {
            let Effect::Persist { index, checkpoint, record } = &effects[at] else { break };
            let (index, checkpoint, len) = (*index, *checkpoint, record.len() as u64);
            if let Err(e) = self.store.append(index, checkpoint, record) {
                tracing::error!(index, error = %e, "cannot write a log record; the replica waits");
                from = at + 1;
                continue;
            }
            let released = self.inner.call(Call::Persisted { index });
            effects.splice(at..=at, released);
            from = at;
            if checkpoint {
                self.since_checkpoint = 0;
                self.checkpoint_len = len;
                if let Err(e) = self.store.prune() {
                    tracing::warn!(error = %e, "cannot remove old log segments");
                }
            } else {
                self.since_checkpoint += len;
            }
        }
        effects
    }
}

impl<B: TccBackend> TccBackend for Durable<B> {
    fn status(&self) -> Status {
        self.inner.status()
    }

    fn primary(&self) -> u16 {
        self.inner.primary()
    }

    fn progress(&self) -> Progress {
        self.inner.progress()
    }

    fn call(&mut self, call: Call) -> Vec<Effect> {
        let effects = self.inner.call(call);
        let mut effects = self.settle(effects);
        if self.since_checkpoint > self.checkpoint_len.max(self.checkpoint_bytes) {
            // Counted anew whether or not the Manager makes one now.
            self.since_checkpoint = 0;
            let made = self.inner.call(Call::Checkpoint);
            effects.extend(self.settle(made).into_iter().filter(
                |e| !matches!(e, Effect::Refused(reason) if reason.starts_with("checkpoint:")),
            ));
        }
        effects
    }

    fn identity(&self) -> Digest {
        self.inner.identity()
    }

    fn is_isolated(&self) -> bool {
        self.inner.is_isolated()
    }
}
