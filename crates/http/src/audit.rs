//! The audit trail: security events as JSON lines in `DATA_DIR/audit.jsonl`.
//!
//! What an unauthenticated client can make it hold is bounded: every string field is cut to
//! [`MAX_FIELD`] bytes (a 48 KiB path is recorded as its first 256 bytes and its length), and the
//! file rotates by size and by age ([`Rotation`]), keeping a bounded number of old files
//! (`audit.jsonl.1` the newest). Every line is written whole under the lock that rotation takes
//! too: a write that fails part-way (a full disk) is cut back to the last whole line, and a torn
//! tail left by a crash is cut off when the file is opened.
//!
//! Nothing is lost silently: every record that could not be written is counted
//! ([`AuditLog::lost_records`]) and reported in the server log (at most one line per 10 s, with
//! the count). What happens to the action it records is [`OnFailure`]'s choice: security-relevant
//! actions (issuance, revocation) are refused while the trail cannot be written by default.
//!
//! Two paths to the file, by what a record is for:
//! - A record of an action ([`AuditLog::record`]) is written before the action, on the request's
//!   own path (one `write` to the page cache), because its outcome decides whether the action may
//!   happen: with [`OnFailure::Refuse`] nothing happens that the trail does not show, from the
//!   first record that fails (a queue would let the first actions after a disk filled go
//!   unrecorded).
//! - A record of a refusal (the edge's [`AuditLog::refusals`]) decides nothing, and refusals are
//!   what a flood of bad requests makes: it goes off the request path, into a bounded queue
//!   ([`QUEUE_BOUND`] records) that the trail's own thread writes out, several records per `write`.
//!   A full queue is never a reason to drop one: the request then writes its record itself
//!   (before records still queued: in a flood the file's order is not quite the order of the
//!   refusals; each record carries its time and trace id).
//!   [`AuditLog::flush`] waits until everything queued before it is in the file (graceful
//!   shutdown calls it, and so does [`AuditLog::recent`]); the thread also writes out what is
//!   queued before it ends, when the trail's last handle is dropped. On a crash (`kill -9`, a
//!   panic that aborts) the refusal records not yet written are lost, uncounted: at most twice
//!   [`QUEUE_BOUND`] (a batch being written and a full queue), usually none, as out of a flood
//!   each record wakes the thread (in a flood, it rests [`REST`] between batches: about that long
//!   of refusals). Should the thread itself end early (a panic in it), what it leaves is counted
//!   as lost and requests write their own records from then on. The records of actions
//!   are in the page cache before the action, so a crash of the process loses none of them; a
//!   crash of the machine may lose what the kernel had not written back (the trail is not synced).

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use axum::response::Response;

use crate::{ClientAddress, InternalError, Metrics, PeerCertificate, Refusal, TRACE_ID};

/// The longest string field of a record, in bytes.
pub(crate) const MAX_FIELD: usize = 256;

/// What a security-relevant action does while its audit record cannot be written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFailure {
    /// Carry on, and count and report the lost record.
    Continue,
    /// Refuse the action (503): nothing happens that the trail does not show. The default.
    #[default]
    Refuse,
}

/// A security-relevant record could not be written and the policy is [`OnFailure::Refuse`].
#[derive(Debug, thiserror::Error)]
#[error(
    "the audit trail cannot be written ({0}); the action was refused so that nothing happens unrecorded: free space in the data dir"
)]
pub struct AuditUnavailable(String);

/// When the audit trail starts a new file, and how many old ones it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Start a new file before this one would grow past this many bytes.
    pub max_bytes: u64,
    /// Start a new file once this one is this many seconds old.
    pub max_age_seconds: i64,
    /// Old files kept (`audit.jsonl.1` ... `.N`); older ones are deleted.
    pub keep: u32,
}

impl Default for Rotation {
    /// 64 MiB or a day, seven old files: at most 512 MiB of audit trail.
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_age_seconds: 86_400,
            keep: 7,
        }
    }
}

