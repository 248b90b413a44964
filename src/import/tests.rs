//! OpenShift's import semantics that apply to a CRD, one behaviour per test: what a spec change,
//! a re-import request, a failure, an alias, a cross-stream copy or a repository import does to
//! status. The names say the behaviour; ARCHITECTURE.md lists where we differ from OpenShift.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::{imports_needed, is_scheduled, Cause, Hints, Sight};
use super::resolve::{resolve, Input, Outcome, RepositoryOutcome, TagChange};
use super::spec::import_pending;
use crate::api::*;
use crate::registry::{RegistryError, ResolvedImage};

fn at(secs: i64) -> Time {
    Time(jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap())
}

fn ok(repo: &str, digest: &str) -> Result<ResolvedImage, RegistryError> {
    Ok(ResolvedImage {
        digest: digest.into(),
        docker_image_reference: format!("{repo}@{digest}"),
        details: None,
        manifest_list: None,
    })
}

fn outcomes(
    list: &[(&str, Cause, Result<ResolvedImage, RegistryError>)],
) -> BTreeMap<String, Outcome> {
    list.iter()
        .map(|(t, c, r)| {
            (
                t.to_string(),
                Outcome {
                    cause: *c,
                    result: r.clone(),
                    policy: None,
                },
            )
        })
        .collect()
}

struct World {
    others: Vec<ImageStream>,
    local_registry: Option<String>,
    max_history: usize,
    cross_ns: bool,
    repository: Option<RepositoryOutcome>,
}

impl Default for World {
    fn default() -> Self {
        Self {
            others: vec![],
            local_registry: None,
            max_history: 10,
            cross_ns: true,
            repository: None,
        }
    }
}

impl World {
    /// One reconcile: resolve and store the new status on the stream, as the controller does.
    fn step(
        &self,
        s: &mut ImageStream,
        results: &[(&str, Cause, Result<ResolvedImage, RegistryError>)],
        now: i64,
    ) -> (bool, Vec<TagChange>) {
        let out = outcomes(results);
        let lookup = |ns: &str, name: &str| {
            self.others
                .iter()
                .find(|o| {
                    o.metadata.namespace.as_deref() == Some(ns)
                        && o.metadata.name.as_deref() == Some(name)
                })
                .cloned()
                .map(Arc::new)
        };
        let r = resolve(&Input {
            stream: s,
            outcomes: &out,
            streams: &lookup,
            now: at(now),
            local_registry: self.local_registry.as_deref(),
            max_history: self.max_history,
            allow_cross_namespace: self.cross_ns,
            repository: self.repository.as_ref(),
        });
        let changed = s.status.clone().unwrap_or_default() != r.status;
        s.status = Some(r.status);
        (changed, r.changes)
    }
}

fn head(s: &ImageStream, tag: &str) -> Option<TagEvent> {
    s.status_tag(tag)?.items.first().cloned()
}

const A: &str = "sha256:aaaa1111";
const B: &str = "sha256:bbbb2222";

#[test]
fn new_tag_is_imported_with_stream_generation_and_pinned_reference() {
    let mut s = ImageStream::test("python")
        .checked()
        .tag("3.5", "centos/python-35-centos7");
    assert_eq!(
        imports_needed(&s, &Hints::default()),
        BTreeMap::from([("3.5".to_string(), Cause::SpecChanged)])
    );
    let (changed, changes) = World::default().step(
        &mut s,
        &[("3.5", Cause::SpecChanged, ok("centos/python-35-centos7", A))],
        0,
    );
    assert!(changed);
    let item = head(&s, "3.5").unwrap();
    assert_eq!(
        item.docker_image_reference,
        format!("centos/python-35-centos7@{A}")
    );
    assert_eq!(
        (item.image.as_str(), item.generation, item.created.clone()),
        (A, 1, at(0))
    );
    assert_eq!(
        changes,
        [TagChange::Imported {
            tag: "3.5".into(),
            reference: format!("centos/python-35-centos7@{A}")
        }]
    );
    assert!(
        imports_needed(&s, &Hints::default()).is_empty(),
        "nothing left to import"
    );
    assert!(!import_pending(&s, &s.spec_tags()[0], s.status_tag("3.5")));
}

