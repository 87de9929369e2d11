//! `api.body_read_timeout` on every route: a request body must arrive in
//! full within the timeout, counted from when the request's headers were
//! read, or the client gets `408` and the connection is closed.
//!
//! A layer rather than a check in each handler, so no route (profiles,
//! admin, one added later) can forget it. The body is not buffered here:
//! it is wrapped so that reading past the deadline fails, whichever
//! extractor reads it, and the layer turns that failure into the `408`.
//! (A handler that never reads its body answers normally; hyper then closes
//! a connection whose body was left unread instead of waiting for it.)

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::error::ApiError;

/// The request body, failing once the deadline passes.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    expired: Arc<AtomicBool>,
}

/// What a read past the deadline fails with.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?}")]
struct BodyTimedOut(Duration);

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        // Data already here is taken first: only waiting is cut short.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: gives the request body `timeout` to arrive; a handler whose
/// read ran out of time answers `408 request_timeout` (with
/// `Connection: close`), whatever its extractor made of the failed read.
pub async fn enforce(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let expired = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let body = Body::new(DeadlineBody {
        inner: body,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        timeout,
        expired: expired.clone(),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    if expired.load(Ordering::Relaxed) {
        return ApiError::RequestTimeout(BodyTimedOut(timeout).to_string()).into_response();
    }
    response
}
