//! Group commit of used `jti`s (DESIGN.md section 7): a used `jti` must be durable before the
//! token it guards is answered, and with SQLite's `synchronous=FULL` every commit is a disk sync.
//! Requests that arrive while a commit is in flight wait in a queue; the next commit takes all of
//! them (up to [`MOST`]) in one statement, and each answers only after that commit.
//!
//! Who commits depends on the database:
//! - The process serving an embedded (SQLite) file (`Database::connect_serving`): a thread of
//!   the store's own ([`GroupCommit::on_log`]) writes each batch to that process's log of used
//!   ids ([`crate::jti_log`]), one block write per batch; [`GroupCommit::stop`] ends it before
//!   the file's lock is let go.
//! - Any other store of an embedded (SQLite) file: a thread of the store's own ([`GroupCommit::on_thread`]), with its
//!   own connection to the file, sleeps until a request queues an id, then commits what waits and
//!   answers each request. Each batch is one hand-off to that thread and one answer back: no task
//!   of the runtime in between, no pool, and no sqlx worker thread (where every query is a
//!   hand-off of its own, and a pooled one two more: sqlx checks a connection when it is taken
//!   and again, from a task of its own, when it is given back). The connection only ever writes
//!   `used_jti`, so its page cache keeps that table's pages.
//! - PostgreSQL (and SQLite in memory, which a second connection cannot share): the first request
//!   to find no commit in flight spawns the task that drains the queue, on a connection taken out
//!   of the pool once and kept between drains.
//!
//! A request that finds the serving process's log idle commits on its own runtime worker instead
//! of waking the thread ([`GroupCommit::use_once`]): no commit in flight, nothing waiting,
//! requests coming more than [`QUIET`] commits' time apart on average, a runtime of several
//! workers, and a commit that is one plain block write (no segment to make, no expired ids to
//! forget: those stay the thread's, as does every commit through SQLite, which may wait for
//! another connection's lock). Each hand-off to the thread costs two wake-ups across threads (the
//! thread's, then the request's), which at a low rate cost more CPU than the write itself; at a
//! high rate the thread keeps committing batches while the workers serve. Those who queue during
//! such a commit are the thread's next batch.
//!
//! Either way a commit runs to its end even if the request that queued it is cancelled (its
//! client went away); the task ends once the queue is empty, the thread when the store's last
//! handle is dropped (after answering what waits). A store whose pool is closed queues nothing:
//! closing the store ends its commits.
//!
//! The drain task's connection has left the pool's care (its check before use, its timeouts), so
//! the task takes that care itself: a connection idle for longer than [`KEPT_IDLE`] (the server
//! may have restarted, a firewall may have dropped it) is given up for a fresh one from the pool,
//! which checks it; a statement gets at most [`COMMIT_TIMEOUT`], after which its batch is refused
//! (nobody is told their id was first) and the connection dropped, as after any failed statement.
//!
//! The thread's connection does not checkpoint when it closes (the pool's connections do): it
//! closes whenever the store's last handle goes, which may be well after the pool was closed and
//! the files were handed on (copied, served by another store); closing changes nothing on disk.
//!
//! Two copies of one `jti` in one batch are one insert: the first waiting copy is told it was
//! first, every other copy that it was not — the same answer separate commits would give.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::oneshot;

use crate::StoreError;

/// The most `jti`s one statement inserts (two parameters each, far below SQLite's limit).
const MOST: usize = 256;

/// How long the commit thread's connection waits for another connection's write to end.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The longest a commit on the drain task's connection may take before its batch is refused.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the drain task's connection may have been idle and still be used without a check.
const KEPT_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Batch sizes whose prepared statement the commit thread keeps.
const STATEMENTS_KEPT: usize = 64;

/// The refusal of an id queued after the commit thread ended.
const STOPPED: &str = "the used jti commits have stopped";

/// The refusal of an id whose commit ended before it answered.
const UNANSWERED: &str = "the commit stopped before it answered";

/// A request commits on its own worker only while requests come at least this many commits'
/// time apart (on average), so that it blocks its worker for at most a third of the time.
const QUIET: u32 = 3;

/// The longest gap between requests that the average counts: after a pause, a few requests
/// bring the average back to the rate of the moment.
const LONGEST_GAP: std::time::Duration = std::time::Duration::from_millis(10);

/// What commits batches for a thread of the store (and, while the store is idle, for a request
/// on its own worker).
trait Commits: Send {
    /// Commits `batch`: the ids it inserted, or why it could not.
    fn commit(&mut self, batch: &[Waiting]) -> Result<HashSet<String>, String>;

    /// Whether one id, committed at `now`, is one plain write: only then may a request's worker
    /// block for it.
    fn one_plain_write(&self, now: i64) -> bool;

    /// Whether a commit may ever be one plain write (if not, requests never try).
    fn ever_plain(&self) -> bool {
        true
    }
}

