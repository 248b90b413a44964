//! The one ImageStream watch of the process. The import controller, the trigger controller, the
//! admission webhook and the notification index all read the same store and hear about changes
//! through their own subscription, so a replica holds each stream once however many parts use it.

use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::{FutureExt, StreamExt};
use kube::runtime::reflector::{self, reflector, Store};
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
        let events = scope
            .watch(
                api_of::<ImageStream>(client),
                watcher::Config::default().any_semantic(),
                store.clone(),
            )
            // managedFields repeat the shape of the whole status (it is written by server-side
            // apply) and nothing here reads them: drop them before the store keeps every stream.
            .modify(|s| {
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
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
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
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }

    /// Resolves once the first list is complete.
    pub async fn synced(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|s| *s).await;
    }
}
