//! A bounded, crash- and disk-full-safe on-disk queue of prediction records on their way to the
//! database.
//!
//! Every prediction goes through the spool before it is answered: the record is appended and
//! flushed to disk, and only then acknowledged; a consumer reads records back in order, writes them
//! to the database, and [`Spool::commit`]s how far it got. Because progress is committed only after
//! the database acknowledged the records, a crash between the two replays them; the database side
//! makes replays harmless by keying records on their request id (see
//! [`super::PredictionStore::insert_batch`]).
//!
//! ## On disk
//! - `spool-<generation>.jsonl`: one record per line, framed as `<crc32, 8 hex digits> <json>\n`.
//!   The checksum is what tells a record from bytes left by a torn or failed write, so a damaged
//!   line is never mistaken for data and never merges with the next one.
//! - `spool.offset`: `<generation> <byte offset>`, the consumer's committed position, replaced
//!   atomically (write a temporary file, fsync, rename, fsync the folder).
//!
//! Consumed bytes are reclaimed by *compaction*: once the consumed head is at least as large as
//! the unconsumed tail (and above a floor), the tail is copied into the next generation's file, the
//! offset file is switched to it, and the old file is deleted. A crash at any step leaves either
//! the old generation (still complete) or the new one named by the offset file; files of any other
//! generation are leftovers and are removed at open. The file therefore stays below about twice
//! the limit plus the floor.
//!
//! ## Failure handling
//! An append is all-or-nothing: when a write or its fsync fails (disk full, I/O error), the file is
//! cut back to its length before the append and the caller gets the error, so nothing half-written
//! is ever acknowledged or left to merge with later lines. If even the cut fails, the spool
//! re-scans its file before the next append (see [`Spool::recover`]).
//!
//! The spool is bounded in bytes: a full spool refuses new records ([`SpoolError::Full`]) instead of
//! filling the disk, and the caller counts that as a lost write.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::PredictionRecord;

/// Why a spool operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool reached its size limit; the record was not kept.
    #[error("the on-disk spool is full ({limit_bytes} bytes); the record was not kept")]
    Full {
        /// The configured limit.
        limit_bytes: u64,
    },
    /// Reading or writing the spool files failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A record could not be serialised.
    #[error("spool: cannot serialise a record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One record read back from the spool, with the position just past it (what to commit once the
/// record is safely in the database).
#[derive(Debug, Clone)]
pub struct Spooled {
    /// The record.
    pub record: PredictionRecord,
    /// Position just past this record's line; valid until the next [`Spool::commit`].
    pub end: u64,
}

/// What [`Spool::peek`] yields per line: the record, or a description of the damaged line and the
/// position just past it (so the caller can set it aside instead of blocking the queue).
pub type Peeked = Result<Spooled, (String, u64)>;

/// The on-disk queue. Not thread-safe by itself: its owner serialises access.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    generation: u64,
    file: File,
    /// Bytes of the current file already consumed.
    offset: u64,
    /// Length of the current file that holds whole, acknowledged appends.
    len: u64,
    /// Records between `offset` and `len`.
    pending: u64,
    limit_bytes: u64,
    /// Set when a failed append could not be cut back: the file may hold a partial line past
    /// `len`, so the next append first re-scans.
    needs_recovery: bool,
    #[cfg(test)]
    faults: Faults,
}

/// Injected failures for the tests (the real ones, disk full and I/O errors, are hard to provoke
/// at an exact byte).
#[cfg(test)]
#[derive(Debug, Default)]
struct Faults {
    /// Write only this many bytes of the next append, then fail.
    short_write: Option<usize>,
    /// Fail the next append's fsync (after its bytes were written).
    sync: bool,
    /// Make the cut-back after a failure fail too.
    truncate: bool,
}

const OFFSET: &str = "spool.offset";
/// The single file of the format before generations (read once, then migrated).
const LEGACY_DATA: &str = "spool.jsonl";
/// Consumed bytes below which compaction is not worth a rewrite.
const COMPACT_FLOOR: u64 = 1 << 20;

