//! The change feed between instances on PostgreSQL (DESIGN.md section 7): every change to the
//! trust counter also sends `NOTIFY certbound_trust` with the sending instance's id, in the same
//! transaction (PostgreSQL delivers it at commit, never for a rolled-back change). Each instance
//! listens on its own connection and, on another instance's notification, moves its count of
//! known changes, which every in-memory memory of rarely changing state reads for free on each
//! lookup: a revocation at one instance empties the others' memories within a round trip.
//!
//! Notifications can be lost (the listening connection drops; PostgreSQL keeps none for a
//! listener that is away). So a lost connection counts as a change (everything remembered is
//! dropped), and the periodic read of the trust counter stays as the backstop that bounds
//! staleness to a second whatever happens to the feed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::PgListener;

/// The channel every instance of one database notifies and listens on.
pub(crate) const CHANNEL: &str = "certbound_trust";

/// Ends the listening task when the last handle of its store is dropped.
#[derive(Debug)]
pub(crate) struct Feed {
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts listening at `url` in a background task. Another instance's notification (any payload
/// but `instance`) moves `known_changes`, as does a lost or failed listening connection.
pub(crate) fn listen(url: &str, instance: String, known_changes: Arc<AtomicU64>) -> Feed {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let url = url.to_owned();
    tokio::spawn(async move {
        let mut listener = None;
        // Nothing is remembered before the store's first listener connects; after that, a
        // connection made anew may have missed notifications.
        let mut first = true;
        loop {
            let Some(active) = listener.as_mut() else {
                tokio::select! {
                    _ = &mut stopped => return,
                    connected = subscribe(&url) => match connected {
                        Ok(connected) => {
                            if !first {
                                // Whatever was announced while nobody listened is unknown.
                                known_changes.fetch_add(1, Ordering::SeqCst);
                            }
                            first = false;
                            listener = Some(connected);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "the change feed cannot listen; changes of other instances are seen by the periodic check alone");
                            tokio::select! {
                                _ = &mut stopped => return,
                                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            }
                        }
                    },
                }
                continue;
            };
            tokio::select! {
                _ = &mut stopped => return,
                received = active.try_recv() => match received {
                    Ok(Some(notification)) => {
                        if notification.payload() != instance {
                            known_changes.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(None) => {
                        // The connection was lost and is made again (sqlx listens anew).
                        known_changes.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "the change feed lost its connection; listening again");
                        known_changes.fetch_add(1, Ordering::SeqCst);
                        listener = None;
                    }
                },
            }
        }
    });
    Feed { _stop: stop }
}

async fn subscribe(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