#[test]
fn only_tags_with_pending_changes_are_imported() {
    let mut s = ImageStream::test("python")
        .checked()
        .tag("a", "x/a")
        .tag("b", "x/b");
    World::default().step(
        &mut s,
        &[
            ("a", Cause::SpecChanged, ok("x/a", A)),
            ("b", Cause::SpecChanged, ok("x/b", B)),
        ],
        0,
    );
    s.spec.tags.as_mut().unwrap()[1].from.as_mut().unwrap().name = "x/b:2".into();
    s.metadata.generation = Some(2);
    assert_eq!(
        imports_needed(&s, &Hints::default()),
        BTreeMap::from([("b".to_string(), Cause::SpecChanged)])
    );
}

#[test]
fn only_import_relevant_spec_changes_cause_a_re_import() {
    let mut s = ImageStream::test("python").checked().tag("a", "x/a");
    World::default().step(&mut s, &[("a", Cause::SpecChanged, ok("x/a", A))], 0);
    let t = &mut s.spec.tags.as_mut().unwrap()[0];
    t.import_policy = Some(TagImportPolicy {
        scheduled: Some(true),
        insecure: Some(false),
        import_mode: Some(ImportMode::Legacy),
    });
    t.reference_policy = Some(TagReferencePolicy {
        type_: ReferencePolicyType::Local,
    });
    t.annotations = Some([("description".to_string(), "x".to_string())].into());
    s.metadata.generation = Some(2);
    assert!(
        imports_needed(&s, &Hints::default()).is_empty(),
        "scheduled/referencePolicy/annotations do not re-import"
    );
    // Allowing plain HTTP does: it is the remedy an "HTTP only" failure names, and that
    // failure is not retried by itself.
    let insecure = s.clone().last_tag(|t| {
        if let Some(p) = t.import_policy.as_mut() {
            p.insecure = Some(true);
        }
    });
    assert_eq!(
        imports_needed(&insecure, &Hints::default())["a"],
        Cause::SpecChanged
    );
    s.spec.tags.as_mut().unwrap()[0]
        .import_policy
        .as_mut()
        .unwrap()
        .import_mode = Some(ImportMode::PreserveOriginal);
    assert_eq!(
        imports_needed(&s, &Hints::default())["a"],
        Cause::SpecChanged,
        "importMode does"
    );
}

#[test]
fn generation_zero_and_next_generation_request_a_re_import() {
    let mut s = ImageStream::test("python")
        .at_generation(3)
        .checked()
        .tag("a", "x/a");
    World::default().step(&mut s, &[("a", Cause::SpecChanged, ok("x/a", A))], 0);
    assert_eq!(head(&s, "a").unwrap().generation, 3);
    // What `kubectl imagestream import-image` writes: the generation the stream gets next.
    s.spec.tags.as_mut().unwrap()[0].generation = Some(4);
    s.metadata.generation = Some(4);
    assert_eq!(imports_needed(&s, &Hints::default())["a"], Cause::Requested);
    let (changed, changes) =
        World::default().step(&mut s, &[("a", Cause::Requested, ok("x/a", A))], 10);
    assert!(
        changed,
        "the request is answered by recording the generation"
    );
    assert!(changes.is_empty(), "no new image, no Imported event");
    let item = head(&s, "a").unwrap();
    assert_eq!(
        (item.generation, item.created),
        (4, at(0)),
        "same digest: generation updated in place"
    );
    assert_eq!(s.status_tag("a").unwrap().items.len(), 1);
    assert!(imports_needed(&s, &Hints::default()).is_empty());
    // OpenShift's own form, `generation: 0`.
    s.spec.tags.as_mut().unwrap()[0].generation = Some(0);
    s.metadata.generation = Some(5);
    assert_eq!(imports_needed(&s, &Hints::default())["a"], Cause::Requested);
}

#[test]
fn unchanged_background_check_writes_nothing_and_new_digest_prepends() {
    let mut s = ImageStream::test("python")
        .checked()
        .tag("a", "x/a")
        .scheduled();
    let w = World::default();
    w.step(&mut s, &[("a", Cause::SpecChanged, ok("x/a", A))], 0);
    s.metadata.generation = Some(7);
    let hints = Hints {
        scheduled_due: true,
        ..Default::default()
    };
    assert_eq!(imports_needed(&s, &hints)["a"], Cause::Scheduled);
    let (changed, _) = w.step(&mut s, &[("a", Cause::Scheduled, ok("x/a", A))], 60);
    assert!(
        !changed,
        "same digest on a scheduled check: no write at all"
    );
    let (changed, changes) = w.step(&mut s, &[("a", Cause::Scheduled, ok("x/a", B))], 120);
    assert!(changed);
    assert_eq!(changes.len(), 1);
    let items = &s.status_tag("a").unwrap().items;
    assert_eq!(
        (
            items.len(),
            items[0].image.as_str(),
            items[0].created.clone(),
            items[0].generation
        ),
        (2, B, at(120), 7)
    );
}

