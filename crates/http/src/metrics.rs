//! What an operator scrapes: counters and histograms in the Prometheus text format, kept by the
//! `prometheus` crate (never a hand-written exposition).
//!
//! Two places feed them, so no handler has to remember to: the edge of every service (requests
//! by part, route template and status, and their latency; [`crate::AuditLog::refusals`]) and the
//! audit trail (every security event is counted by the same name and reason code the trail
//! records, whether or not its line reached the disk; [`crate::AuditLog::record`]). Gauges that
//! describe state rather than events (bulk jobs by state, the database pool, cache hits) are set
//! by the operations listener just before each scrape.
//!
//! Label values come from fixed sets (parts, route templates, status codes, reason codes, auth
//! methods), never from request text: a client cannot grow the series without bound.

use std::sync::Arc;

use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric certbound exposes, registered in one registry (no global).
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Families>,
}

#[derive(Debug)]
struct Families {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    events: IntCounterVec,
    tokens_issued: IntCounterVec,
    refusals: IntCounterVec,
    certificates: IntCounterVec,
    registrations: IntCounterVec,
    cards_created: IntCounter,
    card_status_changes: IntCounterVec,
    audit_lost: IntCounter,
    bulk_jobs: IntGaugeVec,
    pool: IntGaugeVec,
    pool_waits: IntCounter,
    cache_lookups: IntCounterVec,
    jti_commits: IntCounterVec,
    jti_committed: IntCounterVec,
}

/// The metric families are fixed at compile time; registering them cannot fail but for a
/// programming error, which the unit tests catch.
fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let family = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|_| unreachable_family(name));
    let _ = registry.register(Box::new(family.clone()));
    family
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let family = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|_| unreachable_family(name));
    let _ = registry.register(Box::new(family.clone()));
    family
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).unwrap_or_else(|_| unreachable_family(name));
    let _ = registry.register(Box::new(counter.clone()));
    counter
}

/// A family whose name or labels the `prometheus` crate refuses: the names above are constants,
/// so this is a bug, caught by `every_family_is_registered`.
#[allow(clippy::panic)]
fn unreachable_family(name: &str) -> ! {
    panic!("metric family {name} has an invalid name or labels")
}

