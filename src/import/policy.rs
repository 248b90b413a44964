//! A policy tag in the reconcile: list the seed's repository, stream the pages through the
//! selector, and turn its decision into what to import (or keep) and the tag's
//! `status.tags[].policy`. Only tags with policy keys come here, so no other tag ever costs a
//! listing.

use std::collections::BTreeMap;

use jiff::Timestamp;
use parking_lot::Mutex;

use super::listings::{tag_weight, Key, Listings, Turn};
use crate::api::{
    reason, ImageStream, NamedTagEventList, PolicyCandidate, PolicyListing, PolicyPending,
    PolicySample, PolicySelection, TagPolicyStatus, TagReference,
};
use crate::policy::select::{Candidate, Current, Decision, Reason, Selector};
use crate::policy::{Hold, Policy};
use crate::registry::{
    ImageRef, ImageResolver, ImportRequest, ListRequest, Listed, RegistryError, ResolvedImage,
    TagPage, TAG_PAGE_SIZE,
};

/// Tags one listing reads at most (`--policy-max-listed-tags`); more make it incomplete.
pub const DEFAULT_MAX_LISTED_TAGS: usize = 100_000;

/// What a policy tag does this reconcile.
pub enum Step {
    /// Import this registry tag (or pinned digest) as the stream tag's image.
    Import(ImportRequest),
    /// Keep the current image (`hold: "true"`).
    Keep(ResolvedImage),
    /// Nothing to import; the known-good image stays and the condition says why.
    Fail(RegistryError),
}

pub struct Evaluated {
    pub step: Step,
    pub status: TagPolicyStatus,
}

/// Where listings come from: the registry, and the listings this interval already made.
pub struct Sources<'a> {
    pub resolver: &'a dyn ImageResolver,
    pub listings: &'a Listings,
    /// Tags one listing reads at most; more make it incomplete.
    pub max_tags: usize,
}

/// Evaluates `spec`'s policy; `seed` is the import request its `from.name` makes. `reuse` lets
/// a listing this interval already made serve (not for a user's re-import request).
pub async fn evaluate(
    sources: &Sources<'_>,
    stream: &ImageStream,
    spec: &TagReference,
    seed: ImportRequest,
    reuse: bool,
) -> Evaluated {
    let previous = previous_status(stream, &spec.name);
    let policy = match crate::policy::read(spec.annotations.as_ref()) {
        Some(Ok(policy)) => policy,
        Some(Err(message)) => return invalid(&seed, previous, message),
        None => return invalid(&seed, previous, "no policy keys".into()),
    };
    let Some(seed_tag) = seed
        .reference
        .tag()
        .filter(|_| !seed.reference.is_digest_pinned())
    else {
        let message = format!(
            "from.name must name a tag to start from (the seed), such as {}:1.25.3, not a digest",
            seed.reference.repository_as_written()
        );
        return invalid(&seed, previous, message);
    };
    let seed_tag = seed_tag.to_owned();
    let current = previous.as_ref().and_then(|p| {
        Some(Current {
            tag: p.selected.as_ref()?.tag.clone(),
            rule_fingerprint: p.rule.clone().unwrap_or_default(),
        })
    });
    let first_seen = first_seen_of(previous.as_ref());
    // Whole seconds: first-seen times are written to status and read back.
    let now =
        Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
    let choosing = Choosing {
        policy: &policy,
        seed_tag: &seed_tag,
        current: current.as_ref(),
        first_seen: &first_seen,
        now,
    };
    let listing = list(sources, &seed, reuse, &choosing).await;
    let (decision, listed) = match listing {
        Ok(done) => done,
        Err(e) => {
            let mut status = previous.unwrap_or_default();
            status.reason = Reason::ListingIncomplete.as_str().into();
            status.message =
                crate::api::untrusted::clean(&format!("listing the tags failed: {e}"), 512);
            return Evaluated {
                step: Step::Fail(e),
                status,
            };
        }
    };
    let status = status_of(&policy, &decision, listed, previous.as_ref());
    let step = step_for(stream, spec, &seed, &policy, &decision, previous.as_ref());
    Evaluated { step, status }
}

