//! The one ImageStream watch of the process. The import controller, the trigger controller, the
//! admission webhook and the notification index all read the same store and hear about changes
//! through their own subscription, so a replica holds each stream once however many parts use it.
//!
//! A relist reaches subscribers as changes: the watch ([`Scope::watch`]) turns every relist after
//! the first list into `Applied` for what it lists and `Deleted` for every stream it no longer
//! contains, so nothing a subscriber keeps per stream outlives the stream. Subscriptions are
//! unbounded channels rather than kube's bounded broadcast (`ReflectHandle`), because that one
//! carries no deletions; a subscriber that stops reading holds its backlog, and every subscriber
//! here only updates an index or queues a key.

use parking_lot::Mutex;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use kube::runtime::reflector::{self, reflector, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::watch;

use super::scope::{api_of, Scope};
use super::ImageStream;

/// A change a subscriber hears about, after the store has it.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    Applied(Arc<ImageStream>),
    Deleted(Arc<ImageStream>),
}

/// The shared store and its subscribers. Cheap to clone.
#[derive(Clone)]
pub struct StreamCache {
    store: Store<ImageStream>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<StreamEvent>>>>,
    synced: watch::Receiver<bool>,
}

/// Drives the watch; runs for as long as the process serves anything that reads streams.
pub type Driver = futures::future::BoxFuture<'static, ()>;

impl StreamCache {
    /// The cache over every ImageStream of the cluster, and the future that fills it.
    pub fn new(client: Client) -> (Self, Driver) {
        Self::scoped(client, &Scope::Cluster)
    }

    /// The cache over the ImageStreams of `scope`, and the future that fills it.
    pub fn scoped(client: Client, scope: &Scope) -> (Self, Driver) {
        let (store, writer) = reflector::store();
        let events = scope.watch(
            api_of::<ImageStream>(client),
            watcher::Config::default().any_semantic(),
            store.clone(),
        );
        Self::over(store, writer, events)
    }

    /// The cache filled by `events` (a [`Scope::watch`], or a test's own), through `writer`.
    pub fn over(
        store: Store<ImageStream>,
        writer: Writer<ImageStream>,
        events: impl futures::Stream<Item = watcher::Result<watcher::Event<ImageStream>>>
            + Send
            + 'static,
    ) -> (Self, Driver) {
        // managedFields repeat the shape of the whole status (it is written by server-side
        // apply) and nothing here reads them: drop them before the store keeps every stream.
        let events = events.modify(|s| {
            s.metadata.managed_fields = None;
        });
        let (synced_tx, synced) = watch::channel(false);
        let cache = Self {
            store,
            subscribers: Arc::default(),
            synced,
        };
        let fanout = cache.clone();
        let driver = reflector(writer, events)
            .for_each(move |event| {
                fanout.dispatch(event, &synced_tx);
                futures::future::ready(())
            })
            .boxed();
        (cache, driver)
    }

    fn dispatch(
        &self,
        event: Result<watcher::Event<ImageStream>, watcher::Error>,
        synced: &watch::Sender<bool>,
    ) {
        let change = match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => {
                StreamEvent::Applied(Arc::new(s))
            }
            Ok(watcher::Event::Delete(s)) => StreamEvent::Deleted(Arc::new(s)),
            Ok(watcher::Event::InitDone) => {
                synced.send_replace(true);
                return;
            }
            Ok(watcher::Event::Init) => return,
            Err(e) => {
                tracing::warn!(error = %e, "image stream watch failed; retrying");
                return;
            }
        };
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|s| s.unbounded_send(change.clone()).is_ok());
    }

    /// Every stream, as the store holds it.
    pub fn store(&self) -> Store<ImageStream> {
        self.store.clone()
    }

    /// Changes from now on (a subscriber reads what it missed from the store). Dropping the
    /// receiver unsubscribes.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<StreamEvent> {
        let (tx, rx) = mpsc::unbounded();
        self.subscribers.lock().push(tx);
        rx
    }

    /// Resolves once the first list is complete.
    pub async fn synced(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|s| *s).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::SinkExt;
    use kube::ResourceExt;
    use watcher::Event::{Init, InitApply, InitDone};

    fn seen(e: Option<StreamEvent>) -> String {
        match e {
            Some(StreamEvent::Applied(s)) => format!("Applied {}", s.name_any()),
            Some(StreamEvent::Deleted(s)) => format!("Deleted {}", s.name_any()),
            None => "closed".into(),
        }
    }

    #[tokio::test]
    async fn a_relist_without_a_stream_tells_every_subscriber_it_is_gone() {
        let (mut tx, rx) = mpsc::unbounded();
        let (store, writer) = reflector::store();
        let events = super::super::scope::relisting(rx, None, store.clone());
        let (cache, driver) = StreamCache::over(store, writer, events);
        let mut changes = cache.subscribe();
        tokio::spawn(driver);
        let first = [
            Init,
            InitApply(ImageStream::test("kept").in_namespace("a")),
            InitApply(ImageStream::test("gone").in_namespace("a")),
            InitDone,
        ];
        for e in first {
            tx.send(Ok(e)).await.ok();
        }
        cache.synced().await;
        assert_eq!(seen(changes.next().await), "Applied kept");
        assert_eq!(seen(changes.next().await), "Applied gone");
        // The watch was away; its relist no longer contains a/gone.
        for e in [
            Init,
            InitApply(ImageStream::test("kept").in_namespace("a")),
            InitDone,
        ] {
            tx.send(Ok(e)).await.ok();
        }
        assert_eq!(seen(changes.next().await), "Applied kept");
        assert_eq!(seen(changes.next().await), "Deleted gone");
        let names: Vec<String> = cache.store().state().iter().map(|s| s.name_any()).collect();
        assert_eq!(names, ["kept"]);
    }
}