fn data_name(generation: u64) -> String {
    format!("spool-{generation}.jsonl")
}

/// The frame of one record: checksum, a space, the JSON, a newline.
fn frame(record: &PredictionRecord, out: &mut Vec<u8>) -> Result<(), SpoolError> {
    let json = serde_json::to_vec(record)?;
    let crc = crc32fast::hash(&json);
    out.extend_from_slice(format!("{crc:08x} ").as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
    Ok(())
}

/// Parses one line (with its newline). Lines of the pre-checksum format (plain JSON) are still
/// read, so a spool left by an older release is replayed after an upgrade.
fn unframe(line: &[u8]) -> Result<PredictionRecord, String> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    if body.first() == Some(&b'{') {
        return serde_json::from_slice(body).map_err(|e| e.to_string());
    }
    let (Some(crc), Some(json)) = (body.get(..8), body.get(9..)) else {
        return Err("too short for a record".into());
    };
    let declared = std::str::from_utf8(crc)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .ok_or("no checksum")?;
    if body.get(8) != Some(&b' ') {
        return Err("no checksum separator".into());
    }
    if crc32fast::hash(json) != declared {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(json).map_err(|e| e.to_string())
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, recovering from a crash: a torn or damaged
    /// tail is cut off, a stale offset beyond the data is reset, an interrupted compaction is
    /// finished or undone, and a spool of the older single-file format is migrated.
    pub fn open(dir: &Path, limit_bytes: u64) -> Result<Self, SpoolError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let offset_path = dir.join(OFFSET);
        let (generation, offset) = match std::fs::read_to_string(&offset_path) {
            Ok(s) => parse_offset(&s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, 0),
            Err(e) => return Err(io(&offset_path)(e)),
        };
        let data = dir.join(data_name(generation));
        let legacy = dir.join(LEGACY_DATA);
        if !data.exists() && legacy.exists() {
            // The older format kept one file and a bare offset; it becomes generation 0.
            std::fs::rename(&legacy, &data).map_err(io(&legacy))?;
            fsync_dir(dir).map_err(io(dir))?;
        }
        remove_other_generations(dir, generation);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&data)
            .map_err(io(&data))?;
        let mut spool = Self {
            dir: dir.to_path_buf(),
            generation,
            file,
            offset,
            len: 0,
            pending: 0,
            limit_bytes,
            needs_recovery: false,
            #[cfg(test)]
            faults: Faults::default(),
        };
        spool.recover()?;
        spool.write_offset()?;
        Ok(spool)
    }

    fn data_path(&self) -> PathBuf {
        self.dir.join(data_name(self.generation))
    }

    fn io_err(&self) -> impl Fn(std::io::Error) -> SpoolError {
        let path = self.data_path();
        move |source| SpoolError::Io {
            path: path.clone(),
            source,
        }
    }

    /// Scans the unconsumed part: counts whole lines and cuts whatever follows the last one. A
    /// complete line that fails its checksum stays (the consumer sets it aside); only an
    /// unterminated tail, which no successful append can leave, is cut.
    fn recover(&mut self) -> Result<(), SpoolError> {
        let io = self.io_err();
        let on_disk = self.file.metadata().map_err(&io)?.len();
        if self.offset > on_disk {
            self.offset = 0;
        }
        let mut file = File::open(self.data_path()).map_err(&io)?;
        file.seek(SeekFrom::Start(self.offset)).map_err(&io)?;
        // Bounded by the length the file had when scanning began (a device or a file still
        // growing under another writer must not keep the scan going).
        let mut reader = BufReader::new(file.take(on_disk - self.offset));
        let (mut pos, mut pending, mut line) = (self.offset, 0u64, Vec::new());
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(&io)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            pos += n as u64;
            pending += 1;
        }
        if pos < on_disk {
            tracing::warn!(
                spool = %self.data_path().display(),
                bytes = on_disk - pos,
                "cutting a torn record off the spool (a write interrupted by a crash or a full disk)"
            );
            self.file.set_len(pos).map_err(&io)?;
        }
        self.len = pos;
        self.pending = pending;
        self.needs_recovery = false;
        Ok(())
    }

    /// Records waiting for the database.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Bytes of the current file on disk (consumed head included), for tests and diagnostics.
    pub fn file_bytes(&self) -> u64 {
        self.len
    }

    /// Appends one record; see [`Spool::append_all`].
    pub fn append(&mut self, record: &PredictionRecord) -> Result<(), SpoolError> {
        self.append_all(std::slice::from_ref(record))
    }

    /// Appends records as one unit and flushes them to disk (one fsync for all) before returning,
    /// so acknowledged predictions survive a crash of this process. Either every record is kept
    /// or, on any error, none is: the file is cut back to where it was.
    pub fn append_all(&mut self, records: &[PredictionRecord]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.needs_recovery {
            self.recover()?;
        }
        let mut buf = Vec::with_capacity(512 * records.len());
        for record in records {
            frame(record, &mut buf)?;
        }
        if (self.len - self.offset).saturating_add(buf.len() as u64) > self.limit_bytes {
            return Err(SpoolError::Full {
                limit_bytes: self.limit_bytes,
            });
        }
        match self.write_and_sync(&buf) {
            Ok(()) => {
                self.len += buf.len() as u64;
                self.pending += records.len() as u64;
                Ok(())
            }
            Err(source) => {
                let path = self.data_path();
                if let Err(cut) = self.cut_back() {
                    tracing::error!(error = %cut, spool = %path.display(), "cannot cut a failed append off the spool; re-scanning before the next one");
                    self.needs_recovery = true;
                }
                Err(SpoolError::Io { path, source })
            }
        }
    }

    fn write_and_sync(&mut self, buf: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        {
            if let Some(n) = self.faults.short_write.take() {
                self.file.write_all(&buf[..n.min(buf.len())])?;
                return Err(std::io::Error::other("injected short write"));
            }
            if std::mem::take(&mut self.faults.sync) {
                self.file.write_all(buf)?;
                return Err(std::io::Error::other("injected fsync failure"));
            }
        }
        self.file.write_all(buf)?;
        self.file.sync_data()
    }

    fn cut_back(&mut self) -> std::io::Result<()> {
        #[cfg(test)]
        if std::mem::take(&mut self.faults.truncate) {
            return Err(std::io::Error::other("injected truncate failure"));
        }
        self.file.set_len(self.len)?;
        self.file.sync_data()
    }

    /// Reads up to `max` records from the head, oldest first, without consuming them. A damaged
    /// line (failed checksum, unparsable JSON: outside interference) comes back as an error with
    /// its end position, so the caller can set it aside instead of blocking the queue forever.
    pub fn peek(&self, max: usize) -> Result<Vec<Peeked>, SpoolError> {
        let io = self.io_err();
        let mut file = File::open(self.data_path()).map_err(&io)?;
        file.seek(SeekFrom::Start(self.offset)).map_err(&io)?;
        // Bounded to whole appends: bytes past `len` are a failed append not yet cut.
        let mut reader = BufReader::new(file.take(self.len - self.offset));
        let (mut pos, mut out, mut line) = (self.offset, Vec::new(), Vec::new());
        while out.len() < max && pos < self.len {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(&io)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            out.push(match unframe(&line) {
                Ok(record) => Ok(Spooled { record, end: pos }),
                Err(e) => {
                    let shown = String::from_utf8_lossy(&line[..line.len().min(256)]).into_owned();
                    Err((format!("{e}: {shown}"), pos))
                }
            });
        }
        Ok(out)
    }

    /// Marks everything before `end` (a position returned by [`Spool::peek`] since the last
    /// commit) as safely stored, and reclaims the consumed head when it has grown large.
    pub fn commit(&mut self, end: u64, records: u64) -> Result<(), SpoolError> {
        let end = end.clamp(self.offset, self.len);
        self.pending = self.pending.saturating_sub(records);
        self.offset = end;
        if self.offset == self.len {
            self.pending = 0;
        }
        let consumed = self.offset;
        let tail = self.len - self.offset;
        if consumed >= COMPACT_FLOOR && consumed >= tail {
            match self.compact() {
                Ok(()) => return Ok(()),
                // Still correct without it: the old file and offset stay in use.
                Err(e) => tracing::warn!(error = %e, "cannot compact the spool; will retry"),
            }
        }
        self.write_offset()
    }

    /// Copies the unconsumed tail into the next generation and switches to it.
    fn compact(&mut self) -> Result<(), SpoolError> {
        let next = self.generation + 1;
        let next_path = self.dir.join(data_name(next));
        let io = |source| SpoolError::Io {
            path: next_path.clone(),
            source,
        };
        {
            let mut src = File::open(self.data_path()).map_err(&io)?;
            src.seek(SeekFrom::Start(self.offset)).map_err(&io)?;
            let mut dst = File::create(&next_path).map_err(&io)?;
            let copied = std::io::copy(&mut (&mut src).take(self.len - self.offset), &mut dst)
                .map_err(&io)?;
            if copied != self.len - self.offset {
                let _ = std::fs::remove_file(&next_path);
                return Err(io(std::io::Error::other("spool shrank while compacting")));
            }
            dst.sync_all().map_err(&io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&next_path)
            .map_err(&io)?;
        let (old_generation, old_offset, old_len) = (self.generation, self.offset, self.len);
        self.generation = next;
        self.len -= self.offset;
        self.offset = 0;
        if let Err(e) = self.write_offset() {
            // The switch did not happen on disk: keep using the old file.
            self.generation = old_generation;
            self.offset = old_offset;
            self.len = old_len;
            let _ = std::fs::remove_file(&next_path);
            return Err(e);
        }
        self.file = file;
        let old = self.dir.join(data_name(old_generation));
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(error = %e, file = %old.display(), "cannot remove a compacted spool file; removed at the next start");
        }
        Ok(())
    }

    /// Persists `generation offset` atomically (temporary file, fsync, rename, folder fsync).
    fn write_offset(&self) -> Result<(), SpoolError> {
        let tmp = self.dir.join(format!("{OFFSET}.tmp"));
        let path = self.dir.join(OFFSET);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(format!("{} {}", self.generation, self.offset).as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)?;
            fsync_dir(&self.dir)
        };
        write().map_err(|source| SpoolError::Io { path, source })
    }
}