/// Commits to the serving process's log of used ids, holding `keep` (the file's lock).
struct OnLog<K> {
    log: crate::jti_log::JtiLog,
    keep: K,
}

impl<K: Send> Commits for OnLog<K> {
    fn commit(&mut self, batch: &[Waiting]) -> Result<HashSet<String>, String> {
        let _held = &self.keep;
        let ids: Vec<(&str, i64)> = batch
            .iter()
            .map(|waiting| (waiting.id.as_str(), waiting.expires_at))
            .collect();
        let firsts = self
            .log
            .use_batch(&ids, latest_now(batch))
            .map_err(|error| format!("the used jti log cannot be written: {error}"))?;
        Ok(batch
            .iter()
            .zip(firsts)
            .filter(|(_, first)| *first)
            .map(|(waiting, _)| waiting.id.clone())
            .collect())
    }

    fn one_plain_write(&self, now: i64) -> bool {
        self.log.one_plain_write(now)
    }
}

/// Commits through the thread's own connection to the SQLite file.
struct OnConnection(rusqlite::Connection);

impl Commits for OnConnection {
    fn commit(&mut self, batch: &[Waiting]) -> Result<HashSet<String>, String> {
        insert_on(&self.0, batch).map_err(|error| error.to_string())
    }

    /// Never: the commit may wait up to [`BUSY_TIMEOUT`] for another connection's write.
    fn one_plain_write(&self, _now: i64) -> bool {
        false
    }

    fn ever_plain(&self) -> bool {
        false
    }
}

/// The latest of the callers' clocks in `batch` (the log forgets expired ids by it).
fn latest_now(batch: &[Waiting]) -> i64 {
    batch.iter().map(|waiting| waiting.now).max().unwrap_or(0)
}

struct Waiting {
    id: String,
    expires_at: i64,
    /// The caller's clock when it asked (the log forgets expired ids by it).
    now: i64,
    reply: oneshot::Sender<Result<bool, String>>,
}

/// Who commits what waits in the queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Drainer {
    /// Nobody: the next request to come starts a commit.
    #[default]
    Nobody,
    /// A request, on its own worker; those who queue meanwhile wait for it to hand them on.
    Request,
    /// The drain task (no thread of the store).
    Task,
    /// The store's thread.
    Thread,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// Who is committing (the thread sleeps unless it is, or the store is closed).
    drainer: Drainer,
    /// The drain task's connection and when it was last used, between drains (the draining
    /// task holds it meanwhile).
    connection: Option<(AnyConnection, std::time::Instant)>,
    /// The commit thread has ended, or is to end once the queue is empty.
    closed: bool,
    /// When the last request came to be committed.
    last_arrival: Option<std::time::Instant>,
    /// The time between requests, a moving average (each gap counted up to [`LONGEST_GAP`]).
    arrival_gap: std::time::Duration,
    /// How long a commit takes, a moving average over the commits of a thread of the store.
    commit_takes: std::time::Duration,
}

impl Queue {
    /// Notes a request that came `arrived`: whether requests now come so seldom that a commit
    /// on its own worker would block that worker for at most a [`QUIET`]th of the time.
    fn arrived(&mut self, arrived: std::time::Instant) -> bool {
        let gap = self
            .last_arrival
            .map_or(LONGEST_GAP, |last| arrived.saturating_duration_since(last))
            .min(LONGEST_GAP);
        self.last_arrival = Some(arrived);
        self.arrival_gap = (self.arrival_gap * 7 + gap) / 8;
        self.arrival_gap > self.commit_takes * QUIET
    }

    /// Notes a commit that took `took` (a moving average of one eighth per commit).
    fn took(&mut self, took: std::time::Duration) {
        self.commit_takes = (self.commit_takes * 7 + took) / 8;
    }
}

/// The queue, the commit thread's bell, what commits and what was committed.
#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    bell: Condvar,
    /// What commits for a thread of the store, taken away once it stops (`None` for the drain
    /// task). Held by whoever commits: the thread or a request, one at a time (but for a store
    /// being closed, whose thread takes what waits while a request may still be committing).
    commit: Mutex<Option<Box<dyn Commits>>>,
    /// Whether a request may commit on its own worker (the committer's commits may be plain).
    on_workers: bool,
    /// Commits and the ids they carried, by [`Committer`].
    commits: [AtomicU64; 3],
    ids: [AtomicU64; 3],
}

impl Shared {
    fn committed(&self, by: Committer, ids: usize) {
        let at = by as usize;
        if let (Some(commits), Some(counted)) = (self.commits.get(at), self.ids.get(at)) {
            commits.fetch_add(1, Ordering::Relaxed);
            counted.fetch_add(ids as u64, Ordering::Relaxed);
        }
    }
}

/// Who made a commit of used `jti`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Committer {
    /// A request, on its own runtime worker (the store was idle).
    Request = 0,
    /// The drain task, on a connection of the pool (PostgreSQL).
    Task = 1,
    /// The store's commit thread (an embedded file).
    Thread = 2,
}

