//! What the HTTPS listener allows a connection: the port is reachable by whoever can reach the
//! Service (notifications are meant to be exposed), so a connection that sends nothing, sends
//! its headers a byte at a time, or just stays open cannot hold the server's resources.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Bounds for every connection of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once; more are closed as soon as they are accepted.
    pub connections: usize,
    /// TLS handshake, and then the first request's arrival.
    pub handshake: Duration,
    /// A request's headers, from their first byte.
    pub header_read: Duration,
    /// A connection with no byte read or written for this long is closed.
    pub idle: Duration,
}

impl Default for ListenerLimits {
    /// The API server's webhook calls take milliseconds and time out after 10 s; registries'
    /// notifications are one small POST. Nothing legitimate needs more.
    fn default() -> Self {
        Self {
            connections: 512,
            handshake: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(90),
        }
    }
}

/// Wraps the TCP acceptor: refuses connections beyond the limit and closes idle ones.
#[derive(Clone)]
pub struct Limited {
    slots: Arc<Semaphore>,
    idle: Duration,
}

impl Limited {
    pub fn new(limits: ListenerLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.connections.max(1))),
            idle: limits.idle,
        }
    }
}

impl<I, S> Accept<I, S> for Limited
where
    I: Send + 'static,
    S: Send + 'static,
{
    type Stream = Guarded<I>;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Guarded<I>, S)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let permit = self.slots.clone().try_acquire_owned();
        let idle = self.idle;
        Box::pin(async move {
            // Dropping the stream closes the connection at once.
            let permit = permit.map_err(|_| {
                io::Error::new(io::ErrorKind::ConnectionRefused, "too many connections")
            })?;
            Ok((Guarded::new(stream, idle, permit), service))
        })
    }
}

/// A connection holding its slot, closed when idle.
pub struct Guarded<S> {
    inner: S,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl<S> Guarded<S> {
    fn new(inner: S, idle: Duration, slot: OwnedSemaphorePermit) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            _slot: slot,
        }
    }

    fn active(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Pending I/O becomes an error once the connection has been idle too long.
    fn or_idle<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.active();
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.or_idle(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.or_idle(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