/// What the selector needs besides the tags.
struct Choosing<'a> {
    policy: &'a Policy,
    seed_tag: &'a str,
    current: Option<&'a Current>,
    first_seen: &'a (dyn Fn(&str) -> Option<Timestamp> + Sync),
    now: Timestamp,
}

impl Choosing<'_> {
    fn selector(&self) -> Selector<'_> {
        Selector::new(
            self.policy,
            self.seed_tag,
            self.current,
            self.first_seen,
            self.now,
        )
    }
}

/// The listing of the seed's repository through the selector: the kept copy of this interval,
/// or a listing of its own, streamed, and kept when it fits.
async fn list(
    sources: &Sources<'_>,
    seed: &ImportRequest,
    reuse: bool,
    choosing: &Choosing<'_>,
) -> Result<(Decision, Listed), RegistryError> {
    let repository = seed.reference.repository_as_written();
    let repository = ImageRef::parse(repository).map_err(|e| RegistryError::Invalid {
        reference: repository.to_owned(),
        detail: e.cause,
    })?;
    let per_namespace = sources.resolver.credentials_per_namespace();
    let key = Key::new(&repository, seed.insecure, &seed.keyring, per_namespace);
    let turn = match sources.listings.get_or_turn(&key, reuse).await {
        Turn::Kept(tags, listed) => {
            let mut selector = choosing.selector();
            tags.iter().for_each(|t| selector.offer(t));
            return Ok((selector.finish(listed.complete), listed));
        }
        Turn::List(turn) => turn,
    };
    let request = ListRequest {
        repository,
        insecure: seed.insecure,
        keyring: seed.keyring.clone(),
        max_tags: sources.max_tags,
        page_size: TAG_PAGE_SIZE,
    };
    let budget = sources.listings.budget();
    let state = Mutex::new(Listing::new(0, choosing));
    let sink = |page: TagPage| {
        let mut state = state.lock();
        if state.attempt != page.attempt {
            *state = Listing::new(page.attempt, choosing);
        }
        state.add(page.tags, budget);
    };
    let listed = sources.resolver.list_tags(request, &sink).await?;
    let state = state.into_inner();
    if let Some(tags) = state.kept {
        sources.listings.keep(&key, tags, listed);
    }
    drop(turn);
    Ok((state.selector.finish(listed.complete), listed))
}

/// One attempt at a listing: the selector it feeds, and the copy kept while it fits the budget.
struct Listing<'a> {
    attempt: u32,
    selector: Selector<'a>,
    kept: Option<Vec<String>>,
    bytes: usize,
}

impl<'a> Listing<'a> {
    fn new(attempt: u32, choosing: &'a Choosing<'a>) -> Listing<'a> {
        Listing {
            attempt,
            selector: choosing.selector(),
            kept: Some(Vec::new()),
            bytes: 0,
        }
    }

    fn add(&mut self, tags: Vec<String>, budget: usize) {
        tags.iter().for_each(|t| self.selector.offer(t));
        let bytes = tags
            .iter()
            .map(|t| tag_weight(t))
            .fold(self.bytes, usize::saturating_add);
        self.bytes = bytes;
        match self.kept.as_mut() {
            Some(_) if bytes > budget => self.kept = None,
            Some(kept) => kept.extend(tags),
            None => {}
        }
    }
}

fn previous_status(stream: &ImageStream, tag: &str) -> Option<TagPolicyStatus> {
    stream
        .status
        .as_ref()?
        .tags
        .iter()
        .find(|t| t.tag == tag)?
        .policy
        .clone()
}

fn first_seen_of(previous: Option<&TagPolicyStatus>) -> impl Fn(&str) -> Option<Timestamp> + Sync {
    let seen: BTreeMap<String, Timestamp> = previous
        .map(|p| p.candidates.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| Some((c.tag.clone(), c.first_seen.parse().ok()?)))
        .collect();
    move |tag| seen.get(tag).copied()
}

