//! The used `jti`s of an embedded (SQLite) database, as the serving process keeps them: a set in
//! memory, made durable in a log of its own beside the database file, `<file>.jti-<n>`.
//!
//! Why not the `used_jti` table: on a 2-core virtual machine a commit of SQLite's WAL with
//! `synchronous=FULL` costs about 110 µs of CPU (three B-trees' pages, two writes per WAL frame,
//! and an `fdatasync` that writes them back and flushes the disk's cache), a third of a token. A
//! record here is 32 bytes in a block of a preallocated file opened with `O_DIRECT | O_DSYNC`:
//! a batch is one 4 KiB write that returns once the block is on stable storage (a write with FUA,
//! or a write and a flush), about half the CPU of the commit.
//!
//! Only the process that serves the file (it holds the file's lock, `Database::connect_serving`)
//! writes the log; it stops writing before it lets the lock go. It loads at start every record
//! of the log and every row of `used_jti` (written by an earlier version, or by a store of the
//! file that does not serve it), so a `jti` used before a restart, a `kill -9` or an upgrade is
//! still refused.
//!
//! The format: segments of [`SEGMENT_BYTES`], zero-filled when made (so that a write never
//! allocates, and an `O_DSYNC` write never has metadata to commit), numbered from 1; a segment is
//! a run of 4 KiB blocks, a block a run of 32-byte records, each `JTI1`, the first 16 bytes of
//! the SHA-256 of the id, `exp` (i64, little-endian) and the first 4 bytes of the SHA-256 of the
//! 28 bytes before. The block being filled is written again, whole, with each batch. A torn write
//! (a power cut mid-write) leaves each 512-byte sector old or new; the records already there are
//! the same bytes in both, so no acknowledged record is lost, and a torn new record fails its
//! check and is skipped (it was never acknowledged). Every failure mode remembers more ids, never
//! fewer: a garbage record that passes its check is a random id refused. A restart starts a new
//! segment (so that a log that cannot be written stops the start, not the first token); a segment
//! left without a record (a process that used no `jti`, such as `master-key rotate`) is deleted at
//! the next start, and a segment whose every `exp` has passed once that has passed.
//!
//! Making a segment (1 MiB of zeros, a sync of the file and of its directory) took 1.7–4.1 ms on
//! an idle virtual machine's disk and 4–21 ms under load: on the commit thread, every request
//! waiting for that batch would wait that long once per segment. So the next segment is made
//! ahead, on a thread of its own ([`JtiLog::spare`]), once the current one is half full (by
//! whoever commits the batch that makes it so: the commit thread, or a request on its worker,
//! which then also starts that thread), and the commit that fills the current one only takes it.
//! A spare that could not be made (a full disk, no file descriptor, minutes earlier) is not
//! held against the batch: a segment is made then, as without a spare, and only if that fails
//! too is the batch refused. A spare is tried once per segment (a thread that cannot start is
//! not retried with every batch). A spare never used holds no record: the log waits for it to be
//! made when it is dropped (so that nothing of this process writes beside the file once the log
//! is gone), and the next opening deletes it.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// A record's bytes.
const RECORD: usize = 32;

/// A block: what one write carries, aligned as `O_DIRECT` needs.
const BLOCK: usize = 4096;

/// Records per block.
const PER_BLOCK: usize = BLOCK / RECORD;

/// A segment's bytes (32 768 records).
pub(crate) const SEGMENT_BYTES: u64 = 1024 * 1024;

/// How often (in the callers' seconds) expired ids are forgotten and expired segments deleted.
const PRUNE_EVERY: i64 = 60;

const MAGIC: [u8; 4] = *b"JTI1";

/// One block, aligned for `O_DIRECT`.
#[repr(C, align(4096))]
struct Block([u8; BLOCK]);

/// An id as the log keeps it: the first 16 bytes of its SHA-256.
pub(crate) type Key = [u8; 16];

/// The first `N` bytes of the SHA-256 of `bytes`.
fn sha256_prefix<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut prefix = [0u8; N];
    for (slot, byte) in prefix.iter_mut().zip(digest.as_ref()) {
        *slot = *byte;
    }
    prefix
}

/// The key of `id`.
pub(crate) fn key(id: &str) -> Key {
    sha256_prefix(id.as_bytes())
}

