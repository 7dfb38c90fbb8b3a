//! A bounded, on-disk queue of prediction records that could not be written to the database yet.
//!
//! The spool is what turns "the database is down" into "the database is late": records are
//! appended as JSON lines to `spool.jsonl` (flushed to disk before the prediction is answered), and
//! a consumer reads them back in order, writes them to the database, then [`Spool::commit`]s the
//! byte offset it reached into `spool.offset`. Because the offset is written only after the
//! database acknowledged the records, a crash between the two replays them; the database side
//! makes replays harmless by keying records on their request id (see
//! [`super::PredictionStore::insert_batch`]). When everything is consumed the file is truncated, so
//! a healthy server's spool stays empty.
//!
//! The spool is bounded in bytes: a full spool refuses new records ([`SpoolError::Full`]) instead of
//! filling the disk, and the caller counts that as a lost write.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
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

/// One record read back from the spool, with the offset just past it (what to commit once the
/// record is safely in the database).
#[derive(Debug, Clone)]
pub struct Spooled {
    /// The record.
    pub record: PredictionRecord,
    /// Byte offset of the end of this record's line.
    pub end: u64,
}

/// What [`Spool::peek`] yields per line: the record, or the unparsable line's text and the offset
/// just past it.
pub type Peeked = Result<Spooled, (String, u64)>;

/// The on-disk queue. Not thread-safe by itself: its owner serialises access.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    file: File,
    /// Bytes of `spool.jsonl` already consumed.
    offset: u64,
    /// Current length of `spool.jsonl`.
    len: u64,
    /// Records between `offset` and `len`.
    pending: u64,
    limit_bytes: u64,
}