#[test]
fn failure_keeps_image_one_condition_identical_repeat_is_silent_success_clears() {
    let mut s = ImageStream::test("python").checked().tag("a", "x/a");
    let w = World::default();
    w.step(&mut s, &[("a", Cause::SpecChanged, ok("x/a", A))], 0);
    s.metadata.generation = Some(2);
    let not_found = || {
        Err(RegistryError::NotFound {
            reference: "x/a".into(),
            detail: "manifest unknown".into(),
        })
    };
    let (changed, changes) = w.step(&mut s, &[("a", Cause::Requested, not_found())], 10);
    assert!(changed);
    assert!(matches!(&changes[..], [TagChange::Failed { reason, .. }] if reason == "NotFound"));
    let tag = s.status_tag("a").unwrap();
    assert_eq!(tag.items[0].image, A, "the known-good image stays current");
    assert_eq!(tag.conditions.len(), 1);
    let c = &tag.conditions[0];
    assert_eq!(
        (
            c.type_.as_str(),
            c.status.as_str(),
            c.reason.as_deref(),
            c.generation
        ),
        ("ImportSuccess", "False", Some("NotFound"), 2)
    );
    assert!(
        c.message.as_deref().unwrap().contains("x/a"),
        "message names the reference"
    );
    let (changed, changes) = w.step(&mut s, &[("a", Cause::Scheduled, not_found())], 20);
    assert!(
        !changed && changes.is_empty(),
        "identical failure: nothing written"
    );
    assert_eq!(
        s.status_tag("a").unwrap().conditions[0].last_transition_time,
        Some(at(10))
    );
    let unauthorized = Err(RegistryError::Unauthorized {
        reference: "x/a".into(),
        had_credentials: false,
    });
    let (changed, _) = w.step(&mut s, &[("a", Cause::Scheduled, unauthorized)], 30);
    assert!(changed, "a different reason replaces the condition");
    assert_eq!(s.status_tag("a").unwrap().conditions.len(), 1);
    let (changed, _) = w.step(&mut s, &[("a", Cause::Retry, ok("x/a", A))], 40);
    assert!(changed);
    assert!(
        s.status_tag("a").unwrap().conditions.is_empty(),
        "success leaves no condition at all"
    );
}

#[test]
fn a_failed_non_scheduled_tag_is_not_retried_by_itself() {
    let mut s = ImageStream::test("python").checked().tag("a", "x/a");
    World::default().step(
        &mut s,
        &[(
            "a",
            Cause::SpecChanged,
            Err(RegistryError::NotFound {
                reference: "x/a".into(),
                detail: "d".into(),
            }),
        )],
        0,
    );
    assert!(imports_needed(
        &s,
        &Hints {
            scheduled_due: true,
            ..Default::default()
        }
    )
    .is_empty());
    assert_eq!(
        imports_needed(
            &s,
            &Hints {
                sight: Sight::CredentialsChanged,
                ..Default::default()
            }
        )["a"],
        Cause::CredentialsChanged
    );
    assert_eq!(
        imports_needed(
            &s,
            &Hints {
                retry: ["a".to_string()].into(),
                ..Default::default()
            }
        )["a"],
        Cause::Retry
    );
}

#[test]
fn reference_tags_are_recorded_verbatim_and_never_imported() {
    let mut s = ImageStream::test("python")
        .at_generation(2)
        .checked()
        .tag("ref", "quay.io/x/y:1")
        .last_tag(|t| t.reference = Some(true));
    assert!(imports_needed(
        &s,
        &Hints {
            scheduled_due: true,
            ..Default::default()
        }
    )
    .is_empty());
    let (changed, _) = World::default().step(&mut s, &[], 0);
    assert!(changed);
    let item = head(&s, "ref").unwrap();
    assert_eq!(
        (
            item.docker_image_reference.as_str(),
            item.image.as_str(),
            item.generation
        ),
        ("quay.io/x/y:1", "", 2)
    );
    assert!(!World::default().step(&mut s, &[], 10).0, "idempotent");
}

