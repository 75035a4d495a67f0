//! HTTP/2 refusals that arrive whole.
//!
//! Many refusals come before the request's body is read: a wrong admin token, no access token, no
//! client certificate. Over HTTP/2 the server then closes its side of the stream while the client
//! is still sending; h2 ends such a stream with `RST_STREAM`, and clients such as curl 7.88 then
//! drop the answer they have already received ("Stream error in the HTTP/2 framing layer").
//!
//! So on HTTP/2 the request's body is shared with the response ([`RequestBody`],
//! [`ResponseBody`]): whatever the handler left unread is kept until the response has been sent,
//! then read to its end and discarded by a small task, bounded in bytes and time, so that the
//! stream closes normally from both sides. A body larger than [`DRAIN_LIMIT`] or slower than
//! [`DRAIN_TIME`] is dropped, and h2 resets the stream with `NO_ERROR` (RFC 9113 §8.1).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

/// The most bytes read and discarded after a response.
pub(crate) const DRAIN_LIMIT: usize = 256 * 1024;
/// The longest time spent reading them.
pub(crate) const DRAIN_TIME: Duration = Duration::from_secs(5);

type Shared = Arc<Mutex<Option<Incoming>>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Option<Incoming>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Splits an HTTP/2 request body into the body the router reads and the handle its response
/// keeps.
pub(crate) fn share(body: Incoming) -> (RequestBody, Shared) {
    let shared = Arc::new(Mutex::new(Some(body)));
    (RequestBody(shared.clone()), shared)
}

/// The request's body as the router sees it.
pub(crate) struct RequestBody(Shared);

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match lock(&self.0).as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        lock(&self.0).as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.0)
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// A response's body; on HTTP/2 it holds the request's body until it has been sent.
pub(crate) struct ResponseBody {
    inner: axum::body::Body,
    request: Option<Shared>,
}

impl ResponseBody {
    /// `inner`, keeping `request` (an HTTP/2 request's body) until it has been sent.
    pub(crate) fn new(inner: axum::body::Body, request: Option<Shared>) -> Self {
        Self { inner, request }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    /// hyper drops the body once the response is sent (or the stream is gone): read what the
    /// client still sends, unless the handler still holds the request's body itself.
    fn drop(&mut self) {
        let Some(shared) = self.request.take() else {
            return;
        };
        let Ok(mutex) = Arc::try_unwrap(shared) else {
            return;
        };
        let Some(body) = mutex.into_inner().unwrap_or_else(PoisonError::into_inner) else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

/// Reads and discards a body to its end, at most [`DRAIN_LIMIT`] bytes for at most
/// [`DRAIN_TIME`].
async fn drain(mut body: Incoming) {
    let read_all = async {
        let mut read = 0usize;
        while let Some(Ok(frame)) =
            std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            read = read.saturating_add(frame.data_ref().map_or(0, Bytes::len));
            if read > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read_all).await;
}
