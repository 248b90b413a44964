//! OpenShift's history rules (`AddTagEventToImageStream`) and failure-condition rule
//! (`setFailureCondition`): only items[0] is compared, identical repeats change nothing.

use crate::api::untrusted;
use crate::api::{NamedTagEventList, TagEvent, TagEventCondition, IMPORT_SUCCESS};

/// Apply `next` to a tag's history; returns whether anything changed.
pub fn add_tag_event(tag: &mut NamedTagEventList, next: TagEvent) -> bool {
    let Some(current) = tag.items.first_mut() else {
        tag.items.push(next);
        tag.conditions.clear();
        return true;
    };
    let same_ref = current.docker_image_reference == next.docker_image_reference;
    let same_image = current.image == next.image;
    match (same_ref, same_image) {
        (true, true) if current.generation == next.generation => return false,
        (true, true) => current.generation = next.generation,
        (true, false) => {
            current.image = next.image;
            current.generation = next.generation;
        }
        (false, true) => {
            current.docker_image_reference = next.docker_image_reference;
            current.generation = next.generation;
        }
        (false, false) => tag.items.insert(0, next),
    }
    tag.conditions.clear();
    true
}

/// Record a failed import unless an identical condition (type, status, reason, message) is
/// already there: a repeated failure must not rewrite `lastTransitionTime`.
pub fn set_failure(tag: &mut NamedTagEventList, condition: TagEventCondition) -> bool {
    let identical = tag.conditions.iter().any(|c| {
        c.type_ == condition.type_
            && c.status == condition.status
            && c.reason == condition.reason
            && c.message == condition.message
    });
    if identical {
        return false;
    }
    tag.conditions = vec![condition];
    true
}

pub fn failure_condition(
    reason: &str,
    message: String,
    generation: i64,
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> TagEventCondition {
    TagEventCondition {
        type_: IMPORT_SUCCESS.into(),
        status: "False".into(),
        last_transition_time: Some(now.clone()),
        reason: Some(reason.into()),
        // Registry words are in it; the status is read by tenants and their terminals.
        message: Some(untrusted::clean(&message, untrusted::MAX_TEXT)),
        generation,
    }
}

/// Keep at most `max` items (0 = unlimited), dropping the oldest.
pub fn cap_history(tag: &mut NamedTagEventList, max: usize) {
    if max > 0 && tag.items.len() > max {
        tag.items.truncate(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }
    fn ev(r: &str, image: &str, generation: i64, at: i64) -> TagEvent {
        TagEvent {
            created: t(at),
            docker_image_reference: r.into(),
            image: image.into(),
            generation,
        }
    }

    #[test]
    fn collapse_rules_of_openshift() {
        let mut tag = NamedTagEventList {
            tag: "latest".into(),
            ..Default::default()
        };
        assert!(add_tag_event(&mut tag, ev("r@a", "a", 1, 10)));
        assert!(
            !add_tag_event(&mut tag, ev("r@a", "a", 1, 20)),
            "identical: no change"
        );
        assert!(
            add_tag_event(&mut tag, ev("r@a", "a", 2, 30)),
            "generation only"
        );
        assert_eq!(tag.items.len(), 1);
        assert_eq!(tag.items[0].generation, 2);
        assert_eq!(
            tag.items[0].created,
            t(10),
            "created is kept when collapsing"
        );
        assert!(
            add_tag_event(&mut tag, ev("r@a", "a2", 3, 40)),
            "same ref, new image: in place"
        );
        assert_eq!((tag.items.len(), tag.items[0].image.as_str()), (1, "a2"));
        assert!(
            add_tag_event(&mut tag, ev("mirror@a2", "a2", 3, 50)),
            "same image, new ref: in place"
        );
        assert_eq!(tag.items.len(), 1);
        assert!(
            add_tag_event(&mut tag, ev("r@b", "b", 4, 60)),
            "new image: prepended"
        );
        assert!(add_tag_event(&mut tag, ev("r@a", "a", 5, 70)));
        let images: Vec<_> = tag.items.iter().map(|i| i.image.as_str()).collect();
        assert_eq!(images, ["a", "b", "a2"], "A, B, A keeps three entries");
    }

    #[test]
    fn success_clears_conditions_and_repeat_failure_is_a_no_op() {
        let mut tag = NamedTagEventList::default();
        assert!(set_failure(
            &mut tag,
            failure_condition("NotFound", "m".into(), 2, &t(1))
        ));
        assert!(!set_failure(
            &mut tag,
            failure_condition("NotFound", "m".into(), 3, &t(2))
        ));
        assert_eq!(tag.conditions[0].last_transition_time, Some(t(1)));
        assert!(set_failure(
            &mut tag,
            failure_condition("Unauthorized", "m".into(), 3, &t(3))
        ));
        assert_eq!(tag.conditions.len(), 1);
        add_tag_event(&mut tag, ev("r@a", "a", 3, 4));
        assert!(tag.conditions.is_empty());
    }

    #[test]
    fn history_cap_drops_oldest() {
        let mut tag = NamedTagEventList::default();
        for i in 0..5 {
            add_tag_event(&mut tag, ev(&format!("r@{i}"), &i.to_string(), i, i));
        }
        cap_history(&mut tag, 3);
        let images: Vec<_> = tag.items.iter().map(|i| i.image.as_str()).collect();
        assert_eq!(images, ["4", "3", "2"]);
        cap_history(&mut tag, 0);
        assert_eq!(tag.items.len(), 3);
    }
}