#[test]
fn aliases_follow_their_source_including_chains() {
    let mut s = ImageStream::test("python")
        .checked()
        .tag("3.5", "x/p:3.5")
        .tracking("latest", "3.5")
        .tracking("stable", "python:latest")
        .from_namespace("demo");
    let w = World::default();
    w.step(&mut s, &[("3.5", Cause::SpecChanged, ok("x/p", A))], 0);
    assert_eq!(head(&s, "latest"), head(&s, "3.5"));
    assert_eq!(
        head(&s, "stable"),
        head(&s, "3.5"),
        "a chain settles in one reconcile"
    );
    w.step(&mut s, &[("3.5", Cause::Scheduled, ok("x/p", B))], 10);
    assert_eq!(head(&s, "latest").unwrap().image, B);
    assert_eq!(head(&s, "stable").unwrap().image, B);
    assert_eq!(s.status_tag("latest").unwrap().items.len(), 2);
    assert!(
        !w.step(&mut s, &[], 20).0,
        "aliases are stable once settled"
    );
}

#[test]
fn alias_cycles_are_reported_not_looped() {
    let mut s = ImageStream::test("python")
        .checked()
        .tracking("a", "b")
        .tracking("b", "a");
    World::default().step(&mut s, &[], 0);
    let c = &s.status_tag("a").unwrap().conditions[0];
    assert_eq!(c.reason.as_deref(), Some("Invalid"));
    assert!(
        c.message.as_deref().unwrap().contains("a -> b -> a"),
        "{c:?}"
    );
}

#[test]
fn cross_stream_tags_are_copied_once() {
    let mut source = ImageStream::test("base").checked().tag("1", "x/base:1");
    World::default().step(
        &mut source,
        &[("1", Cause::SpecChanged, ok("x/base", A))],
        0,
    );
    let mut w = World {
        others: vec![source.clone()],
        ..Default::default()
    };
    let mut s = ImageStream::test("app")
        .at_generation(5)
        .checked()
        .tracking("base", "base:1");
    w.step(&mut s, &[], 10);
    let copied = head(&s, "base").unwrap();
    assert_eq!(
        (
            copied.image.as_str(),
            copied.created.clone(),
            copied.generation
        ),
        (A, at(0), 5),
        "created kept, generation ours"
    );
    World::default().step(&mut source, &[("1", Cause::Scheduled, ok("x/base", B))], 20);
    w.others = vec![source];
    assert!(
        !w.step(&mut s, &[], 30).0,
        "later source changes are not propagated"
    );
    assert_eq!(head(&s, "base").unwrap().image, A);
}

#[test]
fn missing_source_stream_is_reported_and_empty_source_tag_waits() {
    let mut s = ImageStream::test("app")
        .checked()
        .tracking("base", "base:1");
    World::default().step(&mut s, &[], 0);
    assert_eq!(
        s.status_tag("base").unwrap().conditions[0]
            .reason
            .as_deref(),
        Some("NotFound")
    );
    let empty = ImageStream::test("base").checked();
    let mut s = ImageStream::test("app")
        .checked()
        .tracking("base", "base:1");
    let (changed, _) = World {
        others: vec![empty],
        ..Default::default()
    }
    .step(&mut s, &[], 0);
    assert!(
        !changed && s.status_tag("base").is_none(),
        "a source tag without items records nothing"
    );
}

#[test]
fn cross_namespace_sources_need_the_operator_flag() {
    let mut s = ImageStream::test("app")
        .checked()
        .tracking("base", "base:1")
        .from_namespace("other");
    World {
        cross_ns: false,
        ..Default::default()
    }
    .step(&mut s, &[], 0);
    let c = &s.status_tag("base").unwrap().conditions[0];
    assert_eq!(c.reason.as_deref(), Some("Forbidden"));
}

#[test]
fn an_image_stream_image_resolves_by_digest_or_unique_prefix() {
    let mut source = ImageStream::test("ruby")
        .checked()
        .tag("1", "x/r:1")
        .tag("2", "x/r:2");
    World::default().step(
        &mut source,
        &[
            ("1", Cause::SpecChanged, ok("x/r", "sha256:abc111")),
            ("2", Cause::SpecChanged, ok("x/r", "sha256:abd222")),
        ],
        0,
    );
    let w = World {
        others: vec![source],
        ..Default::default()
    };
    let mut s = ImageStream::test("app")
        .checked()
        .pinned("exact", "ruby@sha256:abc111")
        .pinned("prefix", "ruby@abd")
        .pinned("ambiguous", "ruby@ab")
        .pinned("none", "ruby@ff");
    w.step(&mut s, &[], 10);
    assert_eq!(head(&s, "exact").unwrap().image, "sha256:abc111");
    assert_eq!(head(&s, "prefix").unwrap().image, "sha256:abd222");
    assert_eq!(head(&s, "prefix").unwrap().created, at(10));
    assert_eq!(
        s.status_tag("ambiguous").unwrap().conditions[0]
            .reason
            .as_deref(),
        Some("Conflict")
    );
    assert_eq!(
        s.status_tag("none").unwrap().conditions[0]
            .reason
            .as_deref(),
        Some("NotFound")
    );
}

