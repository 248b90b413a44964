//! A status that always fits. The API server refuses a request body over 1.5 MiB (3 MiB for
//! JSON on newer versions) and etcd a value over 1.5 MiB by default; the stream's spec,
//! metadata and managedFields share that room with its status. A status is therefore kept under
//! [`STATUS_BUDGET`] bytes of JSON, shrunk in a fixed order, and what was dropped is said.
//!
//! The order keeps what users act on longest: every tag's newest image survives every step.
//! 1. Bulky metadata of each image (labels, env, layers, platform entries).
//! 2. The remaining image metadata (`describe istag` then shows only the digest).
//! 3. History beyond the newest item of each tag (rollback targets).
//!
//! If even that is over the budget the stream has too many tags for one object.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{reason, ImageStreamStatus, TagEventCondition};

/// Bytes of JSON one status may take: two thirds of the smallest limit on the way to etcd, so
/// spec, metadata and managedFields keep their room.
pub const STATUS_BUDGET: usize = 1024 * 1024;

/// What had to go for the status to fit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Images whose labels, env, layers and platform entries were dropped.
    pub image_details: usize,
    /// Images whose metadata was dropped entirely.
    pub images: usize,
    /// History items (older images) dropped.
    pub history: usize,
}

impl Trimmed {
    fn is_empty(&self) -> bool {
        *self == Trimmed::default()
    }

    /// A sentence for the condition and the Event.
    pub fn describe(&self, budget: usize) -> String {
        let mut dropped = Vec::new();
        if self.image_details > 0 {
            dropped.push(format!(
                "labels, env and layer lists of {} image(s)",
                self.image_details
            ));
        }
        if self.images > 0 {
            dropped.push(format!("all metadata of {} image(s)", self.images));
        }
        if self.history > 0 {
            dropped.push(format!("{} older history item(s)", self.history));
        }
        format!(
            "status would exceed {} KiB, so it keeps every tag's newest image but dropped {}; \
             split the stream, lower --max-history or use fewer tags to keep them",
            budget / 1024,
            dropped.join(", ")
        )
    }
}

/// How a status fits its budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// Unchanged.
    Fits,
    /// Shrunk to fit; `status` now fits.
    Trimmed(Trimmed),
    /// Even every tag's newest image alone is over the budget: nothing may be written.
    TooLarge { bytes: usize },
}

/// Shrinks `status` in place until its JSON is at most `budget` bytes.
pub fn fit(status: &mut ImageStreamStatus, budget: usize) -> Fit {
    if size(status) <= budget {
        return Fit::Fits;
    }
    let mut trimmed = Trimmed::default();
    for image in &mut status.images {
        let bulky = image.labels.is_some()
            || image.env.is_some()
            || !image.layers.is_empty()
            || !image.manifests.is_empty();
        if bulky {
            image.labels = None;
            image.env = None;
            image.layers.clear();
            image.manifests.clear();
            trimmed.image_details += 1;
        }
    }
    if size(status) > budget {
        trimmed.images = status.images.len();
        status.images.clear();
    }
    if size(status) > budget {
        for tag in &mut status.tags {
            trimmed.history += tag.items.len().saturating_sub(1);
            tag.items.truncate(1);
        }
    }
    match size(status) {
        bytes if bytes > budget => Fit::TooLarge { bytes },
        _ if trimmed.is_empty() => Fit::Fits,
        _ => Fit::Trimmed(trimmed),
    }
}

/// Fits `status` and says so in its `StatusTrimmed` condition. An unchanged trim keeps its
/// transition time, so it writes nothing.
pub fn fit_with_condition(
    old: &ImageStreamStatus,
    status: &mut ImageStreamStatus,
    budget: usize,
    now: Time,
) -> Fit {
    status
        .conditions
        .retain(|c| c.type_ != reason::STATUS_TRIMMED);
    let fit = fit(status, budget);
    if let Fit::Trimmed(t) = &fit {
        let since = old
            .conditions
            .iter()
            .find(|c| c.type_ == reason::STATUS_TRIMMED)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(now);
        status.conditions.push(TagEventCondition {
            type_: reason::STATUS_TRIMMED.into(),
            status: "True".into(),
            last_transition_time: Some(since),
            reason: Some(reason::STATUS_TRIMMED.into()),
            message: Some(t.describe(budget)),
            generation: 0,
        });
    }
    fit
}