impl Committer {
    /// Every committer, in the order of [`UsedJtiCommits::by`].
    pub const ALL: [Self; 3] = [Self::Request, Self::Task, Self::Thread];

    /// The name an operator reads (a metric's label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Task => "task",
            Self::Thread => "thread",
        }
    }
}

/// How many commits of used `jti`s each committer made since the start, and how many ids they
/// carried (their ratio is the batch: what group commit saved).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsedJtiCommits {
    /// `(commits, ids)` by committer, in the order of [`Committer::ALL`].
    pub by: [(u64, u64); 3],
}

/// The queue of `jti`s waiting for their commit. Cloned with the store; one per database.
#[derive(Clone, Default)]
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
    /// Set when a thread of the store commits (an embedded file); tells it to end once the
    /// store's last handle is gone.
    thread: Option<Arc<Thread>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("thread", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Queue> {
    shared.queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a commit answered, and how long it took if it was a plain write (what [`Queue::took`]
/// averages: a segment made or expired ids forgotten say nothing of the next commit).
type Committed = (Result<HashSet<String>, String>, Option<std::time::Duration>);

/// Commits `batch` with `commit`, the store's committer, or refuses it once that is gone.
fn commit_with(commit: &mut Option<Box<dyn Commits>>, batch: &[Waiting]) -> Committed {
    let Some(commit) = commit.as_mut() else {
        return (Err(STOPPED.to_owned()), None);
    };
    let plain = commit.one_plain_write(latest_now(batch));
    commit_timed(commit.as_mut(), batch, plain)
}

/// Commits `batch` with `commit`, timing it if it is a `plain` write.
fn commit_timed(commit: &mut dyn Commits, batch: &[Waiting], plain: bool) -> Committed {
    let started = std::time::Instant::now();
    let outcome = commit.commit(batch);
    (outcome, plain.then(|| started.elapsed()))
}

fn committer(shared: &Shared) -> std::sync::MutexGuard<'_, Option<Box<dyn Commits>>> {
    shared.commit.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether this request may block its runtime worker for one commit: another worker then
/// serves what arrives meanwhile (never on a runtime of one thread, nor outside a runtime).
fn may_block_worker() -> bool {
    tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
        runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
            && runtime.metrics().num_workers() > 1
    })
}

/// Ends the commit thread when the last handle of the store is dropped, or when the store stops
/// serving its file ([`GroupCommit::stop`]).
struct Thread {
    shared: Arc<Shared>,
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Thread {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.bell.notify_one();
    }
}

/// Starts the commit thread, committing each batch with `commit`.
fn start_thread(commit: impl Commits + 'static) -> Result<GroupCommit, StoreError> {
    let shared = Arc::new(Shared {
        on_workers: commit.ever_plain(),
        commit: Mutex::new(Some(Box::new(commit))),
        ..Shared::default()
    });
    let thread = shared.clone();
    let handle = std::thread::Builder::new()
        .name("certbound-jti".into())
        .spawn(move || commit_on_thread(&thread))
        .map_err(|error| {
            StoreError::GroupCommit(format!("cannot start the used jti commits: {error}"))
        })?;
    Ok(GroupCommit {
        thread: Some(Arc::new(Thread {
            shared: shared.clone(),
            handle: Mutex::new(Some(handle)),
        })),
        shared,
    })
}

impl GroupCommit {
    /// The commits made since the start, by committer.
    pub(crate) fn commits(&self) -> UsedJtiCommits {
        let mut commits = UsedJtiCommits::default();
        for (at, by) in commits.by.iter_mut().enumerate() {
            let read = |counters: &[AtomicU64; 3]| {
                counters
                    .get(at)
                    .map_or(0, |counter| counter.load(Ordering::Relaxed))
            };
            *by = (read(&self.shared.commits), read(&self.shared.ids));
        }
        commits
    }

    /// Commits on a thread of its own, with its own connection to the SQLite database `file`
    /// (`synchronous=FULL`, as every connection of the store).
    pub(crate) fn on_thread(file: &Path) -> Result<Self, StoreError> {
        let failed = |error: rusqlite::Error| {
            StoreError::GroupCommit(format!(
                "cannot open {} for the used jti commits: {error}",
                file.display()
            ))
        };
        let connection = rusqlite::Connection::open_with_flags(
            file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(failed)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(failed)?;
        connection
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(failed)?;
        connection.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
        start_thread(OnConnection(connection))
    }

    /// Commits on a thread of its own to `log` (the serving process's log of used ids beside the
    /// SQLite file, see [`crate::jti_log`]).
    ///
    /// The committer holds `keep` (the file's lock) until [`GroupCommit::stop`] takes it away
    /// or, should the store's last handle go without that, until the thread has ended: no other
    /// process serves the file while this one may still write the log.
    pub(crate) fn on_log(
        log: crate::jti_log::JtiLog,
        keep: impl Send + 'static,
    ) -> Result<Self, StoreError> {
        start_thread(OnLog { log, keep })
    }

    /// Ends the commit thread now: what waits is committed, what is queued later refused, and
    /// this returns once the thread has ended (so that nothing of this store writes its log
    /// after the file is served by another). A store without a thread is left as it is.
    pub(crate) fn stop(&self) {
        let Some(thread) = &self.thread else {
            return;
        };
        lock(&self.shared).closed = true;
        self.shared.bell.notify_one();
        // Held while joining: a second caller returns only once the thread has ended too.
        let mut handle = thread.handle.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = handle.take() {
            let _ = handle.join();
        }
        // Waits for a commit on a request's worker, then lets the committer (and what it holds)
        // go: nothing commits after this.
        drop(committer(&self.shared).take());
    }

    /// Records `id` as used until `expires_at`, committed together with whatever else waits:
    /// `true` if this was its first use. `pool` is the store's: its commits when no thread of
    /// the store makes them, and a closed pool refuses either way.
    pub(crate) async fn use_once(
        &self,
        pool: &AnyPool,
        id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        if pool.is_closed() {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            id: id.to_owned(),
            expires_at,
            now,
            reply,
        };
        let lead = {
            let mut queue = lock(&self.shared);
            if queue.closed {
                return Err(StoreError::GroupCommit(STOPPED.into()));
            }
            // Only a store whose requests may commit on their workers keeps the averages.
            let quiet = self.shared.on_workers && queue.arrived(std::time::Instant::now());
            if quiet
                && queue.drainer == Drainer::Nobody
                && queue.waiting.is_empty()
                && may_block_worker()
            {
                queue.drainer = Drainer::Request;
                drop(queue);
                self.commit_here(waiting);
                false
            } else {
                queue.waiting.push(waiting);
                if queue.drainer == Drainer::Nobody {
                    queue.drainer = if self.thread.is_some() {
                        Drainer::Thread
                    } else {
                        Drainer::Task
                    };
                    true
                } else {
                    false
                }
            }
        };
        if lead {
            if self.thread.is_some() {
                self.shared.bell.notify_one();
            } else {
                tokio::spawn(drain(self.shared.clone(), pool.clone()));
            }
        }
        match answer.await {
            Ok(Ok(first)) => Ok(first),
            Ok(Err(message)) => Err(StoreError::GroupCommit(message)),
            Err(_) => Err(StoreError::GroupCommit(UNANSWERED.into())),
        }
    }

    /// Commits `waiting` alone on this thread (a request's runtime worker, blocked meanwhile), the
    /// request being the drainer, if that is one plain write; otherwise hands it to the commit
    /// thread like any other. Either way `waiting` is answered or queued when this returns, and
    /// those who queued meanwhile are the thread's. Should the commit panic, the request is
    /// refused and the store commits no more, as when its thread ends on a panic.
    fn commit_here(&self, waiting: Waiting) {
        let batch = [waiting];
        let mut commit = committer(&self.shared);
        let tried = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let commit = commit.as_mut()?;
            commit
                .one_plain_write(latest_now(&batch))
                .then(|| commit_timed(commit.as_mut(), &batch, true))
        }));
        let (outcome, took) = match tried {
            Ok(Some(committed)) => committed,
            Ok(None) => {
                drop(commit);
                let [waiting] = batch;
                let mut queue = lock(&self.shared);
                if queue.closed {
                    queue.drainer = Drainer::Nobody;
                    drop(queue);
                    answer(vec![waiting], Err(STOPPED.to_owned()));
                    return;
                }
                queue.waiting.push(waiting);
                queue.drainer = Drainer::Thread;
                drop(queue);
                self.shared.bell.notify_one();
                return;
            }
            Err(_) => {
                // The committer may be half way through a change: nothing commits with it again.
                *commit = None;
                drop(commit);
                refuse_waiting(
                    &self.shared,
                    |queue| {
                        queue.closed = true;
                        queue.drainer = Drainer::Nobody;
                    },
                    STOPPED,
                );
                self.shared.bell.notify_one();
                answer(batch.into(), Err(STOPPED.to_owned()));
                return;
            }
        };
        drop(commit);
        self.shared.committed(Committer::Request, batch.len());
        // The queue is handed on before the answer, so that whatever the answer lets through
        // finds the store as it will be.
        let mut queue = lock(&self.shared);
        if let Some(took) = took {
            queue.took(took);
        }
        let ring = !queue.waiting.is_empty();
        queue.drainer = if ring {
            Drainer::Thread
        } else {
            Drainer::Nobody
        };
        drop(queue);
        if ring {
            self.shared.bell.notify_one();
        }
        answer(batch.into(), outcome);
    }
}

