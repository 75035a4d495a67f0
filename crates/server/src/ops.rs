//! The operations listener (DESIGN.md section 1): plain HTTP, on loopback by default, for the
//! machines that watch certbound rather than for its clients.
//!
//! - `GET /metrics`: the Prometheus text format ([`certbound_http::Metrics`]); gauges that read
//!   state (bulk jobs by state, the database pool, cache lookups) are refreshed at each scrape.
//! - `GET /livez`: 200 while the process serves at all.
//! - `GET /readyz`: 200 only once start-up is complete and while the database answers a query
//!   within [`READY_WITHIN`]; 503 with the reason otherwise.
//!
//! It serves from the moment its port is bound, before the data dir is opened, so that probes
//! see "starting" rather than a refused connection during a first start's key generation.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long `/readyz` waits for the database.
pub(crate) const READY_WITHIN: Duration = Duration::from_secs(2);

/// Hits and misses of a part's caches, by cache name.
pub(crate) type CacheLookups = Box<dyn Fn() -> Vec<(&'static str, (u64, u64))> + Send + Sync>;

/// What the stack hands the listener once it has started.
pub(crate) struct Started {
    /// The store whose reachability decides readiness.
    pub(crate) database: Arc<certbound_store::Database>,
    /// The caches of the parts running here.
    pub(crate) caches: Vec<CacheLookups>,
}

/// The listener's state: the metrics, and the stack once it has started.
pub(crate) struct Ops {
    metrics: certbound_http::Metrics,
    started: OnceLock<Started>,
    /// One scrape at a time brings the counters up to the totals the store and caches keep (two
    /// at once would add the same difference twice).
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("started", &self.started.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Ops {
    pub(crate) fn new(metrics: certbound_http::Metrics) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            started: OnceLock::new(),
            refreshing: tokio::sync::Mutex::new(()),
        })
    }

    /// Start-up is complete: `/readyz` now asks the database.
    pub(crate) fn started(&self, started: Started) {
        let _ = self.started.set(started);
    }

    fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/livez", get(|| async { "live\n" }))
            .route("/readyz", get(readyz))
            .with_state(self.clone())
    }

    /// Serves until `shutdown` flips.
    pub(crate) async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let router = self.router();
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                while !*shutdown.borrow() {
                    if shutdown.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the operations listener stopped");
        }
    }
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    if let Some(started) = ops.started.get() {
        let _refreshing = ops.refreshing.lock().await;
        let (in_use, idle, max) = started.database.pool_connections();
        ops.metrics.set_pool(
            i64::from(in_use),
            i64::from(idle),
            i64::from(max),
            started.database.pool_waits(),
        );
        let commits = started.database.used_jti_commits();
        for (committer, (count, ids)) in certbound_store::Committer::ALL.iter().zip(commits.by) {
            ops.metrics.set_jti_commits(committer.as_str(), count, ids);
        }
        for lookups in &started.caches {
            for (cache, (hits, misses)) in lookups() {
                ops.metrics.set_cache_lookups(cache, hits, misses);
            }
        }
        match tokio::time::timeout(READY_WITHIN, started.database.bulk_jobs_by_status()).await {
            Ok(Ok(states)) => {
                for state in ["Pending", "Processing", "Complete", "Failed"] {
                    let count = states
                        .iter()
                        .find(|(name, _)| name == state)
                        .map_or(0, |(_, count)| *count);
                    ops.metrics.set_bulk_jobs(state, count);
                }
            }
            Ok(Err(error)) => tracing::warn!(%error, "bulk job counts unavailable for /metrics"),
            Err(_) => tracing::warn!("bulk job counts timed out for /metrics"),
        }
    }
    let (body, content_type) = ops.metrics.render();
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response {
    let Some(started) = ops.started.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: start-up is not complete\n",
        )
            .into_response();
    };
    let reason = match tokio::time::timeout(READY_WITHIN, started.database.ping()).await {
        Ok(Ok(())) => return (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(error)) => error.to_string(),
        Err(_) => format!("no answer within {} s", READY_WITHIN.as_secs()),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("not ready: the database does not answer ({reason})\n"),
    )
        .into_response()
}