const DATA: &str = "spool.jsonl";
const OFFSET: &str = "spool.offset";

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, recovering from a crash: a torn last line
    /// (a write interrupted by a kill) is cut off, and a stale offset beyond the data is reset.
    pub fn open(dir: &Path, limit_bytes: u64) -> Result<Self, SpoolError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let data = dir.join(DATA);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&data)
            .map_err(io(&data))?;
        let offset_path = dir.join(OFFSET);
        let offset = match std::fs::read_to_string(&offset_path) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&offset_path)(e)),
        };
        let mut spool = Self {
            dir: dir.to_path_buf(),
            file,
            offset,
            len: 0,
            pending: 0,
            limit_bytes,
        };
        spool.recover()?;
        Ok(spool)
    }

    /// Scans the unconsumed part: counts whole lines and cuts a torn tail.
    fn recover(&mut self) -> Result<(), SpoolError> {
        let path = self.dir.join(DATA);
        let io = |source| SpoolError::Io {
            path: path.clone(),
            source,
        };
        let len = self.file.metadata().map_err(io)?.len();
        if self.offset > len {
            self.offset = 0;
        }
        let mut reader = BufReader::new(File::open(&path).map_err(io)?);
        reader.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let (mut pos, mut pending, mut line) = (self.offset, 0u64, Vec::new());
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(io)?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            pos += n as u64;
            pending += 1;
        }
        if pos < len {
            tracing::warn!(
                spool = %path.display(),
                bytes = len - pos,
                "cutting a torn record off the spool (written when the process was killed)"
            );
            self.file.set_len(pos).map_err(io)?;
        }
        self.len = pos;
        self.pending = pending;
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

    /// Appends one record and flushes it to disk before returning, so an acknowledged prediction
    /// survives a crash of this process.
    pub fn append(&mut self, record: &PredictionRecord) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        if (self.len - self.offset) + line.len() as u64 > self.limit_bytes {
            return Err(SpoolError::Full {
                limit_bytes: self.limit_bytes,
            });
        }
        let path = self.dir.join(DATA);
        let io = |source| SpoolError::Io {
            path: path.clone(),
            source,
        };
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.len += line.len() as u64;
        self.pending += 1;
        Ok(())
    }

    /// Reads up to `max` records from the head, oldest first, without consuming them. A line that
    /// does not parse (it can only come from outside interference) is returned as an error string
    /// with its end offset, so the caller can set it aside instead of blocking the queue forever.
    pub fn peek(&self, max: usize) -> Result<Vec<Peeked>, SpoolError> {
        let path = self.dir.join(DATA);
        let io = |source| SpoolError::Io {
            path: path.clone(),
            source,
        };
        let mut reader = BufReader::new(File::open(&path).map_err(io)?);
        reader.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let (mut pos, mut out, mut line) = (self.offset, Vec::new(), Vec::new());
        while out.len() < max && pos < self.len {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(io)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            out.push(match serde_json::from_slice::<PredictionRecord>(&line) {
                Ok(record) => Ok(Spooled { record, end: pos }),
                Err(e) => Err((format!("{e}: {}", String::from_utf8_lossy(&line)), pos)),
            });
        }
        Ok(out)
    }

    /// Marks everything before `end` (an offset returned by [`Spool::peek`]) as safely stored.
    /// When the whole file is consumed it is truncated, so the spool does not grow over time.
    pub fn commit(&mut self, end: u64, records: u64) -> Result<(), SpoolError> {
        let end = end.min(self.len);
        self.pending = self.pending.saturating_sub(records);
        if end == self.len {
            let path = self.dir.join(DATA);
            self.file.set_len(0).map_err(|source| SpoolError::Io {
                path: path.clone(),
                source,
            })?;
            self.len = 0;
            self.pending = 0;
            self.offset = 0;
        } else {
            self.offset = end;
        }
        self.write_offset()
    }

    /// Persists the offset atomically (write a temporary file, then rename over the old one).
    fn write_offset(&self) -> Result<(), SpoolError> {
        let tmp = self.dir.join(format!("{OFFSET}.tmp"));
        let path = self.dir.join(OFFSET);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(self.offset.to_string().as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| SpoolError::Io { path, source })
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
        assert_eq!(std::fs::metadata(dir.path().join(DATA)).unwrap().len(), 0);
    }

    #[test]
    fn a_torn_tail_is_cut_and_later_appends_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&rec("a")).unwrap();
        drop(s);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(DATA))
            .unwrap();
        f.write_all(b"{\"request_id\":\"half").unwrap();
        drop(f);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(s.pending(), 1);
        s.append(&rec("b")).unwrap();
        assert_eq!(ids(&s.peek(10).unwrap()), ["a", "b"]);
    }

    #[test]
    fn a_full_spool_refuses_instead_of_growing() {
        let dir = tempfile::tempdir().unwrap();
        let one = serde_json::to_vec(&rec("a")).unwrap().len() as u64 + 1;
        let mut s = Spool::open(dir.path(), one * 2).unwrap();
        s.append(&rec("a")).unwrap();
        s.append(&rec("b")).unwrap();
        assert!(matches!(s.append(&rec("c")), Err(SpoolError::Full { .. })));
        // Consuming frees room again.
        let head = s.peek(1).unwrap();
        s.commit(head[0].as_ref().unwrap().end, 1).unwrap();
        s.append(&rec("c")).unwrap();
        assert_eq!(ids(&s.peek(10).unwrap()), ["b", "c"]);
    }

    #[test]
    fn a_stale_offset_beyond_the_data_is_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OFFSET), "999").unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&rec("a")).unwrap();
        assert_eq!(ids(&s.peek(10).unwrap()), ["a"]);
    }

    #[test]
    fn an_unparsable_line_is_reported_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        drop(s);
        std::fs::write(dir.path().join(DATA), b"not json\n").unwrap();
        s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&rec("a")).unwrap();
        let head = s.peek(10).unwrap();
        assert!(matches!(&head[0], Err((_, 9))));
        assert_eq!(head[1].as_ref().unwrap().record.request_id, "a");
    }
}