/// `"<generation> <offset>"`, or a bare offset (the older format, generation 0); anything
/// unreadable restarts at the beginning of generation 0 (a replay, never a loss).
fn parse_offset(s: &str) -> (u64, u64) {
    let mut parts = s.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(generation)), Some(Ok(offset))) => (generation, offset),
        (Some(Ok(offset)), None) => (0, offset),
        _ => (0, 0),
    }
}

/// Removes data files of generations other than the current one: older ones are compacted away,
/// a newer one is an unfinished compaction whose switch never reached the offset file.
fn remove_other_generations(dir: &Path, keep: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let generation = name
            .strip_prefix("spool-")
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if matches!(generation, Some(g) if g != keep) {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(error = %e, file = name, "cannot remove a stale spool file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> PredictionRecord {
        crate::store::sample_record(id, "2026-11-25T10:00:00.000Z")
    }

    fn ids(items: &[Peeked]) -> Vec<String> {
        items
            .iter()
            .map(|r| r.as_ref().unwrap().record.request_id.clone())
            .collect()
    }

    fn all_ids(s: &Spool) -> Vec<String> {
        ids(&s.peek(usize::MAX).unwrap())
    }

    fn data(dir: &Path, generation: u64) -> PathBuf {
        dir.join(data_name(generation))
    }

    fn one_frame_len() -> u64 {
        let mut buf = Vec::new();
        frame(&rec("a"), &mut buf).unwrap();
        buf.len() as u64
    }

    #[test]
    fn records_come_back_in_order_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        for id in ["a", "b", "c"] {
            s.append(&rec(id)).unwrap();
        }
        let head = s.peek(2).unwrap();
        assert_eq!(ids(&head), ["a", "b"]);
        s.commit(head[1].as_ref().unwrap().end, 2).unwrap();
        assert_eq!(s.pending(), 1);
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.pending(), 1);
        let rest = s.peek(10).unwrap();
        assert_eq!(ids(&rest), ["c"]);
        s.commit(rest[0].as_ref().unwrap().end, 1).unwrap();
        assert!(s.is_empty());
    }

    #[test]
    fn a_batch_is_one_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append_all(&[rec("a"), rec("b"), rec("c")]).unwrap();
        assert_eq!(s.pending(), 3);
        assert_eq!(all_ids(&s), ["a", "b", "c"]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_later_appends_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&rec("a")).unwrap();
        drop(s);
        let mut f = OpenOptions::new()
            .append(true)
            .open(data(dir.path(), 0))
            .unwrap();
        f.write_all(b"0badc0de {\"request_id\":\"half").unwrap();
        drop(f);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.pending(), 1);
        s.append(&rec("b")).unwrap();
        assert_eq!(all_ids(&s), ["a", "b"]);
    }

    #[test]
    fn a_short_write_is_cut_back_and_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&rec("a")).unwrap();
        s.faults.short_write = Some(17);
        assert!(matches!(s.append(&rec("b")), Err(SpoolError::Io { .. })));
        assert_eq!(s.pending(), 1);
        // The bytes of the failed append are gone from disk, so the next line cannot merge.
        assert_eq!(
            std::fs::metadata(data(dir.path(), 0)).unwrap().len(),
            one_frame_len()
        );
        s.append(&rec("c")).unwrap();
        assert_eq!(all_ids(&s), ["a", "c"]);
        drop(s);
        assert_eq!(
            all_ids(&Spool::open(dir.path(), 1 << 20).unwrap()),
            ["a", "c"]
        );
    }

    #[test]
    fn a_failed_fsync_does_not_acknowledge_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.faults.sync = true;
        assert!(s.append_all(&[rec("a"), rec("b")]).is_err());
        assert!(s.is_empty());
        assert_eq!(std::fs::metadata(data(dir.path(), 0)).unwrap().len(), 0);
        s.append(&rec("c")).unwrap();
        assert_eq!(all_ids(&s), ["c"]);
    }

    #[test]
    fn when_even_the_cut_fails_the_next_append_rescans() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&rec("a")).unwrap();
        s.faults.short_write = Some(30);
        s.faults.truncate = true;
        assert!(s.append(&rec("b")).is_err());
        // The partial line is still on disk; the next append must cut it before writing.
        assert!(std::fs::metadata(data(dir.path(), 0)).unwrap().len() > one_frame_len());
        s.append(&rec("c")).unwrap();
        assert_eq!(all_ids(&s), ["a", "c"]);
    }

    #[test]
    fn a_full_disk_is_an_error_not_an_acknowledgement() {
        // /dev/full answers every write with ENOSPC: the real disk-full error path.
        let full = Path::new("/dev/full");
        if !full.exists() {
            eprintln!("skipping: this system has no /dev/full");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        drop(s);
        std::fs::remove_file(data(dir.path(), 0)).unwrap();
        std::os::unix::fs::symlink(full, data(dir.path(), 0)).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let Err(SpoolError::Io { source, .. }) = s.append(&rec("a")) else {
            panic!("a write to a full disk was acknowledged");
        };
        assert_eq!(source.raw_os_error(), Some(28), "{source}"); // ENOSPC
        assert!(s.is_empty());
        assert!(s.peek(10).unwrap().is_empty());
    }

    #[test]
    fn a_full_spool_refuses_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), one_frame_len() * 2).unwrap();
        s.append(&rec("a")).unwrap();
        s.append(&rec("b")).unwrap();
        assert!(matches!(s.append(&rec("c")), Err(SpoolError::Full { .. })));
        // Consuming frees room again.
        let head = s.peek(1).unwrap();
        s.commit(head[0].as_ref().unwrap().end, 1).unwrap();
        s.append(&rec("c")).unwrap();
        assert_eq!(all_ids(&s), ["b", "c"]);
    }

    #[test]
    fn consumed_bytes_are_reclaimed_while_records_keep_arriving() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 4 << 20;
        let mut s = Spool::open(dir.path(), limit).unwrap();
        let mut next = 0usize;
        let mut seen = Vec::new();
        // Never let the spool drain: the consumer always leaves the newest record behind.
        for _ in 0..4000 {
            s.append_all(&[rec(&format!("r{next}")), rec(&format!("r{}", next + 1))])
                .unwrap();
            next += 2;
            let head = s.peek(2).unwrap();
            let last = head.last().unwrap().as_ref().unwrap().end;
            seen.extend(ids(&head));
            s.commit(last, head.len() as u64).unwrap();
            assert!(s.file_bytes() <= 2 * limit + COMPACT_FLOOR);
        }
        assert!(s.generation > 0, "never compacted");
        let on_disk: u64 = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert!(
            on_disk < 2 * COMPACT_FLOOR + 4096,
            "{on_disk} bytes on disk"
        );
        let expected: Vec<String> = (0..seen.len()).map(|i| format!("r{i}")).collect();
        assert_eq!(seen, expected);
        drop(s);
        let s = Spool::open(dir.path(), limit).unwrap();
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn an_unfinished_compaction_is_undone_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append_all(&[rec("a"), rec("b")]).unwrap();
        drop(s);
        // A crash after the next generation's file was written, before the switch.
        std::fs::write(data(dir.path(), 1), b"garbage").unwrap();
        let s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(all_ids(&s), ["a", "b"]);
        assert!(!data(dir.path(), 1).exists());
    }

    #[test]
    fn a_spool_of_the_older_format_is_migrated_and_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = String::new();
        for id in ["a", "b", "c"] {
            old.push_str(&serde_json::to_string(&rec(id)).unwrap());
            old.push('\n');
        }
        let first = old.find('\n').unwrap() + 1;
        std::fs::write(dir.path().join(LEGACY_DATA), &old).unwrap();
        std::fs::write(dir.path().join(OFFSET), first.to_string()).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(all_ids(&s), ["b", "c"]);
        s.append(&rec("d")).unwrap();
        assert_eq!(all_ids(&s), ["b", "c", "d"]);
        assert!(!dir.path().join(LEGACY_DATA).exists());
    }

    #[test]
    fn a_stale_offset_beyond_the_data_is_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OFFSET), "0 999").unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&rec("a")).unwrap();
        assert_eq!(all_ids(&s), ["a"]);
    }

    #[test]
    fn a_damaged_line_is_reported_with_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&rec("a")).unwrap();
        drop(s);
        // Flip one byte inside the JSON: the checksum no longer matches.
        let path = data(dir.path(), 0);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(3).position(|w| w == b"\"a\"").unwrap();
        bytes[at + 1] = b'b';
        std::fs::write(&path, &bytes).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&rec("c")).unwrap();
        let head = s.peek(10).unwrap();
        let Err((why, end)) = &head[0] else {
            panic!("a damaged line was accepted");
        };
        assert!(why.contains("checksum"), "{why}");
        assert_eq!(*end, one_frame_len());
        assert_eq!(head[1].as_ref().unwrap().record.request_id, "c");
    }
}
