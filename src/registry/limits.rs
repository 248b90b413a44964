//! What all registries together may cost the operator: requests in flight and response bytes
//! held in memory, across every host, with a share per namespace so one tenant's slow or huge
//! registries cannot starve the others. Per-registry budgets (`budget.rs`) protect registries
//! from the operator; these protect the operator from registries.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use bytes::{Bytes, BytesMut};

use super::http::{transport_error, HttpError};

/// Bytes are counted in KiB: a semaphore counts permits in u32.
const UNIT: usize = 1024;
/// Shares remembered before idle ones are forgotten.
const SWEEP_TENANTS_ABOVE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Registry requests in flight at once, all hosts together.
    pub requests: usize,
    /// Of those, one namespace's at most.
    pub requests_per_namespace: usize,
    /// Response bytes being read at once, all hosts together.
    pub buffered_bytes: usize,
    /// Of those, one namespace's at most (at least the largest single body read: 4 MiB).
    pub buffered_bytes_per_namespace: usize,
}

impl Default for Limits {
    /// 64 requests and 64 MiB in all, a quarter of each per namespace: the chart's memory limit
    /// holds the operator's own state plus a full buffer with room to spare.
    fn default() -> Self {
        Self {
            requests: 64,
            requests_per_namespace: 16,
            buffered_bytes: 64 * 1024 * 1024,
            buffered_bytes_per_namespace: 16 * 1024 * 1024,
        }
    }
}

struct Share {
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

/// The limits in force, shared by every request of the process.
pub(super) struct Gates {
    limits: Limits,
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    shares: Mutex<HashMap<String, Arc<Share>>>,
    /// Most KiB held at once since start, for tests and the metrics.
    peak_kib: AtomicUsize,
    /// How long a read may wait for buffer room before it fails (and is retried).
    wait: Duration,
}

/// A request's place: held until the response is read.
pub(super) struct Slot<'a> {
    gates: &'a Gates,
    share: Arc<Share>,
    _tenant: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

/// Buffer room held while a body is read.
#[derive(Default)]
pub(super) struct Room {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Gates {
    pub(super) fn new(limits: Limits, wait: Duration) -> Self {
        let kib = |bytes: usize| (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            requests: Arc::new(Semaphore::new(limits.requests.max(1))),
            bytes: Arc::new(Semaphore::new(kib(limits.buffered_bytes))),
            shares: Mutex::default(),
            peak_kib: AtomicUsize::new(0),
            wait,
            limits,
        }
    }

    /// A place for one request of `namespace`: its share first, so a namespace waiting for its
    /// own share holds none of the others'.
    pub(super) async fn slot(&self, namespace: &str) -> Result<Slot<'_>, HttpError> {
        let share = self.share(namespace);
        let closed = |_| HttpError::Refused("transport shut down".into());
        let tenant = share
            .requests
            .clone()
            .acquire_owned()
            .await
            .map_err(closed)?;
        let global = self
            .requests
            .clone()
            .acquire_owned()
            .await
            .map_err(closed)?;
        Ok(Slot {
            gates: self,
            share,
            _tenant: tenant,
            _global: global,
        })
    }

