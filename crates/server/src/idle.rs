//! What keeps one host from holding a listener: every idle phase of a connection ends, and no
//! source address may hold more than its share of connections.
//!
//! - [`Activity`] and [`ActivityIo`]: a connection with no request in flight that reads and
//!   writes nothing for the idle timeout is closed. That covers a client that completes TLS and
//!   sends nothing, the time between kept-alive requests, and an HTTP/2 connection with no open
//!   stream. (Headers dribbled slowly are cut by hyper's header-read timeout.)
//! - [`DeadlineBody`]: a request body must arrive whole within the body timeout, however steadily
//!   it trickles (one byte every few seconds is "activity", but not a request).
//! - [`AddressSlots`]: connections per source address, beside the per-listener cap; trusted
//!   proxies, which carry everyone's traffic, are exempt.
//! - [`Refusals`]: refused connections are counted and logged at most once per interval, so an
//!   attacker cannot flood the log with them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When a connection last moved a byte, and how many of its requests are being answered.
#[derive(Debug)]
pub(crate) struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last read or write.
    last: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// A request is being answered until the returned guard drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// Whether the connection has been idle (no request in flight, no byte moved) for `timeout`.
    pub(crate) fn idle_for(&self, timeout: Duration) -> bool {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.started.elapsed().saturating_sub(last) >= timeout
    }
}

/// A request in flight; see [`Activity::begin`].
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's stream that notes every byte it moves in an [`Activity`].
#[derive(Debug)]
pub(crate) struct ActivityIo<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> ActivityIo<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        activity.touch();
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error a request body that missed its deadline ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub(crate) struct BodyTooSlow(Duration);

/// A request body that must end within a deadline from the start of its request.
pub(crate) struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Open connections per source address, capped.
#[derive(Debug)]
pub(crate) struct AddressSlots {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's slot; freed on drop.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    slots: Arc<AddressSlots>,
    address: IpAddr,
}

impl AddressSlots {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `address`, or `None` when it holds its share already.
    pub(crate) fn acquire(self: &Arc<Self>, address: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: self.clone(),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// Refused connections, logged as one line per interval with their count.
#[derive(Debug)]
pub(crate) struct Refusals {
    listener: String,
    started: Instant,
    refused: AtomicU64,
    /// Seconds after `started` of the last log line.
    logged: AtomicU64,
}

/// The least time between two log lines about refused connections.
const REFUSALS_LOGGED_EVERY: u64 = 10;

impl Refusals {
    pub(crate) fn new(listener: String) -> Arc<Self> {
        Arc::new(Self {
            listener,
            started: Instant::now(),
            refused: AtomicU64::new(0),
            logged: AtomicU64::new(0),
        })
    }

    /// Counts a refused connection; logs the count when the interval has passed.
    pub(crate) fn note(&self, address: IpAddr, reason: &'static str) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.started.elapsed().as_secs();
        let logged = self.logged.load(Ordering::Relaxed);
        let due = refused == 1 || now >= logged + REFUSALS_LOGGED_EVERY;
        if due
            && self
                .logged
                .compare_exchange(logged, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let count = self.refused.swap(0, Ordering::Relaxed);
            tracing::warn!(
                listener = %self.listener,
                refused = count,
                last_address = %address,
                reason,
                "connections refused since the last report"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_its_share() {
        let slots = AddressSlots::new(2);
        let one: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let two: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let first = slots.acquire(one);
        let second = slots.acquire(one);
        assert!(first.is_some() && second.is_some());
        assert!(slots.acquire(one).is_none(), "a third from one address");
        assert!(
            slots.acquire(two).is_some(),
            "another address is not affected"
        );
        drop(first);
        assert!(slots.acquire(one).is_some(), "a freed slot is usable again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_nothing_in_flight() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(5);
        assert!(!activity.idle_for(timeout));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(activity.idle_for(timeout));
        let request = activity.begin();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!activity.idle_for(timeout), "a slow answer is not idleness");
        drop(request);
        assert!(
            !activity.idle_for(timeout),
            "the idle time starts when the answer is done"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(activity.idle_for(timeout));
    }
}