/// Latency buckets, seconds: 100 µs to 5 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family of certbound in it.
    pub fn new() -> Self {
        let registry = Registry::new();
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "certbound_http_request_duration_seconds",
                "Time from a request's headers to its answer, by part and route template",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["part", "route"],
        )
        .unwrap_or_else(|_| unreachable_family("certbound_http_request_duration_seconds"));
        let _ = registry.register(Box::new(latency.clone()));
        let families = Families {
            requests: counter_vec(
                &registry,
                "certbound_http_requests_total",
                "Requests answered, by part, route template and status",
                &["part", "route", "status"],
            ),
            latency,
            events: counter_vec(
                &registry,
                "certbound_audit_events_total",
                "Security events, by part and the event name the audit trail records",
                &["part", "event"],
            ),
            tokens_issued: counter_vec(
                &registry,
                "certbound_tokens_issued_total",
                "Access tokens issued, by part and client authentication method",
                &["part", "auth_method"],
            ),
            refusals: counter_vec(
                &registry,
                "certbound_refusals_total",
                "Requests refused, by part and the reason code the audit trail records",
                &["part", "reason"],
            ),
            certificates: counter_vec(
                &registry,
                "certbound_certificates_total",
                "Certificates the directory issued or revoked, by action and type",
                &["action", "certificate_type"],
            ),
            registrations: counter_vec(
                &registry,
                "certbound_registrations_total",
                "Dynamic client registrations, by action (registered, updated, deleted)",
                &["action"],
            ),
            cards_created: counter(
                &registry,
                "certbound_cards_created_total",
                "Cards created (one by one and by bulk jobs)",
            ),
            card_status_changes: counter_vec(
                &registry,
                "certbound_card_status_changes_total",
                "Card status changes, by the new status code",
                &["status"],
            ),
            audit_lost: counter(
                &registry,
                "certbound_audit_records_lost_total",
                "Audit records that could not be written (a full disk, a torn tail cut at start)",
            ),
            bulk_jobs: gauge_vec(
                &registry,
                "certbound_bulk_jobs",
                "Bulk card jobs in the database, by state",
                &["state"],
            ),
            pool: gauge_vec(
                &registry,
                "certbound_database_connections",
                "Database pool connections of this instance: in_use, idle, max",
                &["state"],
            ),
            pool_waits: counter(
                &registry,
                "certbound_database_pool_waits_total",
                "Queries of this instance that had to wait for a database connection (none idle, the pool at its maximum)",
            ),
            cache_lookups: counter_vec(
                &registry,
                "certbound_cache_lookups_total",
                "Lookups in this instance's in-memory caches, by cache and result (hit, miss)",
                &["cache", "result"],
            ),
            jti_commits: counter_vec(
                &registry,
                "certbound_jti_commits_total",
                "Commits of used client assertion ids by this instance, by committer (request: on the request's own worker while idle; thread: the store's commit thread; task: the drain task on PostgreSQL)",
                &["committer"],
            ),
            jti_committed: counter_vec(
                &registry,
                "certbound_jti_committed_total",
                "Used client assertion ids those commits carried, by committer (divided by the commits: the batch size)",
                &["committer"],
            ),
            registry,
        };
        Self {
            inner: Arc::new(families),
        }
    }

    /// Counts an answered request: `route` is the route template (`/api/v1/cards/{publicToken}`),
    /// or `unmatched`.
    pub fn observe_request(&self, part: &str, route: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.inner
            .requests
            .with_label_values(&[part, route, &status])
            .inc();
        self.inner
            .latency
            .with_label_values(&[part, route])
            .observe(seconds);
    }

    /// Counts a security event as the audit trail names it; `fields` are the record's fields.
    pub fn observe_event(&self, part: &str, event: &str, fields: &serde_json::Value) {
        let text = |key: &str| fields.get(key).and_then(|value| value.as_str());
        let families = &self.inner;
        families.events.with_label_values(&[part, event]).inc();
        match event {
            "token_issued" | "directory_token_issued" => {
                let method = text("auth_method").unwrap_or("unknown");
                families
                    .tokens_issued
                    .with_label_values(&[part, method])
                    .inc();
            }
            "refused" => {
                let reason = text("reason").unwrap_or("unknown");
                families.refusals.with_label_values(&[part, reason]).inc();
            }
            "certificate_issued" | "certificate_revoked" => {
                let action = event.trim_start_matches("certificate_");
                let kind = text("certificate_type").unwrap_or("unknown");
                families
                    .certificates
                    .with_label_values(&[action, kind])
                    .inc();
            }
            "client_registered" | "client_updated" | "client_deleted" => {
                let action = event.trim_start_matches("client_");
                families.registrations.with_label_values(&[action]).inc();
            }
            "card_status_changed" => {
                let status = text("status").unwrap_or("unknown");
                families
                    .card_status_changes
                    .with_label_values(&[status])
                    .inc();
            }
            _ => {}
        }
    }

    /// Counts a card stored (a card's creation is no audit event; its status changes are).
    pub fn card_created(&self) {
        self.inner.cards_created.inc();
    }

    /// Counts `count` audit records that could not be written.
    pub fn audit_records_lost(&self, count: u64) {
        self.inner.audit_lost.inc_by(count);
    }

    /// Sets the number of bulk jobs in `state` (a scrape-time reading of the database).
    pub fn set_bulk_jobs(&self, state: &str, count: i64) {
        self.inner.bulk_jobs.with_label_values(&[state]).set(count);
    }

    /// Sets the database pool's connections in use, idle, and its maximum, and brings the
    /// count of queries that waited for a connection up to `waits` (the store's own total).
    pub fn set_pool(&self, in_use: i64, idle: i64, max: i64, waits: u64) {
        let pool = &self.inner.pool;
        pool.with_label_values(&["in_use"]).set(in_use);
        pool.with_label_values(&["idle"]).set(idle);
        pool.with_label_values(&["max"]).set(max);
        let counted = &self.inner.pool_waits;
        counted.inc_by(waits.saturating_sub(counted.get()));
    }

    /// Brings a cache's hit and miss counters up to the totals the cache keeps itself.
    pub fn set_cache_lookups(&self, cache: &str, hits: u64, misses: u64) {
        for (result, total) in [("hit", hits), ("miss", misses)] {
            let counter = self.inner.cache_lookups.with_label_values(&[cache, result]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Brings a committer's counts of used-`jti` commits and the ids they carried up to the
    /// store's own totals.
    pub fn set_jti_commits(&self, committer: &str, commits: u64, ids: u64) {
        for (family, total) in [
            (&self.inner.jti_commits, commits),
            (&self.inner.jti_committed, ids),
        ] {
            let counter = family.with_label_values(&[committer]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// The exposition: Prometheus text format 0.0.4, and its content type.
    pub fn render(&self) -> (String, String) {
        let encoder = TextEncoder::new();
        let mut buffer = Vec::new();
        let families = self.inner.registry.gather();
        if let Err(error) = encoder.encode(&families, &mut buffer) {
            tracing::error!(%error, "the metrics could not be encoded");
        }
        (
            String::from_utf8_lossy(&buffer).into_owned(),
            encoder.format_type().to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, line_start: &str) -> Option<f64> {
        text.lines()
            .find(|line| line.starts_with(line_start))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    #[test]
    fn every_family_is_registered() {
        let metrics = Metrics::new();
        metrics.observe_request("cards", "/api/v1/cards", 201, 0.002);
        metrics.observe_event(
            "authz",
            "token_issued",
            &serde_json::json!({"auth_method": "private_key_jwt"}),
        );
        metrics.observe_event(
            "cards",
            "refused",
            &serde_json::json!({"reason": "invalid_token"}),
        );
        metrics.observe_event(
            "directory",
            "certificate_issued",
            &serde_json::json!({"certificate_type": "transport"}),
        );
        metrics.observe_event("authz", "client_registered", &serde_json::json!({}));
        metrics.card_created();
        metrics.observe_event(
            "cards",
            "card_status_changed",
            &serde_json::json!({"status": "41"}),
        );
        metrics.audit_records_lost(2);
        metrics.set_bulk_jobs("Pending", 3);
        metrics.set_pool(1, 4, 8, 2);
        metrics.set_cache_lookups("token_standing", 5, 1);
        metrics.set_cache_lookups("token_standing", 9, 1);
        metrics.set_jti_commits("thread", 2, 7);
        metrics.set_jti_commits("thread", 3, 9);
        let (text, content_type) = metrics.render();
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        for (line, value) in [
            (
                "certbound_http_requests_total{part=\"cards\",route=\"/api/v1/cards\",status=\"201\"}",
                1.0,
            ),
            (
                "certbound_http_request_duration_seconds_count{part=\"cards\",route=\"/api/v1/cards\"}",
                1.0,
            ),
            (
                "certbound_tokens_issued_total{auth_method=\"private_key_jwt\",part=\"authz\"}",
                1.0,
            ),
            (
                "certbound_refusals_total{part=\"cards\",reason=\"invalid_token\"}",
                1.0,
            ),
            (
                "certbound_certificates_total{action=\"issued\",certificate_type=\"transport\"}",
                1.0,
            ),
            ("certbound_registrations_total{action=\"registered\"}", 1.0),
            ("certbound_cards_created_total", 1.0),
            ("certbound_jti_commits_total{committer=\"thread\"}", 3.0),
            ("certbound_jti_committed_total{committer=\"thread\"}", 9.0),
            ("certbound_card_status_changes_total{status=\"41\"}", 1.0),
            ("certbound_audit_records_lost_total", 2.0),
            ("certbound_bulk_jobs{state=\"Pending\"}", 3.0),
            ("certbound_database_connections{state=\"max\"}", 8.0),
            ("certbound_database_pool_waits_total", 2.0),
            (
                "certbound_cache_lookups_total{cache=\"token_standing\",result=\"hit\"}",
                9.0,
            ),
        ] {
            assert_eq!(sample(&text, line), Some(value), "{line} in\n{text}");
        }
    }
}
