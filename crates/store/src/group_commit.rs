//! Group commit of used `jti`s (DESIGN.md section 7): a used `jti` must be durable before the
//! token it guards is answered, and with SQLite's `synchronous=FULL` every commit is a disk sync.
//! Requests that arrive while a commit is in flight wait in a queue; the next commit takes all of
//! them (up to [`MOST`]) in one statement, and each answers only after that commit.
//!
//! The first request to find no commit in flight spawns the task that drains the queue, so a
//! commit runs to its end even if the request that started it is cancelled (its client went
//! away), and the task ends once the queue is empty: no task outlives the work.
//!
//! Two copies of one `jti` in one batch are one insert: the first waiting copy is told it was
//! first, every other copy that it was not — the same answer separate commits would give.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::{AnyPool, Row};
use tokio::sync::oneshot;

use crate::StoreError;

/// The most `jti`s one statement inserts (two parameters each, far below SQLite's limit).
const MOST: usize = 256;

struct Waiting {
    id: String,
    expires_at: i64,
    reply: oneshot::Sender<Result<bool, String>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// Whether a task is draining the queue.
    draining: bool,
}

/// The queue of `jti`s waiting for their commit. Cloned with the store; one per database.
#[derive(Clone, Default)]
pub(crate) struct GroupCommit {
    queue: Arc<Mutex<Queue>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GroupCommit {
    /// Records `id` as used until `expires_at`, committed together with whatever else waits:
    /// `true` if this was its first use.
    pub(crate) async fn use_once(
        &self,
        pool: &AnyPool,
        id: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut queue = lock(&self.queue);
            queue.waiting.push(Waiting {
                id: id.to_owned(),
                expires_at,
                reply,
            });
            !std::mem::replace(&mut queue.draining, true)
        };
        if lead {
            tokio::spawn(drain(self.queue.clone(), pool.clone()));
        }
        match answer.await {
            Ok(Ok(first)) => Ok(first),
            Ok(Err(message)) => Err(StoreError::GroupCommit(message)),
            Err(_) => Err(StoreError::GroupCommit(
                "the commit stopped before it answered".into(),
            )),
        }
    }
}

/// Lets the next request drain the queue should this task end early.
struct Draining(Arc<Mutex<Queue>>);

impl Drop for Draining {
    fn drop(&mut self) {
        lock(&self.0).draining = false;
    }
}

async fn drain(queue: Arc<Mutex<Queue>>, pool: AnyPool) {
    let _draining = Draining(queue.clone());
    loop {
        let batch: Vec<Waiting> = {
            let mut queue = lock(&queue);
            if queue.waiting.is_empty() {
                return;
            }
            let take = queue.waiting.len().min(MOST);
            queue.waiting.drain(..take).collect()
        };
        match insert(&pool, &batch).await {
            Ok(inserted) => {
                let mut answered = HashSet::new();
                for waiting in batch {
                    let first = inserted.contains(&waiting.id) && answered.insert(waiting.id);
                    let _ = waiting.reply.send(Ok(first));
                }
            }
            Err(error) => {
                let message = error.to_string();
                for waiting in batch {
                    let _ = waiting.reply.send(Err(message.clone()));
                }
            }
        }
    }
}

/// One statement (one commit): the ids it inserted; ids already used are not among them.
async fn insert(pool: &AnyPool, batch: &[Waiting]) -> Result<HashSet<String>, sqlx::Error> {
    let mut sql = String::from("INSERT INTO used_jti (id, expires_at) VALUES ");
    for n in 0..batch.len() {
        if n > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}, ${})", 2 * n + 1, 2 * n + 2));
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING RETURNING id");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for waiting in batch {
        query = query.bind(waiting.id.clone()).bind(waiting.expires_at);
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
}