/// The next batch for `drainer`, or `None` once the queue is empty (the drain has then ended, said
/// under the lock that found it empty, so that an id queued just after always starts another).
fn next_batch(queue: &mut Queue, drainer: Drainer) -> Option<Vec<Waiting>> {
    if queue.waiting.is_empty() {
        if queue.drainer == drainer {
            queue.drainer = Drainer::Nobody;
        }
        return None;
    }
    let take = queue.waiting.len().min(MOST);
    Some(queue.waiting.drain(..take).collect())
}

/// Tells each request of `batch` its answer: whether its id was inserted, once per id.
fn answer(batch: Vec<Waiting>, outcome: Result<HashSet<String>, String>) {
    match outcome {
        Ok(inserted) => {
            let mut answered = HashSet::new();
            for waiting in batch {
                let first = inserted.contains(&waiting.id) && answered.insert(waiting.id);
                let _ = waiting.reply.send(Ok(first));
            }
        }
        Err(message) => {
            for waiting in batch {
                let _ = waiting.reply.send(Err(message.clone()));
            }
        }
    }
}

/// Ends a committer that stopped early: `mark` records how, under the queue's lock, and every
/// request still waiting is refused with `message` (none is left waiting for a commit).
fn refuse_waiting(shared: &Shared, mark: impl FnOnce(&mut Queue), message: &str) {
    let waiting = {
        let mut queue = lock(shared);
        mark(&mut queue);
        std::mem::take(&mut queue.waiting)
    };
    answer(waiting, Err(message.to_owned()));
}

