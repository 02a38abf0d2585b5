//! The simulator's responses: JSON answers and error bodies as the gateway writes them, and
//! a body that can break off mid-way.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use hyper::body::{Frame, SizeHint};

pub(super) fn json(status: u16, value: &serde_json::Value) -> Response<SimBody> {
    let mut r = Response::new(SimBody::full(Bytes::from(value.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn error(status: u16, code: &str, message: &str, request_id: &str) -> Response<SimBody> {
    let mut r = json(
        status,
        &serde_json::json!({"error_code": code, "error_msg": message, "request_id": request_id}),
    );
    if let Ok(v) = request_id.parse() {
        r.headers_mut().insert("X-Request-Id", v);
    }
    r
}

/// A response body that is either whole, or breaks off after its first chunk.
pub struct SimBody {
    chunk: Option<Bytes>,
    then_break: bool,
}

impl SimBody {
    pub(super) fn full(bytes: Bytes) -> Self {
        SimBody {
            chunk: Some(bytes),
            then_break: false,
        }
    }
    pub(super) fn broken(first: Bytes) -> Self {
        SimBody {
            chunk: Some(first),
            then_break: true,
        }
    }
}

impl hyper::body::Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(chunk) = self.chunk.take() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if std::mem::take(&mut self.then_break) {
            return Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "simulated connection reset",
            ))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.chunk.is_none() && !self.then_break
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.chunk, self.then_break) {
            (Some(c), false) => SizeHint::with_exact(c.len() as u64),
            (None, false) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