fn invalid(seed: &ImportRequest, previous: Option<TagPolicyStatus>, message: String) -> Evaluated {
    let message = crate::api::untrusted::clean(&message, 512);
    let mut status = previous.unwrap_or_default();
    status.reason = Reason::PolicyInvalid.as_str().into();
    status.message = message.clone();
    let error = RegistryError::Policy {
        reference: seed.reference.to_string(),
        reason: reason::POLICY_INVALID,
        detail: message,
    };
    Evaluated {
        step: Step::Fail(error),
        status,
    }
}

/// What to import for the decision. Only a selection the policy stands behind is imported
/// (and checked again when it stays: a re-pushed tag); a warning keeps the known-good image.
fn step_for(
    stream: &ImageStream,
    spec: &TagReference,
    seed: &ImportRequest,
    policy: &Policy,
    decision: &Decision,
    previous: Option<&TagPolicyStatus>,
) -> Step {
    let fail = |reason| {
        Step::Fail(RegistryError::Policy {
            reference: seed.reference.to_string(),
            reason,
            detail: decision.message.clone(),
        })
    };
    let repository = seed.reference.repository_as_written();
    match (&policy.hold, decision.reason, decision.selected.as_deref()) {
        (Hold::Digest(digest), ..) => request(seed, &format!("{repository}@{digest}")),
        (Hold::Freeze, ..) => match current_image(stream, &spec.name) {
            Some(image) => Step::Keep(image),
            None => fail(reason::NO_TAG_MATCHES_POLICY),
        },
        (_, Reason::Seed | Reason::Moved | Reason::Current, Some(tag)) => {
            let unchanged = previous
                .and_then(|p| p.selected.as_ref())
                .is_some_and(|s| s.tag == tag);
            match request(seed, &format!("{repository}:{tag}")) {
                Step::Import(mut r) if unchanged => {
                    r.known = seed.known.clone();
                    Step::Import(r)
                }
                other => other,
            }
        }
        (_, Reason::SelectedTagMissing, _) => fail(reason::SELECTED_TAG_MISSING),
        (_, Reason::ListingIncomplete, _) => fail(reason::LISTING_INCOMPLETE),
        _ => fail(reason::NO_TAG_MATCHES_POLICY),
    }
}

fn request(seed: &ImportRequest, reference: &str) -> Step {
    match ImageRef::parse(reference) {
        Ok(parsed) => Step::Import(ImportRequest {
            reference: parsed,
            known: None,
            ..seed.clone()
        }),
        Err(e) => Step::Fail(RegistryError::Invalid {
            reference: reference.to_owned(),
            detail: e.cause,
        }),
    }
}

/// items[0] as an unchanged registry answer, so a held tag keeps it without a registry call.
fn current_image(stream: &ImageStream, tag: &str) -> Option<ResolvedImage> {
    let entry: &NamedTagEventList = stream.status.as_ref()?.tags.iter().find(|t| t.tag == tag)?;
    let item = entry.items.first()?;
    Some(ResolvedImage {
        digest: item.image.clone(),
        docker_image_reference: item.docker_image_reference.clone(),
        details: None,
        manifest_list: entry.manifest_list_digest.clone(),
    })
}

/// The status block: bounded (five candidates, one sample per reason), and free of times that
/// change on every evaluation, so an unchanged registry writes nothing.
fn status_of(
    policy: &Policy,
    decision: &Decision,
    listed: Listed,
    previous: Option<&TagPolicyStatus>,
) -> TagPolicyStatus {
    let stands = matches!(
        decision.reason,
        Reason::Seed | Reason::Moved | Reason::Current
    );
    let rule = match stands {
        true => Some(policy.rule_fingerprint.clone()),
        false => previous.and_then(|p| p.rule.clone()),
    };
    let previous_digest = |tag: &str| {
        previous
            .and_then(|p| p.selected.as_ref())
            .filter(|s| s.tag == tag)
            .and_then(|s| s.digest.clone())
    };
    let mut counts = BTreeMap::new();
    counts.insert(
        "matched".to_owned(),
        saturating_i64(decision.counts.matched),
    );
    for (rejection, n) in crate::policy::Rejection::ALL
        .iter()
        .zip(decision.counts.rejected)
    {
        if n > 0 {
            counts.insert(lower_camel(rejection.as_str()), saturating_i64(n));
        }
    }
    TagPolicyStatus {
        selected: decision.selected.as_ref().map(|tag| PolicySelection {
            tag: tag.clone(),
            digest: previous_digest(tag),
        }),
        reason: decision.reason.as_str().into(),
        message: crate::api::untrusted::clean(&decision.message, 512),
        rule,
        listing: Some(PolicyListing {
            tags: saturating_i64(listed.tags as u64),
            pages: i64::from(listed.pages),
            complete: listed.complete,
        }),
        counts,
        candidates: decision.candidates.iter().map(candidate).collect(),
        samples: decision
            .samples
            .iter()
            .map(|(tag, why)| PolicySample {
                tag: tag.clone(),
                reason: why.as_str().into(),
            })
            .collect(),
        pending: decision.pending.as_ref().map(|p| PolicyPending {
            tag: p.tag.clone(),
            blocked_by: p.blocked_by.into(),
            eligible_at: p.eligible_at.map(|t| t.to_string()),
        }),
    }
}