/// `INSERT ... ON CONFLICT (id) DO NOTHING RETURNING id` of `rows` ids, its parameters written
/// by `parameter` (numbered from 1).
fn insert_sql(rows: usize, parameter: impl Fn(usize) -> String) -> String {
    let mut sql = String::from("INSERT INTO used_jti (id, expires_at) VALUES ");
    for n in 0..rows {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "({}, {})",
            parameter(2 * n + 1),
            parameter(2 * n + 2)
        ));
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
    sql
}

/// The commit thread: sleeps until an id is queued, commits what waits, answers, and ends once
/// the store is gone and the queue empty. Should it end any other way (a panic), what waits
/// and what is queued later is refused instead of left waiting.
fn commit_on_thread(shared: &Shared) {
    struct Ended<'a>(&'a Shared);
    impl Drop for Ended<'_> {
        fn drop(&mut self) {
            refuse_waiting(self.0, |queue| queue.closed = true, STOPPED);
        }
    }
    let _ended = Ended(shared);
    let mut queue = lock(shared);
    loop {
        // What waits is the thread's when it is the drainer and, once the store is closed,
        // whoever was (a request may still be committing on its worker: those who queued behind
        // it are committed here, after it, by the committer's lock).
        let batch = if queue.drainer == Drainer::Thread || queue.closed {
            next_batch(&mut queue, Drainer::Thread)
        } else {
            None
        };
        let Some(batch) = batch else {
            if queue.closed {
                return;
            }
            queue = shared
                .bell
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        drop(queue);
        let (outcome, took) = commit_with(&mut committer(shared), &batch);
        shared.committed(Committer::Thread, batch.len());
        // The drain ends before the answers when nothing waits, so that a request they let
        // through finds the store idle.
        queue = lock(shared);
        if let Some(took) = took {
            queue.took(took);
        }
        if queue.waiting.is_empty() && queue.drainer == Drainer::Thread {
            queue.drainer = Drainer::Nobody;
        }
        drop(queue);
        answer(batch, outcome);
        queue = lock(shared);
    }
}

/// One statement (one commit) on the thread's connection: the ids it inserted.
fn insert_on(
    connection: &rusqlite::Connection,
    batch: &[Waiting],
) -> Result<HashSet<String>, rusqlite::Error> {
    let mut statement = connection.prepare_cached(&insert_sql(batch.len(), |n| format!("?{n}")))?;
    let parameters: Vec<&dyn rusqlite::ToSql> = batch
        .iter()
        .flat_map(|waiting| [&waiting.id as &dyn rusqlite::ToSql, &waiting.expires_at])
        .collect();
    statement
        .query_map(parameters.as_slice(), |row| row.get::<_, String>(0))?
        .collect()
}

/// Should the drain task end early (its runtime shutting down), refuses what waits and lets the
/// next request start a drain; a drain that found the queue empty says so itself
/// ([`next_batch`]).
struct Draining(Option<Arc<Shared>>);

impl Drop for Draining {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            refuse_waiting(&shared, |queue| queue.drainer = Drainer::Nobody, UNANSWERED);
        }
    }
}

