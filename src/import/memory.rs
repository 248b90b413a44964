//! What the import controller remembers about a stream that its status does not say, in one
//! record per stream keyed by UID: the backoff of failing tags, the credentials last used, the
//! stream version between our two writes, a status the API server refused, and a write the
//! cache has not shown back yet. A stream's deletion (or its absence from a relist, which the
//! watch turns into a deletion) is one `forget`; no method looks at another stream's record.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use kube::ResourceExt;
use parking_lot::Mutex;

use super::plan::Sight;
use crate::api::{ImageStream, ImageStreamStatus, DOCKER_REPOSITORY_CHECK};

/// A stream version between our two writes, and what the write still to come adds to it.
pub struct Pending {
    pub resource_version: String,
    pub follows: Follows,
}

pub enum Follows {
    /// The repository-check annotation (the status was written first).
    Annotation,
    /// This status (the annotation was written first, on a stream without status).
    Status(Box<ImageStreamStatus>),
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    attempts: u32,
    not_before: Instant,
}

/// A status the API server refused (or that cannot fit even trimmed).
struct Refused {
    /// What the refused status says (times left out).
    print: u64,
    /// The stored status it was computed from: while that is still what is stored, the refused
    /// status is what the stream's imports have found, and planning starts from it.
    stored: u64,
    status: Arc<ImageStreamStatus>,
}

#[derive(Default)]
struct StreamMemory {
    retries: BTreeMap<String, Retry>,
    credentials: Option<String>,
    pending: Option<Pending>,
    refused: Option<Refused>,
    /// A status write the cache has not shown back: the cached resourceVersion it was computed
    /// from, what it says, and when.
    unconfirmed: Option<(String, u64, Instant)>,
}

impl StreamMemory {
    fn is_empty(&self) -> bool {
        self.retries.is_empty()
            && self.credentials.is_none()
            && self.pending.is_none()
            && self.refused.is_none()
            && self.unconfirmed.is_none()
    }
}

/// Every stream's record, and the set of streams with urgent work.
#[derive(Default)]
pub struct Memory {
    streams: Mutex<HashMap<String, StreamMemory>>,
    /// Streams with tags never imported, changed, or asked to be re-imported: while there are
    /// any, scheduled re-checks of other streams wait, so first imports never starve.
    urgent: Mutex<HashSet<String>>,
}

/// What every per-stream record is keyed by.
pub fn uid(stream: &ImageStream) -> String {
    stream.uid().unwrap_or_default()
}

impl Memory {
    fn with<T>(&self, stream: &ImageStream, f: impl FnOnce(&mut StreamMemory) -> T) -> T {
        let mut streams = self.streams.lock();
        let key = uid(stream);
        let record = streams.entry(key.clone()).or_default();
        let out = f(record);
        if record.is_empty() {
            streams.remove(&key);
        }
        out
    }

    /// The stream is gone: everything about it goes.
    pub fn forget(&self, stream: &ImageStream) {
        let key = uid(stream);
        self.streams.lock().remove(&key);
        self.urgent.lock().remove(&key);
    }

    /// Records whether the stream has urgent work (a refused status never counts: its tags
    /// stay unimported in the stored status, and must not hold back every other stream).
    pub fn set_urgent(&self, stream: &ImageStream, urgent: bool) {
        let refused = self.with(stream, |m| m.refused.is_some());
        let mut set = self.urgent.lock();
        match urgent && !refused {
            true => set.insert(uid(stream)),
            false => set.remove(&uid(stream)),
        };
    }

    /// Whether streams other than this one wait for a first (or requested) import.
    pub fn others_urgent(&self, stream: &ImageStream) -> bool {
        let set = self.urgent.lock();
        set.len() > usize::from(set.contains(&uid(stream)))
    }

    /// How many streams wait for a first (or requested) import.
    pub fn urgent_streams(&self) -> usize {
        self.urgent.lock().len()
    }

    /// How many streams have a record (tests assert that deletion leaves none).
    pub fn records(&self) -> usize {
        self.streams.lock().len()
    }

    /// The tags whose backoff has expired.
    pub fn retries_due(&self, stream: &ImageStream, now: Instant) -> BTreeSet<String> {
        self.with(stream, |m| {
            m.retries
                .iter()
                .filter(|(_, r)| r.not_before <= now)
                .map(|(tag, _)| tag.clone())
                .collect()
        })
    }

    /// The earliest retry still to come, if any.
    pub fn next_retry(&self, stream: &ImageStream) -> Option<Instant> {
        self.with(stream, |m| m.retries.values().map(|r| r.not_before).min())
    }

