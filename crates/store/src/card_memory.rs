//! Card records remembered by the process that owns an embedded (SQLite) database.
//!
//! On SQLite one process is the database's only writer while it runs (`master-key rotate` and
//! `restore` need every instance stopped; a second `up` on the same data dir is not supported),
//! and every write of a card row goes through [`crate::Database`]. So the card a Cards API call
//! reads can come from memory instead of a round trip to SQLite's worker thread, and stays exact:
//! each write forgets the cards it touched once its transaction has ended (committed or not),
//! before its caller can answer, and a record read while any card write was going on is not
//! remembered (the write may have been read half way: before its commit, after our miss).
//!
//! On PostgreSQL there is no such memory: cards change often and any instance may change them,
//! and the PostgreSQL driver reads without a thread hop anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::{AnyPool, Executor};

use crate::records::CardRecord;

/// The most cards remembered at once (all are forgotten beyond: a bound, not an eviction policy).
const CAPACITY: usize = 100_000;

#[derive(Debug, Default)]
struct State {
    cards: HashMap<String, CardRecord>,
    /// Writes of card rows ended since the start: a read that saw this move does not remember.
    writes: u64,
    /// Writes abandoned half way (their request was dropped) whose transaction may still be
    /// committing: nothing is remembered until a fence shows it has ended.
    unsettled: u32,
}

/// The cards a write may change.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Touched<'a> {
    /// These cards.
    Cards(&'a [&'a str]),
    /// Any card.
    All,
}

/// A card write under way: when it is dropped, the cards it touched are forgotten. Dropped
/// before [`Writing::ended`] (the request was cancelled while its statement or its commit was
/// with the database), the write may still commit after that, so remembering stops until a
/// write transaction of our own gets SQLite's write lock and commits: the abandoned transaction
/// held that lock from its first write to its end, so by then it has committed or rolled back.
pub(crate) struct Writing {
    memory: Arc<CardMemory>,
    cards: Option<Vec<String>>,
    pool: AnyPool,
    ended: bool,
}

impl Writing {
    /// The write's transaction has ended (committed, rolled back, or failed).
    pub(crate) fn ended(mut self) {
        self.ended = true;
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut state = self.memory.state();
        state.writes = state.writes.wrapping_add(1);
        match &self.cards {
            Some(cards) => {
                for public_token in cards {
                    state.cards.remove(public_token);
                }
            }
            None => state.cards.clear(),
        }
        if self.ended {
            return;
        }
        state.cards.clear();
        state.unsettled = state.unsettled.saturating_add(1);
        drop(state);
        // Outside a runtime (the process is ending) the memory simply stays off.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let memory = self.memory.clone();
            let pool = self.pool.clone();
            runtime.spawn(async move {
                while let Err(error) = fence(&pool).await {
                    if pool.is_closed() {
                        // The store is closing: the memory stays off for good.
                        return;
                    }
                    tracing::warn!(%error, "card memory: fence after an abandoned write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let mut state = memory.state();
                state.unsettled = state.unsettled.saturating_sub(1);
                state.writes = state.writes.wrapping_add(1);
                state.cards.clear();
            });
        }
    }
}

/// Takes SQLite's write lock and commits: every write transaction begun before has ended.
async fn fence(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let mut connection = pool.acquire().await?;
    connection.execute("BEGIN IMMEDIATE; COMMIT;").await?;
    Ok(())
}

/// Cards by public token, forgotten by every write that touches them.
#[derive(Debug, Default)]
pub(crate) struct CardMemory {
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What a lookup found: the card, or a ticket to remember what the store then reads.
#[allow(clippy::large_enum_variant)] // returned and taken apart at once, never stored
pub(crate) enum Lookup {
    /// Remembered.
    Known(CardRecord),
    /// Not remembered; hand the ticket to [`CardMemory::remember`] with what the store read.
    Unknown(Ticket),
}

/// The count of ended writes when a lookup missed.
pub(crate) struct Ticket(u64);

impl CardMemory {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The card under `public_token`, if remembered.
    pub(crate) fn lookup(&self, public_token: &str) -> Lookup {
        let state = self.state();
        match state.cards.get(public_token) {
            Some(card) => {
                let card = card.clone();
                drop(state);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Lookup::Known(card)
            }
            None => {
                let ticket = Ticket(state.writes);
                drop(state);
                self.misses.fetch_add(1, Ordering::Relaxed);
                Lookup::Unknown(ticket)
            }
        }
    }

    /// Remembers a card read from the store after the lookup that gave `ticket`, unless a card
    /// write ended in between (the read may then predate it). A card that does not exist is not
    /// remembered: it may be inserted at any moment.
    pub(crate) fn remember(&self, ticket: Ticket, card: &CardRecord) {
        let mut state = self.state();
        if state.writes != ticket.0 || state.unsettled > 0 {
            return;
        }
        if state.cards.len() >= CAPACITY {
            state.cards.clear();
        }
        state.cards.insert(card.public_token.clone(), card.clone());
    }