pub fn size(status: &ImageStreamStatus) -> usize {
    serde_json::to_vec(status).map_or(usize::MAX, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ImageDetails, ImageLayer, NamedTagEventList, TagEvent};
    use std::collections::BTreeMap;

    fn item(tag: &str, n: usize) -> TagEvent {
        serde_json::from_value(serde_json::json!({
            "created": "2026-01-01T00:00:00Z",
            "dockerImageReference": format!("registry.example.com/app@sha256:{tag}{n:060}"),
            "image": format!("sha256:{tag}{n:060}"),
            "generation": 1
        }))
        .expect("tag event")
    }

    /// `tags` tags with `history` items each; every current image carries `label_bytes` of labels.
    fn status(tags: usize, history: usize, label_bytes: usize) -> ImageStreamStatus {
        let mut status = ImageStreamStatus::default();
        for t in 0..tags {
            let tag = format!("t{t:03}");
            let items: Vec<TagEvent> = (0..history).map(|n| item(&tag[1..], n)).collect();
            let labels: BTreeMap<String, String> =
                BTreeMap::from([("big".to_string(), "x".repeat(label_bytes))]);
            status.images.push(ImageDetails {
                image: items[0].image.clone(),
                labels: Some(labels),
                layers: vec![ImageLayer {
                    digest: "sha256:l".into(),
                    size: 1,
                }],
                ..Default::default()
            });
            status.tags.push(NamedTagEventList {
                tag,
                items,
                ..Default::default()
            });
        }
        status
    }

    #[test]
    fn a_small_status_is_left_alone() {
        let mut s = status(10, 3, 100);
        let before = s.clone();
        assert_eq!(fit(&mut s, STATUS_BUDGET), Fit::Fits);
        assert_eq!(s, before);
    }

    #[test]
    fn bulky_metadata_goes_first() {
        // 220 tags with ~10 KiB of labels each: over 2 MiB, as in the reported failure.
        let mut s = status(220, 3, 10 * 1024);
        let Fit::Trimmed(t) = fit(&mut s, STATUS_BUDGET) else {
            panic!("expected a trim");
        };
        assert_eq!((t.image_details, t.images, t.history), (220, 0, 0));
        assert!(s
            .images
            .iter()
            .all(|i| i.labels.is_none() && i.layers.is_empty()));
        assert!(s.tags.iter().all(|t| t.items.len() == 3));
        assert!(size(&s) <= STATUS_BUDGET);
        assert!(t.describe(STATUS_BUDGET).contains("220 image(s)"));
    }

    #[test]
    fn history_goes_last_and_the_newest_image_of_every_tag_stays() {
        let mut s = status(2000, 10, 0);
        let newest: Vec<String> = s.tags.iter().map(|t| t.items[0].image.clone()).collect();
        let Fit::Trimmed(t) = fit(&mut s, STATUS_BUDGET) else {
            panic!("expected a trim");
        };
        assert_eq!(t.history, 2000 * 9);
        assert!(s.images.is_empty());
        let kept: Vec<String> = s.tags.iter().map(|t| t.items[0].image.clone()).collect();
        assert_eq!(kept, newest);
        assert!(size(&s) <= STATUS_BUDGET);
    }

    #[test]
    fn the_condition_says_what_was_dropped_and_an_unchanged_trim_is_unchanged() {
        let now = |s: &str| Time(s.parse().expect("timestamp"));
        let old = ImageStreamStatus::default();
        let mut first = status(220, 3, 10 * 1024);
        let fit1 = fit_with_condition(&old, &mut first, STATUS_BUDGET, now("2026-01-01T00:00:00Z"));
        assert!(matches!(fit1, Fit::Trimmed(_)));
        let c = &first.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str()),
            (reason::STATUS_TRIMMED, "True")
        );
        assert!(c
            .message
            .as_deref()
            .is_some_and(|m| m.contains("220 image(s)")));
        let mut again = status(220, 3, 10 * 1024);
        fit_with_condition(
            &first,
            &mut again,
            STATUS_BUDGET,
            now("2026-02-01T00:00:00Z"),
        );
        assert_eq!(again, first);
        // Once it fits again the condition goes.
        let mut small = status(2, 1, 0);
        assert_eq!(
            fit_with_condition(
                &first,
                &mut small,
                STATUS_BUDGET,
                now("2026-03-01T00:00:00Z")
            ),
            Fit::Fits
        );
        assert!(small.conditions.is_empty());
    }

    #[test]
    fn too_many_tags_for_one_object_is_refused() {
        let mut s = status(10, 1, 0);
        assert!(matches!(fit(&mut s, 200), Fit::TooLarge { .. }));
    }
}