    /// A transient failure of `tag`: how many in a row, now including this one.
    pub fn failed_again(
        &self,
        stream: &ImageStream,
        tag: &str,
        not_before: impl FnOnce(u32) -> Instant,
    ) {
        self.with(stream, |m| {
            let attempts = m
                .retries
                .get(tag)
                .map_or(0, |r| r.attempts)
                .saturating_add(1);
            let not_before = not_before(attempts);
            m.retries.insert(
                tag.to_string(),
                Retry {
                    attempts,
                    not_before,
                },
            );
        });
    }

    /// The tag succeeded or failed for good: no backoff.
    pub fn stop_retrying(&self, stream: &ImageStream, tag: &str) {
        self.with(stream, |m| m.retries.remove(tag));
    }

    /// Records the credentials used now; true when they differ from the ones used last time.
    /// Records the credentials that apply to the stream now, and says how this reconcile relates
    /// to the ones before it in this process.
    pub fn observe_credentials(&self, stream: &ImageStream, fingerprint: String) -> Sight {
        self.with(stream, |m| {
            match m.credentials.replace(fingerprint.clone()) {
                None => Sight::First,
                Some(p) if p != fingerprint => Sight::CredentialsChanged,
                Some(_) => Sight::Unchanged,
            }
        })
    }

    /// Between our two writes (status then annotation, or on a new stream annotation then
    /// status) the stream exists in a version that has one and lacks the other. Seen as is, that
    /// version reads as a request for a full re-import, or as tags never imported; it is
    /// therefore read with what the second write is about to add, so no write's effect depends
    /// on the order of two.
    pub fn with_pending_write(&self, stream: Arc<ImageStream>) -> Arc<ImageStream> {
        let rv = stream.resource_version();
        let view = self.with(&stream, |m| {
            let p = m.pending.as_ref()?;
            if rv.as_ref() != Some(&p.resource_version) {
                m.pending = None;
                return None;
            }
            let mut view = (*stream).clone();
            match &p.follows {
                Follows::Annotation => {
                    view.annotations_mut()
                        .insert(DOCKER_REPOSITORY_CHECK.into(), "pending".into());
                }
                Follows::Status(status) => view.status = Some((**status).clone()),
            }
            Some(view)
        });
        view.map_or(stream, Arc::new)
    }

    /// One of our two writes produced `resource_version`; the other adds `follows` to it.
    pub fn expect_write(&self, stream: &ImageStream, resource_version: String, follows: Follows) {
        self.with(stream, |m| {
            m.pending = Some(Pending {
                resource_version,
                follows,
            })
        });
    }

    /// The status did not follow the annotation: the version between is what the stream is.
    pub fn forget_pending(&self, stream: &ImageStream) {
        self.with(stream, |m| m.pending = None);
    }

    /// The stream as its imports have found it: with the status the API server refused, while
    /// the stored status is still the one that status was computed from. Without this, every
    /// check of a stream whose status cannot be stored would import every tag afresh (the
    /// stored status says they were never imported), and those imports would take the
    /// registry's budget and the controller's slots from every other stream.
    pub fn with_refused_status(&self, stream: Arc<ImageStream>) -> Arc<ImageStream> {
        let refused = self.with(&stream, |m| {
            let r = m.refused.as_ref()?;
            Some((r.stored, r.status.clone()))
        });
        let Some((stored, status)) = refused else {
            return stream;
        };
        let current = stream.status.clone().unwrap_or_default();
        if fingerprint(&current) != stored {
            // Someone else wrote the status: start from what is stored.
            self.forget_refused(&stream);
            return stream;
        }
        let mut view = (*stream).clone();
        view.status = Some((*status).clone());
        Arc::new(view)
    }

    /// Records that `status`, computed from `stored`, cannot be stored; true the first time for
    /// this status.
    pub fn remember_refused(
        &self,
        stream: &ImageStream,
        stored: &ImageStreamStatus,
        status: &ImageStreamStatus,
    ) -> bool {
        let print = fingerprint(status);
        let refused = Refused {
            print,
            stored: fingerprint(stored),
            status: Arc::new(status.clone()),
        };
        let before = self.with(stream, |m| m.refused.replace(refused).map(|r| r.print));
        self.urgent.lock().remove(&uid(stream));
        before != Some(print)
    }

    pub fn was_refused(&self, stream: &ImageStream, status: &ImageStreamStatus) -> bool {
        // Fingerprinting serialises the whole status: only for streams refused before.
        let print = self.with(stream, |m| m.refused.as_ref().map(|r| r.print));
        print.is_some_and(|p| p == fingerprint(status))
    }

    pub fn forget_refused(&self, stream: &ImageStream) {
        self.with(stream, |m| m.refused = None);
    }