/// What marks a `used_jti` row that holds a key rather than an id (a backup's copy of the log:
/// ids begin with the accepting party's name, never with this).
const ROW_MARK: &str = "jti-log:";

/// The `used_jti` row id that stands for `key` in a backup.
pub(crate) fn row_id(key: &Key) -> String {
    let mut id = String::from(ROW_MARK);
    for byte in key {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// The key of a `used_jti` row: the key it holds, if it holds one ([`row_id`]), else its id's.
fn row_key(id: &str) -> Key {
    let held = id
        .strip_prefix(ROW_MARK)
        .filter(|hex| hex.len() == 32)
        .and_then(|hex| {
            let mut key = [0u8; 16];
            for (n, slot) in key.iter_mut().enumerate() {
                *slot = u8::from_str_radix(hex.get(2 * n..2 * n + 2)?, 16).ok()?;
            }
            Some(key)
        });
    held.unwrap_or_else(|| key(id))
}

/// The log's segments beside `file`, as `(number, path)`, oldest first.
fn segments_beside(file: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let (directory, name) = place(file);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&directory)? {
        let entry = entry?;
        if let Some(number) = entry
            .file_name()
            .to_str()
            .and_then(|entry_name| entry_name.strip_prefix(&name))
            .and_then(|number| number.parse::<u64>().ok())
        {
            found.push((number, entry.path()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The directory of `file` and the name prefix of its log's segments.
fn place(file: &Path) -> (PathBuf, String) {
    let directory = file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = file
        .file_name()
        .map(|name| format!("{}.jti-", name.to_string_lossy()))
        .unwrap_or_else(|| "certbound.db.jti-".into());
    (directory, name)
}

/// The records of the segment at `path` whose check holds.
fn read_segment(path: &Path) -> std::io::Result<Vec<(Key, i64)>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes.chunks_exact(RECORD).filter_map(decode).collect())
}

/// Every record of the log beside the SQLite database `file` (none if it has no log), read
/// beside the process that writes it: what a backup adds to its copy of `used_jti`.
pub(crate) fn records_beside(file: &Path) -> std::io::Result<Vec<(Key, i64)>> {
    let mut records = Vec::new();
    for (_, path) in segments_beside(file)? {
        match read_segment(&path) {
            Ok(found) => records.extend(found),
            // Deleted since it was listed: every id in it had expired.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(records)
}

fn check(bytes: &[u8]) -> [u8; 4] {
    sha256_prefix(bytes)
}

fn encode(key: &Key, expires_at: i64) -> [u8; RECORD] {
    let exp = expires_at.to_le_bytes();
    let mut body = [0u8; RECORD - 4];
    for (slot, byte) in body
        .iter_mut()
        .zip(MAGIC.iter().chain(key.iter()).chain(exp.iter()))
    {
        *slot = *byte;
    }
    let sum = check(&body);
    let mut record = [0u8; RECORD];
    for (slot, byte) in record.iter_mut().zip(body.iter().chain(sum.iter())) {
        *slot = *byte;
    }
    record
}

/// The record in `bytes`, if it is one whose check holds.
fn decode(bytes: &[u8]) -> Option<(Key, i64)> {
    if bytes.len() != RECORD
        || bytes.get(..4)? != MAGIC
        || bytes.get(28..)? != check(bytes.get(..28)?)
    {
        return None;
    }
    let key: Key = bytes.get(4..20)?.try_into().ok()?;
    let expires_at = i64::from_le_bytes(bytes.get(20..28)?.try_into().ok()?);
    Some((key, expires_at))
}

/// Makes segment `number` at `path`: zero-filled and synced, its name synced in `directory`, then
/// opened for direct, synchronous writes (only synchronous where the file system refuses
/// `O_DIRECT`, as tmpfs does). A segment half made is deleted.
fn make_segment(
    path: &Path,
    directory: &Path,
    bytes: u64,
    number: u64,
) -> std::io::Result<Segment> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let made = (|| {
        let zeros = vec![0u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let length = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
            file.write_all(zeros.get(..length).unwrap_or(&zeros))?;
            left -= length as u64;
        }
        file.sync_all()?;
        std::fs::File::open(directory)?.sync_all()?;
        let open = |flags: i32| {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(flags)
                .open(path)
        };
        open(libc::O_DIRECT | libc::O_DSYNC).or_else(|_| open(libc::O_DSYNC))
    })();
    let file = match made {
        Ok(file) => file,
        Err(error) => {
            // Half made (a full disk, no file descriptor left): it holds no record.
            let _ = std::fs::remove_file(path);
            return Err(error);
        }
    };
    Ok(Segment {
        number,
        file,
        block: Box::new(Block([0u8; BLOCK])),
        block_at: 0,
        filled: 0,
        dirty: false,
        latest: i64::MIN,
    })
}

/// The segment being written.
struct Segment {
    number: u64,
    file: std::fs::File,
    /// The block being filled and where it sits in the file.
    block: Box<Block>,
    block_at: u64,
    /// Records in `block`.
    filled: usize,
    /// Whether `block` holds records not yet written.
    dirty: bool,
    /// The latest `exp` in this segment.
    latest: i64,
}

/// The log and the set it makes durable. Owned by the commit thread of the serving store.
pub(crate) struct JtiLog {
    /// `<file>.jti-`: a segment's path is this and its number.
    prefix: PathBuf,
    directory: PathBuf,
    used: HashMap<Key, i64>,
    /// Earlier segments (their numbers and latest `exp`), deleted once that has passed.
    earlier: Vec<(u64, i64)>,
    current: Option<Segment>,
    /// The next segment, being made ahead once the current one is half full (see the module's
    /// documentation); taken when the current one is full.
    spare: Option<std::thread::JoinHandle<std::io::Result<Segment>>>,
    /// The number of the segment a spare was last tried for (0: none yet).
    spare_tried_for: u64,
    /// The number of the next segment made: only ever grows (a segment whose making failed
    /// half way is deleted, and its number not used again).
    next_number: u64,
    /// A segment's bytes ([`SEGMENT_BYTES`]; smaller in tests).
    segment_bytes: u64,
    next_prune: i64,
}

impl std::fmt::Debug for JtiLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JtiLog")
            .field("prefix", &self.prefix)
            .field("used", &self.used.len())
            .finish_non_exhaustive()
    }
}

impl Drop for JtiLog {
    /// Waits for a spare being made: nothing of this process writes beside the file once the log
    /// is gone (the store then lets the file's lock go). The spare holds no record; the next
    /// opening deletes it.
    fn drop(&mut self) {
        if let Some(making) = self.spare.take() {
            let _ = making.join();
        }
    }
}

impl JtiLog {
    /// Opens the log beside the SQLite database `file`, loading every record of its segments and
    /// `rows` (the ids of `used_jti`, with their `exp`), and starts a new segment. A segment
    /// without a record remembers nothing and is deleted (its number is not used again).
    pub(crate) fn open(
        file: &Path,
        rows: impl IntoIterator<Item = (String, i64)>,
    ) -> std::io::Result<Self> {
        let (directory, name) = place(file);
        let mut log = Self {
            prefix: directory.join(&name),
            directory: directory.clone(),
            used: HashMap::new(),
            earlier: Vec::new(),
            current: None,
            spare: None,
            spare_tried_for: 0,
            next_number: 1,
            segment_bytes: SEGMENT_BYTES,
            next_prune: i64::MIN,
        };
        for (id, expires_at) in rows {
            log.remember(row_key(&id), expires_at);
        }
        let segments = segments_beside(file)?;
        for (number, path) in &segments {
            let records = read_segment(path)?;
            if records.is_empty() {
                if let Err(error) = std::fs::remove_file(path) {
                    tracing::warn!(%error, segment = number, "an empty segment of the jti log could not be deleted");
                }
                continue;
            }
            let mut latest = i64::MIN;
            for (key, expires_at) in records {
                log.remember(key, expires_at);
                latest = latest.max(expires_at);
            }
            log.earlier.push((*number, latest));
        }
        log.next_number = segments.last().map_or(1, |(last, _)| last + 1);
        log.current = Some(log.start_segment()?);
        Ok(log)
    }

    fn path(&self, number: u64) -> PathBuf {
        // Not through `display()`, which would change a name that is not UTF-8.
        let mut path = self.prefix.clone().into_os_string();
        path.push(number.to_string());
        PathBuf::from(path)
    }

    fn remember(&mut self, key: Key, expires_at: i64) {
        let known = self.used.entry(key).or_insert(expires_at);
        *known = (*known).max(expires_at);
    }

    /// Makes the next segment here and now.
    fn start_segment(&mut self) -> std::io::Result<Segment> {
        let number = self.next_number;
        self.next_number += 1;
        make_segment(
            &self.path(number),
            &self.directory,
            self.segment_bytes,
            number,
        )
    }

    /// Starts making the next segment on a thread of its own, once per current segment. Should
    /// no thread start, the segment is made when it is needed, as without a spare.
    fn make_spare(&mut self) {
        let Some(current) = self.current.as_ref().map(|segment| segment.number) else {
            return;
        };
        if self.spare.is_some() || self.spare_tried_for == current {
            return;
        }
        self.spare_tried_for = current;
        let number = self.next_number;
        let (path, directory, bytes) = (
            self.path(number),
            self.directory.clone(),
            self.segment_bytes,
        );
        match std::thread::Builder::new()
            .name("certbound-jti-spare".into())
            .spawn(move || make_segment(&path, &directory, bytes, number))
        {
            Ok(making) => {
                self.next_number += 1;
                self.spare = Some(making);
            }
            Err(error) => {
                tracing::warn!(%error, "the next segment of the jti log will be made when it is needed");
            }
        }
    }

    /// The segment to write next: the spare made ahead (waiting for it if it is still being
    /// made), or else, without one or should it have failed, one made now.
    fn next_segment(&mut self) -> std::io::Result<Segment> {
        let Some(making) = self.spare.take() else {
            return self.start_segment();
        };
        match making.join() {
            Ok(Ok(segment)) => return Ok(segment),
            Ok(Err(error)) => {
                tracing::warn!(%error, "the next segment of the jti log could not be made ahead: making it now");
            }
            Err(_) => {
                tracing::warn!(
                    "the thread making the next segment of the jti log panicked: making it now"
                );
            }
        }
        self.start_segment()
    }

    /// Uses each of `ids` (with its `exp`) at `now`: for each, whether it was its first use (a
    /// copy later in `ids` is not). Returns once the new ids are on stable storage; on an error
    /// none of them is remembered.
    pub(crate) fn use_batch(
        &mut self,
        ids: &[(&str, i64)],
        now: i64,
    ) -> std::io::Result<Vec<bool>> {
        if now >= self.next_prune {
            self.prune(now);
        }
        let mut firsts = Vec::with_capacity(ids.len());
        let mut added: Vec<Key> = Vec::new();
        let mut outcome = Ok(());
        for (id, expires_at) in ids {
            let key = key(id);
            if self.used.contains_key(&key) {
                firsts.push(false);
                continue;
            }
            self.used.insert(key, *expires_at);
            added.push(key);
            firsts.push(true);
            if let Err(error) = self.append(&key, *expires_at) {
                outcome = Err(error);
                break;
            }
        }
        if outcome.is_ok() {
            outcome = self.write_block();
        }
        if outcome.is_ok() && self.half_full() {
            self.make_spare();
        }
        if let Err(error) = outcome {
            for key in &added {
                self.used.remove(key);
            }
            // The block may hold records that were never written: start a segment afresh (a
            // record written but not acknowledged only remembers an id more).
            self.retire_current();
            return Err(error);
        }
        Ok(firsts)
    }

    /// Whether one more id, used at `now`, costs one write of a block at most: no segment to
    /// make, no expired ids to forget.
    pub(crate) fn one_plain_write(&self, now: i64) -> bool {
        now < self.next_prune
            && self.current.as_ref().is_some_and(|segment| {
                segment.filled < PER_BLOCK || segment.block_at + (BLOCK as u64) < self.segment_bytes
            })
    }

    /// Adds a record to the block, writing the block out first if it is full (and moving to a
    /// new segment if this one is).
    fn append(&mut self, key: &Key, expires_at: i64) -> std::io::Result<()> {
        if self
            .current
            .as_ref()
            .is_none_or(|segment| segment.filled == PER_BLOCK)
        {
            self.next_block()?;
        }
        let segment = self
            .current
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no segment of the jti log is open"))?;
        let at = segment.filled * RECORD;
        if let Some(slot) = segment.block.0.get_mut(at..at + RECORD) {
            slot.copy_from_slice(&encode(key, expires_at));
        }
        segment.filled += 1;
        segment.dirty = true;
        segment.latest = segment.latest.max(expires_at);
        Ok(())
    }

    /// Writes the full block and moves to the next (in a new segment when this one is full).
    fn next_block(&mut self) -> std::io::Result<()> {
        let Some(segment) = self.current.as_mut() else {
            self.current = Some(self.next_segment()?);
            return Ok(());
        };
        if segment.dirty {
            self.write_block()?;
        }
        let Some(segment) = self.current.as_mut() else {
            return Ok(());
        };
        if segment.filled == 0 {
            return Ok(());
        }
        if segment.block_at + (BLOCK as u64) < self.segment_bytes {
            segment.block_at += BLOCK as u64;
            segment.block.0 = [0u8; BLOCK];
            segment.filled = 0;
            return Ok(());
        }
        self.retire_current();
        self.current = Some(self.next_segment()?);
        Ok(())
    }

    /// Whether the current segment is half full: time to make the next one ahead.
    fn half_full(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|segment| 2 * segment.block_at >= self.segment_bytes)
    }

    /// Writes the block being filled, whole, where it sits.
    fn write_block(&mut self) -> std::io::Result<()> {
        let Some(segment) = self.current.as_mut() else {
            return Ok(());
        };
        if !segment.dirty {
            return Ok(());
        }
        segment
            .file
            .write_all_at(&segment.block.0, segment.block_at)?;
        segment.dirty = false;
        Ok(())
    }

    /// The current segment joins the earlier ones; the next write starts a new one.
    fn retire_current(&mut self) {
        if let Some(segment) = self.current.take() {
            self.earlier.push((segment.number, segment.latest));
        }
    }

    /// Forgets ids whose `exp` has passed and deletes segments holding only such ids.
    fn prune(&mut self, now: i64) {
        self.next_prune = now.saturating_add(PRUNE_EVERY);
        self.used.retain(|_, expires_at| *expires_at >= now);
        let (expired, kept): (Vec<_>, Vec<_>) =
            self.earlier.iter().partition(|(_, latest)| *latest < now);
        for (number, _) in expired {
            if let Err(error) = std::fs::remove_file(self.path(number)) {
                tracing::warn!(%error, segment = number, "an expired segment of the jti log could not be deleted");
            }
        }
        self.earlier = kept;
    }

    /// Ids remembered (for tests and metrics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn segments(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".jti-"))
            .collect();
        names.sort();
        names
    }

    /// Once per id, across a reopening (a restart or a `kill -9`: nothing is kept but the
    /// files), with `used_jti`'s rows honoured too, and copies within one batch.
    #[test]
    fn an_id_is_first_once_across_reopenings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certbound.db");
        let mut log = JtiLog::open(&file, [("from-the-table".to_owned(), 2_000)]).unwrap();
        assert_eq!(
            log.use_batch(
                &[
                    ("a", 2_000),
                    ("b", 2_000),
                    ("a", 2_000),
                    ("from-the-table", 2_000)
                ],
                1_000
            )
            .unwrap(),
            [true, true, false, false]
        );
        assert_eq!(
            log.use_batch(&[("b", 2_000), ("c", 2_000)], 1_000).unwrap(),
            [false, true]
        );
        drop(log);
        let mut log = JtiLog::open(&file, []).unwrap();
        assert_eq!(
            log.use_batch(
                &[("a", 2_000), ("b", 2_000), ("c", 2_000), ("d", 2_000)],
                1_000
            )
            .unwrap(),
            [false, false, false, true]
        );
        assert_eq!(
            segments(dir.path()),
            ["certbound.db.jti-1", "certbound.db.jti-2"]
        );
        for name in segments(dir.path()) {
            let metadata = std::fs::metadata(dir.path().join(name)).unwrap();
            assert_eq!(metadata.len(), SEGMENT_BYTES);
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        }
    }

    /// Opening the log makes a segment (a log that cannot be written stops the start); one left
    /// without a record (a process that used no `jti`) is deleted at the next opening, and its
    /// number is not used again; a segment with a record stays.
    #[test]
    fn a_segment_without_records_is_deleted_at_the_next_opening() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certbound.db");
        drop(JtiLog::open(&file, []).unwrap());
        assert_eq!(segments(dir.path()), ["certbound.db.jti-1"]);
        drop(JtiLog::open(&file, []).unwrap());
        assert_eq!(segments(dir.path()), ["certbound.db.jti-2"]);
        let mut log = JtiLog::open(&file, []).unwrap();
        assert_eq!(log.use_batch(&[("a", 2_000)], 1_000).unwrap(), [true]);
        drop(log);
        let mut log = JtiLog::open(&file, []).unwrap();
        assert_eq!(
            segments(dir.path()),
            ["certbound.db.jti-3", "certbound.db.jti-4"]
        );
        assert_eq!(log.use_batch(&[("a", 2_000)], 1_000).unwrap(), [false]);
    }

    /// Where no segment can be made, the log does not open (so `up` stops at start instead of
    /// refusing every token later). `/proc/self` can be listed, but no file can be made in it,
    /// even by root.
    #[test]
    fn a_log_that_cannot_make_its_segment_does_not_open() {
        let file = Path::new("/proc/self/certbound.db");
        assert!(segments_beside(file).unwrap().is_empty(), "listed");
        assert!(JtiLog::open(file, []).is_err(), "no segment made");
    }

    /// A backup's rows (keys, as `row_id` writes them) stand for the ids they were made from;
    /// `records_beside` reads every record of the log without writing it.
    #[test]
    fn a_backup_row_stands_for_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certbound.db");
        let mut log = JtiLog::open(&file, []).unwrap();
        log.use_batch(&[("authz|c|one", 2_000), ("authz|c|two", 3_000)], 1_000)
            .unwrap();
        let records = records_beside(&file).unwrap();
        assert_eq!(
            records,
            [(key("authz|c|one"), 2_000), (key("authz|c|two"), 3_000)]
        );
        drop(log);
        let copy = tempfile::tempdir().unwrap();
        let rows = records
            .iter()
            .map(|(key, expires_at)| (row_id(key), *expires_at));
        let mut restored = JtiLog::open(&copy.path().join("certbound.db"), rows).unwrap();
        assert_eq!(
            restored
                .use_batch(
                    &[
                        ("authz|c|one", 2_000),
                        ("authz|c|two", 3_000),
                        ("authz|c|three", 3_000)
                    ],
                    1_000
                )
                .unwrap(),
            [false, false, true]
        );
        assert!(row_id(&key("x")).starts_with("jti-log:"));
        assert_eq!(row_key("jti-log:zz"), key("jti-log:zz"), "not a key: an id");
    }

    /// A log of two-block segments whose segment 1 is full, with a directory in the way of each
    /// segment numbered in `blocked` (segment 2 is being made ahead as this returns), and the ids
    /// that filled it.
    fn segment_one_full(blocked: &[u64]) -> (tempfile::TempDir, JtiLog, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = JtiLog::open(&dir.path().join("certbound.db"), []).unwrap();
        log.segment_bytes = 2 * BLOCK as u64;
        for number in blocked {
            std::fs::create_dir(dir.path().join(format!("certbound.db.jti-{number}"))).unwrap();
        }
        let ids: Vec<String> = (0..2 * PER_BLOCK).map(|n| format!("id-{n}")).collect();
        let batch: Vec<(&str, i64)> = ids.iter().map(|id| (id.as_str(), 5_000)).collect();
        assert!(
            log.use_batch(&batch, 1_000)
                .unwrap()
                .iter()
                .all(|first| *first)
        );
        assert!(log.spare.is_some(), "segment 2 is being made");
        (dir, log, ids)
    }

    /// A segment that cannot be made refuses its batch and forgets its ids; the next batch makes
    /// one under a new number, and every id acknowledged before or after is still refused after
    /// a reopening.
    #[test]
    fn a_segment_that_cannot_be_made_refuses_its_batch_and_the_log_goes_on() {
        // Something in the way of segment 2, made ahead while segment 1 filled, and of segment
        // 3, made when segment 2 has failed.
        let (dir, mut log, ids) = segment_one_full(&[2, 3]);
        let file = dir.path().join("certbound.db");
        let batch: Vec<(&str, i64)> = ids.iter().map(|id| (id.as_str(), 5_000)).collect();
        assert!(log.use_batch(&[("x", 5_000)], 1_000).is_err());
        assert_eq!(
            log.use_batch(&[("x", 5_000), ("id-0", 5_000)], 1_000)
                .unwrap(),
            [true, false],
            "refused, so forgotten; then written to segment 4"
        );
        assert!(dir.path().join("certbound.db.jti-4").is_file());
        drop(log);
        std::fs::remove_dir(dir.path().join("certbound.db.jti-2")).unwrap();
        std::fs::remove_dir(dir.path().join("certbound.db.jti-3")).unwrap();
        let mut log = JtiLog::open(&file, []).unwrap();
        assert!(
            log.use_batch(&batch, 1_000)
                .unwrap()
                .iter()
                .all(|first| !first)
        );
        assert_eq!(log.use_batch(&[("x", 5_000)], 1_000).unwrap(), [false]);
    }

    /// The next segment is made ahead once the current one is half full, and is the one the
    /// records go to next; a spare never used is made to its end before the log is gone (nothing
    /// writes beside the file afterwards) and deleted at the next opening, every id kept.
    #[test]
    fn the_next_segment_is_made_ahead_and_used() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certbound.db");
        let segment = |number: u64| dir.path().join(format!("certbound.db.jti-{number}"));
        let mut log = JtiLog::open(&file, []).unwrap();
        // Four blocks a segment.
        log.segment_bytes = 4 * BLOCK as u64;
        let ids: Vec<String> = (0..6 * PER_BLOCK + 1).map(|n| format!("id-{n}")).collect();
        let firsts = |log: &mut JtiLog, from: usize, to: usize| {
            let batch: Vec<(&str, i64)> = ids[from..to]
                .iter()
                .map(|id| (id.as_str(), 5_000))
                .collect();
            log.use_batch(&batch, 1_000).unwrap()
        };
        assert!(firsts(&mut log, 0, PER_BLOCK).iter().all(|first| *first));
        assert!(log.spare.is_none(), "one block of four: not half full");
        assert!(
            firsts(&mut log, PER_BLOCK, 2 * PER_BLOCK + 1)
                .iter()
                .all(|first| *first)
        );
        let making = log
            .spare
            .as_ref()
            .expect("half full: the next is being made");
        while !making.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            segments(dir.path()),
            ["certbound.db.jti-1", "certbound.db.jti-2"]
        );
        assert_eq!(
            std::fs::metadata(segment(2)).unwrap().len(),
            4 * BLOCK as u64
        );
        assert!(read_segment(&segment(2)).unwrap().is_empty());
        assert!(
            firsts(&mut log, 2 * PER_BLOCK + 1, 4 * PER_BLOCK + 10)
                .iter()
                .all(|first| *first)
        );
        assert!(log.spare.is_none(), "taken");
        assert_eq!(read_segment(&segment(2)).unwrap().len(), 10);
        assert!(
            firsts(&mut log, 4 * PER_BLOCK + 10, 6 * PER_BLOCK + 1)
                .iter()
                .all(|first| *first)
        );
        assert!(
            log.spare.is_some(),
            "segment 2 half full: segment 3 is being made"
        );
        drop(log);
        assert_eq!(
            std::fs::metadata(segment(3)).unwrap().len(),
            4 * BLOCK as u64
        );
        assert!(read_segment(&segment(3)).unwrap().is_empty());
        let mut log = JtiLog::open(&file, []).unwrap();
        assert_eq!(
            segments(dir.path()),
            [
                "certbound.db.jti-1",
                "certbound.db.jti-2",
                "certbound.db.jti-4"
            ],
            "the unused spare deleted, its number not used again"
        );
        assert!(
            firsts(&mut log, 0, 6 * PER_BLOCK + 1)
                .iter()
                .all(|first| !first)
        );
    }

    /// A spare that could not be made is not held against the batch that fills the segment: a
    /// segment is made then (the next number), and the batch is written to it.
    #[test]
    fn a_spare_that_failed_gives_way_to_a_segment_made_then() {
        let (dir, mut log, _) = segment_one_full(&[2]);
        assert_eq!(log.use_batch(&[("x", 5_000)], 1_000).unwrap(), [true]);
        assert_eq!(
            read_segment(&dir.path().join("certbound.db.jti-3"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(log.spare_tried_for, 1, "no spare for segment 3 yet");
    }

    /// More ids than a block and a segment hold: every one is found again after a reopening.
    #[test]
    fn ids_span_blocks_and_segments() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certbound.db");
        let mut log = JtiLog::open(&file, []).unwrap();
        let per_segment = (SEGMENT_BYTES as usize) / RECORD;
        let ids: Vec<String> = (0..per_segment + 300).map(|n| format!("id-{n}")).collect();
        for chunk in ids.chunks(500) {
            let batch: Vec<(&str, i64)> = chunk.iter().map(|id| (id.as_str(), 5_000)).collect();
            assert!(
                log.use_batch(&batch, 1_000)
                    .unwrap()
                    .iter()
                    .all(|first| *first)
            );
        }
        assert_eq!(segments(dir.path()).len(), 2);
        drop(log);
        let mut log = JtiLog::open(&file, []).unwrap();
        assert_eq!(log.len(), ids.len());
        let batch: Vec<(&str, i64)> = ids.iter().map(|id| (id.as_str(), 5_000)).collect();
        assert!(
            log.use_batch(&batch, 1_000)
                .unwrap()
                .iter()
                .all(|first| !first)
        );
    }

    /// One more id is one plain write only while no expired ids are due to be forgotten and the
    /// current segment has room for it: the first use after opening forgets, and the id after
    /// a segment's last full block makes a new segment.
    #[test]
    fn one_plain_write_until_a_prune_or_a_new_segment_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = JtiLog::open(&dir.path().join("certbound.db"), []).unwrap();
        assert!(
            !log.one_plain_write(1_000),
            "the first use forgets expired ids"
        );
        log.use_batch(&[("first", 5_000)], 1_000).unwrap();
        assert!(log.one_plain_write(1_000));
        assert!(!log.one_plain_write(1_000 + PRUNE_EVERY), "a prune is due");
        let per_segment = (SEGMENT_BYTES as usize) / RECORD;
        let ids: Vec<String> = (1..per_segment).map(|n| format!("id-{n}")).collect();
        let batch: Vec<(&str, i64)> = ids.iter().map(|id| (id.as_str(), 5_000)).collect();
        log.use_batch(&batch, 1_000).unwrap();
        assert!(!log.one_plain_write(1_000), "the segment is full");
        log.use_batch(&[("next", 5_000)], 1_000).unwrap();
        assert_eq!(segments(dir.path()).len(), 2);
        assert!(log.one_plain_write(1_000));
    }

    /// A torn or foreign record is skipped, and the records around it are kept.
    #[test]
    fn a_torn_record_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certbound.db");
        let mut log = JtiLog::open(&file, []).unwrap();
        log.use_batch(&[("a", 2_000), ("b", 2_000), ("c", 2_000)], 1_000)
            .unwrap();
        drop(log);
        let segment = dir.path().join("certbound.db.jti-1");
        let mut bytes = std::fs::read(&segment).unwrap();
        assert_eq!(
            decode(&bytes[RECORD..2 * RECORD]).map(|(key, _)| key),
            Some(key("b"))
        );
        bytes[RECORD + 10] ^= 0xff;
        std::fs::write(&segment, &bytes).unwrap();
        let mut log = JtiLog::open(&file, []).unwrap();
        assert_eq!(
            log.use_batch(&[("a", 2_000), ("b", 2_000), ("c", 2_000)], 1_000)
                .unwrap(),
            [false, true, false],
            "only the torn record's id is forgotten"
        );
    }

    /// Expired ids are forgotten and a segment of only expired ids deleted, at most once a
    /// minute; the ids still live stay.
    #[test]
    fn expired_ids_and_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("certbound.db");
        let mut log = JtiLog::open(&file, []).unwrap();
        log.use_batch(&[("old", 1_100)], 1_000).unwrap();
        drop(log);
        let mut log = JtiLog::open(&file, []).unwrap();
        log.use_batch(&[("new", 5_000)], 1_000).unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(
            log.use_batch(&[("old", 1_100)], 1_050).unwrap(),
            [false],
            "not yet pruned"
        );
        assert_eq!(log.use_batch(&[("x", 5_000)], 1_200).unwrap(), [true]);
        assert_eq!(log.len(), 2, "old forgotten, new and x kept");
        assert_eq!(
            segments(dir.path()),
            ["certbound.db.jti-2"],
            "segment 1 held only old"
        );
        assert_eq!(log.use_batch(&[("new", 5_000)], 1_200).unwrap(), [false]);
    }
}