#[test]
fn history_is_capped_and_removed_spec_tags_keep_status() {
    let mut s = ImageStream::test("python").checked().tag("a", "x/a");
    let w = World {
        max_history: 3,
        ..Default::default()
    };
    for i in 0..5 {
        w.step(
            &mut s,
            &[("a", Cause::Scheduled, ok("x/a", &format!("sha256:{i}")))],
            i,
        );
    }
    let items = &s.status_tag("a").unwrap().items;
    assert_eq!(
        items.iter().map(|i| i.image.as_str()).collect::<Vec<_>>(),
        ["sha256:4", "sha256:3", "sha256:2"]
    );
    s.spec.tags = Some(vec![]);
    assert!(!w.step(&mut s, &[], 10).0);
    assert!(
        s.status_tag("a").is_some(),
        "history survives removal of the spec tag"
    );
}

#[test]
fn status_tags_are_sorted_and_the_repository_comes_from_spec_or_local_registry() {
    let mut s = ImageStream::test("python")
        .checked()
        .tag("z", "x/z")
        .tag("a", "x/a");
    s.spec.docker_image_repository = Some("quay.io/org/python".into());
    World::default().step(
        &mut s,
        &[
            ("z", Cause::SpecChanged, ok("x/z", A)),
            ("a", Cause::SpecChanged, ok("x/a", B)),
        ],
        0,
    );
    let st = s.status.clone().unwrap();
    assert_eq!(
        st.tags.iter().map(|t| t.tag.as_str()).collect::<Vec<_>>(),
        ["a", "z"]
    );
    assert_eq!(st.docker_image_repository, "quay.io/org/python");
    World {
        local_registry: Some("registry.local:5000".into()),
        ..Default::default()
    }
    .step(&mut s, &[], 1);
    assert_eq!(
        s.status.unwrap().docker_image_repository,
        "registry.local:5000/demo/python"
    );
}

#[test]
fn missing_repository_check_annotation_re_imports_everything_importable() {
    let mut s = ImageStream::test("python")
        .checked()
        .tag("a", "x/a")
        .tracking("b", "a");
    World::default().step(&mut s, &[("a", Cause::SpecChanged, ok("x/a", A))], 0);
    s.metadata.annotations = None;
    assert_eq!(
        imports_needed(&s, &Hints::default()),
        BTreeMap::from([("a".to_string(), Cause::RepositoryCheck)])
    );
}

#[test]
fn digest_pinned_scheduled_tag_stops_after_first_success() {
    let pinned = format!("x/a@sha256:{}", "a".repeat(64));
    let mut s = ImageStream::test("python")
        .checked()
        .tag("a", &pinned)
        .scheduled();
    assert!(is_scheduled(&s, &s.spec_tags()[0]));
    World::default().step(
        &mut s,
        &[(
            "a",
            Cause::SpecChanged,
            ok("x/a", &format!("sha256:{}", "a".repeat(64))),
        )],
        0,
    );
    assert!(!is_scheduled(&s, &s.spec_tags()[0]));
}

#[test]
fn repository_import_records_listed_tags_and_reports_the_rest() {
    let mut s = ImageStream::test("python").checked();
    s.spec.docker_image_repository = Some("quay.io/org/python".into());
    let world = World {
        repository: Some(RepositoryOutcome {
            from: "quay.io/org/python".into(),
            listed: Ok(vec!["2.7".into()]),
        }),
        ..Default::default()
    };
    let failed = Err(RegistryError::NotFound {
        reference: "quay.io/org/python:3.4".into(),
        detail: "manifest unknown".into(),
    });
    world.step(
        &mut s,
        &[
            ("3.5", Cause::RepositoryCheck, ok("quay.io/org/python", A)),
            ("3.4", Cause::RepositoryCheck, failed),
        ],
        10,
    );
    let st = s.status.clone().unwrap();
    assert_eq!(head(&s, "3.5").unwrap().image, A);
    assert_eq!(
        st.tags.len(),
        2,
        "the failed tag is recorded with its condition"
    );
    let repo = st.repository.unwrap();
    assert_eq!(repo.status, "Failure");
    assert_eq!(repo.reason.as_deref(), Some("ImportFailed"));
    assert_eq!(
        repo.message.as_deref(),
        Some("one of the images from this repository failed to import")
    );
    assert_eq!(repo.additional_tags, vec!["2.7".to_string()]);
    assert!(
        s.spec_tags().is_empty(),
        "spec is never written by the controller"
    );
}

