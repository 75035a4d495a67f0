//! Hit and miss counts of an in-memory cache, for the operator's metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// How often a cache answered from memory and how often it had to look elsewhere.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Lookups {
    /// Counts a lookup answered from memory.
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lookup that was not.
    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a lookup, a hit when `found`.
    pub(crate) fn count(&self, found: bool) {
        if found { self.hit() } else { self.miss() }
    }

    /// Hits and misses so far.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}
