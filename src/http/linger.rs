//! Lingering on refused request bodies. A handler that answers before reading the body (a
//! manifest over the size limit, a chunk for a busy upload) drops it; the connection then
//! closes with the client's bytes unread, the kernel answers them with a reset, and the
//! client may lose the error response while it is still sending. Like a web server's
//! lingering close, the rest of such a body is read and dropped on a task of its own (bounded
//! in bytes and time), so hyper keeps the connection and the response reaches the client.

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use futures::StreamExt;
use http_body::{Body as HttpBody, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

const LINGER_BYTES: usize = 64 << 20;
const LINGER_TIME: Duration = Duration::from_secs(10);

/// Middleware: gives every request body that may be left unread a lingering drop.
pub async fn linger_on_unread_bodies(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    next.run(req.map(|body| Body::new(Lingering(Some(body))))).await
}

struct Lingering(Option<Body>);

impl HttpBody for Lingering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        match self.0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.0.as_ref().map(HttpBody::size_hint).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(body) = self.0.take().filter(|b| !b.is_end_stream()) else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0;
    let discard = async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, discard).await;
}