    fn share(&self, namespace: &str) -> Arc<Share> {
        let mut shares = self.shares.lock();
        if let Some(s) = shares.get(namespace) {
            return s.clone();
        }
        if shares.len() >= SWEEP_TENANTS_ABOVE {
            shares.retain(|_, s| Arc::strong_count(s) > 1);
        }
        let kib =
            (self.limits.buffered_bytes_per_namespace / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        let share = Arc::new(Share {
            requests: Arc::new(Semaphore::new(self.limits.requests_per_namespace.max(1))),
            bytes: Arc::new(Semaphore::new(kib)),
        });
        shares.insert(namespace.to_string(), share.clone());
        share
    }

    /// The most response bytes held at once since start.
    pub(super) fn peak_buffered(&self) -> usize {
        self.peak_kib.load(Ordering::Relaxed).saturating_mul(UNIT)
    }

    fn record_peak(&self) {
        let total = (self.limits.buffered_bytes / UNIT).max(1);
        let held = total.saturating_sub(self.bytes.available_permits());
        self.peak_kib.fetch_max(held, Ordering::Relaxed);
    }
}

impl Slot<'_> {
    /// Adds room for `bytes` more to `room`, waiting (at most the transport's timeout) while
    /// this namespace's share or the whole buffer is full.
    pub(super) async fn reserve(&self, room: &mut Room, bytes: usize) -> Result<(), HttpError> {
        let kib = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX);
        let acquire = async {
            let tenant = self.share.bytes.clone().acquire_many_owned(kib).await;
            let global = self.gates.bytes.clone().acquire_many_owned(kib).await;
            tenant.and_then(|t| global.map(|g| [t, g]))
        };
        match tokio::time::timeout(self.gates.wait, acquire).await {
            Ok(Ok(permits)) => {
                room.permits.extend(permits);
                self.gates.record_peak();
                Ok(())
            }
            Ok(Err(_)) => Err(HttpError::Refused("transport shut down".into())),
            Err(_) => Err(HttpError::Transport {
                detail: "the operator's buffer for registry responses stayed full; the import \
                         is retried automatically"
                    .into(),
                connect: false,
                timeout: true,
                plain_http: false,
            }),
        }
    }
}

/// A small body (an error envelope, a token), at most `limit` bytes.
pub(super) async fn read_limited(
    response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, HttpError> {
    read_body(response, limit, None).await
}

/// A body of up to `limit` bytes, read within the buffer room `slot` can get: the announced
/// length up front, or chunk by chunk when the registry announces none.
pub(super) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    slot: Option<&Slot<'_>>,
) -> Result<Bytes, HttpError> {
    let announced = response.content_length();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(HttpError::TooLarge { limit });
    }
    let mut room = Room::default();
    let reserved = match (slot, announced.and_then(|n| usize::try_from(n).ok())) {
        (Some(slot), Some(n)) => {
            slot.reserve(&mut room, n).await?;
            Some(n)
        }
        _ => None,
    };
    let mut buf = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        let len = buf.len().saturating_add(chunk.len());
        if len > limit {
            return Err(HttpError::TooLarge { limit });
        }
        if let Some(slot) = slot.filter(|_| reserved.is_none_or(|r| len > r)) {
            slot.reserve(&mut room, chunk.len()).await?;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Gates {
        Gates::new(
            Limits {
                requests: 3,
                requests_per_namespace: 2,
                buffered_bytes: 8 * UNIT,
                buffered_bytes_per_namespace: 4 * UNIT,
            },
            Duration::from_millis(50),
        )
    }

    #[tokio::test]
    async fn one_namespace_cannot_take_every_request_slot() {
        let gates = small();
        let _a1 = gates.slot("a").await.unwrap();
        let _a2 = gates.slot("a").await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), gates.slot("a")).await;
        assert!(third.is_err(), "a third slot for one namespace waits");
        let b = tokio::time::timeout(Duration::from_millis(50), gates.slot("b")).await;
        assert!(b.is_ok(), "another namespace still gets one");
    }

    #[tokio::test]
    async fn buffered_bytes_are_bounded_per_namespace_and_released_with_the_room() {
        let gates = small();
        let slot = gates.slot("a").await.unwrap();
        let mut room = Room::default();
        slot.reserve(&mut room, 3 * UNIT).await.unwrap();
        let err = slot.reserve(&mut room, 2 * UNIT).await.unwrap_err();
        assert!(err.to_string().contains("buffer"), "{err}");
        let other = gates.slot("b").await.unwrap();
        other.reserve(&mut Room::default(), 4 * UNIT).await.unwrap();
        drop(room);
        slot.reserve(&mut Room::default(), 4 * UNIT).await.unwrap();
        assert_eq!(gates.peak_buffered(), 7 * UNIT);
    }
}