    /// A write of `touched` begins: the returned value forgets them when it is dropped, after
    /// the write's transaction has ended and before its caller answers.
    pub(crate) fn writing(self: &Arc<Self>, pool: &AnyPool, touched: Touched<'_>) -> Writing {
        Writing {
            memory: self.clone(),
            cards: match touched {
                Touched::Cards(cards) => {
                    Some(cards.iter().map(|card| (*card).to_owned()).collect())
                }
                Touched::All => None,
            },
            pool: pool.clone(),
            ended: false,
        }
    }

    /// Cards found in memory and read from the store, since the start.
    pub(crate) fn lookups(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(public_token: &str, version: i64) -> CardRecord {
        CardRecord {
            public_token: public_token.into(),
            organisation_id: "org".into(),
            client_id: "client".into(),
            details: "{}".into(),
            pan_sealed: String::new(),
            cvv_sealed: String::new(),
            pin_sealed: None,
            status_code: "00".into(),
            status_updated: "{}".into(),
            cvv_blocked: false,
            created_at: 0,
            updated_at: 0,
            version,
            idempotency_id: None,
            balance_minor: 0,
            pending_minor: 0,
        }
    }

    fn known(memory: &CardMemory, public_token: &str) -> Option<i64> {
        match memory.lookup(public_token) {
            Lookup::Known(card) => Some(card.version),
            Lookup::Unknown(_) => None,
        }
    }

    async fn pool() -> (crate::Database, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("cards.db").display()
        );
        (crate::Database::connect(&url).await.unwrap(), dir)
    }

    fn read(memory: &CardMemory, public_token: &str, version: i64) {
        match memory.lookup(public_token) {
            Lookup::Known(_) => panic!("{public_token} was remembered already"),
            Lookup::Unknown(ticket) => memory.remember(ticket, &card(public_token, version)),
        }
    }

    #[tokio::test]
    async fn a_card_read_is_remembered_until_a_write_touches_it() {
        let (database, _dir) = pool().await;
        let memory = Arc::new(CardMemory::default());
        read(&memory, "100000001", 1);
        read(&memory, "100000002", 1);
        assert_eq!(known(&memory, "100000001"), Some(1));
        memory
            .writing(database.pool(), Touched::Cards(&["100000001"]))
            .ended();
        assert_eq!(known(&memory, "100000001"), None);
        assert_eq!(known(&memory, "100000002"), Some(1), "untouched cards stay");
        memory.writing(database.pool(), Touched::All).ended();
        assert_eq!(known(&memory, "100000002"), None);
        assert_eq!(memory.lookups(), (2, 4));
    }

    /// A read that raced a write (missed before the write ended, read from the store around its
    /// commit) is not remembered: it may hold the card as it was before.
    #[tokio::test]
    async fn a_read_that_raced_a_write_is_not_remembered() {
        let (database, _dir) = pool().await;
        let memory = Arc::new(CardMemory::default());
        let Lookup::Unknown(ticket) = memory.lookup("100000001") else {
            panic!("nothing is remembered at first");
        };
        let write = memory.writing(database.pool(), Touched::Cards(&["100000009"]));
        write.ended();
        memory.remember(ticket, &card("100000001", 1));
        assert_eq!(known(&memory, "100000001"), None);
    }

    /// A write dropped half way (its request cancelled) may still commit: nothing is remembered
    /// while some write transaction holds SQLite's write lock, and remembering resumes once the
    /// fence got the lock after it.
    #[tokio::test]
    async fn after_an_abandoned_write_nothing_is_remembered_until_the_write_lock_was_free() {
        let (database, _dir) = pool().await;
        let memory = Arc::new(CardMemory::default());
        read(&memory, "100000001", 1);
        // Another connection is in the middle of a write transaction, as the abandoned one is.
        let mut other = database.pool().acquire().await.unwrap();
        other.execute("BEGIN IMMEDIATE").await.unwrap();
        drop(memory.writing(database.pool(), Touched::Cards(&["100000002"])));
        assert_eq!(
            known(&memory, "100000001"),
            None,
            "an abandoned write forgets all"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        read(&memory, "100000001", 2);
        assert_eq!(
            known(&memory, "100000001"),
            None,
            "not while the lock is held"
        );
        other.execute("COMMIT").await.unwrap();
        drop(other);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Lookup::Unknown(ticket) = memory.lookup("100000001") {
                memory.remember(ticket, &card("100000001", 3));
            }
            if known(&memory, "100000001") == Some(3) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "remembering never resumed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
