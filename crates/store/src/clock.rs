//! The one place the wall clock is read (STYLE.md 2): handlers call [`now`] at the edge and
//! pass the value down.

/// Seconds since the Unix epoch.
#[allow(clippy::disallowed_methods)] // the single sanctioned clock read
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A value unique enough to name test rows.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn now_nanos_for_tests() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