    /// A status write succeeded from this version of the stream.
    pub fn remember_written(&self, stream: &ImageStream, status: &ImageStreamStatus) {
        let rv = stream.resource_version().unwrap_or_default();
        let print = fingerprint(status);
        self.with(stream, |m| {
            m.refused = None;
            m.unconfirmed = Some((rv, print, Instant::now()));
        });
    }

    /// Whether `status` (which differs from the cached one if `changed`) repeats our last write
    /// before the cache has shown it: writing again would only stamp new times. The cache lags
    /// in two ways: it still holds the version the write was computed from (a watch relisting
    /// after an API server outage: as long as that lasts), or it delivers a version older
    /// than our write late (a busy API server: the write's own echo follows within moments,
    /// so [`UNCONFIRMED_FOR`] bounds it). The record goes as soon as the cached status says
    /// what was written, so it lasts one reconcile in the normal case.
    pub fn repeats_unconfirmed_write(
        &self,
        stream: &ImageStream,
        status: &ImageStreamStatus,
        changed: bool,
    ) -> bool {
        let rv = stream.resource_version();
        let unconfirmed = self.with(stream, |m| {
            let (from, print, at) = m.unconfirmed.as_ref()?;
            let moved_on = rv.as_ref() != Some(from) && at.elapsed() > UNCONFIRMED_FOR;
            if !changed || moved_on {
                m.unconfirmed = None;
                return None;
            }
            Some(*print)
        });
        unconfirmed.is_some_and(|print| print == fingerprint(status))
    }
}

/// How long a cached version other than the one a write was computed from may still be older
/// than the write (its echo is on the way).
pub const UNCONFIRMED_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// What a status says, without the times a recomputation stamps afresh.
pub fn fingerprint(status: &ImageStreamStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.remove("created");
                map.remove("lastTransitionTime");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(status).unwrap_or_default();
    strip(&mut value);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.to_string().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_older_version_does_not_repeat_the_write() {
        let m = Memory::default();
        let at = |rv: &str| ImageStream::test("s").with_uid("u").at_version(rv);
        let written = ImageStreamStatus {
            docker_image_repository: "r".into(),
            ..Default::default()
        };
        // Written from version 2; the watch then delivers version 1 late, whose stored status
        // lacks the write: computing the same status again is no reason to write it again.
        m.remember_written(&at("2"), &written);
        assert!(m.repeats_unconfirmed_write(&at("1"), &written, true));
        assert!(m.repeats_unconfirmed_write(&at("2"), &written, true));
        // Something else to say is written, and the echo of the write ends the record.
        let other = ImageStreamStatus::default();
        assert!(!m.repeats_unconfirmed_write(&at("1"), &other, true));
        assert!(!m.repeats_unconfirmed_write(&at("3"), &written, false));
        assert!(!m.repeats_unconfirmed_write(&at("1"), &written, true));
    }

    #[test]
    fn a_deleted_stream_leaves_nothing_behind() {
        let m = Memory::default();
        let s = ImageStream::test("s")
            .in_namespace("a")
            .with_uid("u1")
            .at_version("1");
        let now = Instant::now();
        m.failed_again(&s, "t", |_| now);
        m.observe_credentials(&s, "k".into());
        m.expect_write(&s, "2".into(), Follows::Annotation);
        m.remember_refused(&s, &Default::default(), &Default::default());
        m.set_urgent(
            &ImageStream::test("s")
                .in_namespace("a")
                .with_uid("u2")
                .at_version("1"),
            true,
        );
        assert_eq!(m.records(), 1);
        m.forget(&s);
        m.forget(
            &ImageStream::test("s")
                .in_namespace("a")
                .with_uid("u2")
                .at_version("1"),
        );
        assert_eq!((m.records(), m.urgent_streams()), (0, 0));
    }

    #[test]
    fn a_refused_status_is_the_base_until_someone_else_writes() {
        let m = Memory::default();
        let s = ImageStream::test("s")
            .in_namespace("a")
            .with_uid("u1")
            .at_version("1");
        let refused = ImageStreamStatus {
            docker_image_repository: "r".into(),
            ..Default::default()
        };
        assert!(m.remember_refused(&s, &Default::default(), &refused));
        assert!(!m.remember_refused(&s, &Default::default(), &refused));
        let view = m.with_refused_status(Arc::new(s.clone()));
        assert_eq!(view.status.as_ref(), Some(&refused));
        // A refused stream is never urgent.
        m.set_urgent(&s, true);
        assert_eq!(m.urgent_streams(), 0);
        let mut written = s.clone();
        written.status = Some(ImageStreamStatus {
            public_docker_image_repository: Some("elsewhere".into()),
            ..Default::default()
        });
        let view = m.with_refused_status(Arc::new(written.clone()));
        assert_eq!(view.status, written.status);
        assert_eq!(m.records(), 0);
    }
}