/// The drain task (no thread of the store): commits batches on the kept connection until the
/// queue is empty.
async fn drain(shared: Arc<Shared>, pool: AnyPool) {
    let mut draining = Draining(Some(shared.clone()));
    let mut connection = lock(&shared).connection.take();
    loop {
        let batch = {
            let mut queue = lock(&shared);
            let Some(batch) = next_batch(&mut queue, Drainer::Task) else {
                draining.0 = None;
                if !pool.is_closed() {
                    queue.connection = connection;
                }
                return;
            };
            batch
        };
        let kept = match connection.take() {
            Some((kept, used)) if !pool.is_closed() && used.elapsed() <= KEPT_IDLE => Ok(kept),
            _ => pool.acquire().await.map(sqlx::pool::PoolConnection::detach),
        };
        let outcome = match kept {
            Ok(mut kept) => {
                match tokio::time::timeout(COMMIT_TIMEOUT, insert(&mut kept, &batch)).await {
                    Ok(Ok(inserted)) => {
                        connection = Some((kept, std::time::Instant::now()));
                        Ok(inserted)
                    }
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => Err(format!(
                        "the commit took longer than {} s",
                        COMMIT_TIMEOUT.as_secs()
                    )),
                }
            }
            Err(error) => Err(error.to_string()),
        };
        shared.committed(Committer::Task, batch.len());
        answer(batch, outcome);
    }
}