#[derive(Debug)]
struct Sink {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
    /// When the current file was started (the first record written to it).
    started: Option<i64>,
    rotation: Rotation,
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// What [`Sink::write_lines`] could not write: how many lines, and the last error.
#[derive(Debug, Default)]
struct Unwritten {
    lines: u64,
    error: Option<std::io::Error>,
}

impl Unwritten {
    fn add(&mut self, lines: u64, error: std::io::Error) {
        self.lines += lines;
        self.error = Some(error);
    }
}

impl Sink {
    /// Appends `lines` (each one whole record with its time), in as few writes as rotation
    /// allows: the lines before a rotation in one, the lines after it in the next.
    fn write_lines(&mut self, lines: &[(Vec<u8>, i64)]) -> Unwritten {
        let mut unwritten = Unwritten::default();
        let mut chunk = Vec::new();
        let mut in_chunk = 0;
        let mut chunk_started = None;
        for (line, now) in lines {
            let pending = self.size + chunk.len() as u64;
            let too_big = pending > 0 && pending + line.len() as u64 > self.rotation.max_bytes;
            let too_old = self
                .started
                .or(chunk_started)
                .is_some_and(|started| now - started >= self.rotation.max_age_seconds);
            if too_big || too_old {
                if let Err(error) = self.append(&chunk, chunk_started) {
                    unwritten.add(in_chunk, error);
                }
                chunk.clear();
                in_chunk = 0;
                chunk_started = None;
                if let Err(error) = self.rotate() {
                    unwritten.add(1, error);
                    continue;
                }
            }
            chunk.extend_from_slice(line);
            in_chunk += 1;
            chunk_started.get_or_insert(*now);
        }
        if let Err(error) = self.append(&chunk, chunk_started) {
            unwritten.add(in_chunk, error);
        }
        unwritten
    }

    /// Appends whole lines in one write; `started` is the first one's time.
    fn append(&mut self, lines: &[u8], started: Option<i64>) -> std::io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.file.write_all(lines) {
            // Part of the lines may be on disk: cut back to the last whole line before them.
            let _ = self.file.set_len(self.size);
            return Err(error);
        }
        self.size += lines.len() as u64;
        if let Some(started) = started {
            self.started.get_or_insert(started);
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.rotation.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.rotation.keep));
            for n in (1..self.rotation.keep).rev() {
                if numbered(n).exists() {
                    std::fs::rename(numbered(n), numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        self.started = None;
        Ok(())
    }
}

/// A record: `fields` (bounded, without nulls) with its time, part and event (the keys sorted,
/// as serde_json's map keeps them).
fn line(part: &str, event: &str, now: i64, mut fields: serde_json::Value) -> serde_json::Value {
    bound(&mut fields);
    let mut line = match fields {
        serde_json::Value::Object(mut fields) => {
            fields.retain(|_, value| !value.is_null());
            fields
        }
        _ => serde_json::Map::new(),
    };
    // The fields' own values win, as they always have (none of today's callers names these).
    for (name, value) in [
        ("ts", serde_json::Value::from(now)),
        ("part", serde_json::Value::from(part)),
        ("event", serde_json::Value::from(event)),
    ] {
        line.entry(name).or_insert(value);
    }
    serde_json::Value::Object(line)
}

/// Cuts every string in `value` to [`MAX_FIELD`] bytes (at a character boundary), noting the
/// length it had, and every array to 32 items; in place (the token path writes a record each).
fn bound(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) if text.len() > MAX_FIELD => {
            let mut end = MAX_FIELD;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            *text = format!(
                "{}...({} bytes)",
                text.get(..end).unwrap_or_default(),
                text.len()
            );
        }
        serde_json::Value::Object(map) => map.values_mut().for_each(bound),
        serde_json::Value::Array(items) => {
            items.truncate(32);
            items.iter_mut().for_each(bound);
        }
        _ => {}
    }
}

/// The audit trail: security events as JSON lines (one object per line), appended to a file.
/// Records carry ids, thumbprints, reason codes and trace ids, never a secret: callers pass only
/// those, and refusals carry the description already sent to the client.
#[derive(Clone, Debug, Default)]
pub struct AuditLog {
    sink: Option<Arc<Mutex<Sink>>>,
    /// The thread that writes refusal records off the request path (with `sink`).
    writer: Option<Arc<Writer>>,
    on_failure: OnFailure,
    lost: Arc<Lost>,
    metrics: Metrics,
}

/// The most refusal records waiting for the trail's thread; a request that finds the queue full
/// writes its record itself.
pub(crate) const QUEUE_BOUND: usize = 4096;

/// Records waiting for the trail's thread, and whether it is writing some.
#[derive(Debug, Default)]
struct Queued {
    records: Vec<(serde_json::Value, i64)>,
    /// Records the thread took and is writing.
    writing: usize,
    /// Records ever queued, and ever written out or counted as lost: a flush waits for the
    /// second to reach what the first was when it began, however many come after.
    queued: u64,
    done: u64,
    /// Callers waiting in [`Writer::flush`].
    flushing: usize,
    /// The thread waits for `work`: the next record rings it (no system call otherwise).
    asleep: bool,
    closed: bool,
}