fn candidate(c: &Candidate) -> PolicyCandidate {
    PolicyCandidate {
        tag: c.tag.clone(),
        first_seen: c.first_seen.to_string(),
    }
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn lower_camel(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PolicySelection;
    use crate::policy::PREFIX;
    use crate::registry::{Keyring, ResolvedImage};
    use futures::future::BoxFuture;
    use std::time::Duration;

    /// Lists `pages`, restarting once after the first page when `restart` (a retry with the
    /// next credential), or failing with `error`.
    struct Lister {
        pages: Vec<Vec<&'static str>>,
        restart: bool,
        complete: bool,
        error: Option<RegistryError>,
        listed: Mutex<Vec<String>>,
    }

    impl Lister {
        fn of(pages: Vec<Vec<&'static str>>) -> Lister {
            Lister {
                pages,
                restart: false,
                complete: true,
                error: None,
                listed: Mutex::default(),
            }
        }
    }

    impl ImageResolver for Lister {
        fn resolve(&self, _: ImportRequest) -> BoxFuture<'_, Result<ResolvedImage, RegistryError>> {
            unreachable!("evaluation never imports")
        }

        fn list_tags<'a>(
            &'a self,
            request: ListRequest,
            sink: &'a crate::registry::TagSink<'a>,
        ) -> BoxFuture<'a, Result<Listed, RegistryError>> {
            self.listed.lock().push(request.repository.to_string());
            Box::pin(async move {
                if let Some(e) = &self.error {
                    return Err(e.clone());
                }
                let mut attempt = 0;
                if self.restart {
                    let first = self.pages.first().cloned().unwrap_or_default();
                    sink(TagPage {
                        attempt,
                        tags: first.iter().map(|t| t.to_string()).collect(),
                    });
                    attempt += 1;
                }
                let mut tags = 0;
                for page in &self.pages {
                    tags += page.len();
                    sink(TagPage {
                        attempt,
                        tags: page.iter().map(|t| t.to_string()).collect(),
                    });
                }
                let pages = u32::try_from(self.pages.len()).unwrap_or(u32::MAX);
                Ok(Listed {
                    tags,
                    pages,
                    complete: self.complete,
                })
            })
        }
    }

    fn stream(keys: &[(&str, &str)], selected: Option<(&str, &str)>) -> ImageStream {
        let mut s = ImageStream::test("web").tag("stable", "reg.example/app:1.25.3");
        let annotations = keys
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect();
        first(&mut s).annotations = Some(annotations);
        if let Some((tag, digest)) = selected {
            s = s.imported("stable", &format!("reg.example/app@{digest}"));
            let rule = crate::policy::read(s.spec_tags()[0].annotations.as_ref())
                .and_then(Result::ok)
                .map(|p| p.rule_fingerprint);
            s.status.as_mut().unwrap().tags[0].policy = Some(TagPolicyStatus {
                selected: Some(PolicySelection {
                    tag: tag.into(),
                    digest: Some(digest.into()),
                }),
                rule,
                ..Default::default()
            });
        }
        s
    }

    fn first(s: &mut ImageStream) -> &mut TagReference {
        &mut s.spec.tags.as_mut().unwrap()[0]
    }

    fn seed(s: &ImageStream) -> ImportRequest {
        let spec = &s.spec_tags()[0];
        crate::import::requests::request_for(s, spec, &Keyring::default()).unwrap()
    }

    async fn run(resolver: &Lister, s: &ImageStream) -> Evaluated {
        let listings = Listings::new(0, Duration::ZERO);
        evaluate(
            &sources(resolver, &listings),
            s,
            &s.spec_tags()[0],
            seed(s),
            true,
        )
        .await
    }

    fn sources<'a>(resolver: &'a Lister, listings: &'a Listings) -> Sources<'a> {
        Sources {
            resolver,
            listings,
            max_tags: 1000,
        }
    }

    fn imports(step: &Step) -> String {
        match step {
            Step::Import(r) => r.reference.to_string(),
            Step::Keep(i) => format!("keep {}", i.digest),
            Step::Fail(e) => format!("fail {}: {e}", e.reason()),
        }
    }

    #[tokio::test]
    async fn the_best_match_is_imported_and_explained() {
        let s = stream(&[("semver", "~1.25")], None);
        let lister = Lister::of(vec![vec!["1.25.3", "1.25.4"], vec!["1.26.0", "latest"]]);
        let e = run(&lister, &s).await;
        assert_eq!(imports(&e.step), "reg.example/app:1.25.4");
        assert_eq!(*lister.listed.lock(), ["reg.example/app"]);
        assert_eq!(e.status.reason, "Moved");
        assert_eq!(e.status.selected.map(|s| s.tag).as_deref(), Some("1.25.4"));
        assert_eq!(
            e.status.listing,
            Some(PolicyListing {
                tags: 4,
                pages: 2,
                complete: true
            })
        );
        assert_eq!(e.status.counts.get("matched"), Some(&2));
        assert_eq!(e.status.counts.get("outOfRange"), Some(&1));
        assert_eq!(e.status.counts.get("unparsable"), Some(&1));
    }

    #[tokio::test]
    async fn a_restarted_listing_counts_each_tag_once() {
        let s = stream(&[("semver", "*")], None);
        let mut lister = Lister::of(vec![vec!["1.0.0"], vec!["2.0.0"]]);
        lister.restart = true;
        let e = run(&lister, &s).await;
        assert_eq!(e.status.counts.get("matched"), Some(&2));
        assert_eq!(imports(&e.step), "reg.example/app:2.0.0");
    }

    #[tokio::test]
    async fn an_unchanged_selection_is_checked_with_one_head() {
        let s = stream(&[("semver", "~1.25")], Some(("1.25.4", "sha256:d4")));
        let mut seed = seed(&s);
        seed.known = crate::import::requests::known_image(&s, "stable");
        let lister = Lister::of(vec![vec!["1.25.3", "1.25.4"]]);
        let listings = Listings::new(0, Duration::ZERO);
        let e = evaluate(
            &sources(&lister, &listings),
            &s,
            &s.spec_tags()[0],
            seed.clone(),
            true,
        )
        .await;
        assert_eq!(e.status.reason, "Current");
        match e.step {
            Step::Import(r) => {
                assert_eq!(r.reference.to_string(), "reg.example/app:1.25.4");
                assert_eq!(r.known, seed.known);
            }
            _ => panic!("expected an import"),
        }
    }

    #[tokio::test]
    async fn warnings_keep_the_known_good_image() {
        let held = stream(&[("semver", "~1.25")], Some(("1.25.4", "sha256:d4")));
        let cases = [
            (Lister::of(vec![vec!["1.25.3"]]), "fail SelectedTagMissing"),
            (Lister::of(vec![vec!["2.0.0"]]), "fail NoTagMatchesPolicy"),
            (
                Lister {
                    complete: false,
                    ..Lister::of(vec![vec!["1.25.9"]])
                },
                "fail ListingIncomplete",
            ),
            (
                Lister {
                    error: Some(RegistryError::RateLimited {
                        reference: "r".into(),
                        retry_after: None,
                    }),
                    ..Lister::of(vec![])
                },
                "fail RateLimited",
            ),
        ];
        for (lister, want) in cases {
            let e = run(&lister, &held).await;
            assert!(
                imports(&e.step).starts_with(want),
                "{want}: {}",
                imports(&e.step)
            );
            assert_eq!(
                e.status.selected.map(|s| s.tag).as_deref(),
                Some("1.25.4"),
                "{want}"
            );
        }
    }

    #[tokio::test]
    async fn hold_keeps_or_pins() {
        let digest = format!("sha256:{}", "3".repeat(64));
        let frozen = stream(
            &[("semver", "~1.25"), ("hold", "true")],
            Some(("1.25.4", "sha256:d4")),
        );
        let e = run(&Lister::of(vec![vec!["1.25.4", "1.25.5"]]), &frozen).await;
        assert_eq!(
            (imports(&e.step).as_str(), e.status.reason.as_str()),
            ("keep sha256:d4", "Held")
        );
        assert_eq!(e.status.pending.map(|p| p.tag).as_deref(), Some("1.25.5"));
        let pinned = stream(
            &[("semver", "~1.25"), ("hold", &digest)],
            Some(("1.25.4", "sha256:d4")),
        );
        let e = run(&Lister::of(vec![vec!["1.25.4", "1.25.5"]]), &pinned).await;
        assert_eq!(imports(&e.step), format!("reg.example/app@{digest}"));
    }

    #[tokio::test]
    async fn invalid_keys_and_digest_seeds_are_refused_without_a_listing() {
        let lister = Lister::of(vec![vec!["1.0.0"]]);
        let bad = stream(&[("semver", ">= bar")], None);
        let e = run(&lister, &bad).await;
        assert!(
            imports(&e.step).starts_with("fail PolicyInvalid"),
            "{}",
            imports(&e.step)
        );
        assert_eq!(e.status.reason, "PolicyInvalid");
        let mut pinned = stream(&[("semver", "*")], None);
        if let Some(from) = first(&mut pinned).from.as_mut() {
            from.name = format!("reg.example/app@sha256:{}", "a".repeat(64));
        }
        let e = run(&lister, &pinned).await;
        assert!(
            e.status.message.contains("must name a tag"),
            "{}",
            e.status.message
        );
        assert!(lister.listed.lock().is_empty());
    }

    fn secret_for(registry: &str) -> k8s_openapi::api::core::v1::Secret {
        let config = serde_json::json!({"auths": {registry: {"username": "u", "password": "p"}}});
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pull", "namespace": "default"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {},
            "data": {".dockerconfigjson": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, config.to_string())}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn one_listing_serves_every_policy_of_the_interval_and_credential() {
        let lister = Lister::of(vec![vec!["1.0.0", "1.25.4", "2.0.0"]]);
        let listings = Listings::new(1 << 20, Duration::from_secs(60));
        let src = sources(&lister, &listings);
        let narrow = stream(&[("semver", "~1.25")], None);
        let wide = stream(&[("semver", "*")], None);
        let e = evaluate(&src, &narrow, &narrow.spec_tags()[0], seed(&narrow), true).await;
        assert_eq!(imports(&e.step), "reg.example/app:1.25.4");
        let e = evaluate(&src, &wide, &wide.spec_tags()[0], seed(&wide), true).await;
        assert_eq!(imports(&e.step), "reg.example/app:2.0.0");
        assert_eq!(e.status.listing.map(|l| l.tags), Some(3));
        assert_eq!(
            lister.listed.lock().len(),
            1,
            "the second policy read the kept listing"
        );
        // A user's re-import request lists afresh.
        evaluate(&src, &wide, &wide.spec_tags()[0], seed(&wide), false).await;
        assert_eq!(lister.listed.lock().len(), 2);
        // Another credential never reads what this one listed.
        let mut private = seed(&wide);
        private.keyring = Keyring::from_secrets([&secret_for("reg.example")]).0;
        evaluate(&src, &wide, &wide.spec_tags()[0], private, true).await;
        assert_eq!(lister.listed.lock().len(), 3);
        assert!(listings.kept_bytes() > 0);
    }
}
