//! Serves each accepted connection with the HTTP service, and reports what the HTTP
//! layer answers on its own, before any route sees a request: a request it cannot parse
//! (`400`), too many or too large headers (`431`), headers that do not arrive within
//! `server.client_request_timeout` (`408`). Those are counted and logged here, with the
//! peer's address, since no route ever sees them. It also tells the shutdown whether
//! connections are still arriving.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_http::error::{DispatchError, ParseError};
use actix_web::dev::{Extensions, Service, ServiceRequest};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::telemetry::events::{ConnectionEndedEarly, ConnectionFailed, ConnectionRefused};
use crate::telemetry::{Metrics, Outcome};

/// Every connection of the webhook listener, across workers.
pub struct Connections {
    metrics: Metrics,
    /// Connections taken whose first request has not reached a route yet.
    awaiting_first_request: AtomicUsize,
    /// When the last connection was taken, in milliseconds after `started`.
    last_taken_ms: AtomicU64,
    started: Instant,
}

impl Connections {
    pub fn new(metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            metrics,
            awaiting_first_request: AtomicUsize::new(0),
            last_taken_ms: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Serves one accepted connection with `http`, then reports how it ended.
    pub fn serve<S>(
        self: &Arc<Self>,
        tcp: TcpStream,
        http: &S,
    ) -> impl Future<Output = Result<(), DispatchError>>
    where
        S: Service<(ObservedStream, Option<SocketAddr>), Response = (), Error = DispatchError>,
    {
        let peer = tcp.peer_addr().ok();
        self.awaiting_first_request.fetch_add(1, Ordering::SeqCst);
        self.last_taken_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::SeqCst);
        let record = Rc::new(ConnectionRecord {
            connections: self.clone(),
            requests: Cell::new(0),
            wrote: Cell::new(false),
        });
        let served = http.call((
            ObservedStream {
                inner: tcp,
                record: record.clone(),
            },
            peer,
        ));
        async move {
            let result = served.await;
            record.report(peer, &result);
            result
        }
    }

    /// No connection is waiting for its first request, and none was taken within
    /// `quiet`: closing the listener now cuts nobody's request.
    pub fn are_quiet(&self, quiet: Duration) -> bool {
        let last_taken = Duration::from_millis(self.last_taken_ms.load(Ordering::SeqCst));
        self.awaiting_first_request.load(Ordering::SeqCst) == 0
            && self.started.elapsed().saturating_sub(last_taken) >= quiet
    }
}

/// What one connection did so far. It lives on the worker that serves the connection.
pub struct ConnectionRecord {
    connections: Arc<Connections>,
    /// Requests that reached a route.
    requests: Cell<u64>,
    /// Whether any byte was written back.
    wrote: Cell<bool>,
}

impl ConnectionRecord {
    fn note_request(&self) {
        if self.requests.get() == 0 {
            self.connections
                .awaiting_first_request
                .fetch_sub(1, Ordering::SeqCst);
        }
        self.requests.set(self.requests.get() + 1);
    }

    /// Counts and logs what the HTTP layer answered on its own; other endings are
    /// logged at the level they deserve.
    fn report(&self, peer: Option<SocketAddr>, result: &Result<(), DispatchError>) {
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.ip().to_string());
        let refused = match result {
            Err(DispatchError::Parse(ParseError::TooLarge)) => Some(Outcome::HeadersTooLarge),
            Err(DispatchError::Parse(_)) => Some(Outcome::MalformedRequest),
            // The only answer the HTTP layer writes without an error and without a
            // route: 408 when the first request's head is late.
            Ok(()) if self.requests.get() == 0 && self.wrote.get() => Some(Outcome::HeaderTimeout),
            _ => None,
        };
        if let Some(outcome) = refused {
            let error = match result {
                Err(error) => error.to_string(),
                Ok(()) => "the request head did not arrive in time".to_owned(),
            };
            self.connections.metrics.emit(ConnectionRefused {
                peer: &peer,
                outcome,
                error: &error,
            });
            return;
        }
        match result {
            Ok(()) => {}
            Err(
                error @ (DispatchError::Io(_)
                | DispatchError::DisconnectTimeout
                | DispatchError::HandlerDroppedPayload),
            ) => ConnectionEndedEarly { peer: &peer, error }.emit(),
            Err(error) => ConnectionFailed { peer: &peer, error }.emit(),
        }
    }
}

impl Drop for ConnectionRecord {
    fn drop(&mut self) {
        if self.requests.get() == 0 {
            self.connections
                .awaiting_first_request
                .fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Makes a connection's record reachable from its requests (for
/// `HttpServiceBuilder::on_connect_ext`).
pub fn share_record(io: &ObservedStream, extensions: &mut Extensions) {
    extensions.insert(io.record.clone());
}

/// Notes that a request of the connection reached a route (called for every request).
pub fn note_request(request: &ServiceRequest) {
    if let Some(record) = request.conn_data::<Rc<ConnectionRecord>>() {
        record.note_request();
    }
}

/// A TCP stream that notes in its connection's record whether anything was written.
pub struct ObservedStream {
    inner: TcpStream,
    record: Rc<ConnectionRecord>,
}

impl AsyncRead for ObservedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ObservedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.record.wrote.set(true);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.record.wrote.set(true);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
