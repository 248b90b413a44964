//! The one shape of the indexes kept beside a watch (which streams copy from which, which
//! streams each namespace holds, which spec tags a push notification concerns, which workloads
//! follow a tag): told of every object applied and deleted, in the order the watch saw them. A relist reaches an index as the same two calls (the watch
//! turns it into upserts and deletions, see [`super::scope`]), so an index never needs to know
//! about relists, and never keeps an object the cluster no longer has.

use super::cache::StreamEvent;
use super::ImageStream;

pub trait Index<K> {
    /// Records `object`, replacing whatever it said before.
    fn apply(&mut self, object: &K);
    /// Forgets `object`.
    fn delete(&mut self, object: &K);

    /// Starts over from a fresh list.
    fn reset<'a>(&mut self, objects: impl IntoIterator<Item = &'a K>)
    where
        K: 'a,
        Self: Default + Sized,
    {
        *self = Self::default();
        for o in objects {
            self.apply(o);
        }
    }
}

impl StreamEvent {
    /// Applies this change of the stream cache to `index`; returns the stream concerned.
    pub fn update(&self, index: &mut impl Index<ImageStream>) -> &ImageStream {
        match self {
            StreamEvent::Applied(s) => {
                index.apply(s);
                s
            }
            StreamEvent::Deleted(s) => {
                index.delete(s);
                s
            }
        }
    }
}
