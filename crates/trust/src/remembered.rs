//! What an instance remembers of state that rarely changes (DESIGN.md section 7): values read
//! from the store once and kept in memory, all dropped when the store's trust counter moves. The
//! counter moves in the same transaction as every change that could make a remembered value
//! wrong (a token or certificate revoked, a certificate issued, a client registered, updated or
//! deleted). This process's own changes are seen at once; on PostgreSQL another instance's as
//! soon as its notification arrives (the store's change feed moves `local_changes`), and in any
//! case within [`RECHECK`] (the counter is read at most that often: the backstop for a lost
//! notification), so nothing remembered outlives a change by more than a second.
//!
//! A value read while a change was being made is not remembered if this process made the change;
//! if another instance made it, the next look at the counter drops it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use certbound_store::{StoreError, TokenStandingStore};

use crate::Lookups;

/// How often the trust counter is read: another instance's change is seen within this.
pub const RECHECK: Duration = Duration::from_millis(500);

/// The most values remembered at once by one memory (all are dropped beyond).
const CAPACITY: usize = 100_000;

#[derive(Debug)]
struct State<V> {
    entries: HashMap<String, V>,
    /// The store's count of this process's changes, as last seen.
    local: u64,
    /// The trust counter, as last read.
    version: i64,
    /// When the counter was last read.
    checked: Option<Instant>,
}

impl<V> Default for State<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            local: 0,
            version: 0,
            checked: None,
        }
    }
}

/// Values remembered until the trust counter moves. One per kind of value and instance, shared
/// by its requests.
#[derive(Debug)]
pub struct Remembered<V> {
    state: Mutex<State<V>>,
    lookups: Lookups,
}

impl<V> Default for Remembered<V> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            lookups: Lookups::default(),
        }
    }
}

impl<V: Clone> Remembered<V> {
    /// An empty memory.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<V>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Values found in memory and read from the store, since the start.
    pub fn lookups(&self) -> (u64, u64) {
        self.lookups.totals()
    }

    /// The value under `key`: from memory when the store has not changed since it was read,
    /// else from `read`, and then remembered if `keep` says so (a caller that must see a new
    /// record at once keeps only what it found).
    pub async fn get<F, Fut, E>(
        &self,
        store: &dyn TokenStandingStore,
        key: &str,
        read: F,
        keep: impl FnOnce(&V) -> bool,
    ) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: From<StoreError>,
    {
        let (local, version) = self.current(store).await?;
        if let Some(known) = self.state().entries.get(key).cloned() {
            self.lookups.hit();
            return Ok(known);
        }
        self.lookups.miss();
        let value = read().await?;
        if keep(&value) {
            let mut state = self.state();
            // Remembered only if nothing changed while it was read.
            if store.local_changes() == local && state.local == local && state.version == version {
                if state.entries.len() >= CAPACITY {
                    state.entries.clear();
                }
                state.entries.insert(key.to_owned(), value.clone());
            }
        }
        Ok(value)
    }

    /// Drops what a change made stale: at once for this process's changes, and after reading
    /// the trust counter when it was last read [`RECHECK`] ago or more.
    async fn current(&self, store: &dyn TokenStandingStore) -> Result<(u64, i64), StoreError> {
        let local = store.local_changes();
        let due = {
            let mut state = self.state();
            if state.local != local {
                state.entries.clear();
                state.local = local;
            }
            let due = state
                .checked
                .is_none_or(|checked| checked.elapsed() >= RECHECK);
            if due {
                // One request reads the counter; the others go on with what is known.
                state.checked = Some(Instant::now());
            }
            due
        };
        if due {
            let version = match store.trust_version().await {
                Ok(version) => version,
                Err(error) => {
                    self.state().checked = None;
                    return Err(error);
                }
            };
            let mut state = self.state();
            if state.version != version {
                state.entries.clear();
                state.version = version;
            }
        }
        let state = self.state();
        Ok((state.local, state.version))
    }
}
