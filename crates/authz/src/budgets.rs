//! Rate-limit budgets counted in memory (DESIGN.md section 7: no database write per request).
//!
//! Each instance counts the requests of each key (a source address, a registered client) in
//! the current one-minute window in memory and decides from what it knows: the shared count at
//! its last exchange with the store, plus its own requests since. Once a second a background task
//! adds every instance's own counts to the shared ones in the store, in one transaction, and
//! reads back the totals. So a limit holds across instances to within one second of traffic, and
//! a request costs a map update, not a durable write.
//!
//! Memory is bounded: at most [`MOST_KEYS`] keys (windows that ended are dropped first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use certbound_store::{RateLimitStore, StoreError};

/// How often the counts are exchanged with the store.
pub(crate) const EXCHANGE_EVERY: Duration = Duration::from_secs(1);

/// The most keys counted at once.
const MOST_KEYS: usize = 100_000;

#[derive(Clone, Copy, Debug, Default)]
struct Budget {
    /// Start of the one-minute window counted.
    window: i64,
    /// The shared count (every instance) at the last exchange.
    shared: i64,
    /// This instance's requests since the last exchange.
    pending: i64,
}

/// The budgets of one instance.
#[derive(Debug, Default)]
pub(crate) struct Budgets {
    entries: Mutex<HashMap<String, Budget>>,
}

impl Budgets {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Budget>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one request for `key` in the window starting at `window`; the count known so far
    /// in that window, this one included.
    pub(crate) fn spend(&self, key: &str, window: i64) -> i64 {
        let mut entries = self.entries();
        if entries.len() >= MOST_KEYS && !entries.contains_key(key) {
            entries.retain(|_, budget| budget.window >= window);
            if entries.len() >= MOST_KEYS {
                entries.clear();
            }
        }
        let budget = entries.entry(key.to_owned()).or_default();
        if budget.window != window {
            *budget = Budget {
                window,
                ..Budget::default()
            };
        }
        budget.pending += 1;
        budget.shared + budget.pending
    }

    /// Adds this instance's counts to the store's and learns every instance's totals. Counts
    /// that could not be added are kept for the next exchange.
    pub(crate) async fn exchange(
        &self,
        store: &dyn RateLimitStore,
        now: i64,
    ) -> Result<(), StoreError> {
        let current = now - now.rem_euclid(60);
        let pending: Vec<(String, i64, i64)> = {
            let mut entries = self.entries();
            // Every key of the current window, so an idle one learns the others' counts too.
            entries
                .iter_mut()
                .filter(|(_, budget)| budget.pending > 0 || budget.window >= current)
                .map(|(key, budget)| {
                    (
                        key.clone(),
                        budget.window,
                        std::mem::take(&mut budget.pending),
                    )
                })
                .collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        match store.add_hits(&pending, now).await {
            Ok(totals) => {
                let mut entries = self.entries();
                for ((key, window, _), total) in pending.iter().zip(totals) {
                    if let Some(budget) = entries.get_mut(key)
                        && budget.window == *window
                    {
                        budget.shared = total;
                    }
                }
                Ok(())
            }
            Err(error) => {
                let mut entries = self.entries();
                for (key, window, count) in pending {
                    if let Some(budget) = entries.get_mut(&key)
                        && budget.window == window
                    {
                        budget.pending += count;
                    }
                }
                Err(error)
            }
        }
    }
}

/// Exchanges `budgets` with `store` every [`EXCHANGE_EVERY`] until the budgets are dropped (the
/// authorization server stopped).
pub(crate) async fn exchange_until_dropped(budgets: Weak<Budgets>, store: Arc<dyn RateLimitStore>) {
    let mut ticks = tokio::time::interval(EXCHANGE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(budgets) = budgets.upgrade() else {
            return;
        };
        if let Err(error) = budgets
            .exchange(store.as_ref(), certbound_store::clock::now())
            .await
        {
            tracing::warn!(%error, "rate-limit counts not shared with other instances this time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certbound_store::MemoryStore;

    #[tokio::test]
    async fn counts_are_local_at_once_and_shared_after_an_exchange() {
        let store = MemoryStore::new();
        let (here, there) = (Budgets::default(), Budgets::default());
        for expected in 1..=3 {
            assert_eq!(here.spend("token|client|a", 60), expected);
        }
        assert_eq!(there.spend("token|client|a", 60), 1, "not shared yet");
        here.exchange(&store, 61).await.unwrap();
        there.exchange(&store, 61).await.unwrap();
        // Each learned the other's: 3 + 1 shared, then one more request of its own.
        assert_eq!(there.spend("token|client|a", 60), 5);
        there.exchange(&store, 62).await.unwrap();
        // An exchange with nothing of its own to add still learns the others' counts.
        here.exchange(&store, 62).await.unwrap();
        assert_eq!(here.spend("token|client|a", 60), 6);
        // A new window starts from zero; another key is counted apart.
        assert_eq!(here.spend("token|client|a", 120), 1);
        assert_eq!(here.spend("token|client|b", 120), 1);
    }

    #[tokio::test]
    async fn an_exchange_with_nothing_pending_touches_nothing() {
        let store = MemoryStore::new();
        let budgets = Budgets::default();
        budgets.exchange(&store, 1).await.unwrap();
        assert_eq!(budgets.spend("k", 0), 1);
        // A window that ended is not exchanged once its counts are in.
        budgets.exchange(&store, 1).await.unwrap();
        budgets.exchange(&store, 61).await.unwrap();
        assert_eq!(store.hits("k", 0), 1);
    }
}