#[derive(Debug, Default)]
struct Queue {
    state: Mutex<Queued>,
    /// Rung when a record is queued or the queue closes.
    work: Condvar,
    /// Rung when the thread has written all that was queued.
    idle: Condvar,
}

/// The trail's thread. Dropping the last handle closes the queue and waits for the thread to
/// write out what it holds.
#[derive(Debug)]
struct Writer {
    queue: Arc<Queue>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    fn start(sink: Arc<Mutex<Sink>>, losses: Losses) -> std::io::Result<Self> {
        let queue = Arc::new(Queue::default());
        let drained = queue.clone();
        let thread = std::thread::Builder::new()
            .name("certbound-audit".into())
            .spawn(move || drain(&drained, &sink, &losses))?;
        Ok(Self {
            queue,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `record`; gives it back if the queue is full or closed.
    fn queue(&self, record: serde_json::Value, now: i64) -> Result<(), (serde_json::Value, i64)> {
        let Ok(mut state) = self.queue.state.lock() else {
            return Err((record, now));
        };
        if state.closed || state.records.len() >= QUEUE_BOUND {
            return Err((record, now));
        }
        state.records.push((record, now));
        state.queued += 1;
        let asleep = std::mem::take(&mut state.asleep);
        drop(state);
        if asleep {
            self.queue.work.notify_one();
        }
        Ok(())
    }

    /// Waits until every record queued before this call is written (or counted as lost).
    fn flush(&self) {
        let Ok(mut state) = self.queue.state.lock() else {
            return;
        };
        let target = state.queued;
        if state.closed || state.done >= target {
            return;
        }
        state.flushing += 1;
        // Cut a rest short: the records are wanted now.
        self.queue.work.notify_one();
        while !state.closed && state.done < target {
            state = match self.queue.idle.wait(state) {
                Ok(state) => state,
                Err(_) => return,
            };
        }
        state.flushing -= 1;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Ok(mut state) = self.queue.state.lock() {
            state.closed = true;
        }
        self.queue.work.notify_one();
        if let Some(thread) = self.thread.lock().ok().and_then(|mut thread| thread.take()) {
            // The thread writes out what was queued, then ends; a panic in it was reported.
            let _ = thread.join();
        }
    }
}

/// The trail's thread: writes what is queued, a batch per `write` (resting [`REST`] after a
/// [`FLOOD`]),
/// until the queue closes and is empty. Should it end otherwise (a panic), the queue is closed so that nothing waits for it
/// and requests write their records themselves.
fn drain(queue: &Queue, sink: &Mutex<Sink>, losses: &Losses) {
    /// Closes the queue however the thread ends; what it leaves unwritten (after a panic: the
    /// batch in hand and what is queued) is counted as lost.
    struct CloseOnExit<'a>(&'a Queue, &'a Losses);
    impl Drop for CloseOnExit<'_> {
        fn drop(&mut self) {
            let left = match self.0.state.lock() {
                Ok(mut state) => {
                    state.closed = true;
                    let left = state.records.len() + std::mem::take(&mut state.writing);
                    state.records.clear();
                    state.done += left as u64;
                    left as u64
                }
                Err(_) => 0,
            };
            self.0.idle.notify_all();
            if left > 0 {
                let error = std::io::Error::other("the audit trail's thread ended early");
                self.1.count(left, &error, "refused", 0);
            }
        }
    }
    let _close = CloseOnExit(queue, losses);
    loop {
        let batch = {
            let Ok(mut state) = queue.state.lock() else {
                return;
            };
            loop {
                if !state.records.is_empty() {
                    state.asleep = false;
                    state.writing = state.records.len();
                    break std::mem::take(&mut state.records);
                }
                if state.closed {
                    return;
                }
                state.asleep = true;
                state = match queue.work.wait(state) {
                    Ok(state) => state,
                    Err(_) => return,
                };
            }
        };
        let flood = batch.len() >= FLOOD;
        let lines: Vec<(Vec<u8>, i64)> = batch
            .into_iter()
            .map(|(record, now)| (line_bytes(&record), now))
            .collect();
        let now = lines.last().map_or(0, |(_, now)| *now);
        let unwritten = match sink.lock() {
            Ok(mut sink) => sink.write_lines(&lines),
            Err(_) => Unwritten {
                lines: lines.len() as u64,
                error: Some(poisoned()),
            },
        };
        if let Some(error) = unwritten.error {
            losses.count(unwritten.lines, &error, "refused", now);
        }
        let Ok(mut state) = queue.state.lock() else {
            return;
        };
        state.done += std::mem::take(&mut state.writing) as u64;
        if state.flushing > 0 {
            queue.idle.notify_all();
        }
        if flood && !state.closed && state.flushing == 0 {
            // Rest a moment, not rung: during a flood of refusals the next batch gathers
            // meanwhile at the cost of a push each, where waking the thread per record costs more
            // CPU than the writes it saves. Out of a flood every record rings the thread, so a
            // refusal is in the file a moment after its answer.
            let Ok((_rested, _)) = queue.work.wait_timeout(state, REST) else {
                return;
            };
        }
    }
}

/// How long the trail's thread rests after a [`FLOOD`] batch before it takes the next.
const REST: std::time::Duration = std::time::Duration::from_millis(10);

/// A batch of this many records or more means a flood of refusals.
const FLOOD: usize = 8;

/// A record as its line in the file.
fn line_bytes(record: &serde_json::Value) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(512);
    // A `Value` always serialises (its keys are strings); `to_string` would go through `fmt`.
    let _ = serde_json::to_writer(&mut bytes, record);
    bytes.push(b'\n');
    bytes
}

fn poisoned() -> std::io::Error {
    std::io::Error::other("the audit trail's lock is poisoned")
}

/// Where lost records are counted and reported.
#[derive(Clone, Debug)]
struct Losses {
    lost: Arc<Lost>,
    metrics: Metrics,
    policy: OnFailure,
}

impl Losses {
    /// Counts `lines` records of `event` lost to `error`, reporting it in the server log at most
    /// once per [`LOST_REPORTED_EVERY`] seconds.
    fn count(&self, lines: u64, error: &std::io::Error, event: &str, now: i64) {
        if lines == 0 {
            return;
        }
        let lost = self.lost.count.fetch_add(lines, Ordering::Relaxed) + lines;
        self.metrics.audit_records_lost(lines);
        let reported = i64::try_from(self.lost.reported.load(Ordering::Relaxed)).unwrap_or(0);
        if (lost == lines || now >= reported + LOST_REPORTED_EVERY)
            && self
                .lost
                .reported
                .compare_exchange(
                    u64::try_from(reported).unwrap_or(0),
                    u64::try_from(now).unwrap_or(0),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::error!(%error, lost, event, policy = ?self.policy, "AUDIT RECORDS LOST: the audit trail cannot be written");
        }
    }
}

/// Records that could not be written, and when that was last reported.
#[derive(Debug, Default)]
struct Lost {
    count: AtomicU64,
    reported: AtomicU64,
}

/// The least time between two log lines about lost records, seconds.
const LOST_REPORTED_EVERY: i64 = 10;

/// How much of each file [`AuditLog::recent`] reads, bytes.
pub(crate) const RECENT_WINDOW: u64 = 1024 * 1024;

/// The last `window` bytes of the file at `path`, starting after the first line break in them
/// (so the first line is whole) unless they are the whole file.
fn read_tail(path: &Path, window: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let start = size.saturating_sub(window);
    file.seek(std::io::SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(window).read_to_end(&mut tail)?;
    if start > 0
        && let Some(at) = tail.iter().position(|byte| *byte == b'\n')
    {
        tail.drain(..=at);
    }
    Ok(tail)
}

/// Cuts a torn last line (a crash in the middle of a write) off the file at `path`; whether one
/// was cut. Anything but a regular file is left alone.
fn repair(path: &Path) -> std::io::Result<bool> {
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(false);
    };
    let size = metadata.len();
    if size == 0 || !metadata.is_file() {
        return Ok(false);
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut last = [0u8; 1];
    file.seek(std::io::SeekFrom::Start(size - 1))?;
    file.read_exact(&mut last)?;
    if last == [b'\n'] {
        return Ok(false);
    }
    // Find the end of the last whole line, reading back in blocks.
    let mut end = size;
    let mut block = vec![0u8; 64 * 1024];
    let keep = loop {
        let start = end.saturating_sub(block.len() as u64);
        let length = usize::try_from(end - start).unwrap_or(0);
        let Some(window) = block.get_mut(..length) else {
            break 0;
        };
        file.seek(std::io::SeekFrom::Start(start))?;
        file.read_exact(window)?;
        if let Some(at) = window.iter().rposition(|byte| *byte == b'\n') {
            break start + at as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    file.set_len(keep)?;
    Ok(true)
}

impl AuditLog {
    /// Appends to `path` (created 0600), rotating as [`Rotation::default`] says, refusing
    /// security-relevant actions while it cannot be written.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_rotating(path, Rotation::default(), OnFailure::Refuse)
    }

    /// Appends to `path` (created 0600), rotating as `rotation` says and doing what
    /// `on_failure` says when a record cannot be written. A file left by an earlier run counts
    /// from now for its age; a torn last line in it is cut off (and counted as lost).
    pub fn open_rotating(
        path: &Path,
        rotation: Rotation,
        on_failure: OnFailure,
    ) -> std::io::Result<Self> {
        let lost = Arc::new(Lost::default());
        if repair(path)? {
            lost.count.fetch_add(1, Ordering::Relaxed);
            tracing::error!(path = %path.display(), "the audit trail ended in a torn record (a crash mid-write): it was cut off");
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let mut audit = Self {
            sink: Some(Arc::new(Mutex::new(Sink {
                path: path.to_path_buf(),
                file,
                size,
                started: None,
                rotation,
            }))),
            writer: None,
            on_failure,
            lost,
            metrics: Metrics::default(),
        };
        audit.start_writer()?;
        Ok(audit)
    }

    /// Starts the trail's thread (again: the one before, if any, writes out its queue and ends),
    /// counting in this trail's metrics.
    fn start_writer(&mut self) -> std::io::Result<()> {
        if let Some(sink) = &self.sink {
            self.writer = None;
            self.writer = Some(Arc::new(Writer::start(sink.clone(), self.losses())?));
        }
        Ok(())
    }

    fn losses(&self) -> Losses {
        Losses {
            lost: self.lost.clone(),
            metrics: self.metrics.clone(),
            policy: self.on_failure,
        }
    }

    /// Counts every record, and every request at the edge, in `metrics` (records lost before
    /// now, such as a torn tail cut at start, are added to its lost count).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        metrics.audit_records_lost(self.lost_records());
        self.metrics = metrics;
        if let Err(error) = self.start_writer() {
            // Without its thread the trail writes every record on the request path.
            tracing::error!(%error, "the audit trail's thread did not start: refusals are recorded on the request path");
        }
        self
    }

    /// Waits until every refusal record queued before this call is in the file (or counted as
    /// lost). Graceful shutdown calls it after the last request was answered.
    pub fn flush(&self) {
        if let Some(writer) = &self.writer {
            writer.flush();
        }
    }

    /// The metrics this trail counts in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The newest records (at most `limit`, newest first) that `matches` accepts, from the last
    /// [`RECENT_WINDOW`] bytes of the current file and, if that is not enough, of the newest old
    /// one. Lines that do not parse (one being written) are skipped. What another instance wrote
    /// to its own trail is not here.
    pub fn recent(
        &self,
        limit: usize,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let Some(path) = self
            .sink
            .as_ref()
            .and_then(|sink| sink.lock().ok().map(|sink| sink.path.clone()))
        else {
            return Vec::new();
        };
        self.flush();
        let mut found = Vec::new();
        for file in [path.clone(), PathBuf::from(format!("{}.1", path.display()))] {
            let Ok(tail) = read_tail(&file, RECENT_WINDOW) else {
                continue;
            };
            for line in tail.split(|byte| *byte == b'\n').rev() {
                if found.len() >= limit {
                    return found;
                }
                if let Ok(record) = serde_json::from_slice::<serde_json::Value>(line)
                    && matches(&record)
                {
                    found.push(record);
                }
            }
        }
        found
    }

    /// Records that could not be written since the start (a torn tail repaired at start counts).
    pub fn lost_records(&self) -> u64 {
        self.lost.count.load(Ordering::Relaxed)
    }

    /// A log that records nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Records `event` of `part` with `fields` (an object of ids, codes, thumbprints), every
    /// string cut to [`MAX_FIELD`] bytes. `Err` only when the record could not be written and the
    /// policy is [`OnFailure::Refuse`]: the caller must then not perform the action. Callers
    /// record *before* they act.
    pub fn record(
        &self,
        part: &str,
        event: &str,
        now: i64,
        fields: serde_json::Value,
    ) -> Result<(), AuditUnavailable> {
        self.write(part, event, now, fields, self.on_failure)
    }

    /// [`AuditLog::record`] of something that has happened already (a refusal): counted in the
    /// metrics whether or not its line could be written, never an `Err`, and written off the
    /// request path by the trail's thread (by the caller if its queue is full).
    fn record_done(&self, part: &str, event: &str, now: i64, fields: serde_json::Value) {
        let line = line(part, event, now, fields);
        self.metrics.observe_event(part, event, &line);
        // A refusal that cannot be written is counted (in `append` or by the thread); there is
        // no action to hold back.
        let Some(writer) = &self.writer else {
            let _ = self.append(&line, event, now);
            return;
        };
        if let Err((line, now)) = writer.queue(line, now) {
            let _ = self.append(&line, event, now);
        }
    }

    fn write(
        &self,
        part: &str,
        event: &str,
        now: i64,
        fields: serde_json::Value,
        on_failure: OnFailure,
    ) -> Result<(), AuditUnavailable> {
        let line = line(part, event, now, fields);
        let written = self.append(&line, event, now);
        // Counted when it happens: an action refused for want of its record did not happen.
        if written.is_ok() || on_failure == OnFailure::Continue {
            self.metrics.observe_event(part, event, &line);
        }
        match (written, on_failure) {
            (Err(error), OnFailure::Refuse) => Err(AuditUnavailable(error.to_string())),
            _ => Ok(()),
        }
    }

    /// Appends `line` on the caller's path; a line that could not be written is counted and
    /// reported.
    fn append(&self, line: &serde_json::Value, event: &str, now: i64) -> std::io::Result<()> {
        let Some(sink) = &self.sink else {
            return Ok(());
        };
        let lines = [(line_bytes(line), now)];
        let unwritten = match sink.lock() {
            Ok(mut sink) => sink.write_lines(&lines),
            Err(_) => Unwritten {
                lines: 1,
                error: Some(poisoned()),
            },
        };
        match unwritten.error {
            None => Ok(()),
            Some(error) => {
                self.losses().count(unwritten.lines, &error, event, now);
                Err(error)
            }
        }
    }

    /// Wraps `router` so every refused request is recorded (see [`AuditLog::refusals`]);
    /// `now` reads the clock at the edge.
    pub fn audited<S: Clone + Send + Sync + 'static>(
        &self,
        router: axum::Router<S>,
        part: &'static str,
        now: fn() -> i64,
    ) -> axum::Router<S> {
        let audit = self.clone();
        router.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let audit = audit.clone();
                async move { audit.refusals(part, now(), request, next).await }
            },
        ))
    }

    /// The edge of a service, for `axum::middleware::from_fn`: gives the request its trace id
    /// ([`trace_id`]) for everything that answers it, sends it back as `X-Trace-Id`, records every
    /// refusal (a response carrying a [`Refusal`]) with the request's method, path, source
    /// address and certificate thumbprint, logs every internal failure ([`InternalError`]), and
    /// counts the request and its latency by route template in the metrics.
    pub async fn refusals(
        &self,
        part: &'static str,
        now: i64,
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> Response {
        // Kept as they are (each a copy or a reference count); made text only for a refusal.
        let method = request.method().clone();
        let uri = request.uri().clone();
        let address = request.extensions().get::<ClientAddress>().copied();
        let thumbprint = request
            .extensions()
            .get::<PeerCertificate>()
            .map(|peer| peer.thumbprint.clone());
        let route = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .cloned();
        let started = std::time::Instant::now();
        let trace_id = crate::new_trace_id();
        // Every log line written while answering carries the part and the trace id.
        let span = tracing::info_span!("request", part, trace_id = %trace_id);
        let mut response = TRACE_ID
            .scope(
                trace_id.clone(),
                tracing::Instrument::instrument(next.run(request), span),
            )
            .await;
        self.metrics.observe_request(
            part,
            route
                .as_ref()
                .map_or("unmatched", axum::extract::MatchedPath::as_str),
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        if let Ok(value) = axum::http::HeaderValue::from_str(&trace_id) {
            response.headers_mut().insert("x-trace-id", value);
        }
        let path = uri.path();
        if let Some(InternalError(detail)) = response.extensions().get::<InternalError>() {
            tracing::error!(part, %trace_id, %method, %path, detail, "internal error");
        }
        if let Some(refusal) = response.extensions().get::<Refusal>().cloned() {
            // A refusal is recorded on a best-effort basis (a lost one is counted): there is no
            // action to hold back.
            self.record_done(
                part,
                "refused",
                now,
                serde_json::json!({
                    "status": response.status().as_u16(),
                    "reason": refusal.code,
                    "description": refusal.description,
                    "method": method.as_str(),
                    "path": path,
                    "address": address.map(|address| address.0.ip().to_string()),
                    "thumbprint": thumbprint.as_deref(),
                    "trace_id": trace_id,
                }),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_default())
            .collect()
    }

    /// The newest matching records, newest first, across a rotation, and no more than asked.
    #[test]
    fn recent_records_are_read_newest_first_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: 300,
            max_age_seconds: 1_000_000,
            keep: 2,
        };
        let audit = AuditLog::open_rotating(&path, rotation, OnFailure::Refuse).unwrap();
        for n in 0..8 {
            let organisation = if n % 2 == 0 { "a" } else { "b" };
            audit
                .record(
                    "directory",
                    "made",
                    n,
                    serde_json::json!({"organisation_id": organisation, "n": n}),
                )
                .unwrap();
        }
        assert!(PathBuf::from(format!("{}.1", path.display())).exists());
        let of_a = |record: &serde_json::Value| record["organisation_id"] == "a";
        let found: Vec<_> = audit
            .recent(10, of_a)
            .iter()
            .map(|r| r["n"].as_i64().unwrap())
            .collect();
        assert!(found.starts_with(&[6, 4]), "{found:?}");
        assert!(found.windows(2).all(|pair| pair[0] > pair[1]), "{found:?}");
        assert_eq!(audit.recent(1, of_a).len(), 1);
        assert!(AuditLog::disabled().recent(10, of_a).is_empty());
    }

    fn refusal(audit: &AuditLog, n: i64) {
        audit.record_done(
            "cards",
            "refused",
            n,
            serde_json::json!({"reason": "invalid_token", "n": n}),
        );
    }

    /// Refusals reach the file through the trail's thread: all of them, whole, once flushed; and
    /// everything still queued when the last handle goes is written before the drop returns.
    #[test]
    fn refusals_are_written_off_the_request_path_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = AuditLog::open(&path).unwrap();
        for n in 0..500 {
            refusal(&audit, n);
        }
        audit.flush();
        let written: Vec<_> = lines(&path).iter().map(|r| r["n"].as_i64()).collect();
        assert_eq!(written, (0..500).map(Some).collect::<Vec<_>>());
        assert!(audit.recent(1, |record| record["n"] == 500).is_empty());
        refusal(&audit, 500);
        assert_eq!(
            audit.recent(1, |record| record["n"] == 500).len(),
            1,
            "recent() reads what was queued before it"
        );
        for n in 501..2000 {
            refusal(&audit, n);
        }
        let copy = audit.clone();
        drop(audit);
        drop(copy);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().count(),
            2000,
            "written out when the trail closed"
        );
        assert!(
            text.lines()
                .all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok()),
            "whole lines only"
        );
    }

    /// A flush waits for what was queued before it, not for a flood to end.
    #[test]
    fn a_flush_returns_during_a_flood() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = AuditLog::open(&path).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flood = {
            let (audit, stop) = (audit.clone(), stop.clone());
            std::thread::spawn(move || {
                let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
                let mut n = 1_000_000;
                while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                    // At one time, so that the trail does not rotate by age.
                    audit.record_done("cards", "refused", 1, serde_json::json!({"n": n}));
                    n += 1;
                }
                std::time::Instant::now() < until
            })
        };
        for n in 0..100 {
            refusal(&audit, n);
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        audit.flush();
        stop.store(true, Ordering::Relaxed);
        assert!(
            flood.join().unwrap(),
            "the flush waited for the flood to end"
        );
        // Every one, though not in order: a request that found the queue full wrote its own
        // while the thread was writing a batch.
        let mut ours: Vec<i64> = lines(&path)
            .iter()
            .filter_map(|record| record["n"].as_i64())
            .filter(|n| *n < 1_000_000)
            .collect();
        ours.sort_unstable();
        assert_eq!(ours, (0..100).collect::<Vec<_>>());
    }

    /// A full queue is never a reason to drop a refusal: the request writes it itself.
    #[test]
    fn a_full_queue_makes_the_request_write_its_own_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = AuditLog::open(&path).unwrap();
        let writer = audit.writer.clone().unwrap();
        // Hold the file so the thread stops at it with its first batch.
        let sink = audit.sink.clone().unwrap();
        let held = sink.lock().unwrap();
        refusal(&audit, 0);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while writer.queue.state.lock().unwrap().writing == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the thread took no batch"
            );
            std::thread::yield_now();
        }
        for n in 1..=QUEUE_BOUND as i64 {
            refusal(&audit, n);
        }
        assert_eq!(
            writer.queue.state.lock().unwrap().records.len(),
            QUEUE_BOUND
        );
        let overflow = {
            let audit = audit.clone();
            std::thread::spawn(move || refusal(&audit, QUEUE_BOUND as i64 + 1))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !overflow.is_finished(),
            "the overflow waits for the file, not the queue"
        );
        drop(held);
        overflow.join().unwrap();
        audit.flush();
        let mut written: Vec<_> = lines(&path)
            .iter()
            .map(|r| r["n"].as_i64().unwrap())
            .collect();
        written.sort_unstable();
        assert_eq!(written, (0..=QUEUE_BOUND as i64 + 1).collect::<Vec<_>>());
        assert_eq!(audit.lost_records(), 0);
    }

    /// Refusals that cannot be written are counted as lost, as the thread finds out.
    #[test]
    fn refusals_the_thread_cannot_write_are_counted() {
        let full = Path::new("/dev/full");
        let audit = AuditLog::open_rotating(full, Rotation::default(), OnFailure::Refuse).unwrap();
        for n in 0..5 {
            refusal(&audit, n);
        }
        audit.flush();
        assert_eq!(audit.lost_records(), 5);
    }

    #[test]
    fn fields_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = AuditLog::open(&path).unwrap();
        let long = "é".repeat(30_000);
        audit
            .record(
                "cards",
                "refused",
                1,
                serde_json::json!({"path": long, "nested": {"x": long}}),
            )
            .unwrap();
        let size = std::fs::metadata(&path)
            .map(|m| m.len())
            .unwrap_or_default();
        assert!(size < 1_024, "a 60 KB field made a {size}-byte record");
        let record = lines(&path).pop().unwrap_or_default();
        let path_field = record["path"].as_str().unwrap_or_default();
        assert!(path_field.ends_with("...(60000 bytes)"), "{path_field}");
        assert!(record["nested"]["x"].as_str().unwrap_or_default().len() < 300);
    }

    #[test]
    fn the_trail_rotates_by_size_and_age_and_keeps_a_bounded_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: 200,
            max_age_seconds: 100,
            keep: 2,
        };
        let audit = AuditLog::open_rotating(&path, rotation, OnFailure::Refuse).unwrap();
        for n in 0..20 {
            audit
                .record("authz", "token_issued", 10, serde_json::json!({"n": n}))
                .unwrap();
        }
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        assert!(numbered(1).exists() && numbered(2).exists());
        assert!(!numbered(3).exists(), "only two old files are kept");
        for file in [path.clone(), numbered(1), numbered(2)] {
            let size = std::fs::metadata(&file)
                .map(|m| m.len())
                .unwrap_or(u64::MAX);
            assert!(size <= 200, "{} is {size} bytes", file.display());
            assert!(
                lines(&file)
                    .iter()
                    .all(|line| line["event"] == "token_issued"),
                "whole lines only"
            );
        }
        assert_eq!(
            lines(&path).last().map(|line| line["n"].clone()),
            Some(serde_json::json!(19))
        );
        // By age: the next record after max_age starts a new file.
        let before = lines(&path).len();
        audit
            .record(
                "authz",
                "token_issued",
                10 + 100,
                serde_json::json!({"n": "late"}),
            )
            .unwrap();
        assert_eq!(
            lines(&path).len(),
            1,
            "a {before}-line file older than a day was kept"
        );
        assert_eq!(lines(&numbered(1)).len(), before);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(
            &path,
            "{\"event\":\"a\"}\n{\"event\":\"b\"}\n{\"event\":\"to",
        )
        .unwrap();
        let audit = AuditLog::open(&path).unwrap();
        assert_eq!(audit.lost_records(), 1);
        audit
            .record("authz", "c", 1, serde_json::json!({}))
            .unwrap();
        let events: Vec<_> = lines(&path)
            .iter()
            .map(|line| line["event"].clone())
            .collect();
        assert_eq!(
            events,
            ["a", "b", "c"],
            "whole lines only, the torn one gone"
        );
        // A file of one torn line is emptied.
        std::fs::write(&path, "{\"event\":\"torn").unwrap();
        assert_eq!(AuditLog::open(&path).unwrap().lost_records(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn a_full_disk_refuses_or_carries_on_and_counts_every_lost_record() {
        // /dev/full accepts the open and fails every write with ENOSPC.
        let full = Path::new("/dev/full");
        let refuse = AuditLog::open_rotating(full, Rotation::default(), OnFailure::Refuse).unwrap();
        let outcome = refuse.record("authz", "token_issued", 1, serde_json::json!({}));
        assert!(outcome.unwrap_err().to_string().contains("free space"));
        let carry_on =
            AuditLog::open_rotating(full, Rotation::default(), OnFailure::Continue).unwrap();
        for n in 0..5 {
            carry_on
                .record("authz", "token_issued", n, serde_json::json!({}))
                .unwrap();
        }
        assert_eq!(carry_on.lost_records(), 5);
        assert_eq!(refuse.lost_records(), 1);
    }
}