#[test]
fn image_details_are_kept_for_current_images_only() {
    let mut s = ImageStream::test("app").checked().tag("v", "quay.io/x/app");
    let with_details = |digest: &str| {
        let mut r = ok("quay.io/x/app", digest);
        if let Ok(img) = &mut r {
            img.details = Some(ImageDetails {
                image: digest.into(),
                architecture: Some("amd64".into()),
                ..Default::default()
            });
        }
        r
    };
    let w = World::default();
    w.step(&mut s, &[("v", Cause::SpecChanged, with_details(A))], 10);
    assert_eq!(s.status.as_ref().unwrap().images[0].image, A);
    // A background re-check that finds the same digest without details keeps the old entry.
    let (changed, _) = w.step(
        &mut s,
        &[("v", Cause::Scheduled, ok("quay.io/x/app", A))],
        20,
    );
    assert!(!changed);
    w.step(&mut s, &[("v", Cause::Scheduled, with_details(B))], 30);
    let images = &s.status.as_ref().unwrap().images;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].image, B, "history items keep no metadata");
}

#[test]
fn one_event_per_reconcile_names_the_tags_and_counts_the_rest() {
    use super::report::summary_event;
    use kube::runtime::events::EventType;
    let imported: Vec<TagChange> = (0..15)
        .map(|i| TagChange::Imported {
            tag: format!("t{i}"),
            reference: format!("r/x@sha256:{i}"),
        })
        .collect();
    let event = summary_event(&imported, None).unwrap();
    assert_eq!(
        (event.type_, event.reason.as_str()),
        (EventType::Normal, "Imported")
    );
    let note = event.note.unwrap();
    assert!(
        note.starts_with("tag t0 now points at r/x@sha256:0; tag t1"),
        "{note}"
    );
    assert!(note.ends_with("; and 5 more"), "{note}");

    let mut mixed = imported[..2].to_vec();
    mixed.push(TagChange::Failed {
        tag: "bad".into(),
        reason: "NotFound".into(),
        message: "no such tag".into(),
    });
    let event = summary_event(&mixed, Some("distribution")).unwrap();
    assert_eq!(
        (event.type_, event.reason.as_str()),
        (EventType::Warning, "ImportFailed")
    );
    assert_eq!(
        event.note.unwrap(),
        "tag bad: NotFound: no such tag; imported meanwhile: tag t0 now points at r/x@sha256:0; tag t1 now points at r/x@sha256:1 (requested by a distribution push notification)"
    );
    assert!(summary_event(&[], None).is_none());
}

#[test]
fn the_next_process_tries_every_failed_tag_once() {
    let mut s = ImageStream::test("python")
        .checked()
        .tag("down", "x/down")
        .tag("gone", "x/gone");
    let unreachable = RegistryError::Unreachable {
        reference: "x/down".into(),
        detail: "invalid peer certificate: UnknownIssuer".into(),
    };
    let not_found = RegistryError::NotFound {
        reference: "x/gone".into(),
        detail: "manifest unknown".into(),
    };
    World::default().step(
        &mut s,
        &[
            ("down", Cause::SpecChanged, Err(unreachable)),
            ("gone", Cause::SpecChanged, Err(not_found)),
        ],
        0,
    );
    // This process keeps the backoff of "down" in memory; nothing else is due.
    assert!(imports_needed(&s, &Hints::default()).is_empty());
    // A new process (restart, takeover, the upgrade that brought a CA bundle or a registry
    // list) has no memory: it tries both failed tags once.
    let first = Hints {
        sight: Sight::First,
        ..Default::default()
    };
    assert_eq!(
        imports_needed(&s, &first),
        BTreeMap::from([
            ("down".to_string(), Cause::Retry),
            ("gone".to_string(), Cause::Retry)
        ])
    );
}