/// One statement (one commit) on the drain task's connection: the ids it inserted.
async fn insert(
    connection: &mut AnyConnection,
    batch: &[Waiting],
) -> Result<HashSet<String>, sqlx::Error> {
    let sql = insert_sql(batch.len(), |n| format!("${n}"));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for waiting in batch {
        query = query.bind(waiting.id.clone()).bind(waiting.expires_at);
    }
    let rows = query.fetch_all(connection).await?;
    rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Database;

    /// A migrated SQLite file in a temporary directory, and its store.
    async fn embedded() -> (tempfile::TempDir, std::path::PathBuf, Database) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("test.db");
        let database = Database::connect(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap();
        (dir, file, database)
    }

    /// The process serving an embedded file keeps the used ids in its log: an id used before is
    /// refused after the server stopped and another started (as after a restart or a `kill -9`,
    /// the log's files are all it has), ids in `used_jti` (an earlier version's) are honoured,
    /// and once the store stops serving it refuses instead of writing the log another serves.
    #[tokio::test]
    async fn the_serving_store_keeps_used_ids_in_its_log() {
        use crate::ReplayStore as _;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("served.db");
        let url = format!("sqlite://{}?mode=rwc", file.display());
        let earlier = Database::connect(&url).await.unwrap();
        assert!(earlier.use_once("table|one", 2_000, 1_000).await.unwrap());
        earlier.pool().close().await;
        drop(earlier);

        let serving = Database::connect_serving(&url).await.unwrap();
        for (id, first) in [
            ("log|one", true),
            ("log|one", false),
            ("log|two", true),
            ("table|one", false),
        ] {
            assert_eq!(
                serving.use_once(id, 2_000, 1_000).await.unwrap(),
                first,
                "{id}"
            );
        }
        serving.stop_serving();
        let refused = serving.use_once("log|three", 2_000, 1_000).await;
        assert!(
            matches!(&refused, Err(StoreError::GroupCommit(message)) if message == STOPPED),
            "{refused:?}"
        );

        let next = Database::connect_serving(&url).await.unwrap();
        for (id, first) in [
            ("log|one", false),
            ("log|two", false),
            ("table|one", false),
            ("log|three", true),
        ] {
            assert_eq!(
                next.use_once(id, 2_000, 1_000).await.unwrap(),
                first,
                "{id}"
            );
        }
        next.stop_serving();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("served.db.jti-"))
            .collect();
        assert_eq!(names.len(), 2, "a segment per start: {names:?}");
    }

    /// On an embedded file the store's own thread commits: copies of one id queued together are
    /// one first use, the answer is on disk (a second thread's connection finds the id used),
    /// and the thread ends once the last handle is dropped, refusing from then on.
    #[tokio::test]
    async fn the_commit_thread_answers_once_per_id_and_ends_with_the_store() {
        let (_dir, file, database) = embedded().await;
        let pool = database.pool().clone();
        let commit = GroupCommit::on_thread(&file).unwrap();
        let copies = (0..8).map(|_| {
            let (commit, pool) = (commit.clone(), pool.clone());
            tokio::spawn(async move {
                commit
                    .use_once(&pool, "thread|one", 2_000_000_000, 1_000)
                    .await
            })
        });
        let mut firsts = 0;
        for copy in copies.collect::<Vec<_>>() {
            firsts += usize::from(copy.await.unwrap().unwrap());
        }
        assert_eq!(firsts, 1);

        let shared = commit.shared.clone();
        drop(commit);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while Arc::strong_count(&shared) > 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the commit thread did not end"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(lock(&shared).closed);

        let another = GroupCommit::on_thread(&file).unwrap();
        assert!(
            !another
                .use_once(&pool, "thread|one", 2_000_000_000, 1_000)
                .await
                .unwrap()
        );
        assert!(
            another
                .use_once(&pool, "thread|two", 2_000_000_000, 1_000)
                .await
                .unwrap()
        );
    }

    /// A serving store on a migrated file in a temporary directory, its first use made (the
    /// first commit forgets expired ids, so it is the thread's), and the file's URL.
    async fn serving_after_one_use() -> (tempfile::TempDir, String, Database) {
        use crate::ReplayStore as _;
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("serving.db").display()
        );
        let serving = Database::connect_serving(&url).await.unwrap();
        assert!(serving.use_once("warm|up", 2_000, 1_000).await.unwrap());
        assert_eq!(
            serving.used_jti_commits().by[Committer::Thread as usize],
            (1, 1),
            "the first commit forgets expired ids: the thread's"
        );
        (dir, url, serving)
    }

    /// A request that finds the serving store idle on a runtime of several workers commits on
    /// its own worker (no hand-off to the thread), and what it committed is on disk like any
    /// other commit: the next process serving the file finds the id used.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_store_commits_on_the_requests_own_worker() {
        use crate::ReplayStore as _;
        let (_dir, url, serving) = serving_after_one_use().await;
        assert!(serving.use_once("worker|one", 2_000, 1_000).await.unwrap());
        let by = serving.used_jti_commits().by;
        assert_eq!(by[Committer::Request as usize], (1, 1), "{by:?}");
        assert_eq!(by[Committer::Thread as usize], (1, 1), "{by:?}");
        serving.stop_serving();

        let next = Database::connect_serving(&url).await.unwrap();
        assert!(!next.use_once("worker|one", 2_000, 1_000).await.unwrap());
        next.stop_serving();
    }

    /// A request never blocks a runtime of one thread: the store's thread commits.
    #[tokio::test]
    async fn a_runtime_of_one_thread_leaves_the_commit_to_the_thread() {
        use crate::ReplayStore as _;
        let (_dir, _url, serving) = serving_after_one_use().await;
        assert!(serving.use_once("one|one", 2_000, 1_000).await.unwrap());
        let by = serving.used_jti_commits().by;
        assert_eq!(by[Committer::Request as usize], (0, 0), "{by:?}");
        assert_eq!(by[Committer::Thread as usize], (2, 2), "{by:?}");
        serving.stop_serving();
    }

    /// A request never commits through SQLite on its worker (the commit may wait for another
    /// connection's lock): the store's thread commits, on a runtime of several workers too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_through_sqlite_is_the_threads() {
        let (_dir, file, database) = embedded().await;
        let commit = GroupCommit::on_thread(&file).unwrap();
        for _ in 0..2 {
            commit
                .use_once(database.pool(), "sqlite|one", 2_000_000_000, 1_000)
                .await
                .unwrap();
        }
        let by = commit.commits().by;
        assert_eq!(by[Committer::Request as usize], (0, 0), "{by:?}");
        assert_eq!(by[Committer::Thread as usize], (2, 2), "{by:?}");
    }

    /// A request counts as quiet while requests come more than three commits' time apart on
    /// average: at a steady 1 ms with 100 µs commits, yes; at 100 µs apart, no longer within a
    /// dozen requests; after a pause, at once again.
    #[test]
    fn quiet_means_requests_further_apart_than_three_commits() {
        use std::time::{Duration, Instant};
        let mut queue = Queue::default();
        queue.took(Duration::from_micros(800));
        assert_eq!(queue.commit_takes, Duration::from_micros(100));
        let start = Instant::now();
        let mut at = start;
        for _ in 0..20 {
            at += Duration::from_millis(1);
            assert!(queue.arrived(at));
        }
        let close: Vec<bool> = (0..40)
            .map(|_| {
                at += Duration::from_micros(100);
                queue.arrived(at)
            })
            .collect();
        assert!(close[0], "one close request does not make a high rate");
        assert_eq!(close.iter().position(|quiet| !quiet), Some(11), "{close:?}");
        assert!(close[11..].iter().all(|quiet| !quiet), "{close:?}");
        assert!(queue.arrived(at + Duration::from_secs(1)));
    }

    /// Requests that come at once, on both workers, are committed by the first to find the
    /// store idle and by the thread after it, and still each id is first exactly once: 50
    /// copies of one id and 50 ids of their own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn copies_at_once_on_several_workers_are_first_once() {
        use crate::ReplayStore as _;
        let (_dir, _url, serving) = serving_after_one_use().await;
        let serving = Arc::new(serving);
        let requests: Vec<_> = (0..100)
            .map(|n| {
                let serving = serving.clone();
                let id = if n % 2 == 0 {
                    "many|copied".to_owned()
                } else {
                    format!("many|{n}")
                };
                tokio::spawn(async move { (n, serving.use_once(&id, 2_000, 1_000).await) })
            })
            .collect();
        let mut copies_first = 0;
        for request in requests {
            let (n, first) = tokio::time::timeout(std::time::Duration::from_secs(30), request)
                .await
                .expect("a request was left waiting")
                .unwrap();
            let first = first.unwrap();
            if n % 2 == 0 {
                copies_first += usize::from(first);
            } else {
                assert!(first, "id {n} was its own");
            }
        }
        assert_eq!(copies_first, 1);
        let by = serving.used_jti_commits().by;
        assert!(by[Committer::Request as usize].0 >= 1, "{by:?}");
        assert_eq!(by.iter().map(|(_, ids)| ids).sum::<u64>(), 101, "{by:?}");
        serving.stop_serving();
    }

    /// Stopping while a request commits on its worker waits for that commit, and nothing
    /// commits after: a later request is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stopping_waits_for_a_commit_on_a_worker() {
        struct Held {
            started: std::sync::mpsc::Sender<()>,
            release: std::sync::mpsc::Receiver<()>,
        }
        impl Commits for Held {
            fn commit(&mut self, batch: &[Waiting]) -> Result<HashSet<String>, String> {
                self.started.send(()).unwrap();
                self.release.recv().unwrap();
                Ok(batch.iter().map(|waiting| waiting.id.clone()).collect())
            }
            fn one_plain_write(&self, _now: i64) -> bool {
                true
            }
        }
        let (_dir, _file, database) = embedded().await;
        let (started, started_here) = std::sync::mpsc::channel();
        let (release_there, release) = std::sync::mpsc::channel();
        let commit = start_thread(Held { started, release }).unwrap();
        let pool = database.pool().clone();
        let first = tokio::spawn({
            let (commit, pool) = (commit.clone(), pool.clone());
            async move { commit.use_once(&pool, "held|one", 2_000, 1_000).await }
        });
        tokio::task::spawn_blocking(move || started_here.recv().unwrap())
            .await
            .unwrap();
        let stopping = std::thread::spawn({
            let commit = commit.clone();
            move || commit.stop()
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!stopping.is_finished(), "stop returned during a commit");
        release_there.send(()).unwrap();
        assert!(first.await.unwrap().unwrap());
        stopping.join().unwrap();
        assert_eq!(commit.commits().by[Committer::Request as usize], (1, 1));
        let refused = commit.use_once(&pool, "held|two", 2_000, 1_000).await;
        assert!(
            matches!(&refused, Err(StoreError::GroupCommit(message)) if message == STOPPED),
            "{refused:?}"
        );
        assert!(committer(&commit.shared).is_none());
    }

    /// A commit that panics on a request's worker refuses that request instead of unwinding
    /// into it, and the store commits no more (its committer may be half way through a change).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_commit_on_a_worker_refuses_and_closes_the_store() {
        struct Panicking;
        impl Commits for Panicking {
            fn commit(&mut self, _batch: &[Waiting]) -> Result<HashSet<String>, String> {
                panic!("a committer's bug")
            }
            fn one_plain_write(&self, _now: i64) -> bool {
                true
            }
        }
        let (_dir, _file, database) = embedded().await;
        let commit = start_thread(Panicking).unwrap();
        for id in ["panic|one", "panic|two"] {
            let refused = commit.use_once(database.pool(), id, 2_000, 1_000).await;
            assert!(
                matches!(&refused, Err(StoreError::GroupCommit(message)) if message == STOPPED),
                "{refused:?}"
            );
        }
        assert!(committer(&commit.shared).is_none());
        assert!(lock(&commit.shared).closed);
    }

    /// Copies of one id in one batch: the first copy is told it was first, every other copy
    /// that it was not; an id the statement did not insert is first for nobody; a failed
    /// statement is an error for every request of its batch.
    #[test]
    fn a_batch_answers_each_inserted_id_first_once() {
        let batch = |ids: &[&str]| -> (Vec<Waiting>, Vec<oneshot::Receiver<_>>) {
            ids.iter()
                .map(|id| {
                    let (reply, answer) = oneshot::channel();
                    let id = (*id).to_owned();
                    (
                        Waiting {
                            id,
                            expires_at: 1,
                            now: 0,
                            reply,
                        },
                        answer,
                    )
                })
                .unzip()
        };
        let (waiting, answers) = batch(&["a", "b", "a", "c", "a"]);
        answer(waiting, Ok(["a".to_owned(), "b".to_owned()].into()));
        let firsts: Vec<bool> = answers
            .into_iter()
            .map(|mut answer| answer.try_recv().unwrap().unwrap())
            .collect();
        assert_eq!(firsts, [true, true, false, false, false]);

        let (waiting, answers) = batch(&["a", "b"]);
        answer(waiting, Err("disk full".into()));
        for mut answer in answers {
            assert_eq!(answer.try_recv().unwrap(), Err("disk full".to_owned()));
        }
    }

    /// A store whose pool is closed (its stack has shut down) records no used `jti`, whoever
    /// commits: nothing is answered after the store was closed.
    #[tokio::test]
    async fn a_closed_store_records_no_jti() {
        let (_dir, file, database) = embedded().await;
        let on_thread = GroupCommit::on_thread(&file).unwrap();
        let on_pool = GroupCommit::default();
        database.pool().close().await;
        for commit in [on_thread, on_pool] {
            let refused = commit
                .use_once(database.pool(), "closed|one", 2_000_000_000, 1_000)
                .await;
            assert!(
                matches!(refused, Err(StoreError::Database(sqlx::Error::PoolClosed))),
                "{refused:?}"
            );
        }
    }
}
