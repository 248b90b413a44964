//! The scenarios S1–S15 of `../shared/reference/tag-policies.md` §4, as table tests of the pure
//! selector. Digest-level outcomes (S9's notification, S15's same digest, S14's platforms) are
//! the controller's and are tested there; here is which tag each rule picks.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::keys::{read, Policy, PREFIX};
use super::select::{select, Current, Decision, Reason, Rejection};

fn policy(pairs: &[(&str, &str)]) -> Policy {
    let annotations: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
        .collect();
    match read(Some(&annotations)) {
        Some(Ok(p)) => p,
        other => panic!("{pairs:?}: {other:?}"),
    }
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap_or_else(|e| panic!("{e}"))
}

fn decide(p: &Policy, seed: &str, current: Option<&Current>, tags: &[&str]) -> Decision {
    select(
        p,
        seed,
        current,
        tags.iter().copied(),
        true,
        &|_| None,
        now(),
    )
}

fn pick(pairs: &[(&str, &str)], seed: &str, tags: &[&str]) -> Option<String> {
    decide(&policy(pairs), seed, None, tags).selected
}

fn current(tag: &str, p: &Policy) -> Current {
    Current {
        tag: tag.to_owned(),
        rule_fingerprint: p.rule_fingerprint.clone(),
    }
}

/// Every rotation and the reverse of `tags`, so no answer depends on listing order.
fn orders<'a>(tags: &[&'a str]) -> Vec<Vec<&'a str>> {
    let mut all = Vec::new();
    for i in 0..tags.len() {
        let mut rotated = tags.to_vec();
        rotated.rotate_left(i);
        all.push(rotated.clone());
        rotated.reverse();
        all.push(rotated);
    }
    all
}

fn count(d: &Decision, r: Rejection) -> u64 {
    d.counts.rejected[r as usize]
}

#[test]
fn s1_ten_sorts_above_nine_and_signature_tags_are_excluded() {
    let sig = format!("sha256-{}.sig", "a".repeat(64));
    let tags = ["1.2.0", "1.9.0", "1.10.0", sig.as_str()];
    assert_eq!(
        pick(&[("semver", "*")], "1.2.0", &tags).as_deref(),
        Some("1.10.0")
    );
    assert_eq!(
        pick(&[("alphabetical", "highest")], "1.2.0", &tags).as_deref(),
        Some("1.9.0")
    );
    let d = decide(&policy(&[("numerical", "highest")]), "1.2.0", None, &tags);
    assert_eq!(
        (d.selected.as_deref(), d.reason),
        (None, Reason::NoTagMatchesPolicy)
    );
    assert_eq!(
        (
            count(&d, Rejection::Unparsable),
            count(&d, Rejection::Excluded)
        ),
        (3, 1)
    );
}

#[test]
fn s2_v_prefix_ties_follow_the_seed_in_any_order() {
    let tags = ["v0.1.0", "v1.0.0", "v1.2.3", "1.2.3"];
    for order in orders(&tags) {
        assert_eq!(
            pick(&[("semver", "1.x")], "v1.0.0", &order).as_deref(),
            Some("v1.2.3")
        );
        assert_eq!(
            pick(&[("semver", "1.x")], "1.0.0", &order).as_deref(),
            Some("1.2.3")
        );
    }
    let flux = ["v1.2.3", "v1.0.0", "v0.1.0"];
    assert_eq!(
        pick(&[("semver", "1.0.x")], "v1.0.0", &flux).as_deref(),
        Some("v1.0.0")
    );
    // Flux's own vector with 1.0.0p and 1.0.0.1, which are no versions.
    let mixed = ["1.0.0", "1.0.0.1", "1.0.0p", "1.0.1", "1.2.0", "0.1.0"];
    assert_eq!(
        pick(&[("semver", "1.0.x")], "1.0.0", &mixed).as_deref(),
        Some("1.0.1")
    );
}

#[test]
fn s3_prereleases_follow_masterminds_not_cargo() {
    let tags = ["1.0.0", "1.0.1", "1.1.0-rc.1", "2.0.0-beta.1", "2.0.0"];
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[("semver", "~1.0")], "1.0.1"),
        (&[("semver", ">=1.0.0 <2.0.0")], "1.0.1"),
        (&[("semver", ">=1.0.0-0 <2.0.0")], "2.0.0-beta.1"),
        (&[("semver", "^1.x-0")], "1.1.0-rc.1"),
        (&[("semver", "^1.0.0-0")], "1.1.0-rc.1"),
        (&[("semver", "~1"), ("prerelease", "include")], "1.1.0-rc.1"),
        (&[("semver", "*"), ("prerelease", "include")], "2.0.0"),
    ];
    for (pairs, want) in cases {
        assert_eq!(
            pick(pairs, "1.0.0", &tags).as_deref(),
            Some(want),
            "{pairs:?}"
        );
    }
}

#[test]
fn s4_git_describe_builds_rank_below_their_release_and_are_explained() {
    let tags = ["v0.0.0-1-abcd", "v0.0.1", "v0.0.1-1-abcd"];
    let any = [("semver", ">=0.0.0-0"), ("flavor", "any")];
    assert_eq!(pick(&any, "v0.0.1", &tags).as_deref(), Some("v0.0.1"));
    let d = decide(&policy(&[("semver", ">=0.0.0-0")]), "v0.0.1", None, &tags);
    assert_eq!(d.selected.as_deref(), Some("v0.0.1"));
    assert!(
        d.samples
            .contains(&("v0.0.1-1-abcd".to_owned(), Rejection::Flavor)),
        "{:?}",
        d.samples
    );
}

#[test]
fn s5_the_seed_flavour_is_kept() {
    let tags = [
        "1.25.3",
        "1.25.3-alpine",
        "1.25.4",
        "1.25.4-alpine",
        "1.25.5-alpine3.20",
        "1.25.5-rc.1-alpine",
        "1.26.0-alpine",
        "1.26.0-bookworm",
    ];
    let alpine = "1.25.3-alpine";
    assert_eq!(
        pick(&[("semver", "~1.25")], alpine, &tags).as_deref(),
        Some("1.25.4-alpine")
    );
    assert_eq!(
        pick(&[("semver", "*")], alpine, &tags).as_deref(),
        Some("1.26.0-alpine")
    );
    let glob = [("semver", "~1.25"), ("flavor", "alpine*")];
    assert_eq!(
        pick(&glob, alpine, &tags).as_deref(),
        Some("1.25.5-alpine3.20")
    );
    assert_eq!(
        pick(&[("semver", "~1.25")], "1.25.3", &tags).as_deref(),
        Some("1.25.4")
    );
    let include = [("semver", "~1.25"), ("prerelease", "include")];
    assert_eq!(pick(&include, "1.25.3", &tags).as_deref(), Some("1.25.4"));
    let literal = [("semver", "~1.25"), ("flavor", "bookworm")];
    assert_eq!(pick(&literal, alpine, &tags), None);
    let debian = [
        "3.12.1-slim-bookworm",
        "3.12.2-slim-bookworm",
        "3.12.2-bookworm",
        "3.13.0-slim-bookworm",
    ];
    assert_eq!(
        pick(&[("semver", "~3.12")], "3.12.1-slim-bookworm", &debian).as_deref(),
        Some("3.12.2-slim-bookworm")
    );
}

#[test]
fn s6_equal_versions_never_flip_flop() {
    let tags = ["1.10", "1.10.0", "1.11", "1.11.0"];
    assert_eq!(
        pick(&[("semver", "*")], "1.10", &tags).as_deref(),
        Some("1.11")
    );
    assert_eq!(
        pick(&[("semver", "*")], "1.10.0", &tags).as_deref(),
        Some("1.11.0")
    );
    let any = policy(&[("semver", "*"), ("flavor", "any")]);
    for held in ["1.11", "1.11.0"] {
        let c = current(held, &any);
        for order in orders(&tags) {
            let d = decide(&any, "1.10", Some(&c), &order);
            assert_eq!(
                (d.selected.as_deref(), d.reason),
                (Some(held), Reason::Current),
                "{order:?}"
            );
        }
    }
}

#[test]
fn s7_calver_and_yymmdd() {
    let tags = ["v5.8.1", "2021.12.0", "2021.12.1", "2022.04.0", "2022.04.1"];
    assert_eq!(
        pick(&[("semver", ">=2021.0.0")], "2022.04.0", &tags).as_deref(),
        Some("2022.04.1")
    );
    let strict = [("semver", ">=2021.0.0"), ("parse", "strict")];
    assert_eq!(
        pick(&strict, "2022.04.0", &tags).as_deref(),
        Some("2021.12.1")
    );
    let dates = ["240101", "250223", "251130"];
    assert_eq!(
        pick(&[("numerical", "highest")], "240101", &dates).as_deref(),
        Some("251130")
    );
    assert_eq!(
        pick(&[("numerical", "lowest")], "250223", &dates).as_deref(),
        Some("240101")
    );
}

#[test]
fn s8_extraction_is_anchored_exact_and_deterministic() {
    let p = [
        ("pattern", "^main-[a-f0-9]{7}-(?P<ts>[0-9]+)"),
        ("extract", "$ts"),
        ("numerical", "highest"),
    ];
    let tags = [
        "main-ab12cd3-1699999999",
        "main-ff00aa1-1700000001",
        "main-0a0a0a0-170000000",
        "main-ab12cd3-1700000001-debug",
        "main-zz-1900000000",
        "feature-1-1800000000",
    ];
    let d = decide(&policy(&p), "main-ab12cd3-1699999999", None, &tags);
    assert_eq!(d.selected.as_deref(), Some("main-ff00aa1-1700000001"));
    assert_eq!(count(&d, Rejection::Filtered), 3);
    let exact = [
        ("pattern", r"^t-(?P<n>\d+)$"),
        ("extract", "$n"),
        ("numerical", "highest"),
    ];
    let big = ["t-20260528153652124", "t-20260528153652123"];
    for order in orders(&big) {
        assert_eq!(
            pick(&exact, "t-1", &order).as_deref(),
            Some("t-20260528153652124")
        );
    }
    let collide = [
        ("pattern", "^(?P<v>[0-9.]+)(-debug)?"),
        ("extract", "$v"),
        ("semver", "*"),
    ];
    for order in orders(&["1.2.3", "1.2.3-debug"]) {
        assert_eq!(pick(&collide, "1.0.0", &order).as_deref(), Some("1.2.3"));
    }
}

#[test]
fn s9_no_match_explains_itself_and_a_pushed_tag_is_taken() {
    let p = policy(&[("semver", "^3")]);
    let d = decide(&p, "1.0.0", None, &["1.0.0", "2.0.0"]);
    assert_eq!(
        (d.selected.as_deref(), d.reason),
        (None, Reason::NoTagMatchesPolicy)
    );
    assert_eq!(
        d.message,
        "0 of 2 tags in ^3; highest rejected: 2.0.0 (OutOfRange)"
    );
    // A notification offers the pushed tag (and the current selection, when there is one).
    let d = decide(&p, "1.0.0", None, &["3.0.0"]);
    assert_eq!(d.selected.as_deref(), Some("3.0.0"));
    let c = current("3.0.0", &p);
    let d = decide(&p, "1.0.0", Some(&c), &["1.0.0", "2.0.0"]);
    assert_eq!(
        (d.selected.as_deref(), d.reason),
        (Some("3.0.0"), Reason::NoTagMatchesPolicy)
    );
}

#[test]
fn s10_a_vanished_tag_is_no_reason_to_go_back() {
    let p = policy(&[("semver", "~1.4")]);
    let c = current("1.4.2", &p);
    let d = decide(&p, "1.4.0", Some(&c), &["1.3.9", "1.4.0", "1.4.1"]);
    assert_eq!(
        (d.selected.as_deref(), d.reason),
        (Some("1.4.2"), Reason::SelectedTagMissing)
    );
    let d = decide(&p, "1.4.0", Some(&c), &["1.3.9", "1.4.0", "1.4.1", "1.4.3"]);
    assert_eq!(
        (d.selected.as_deref(), d.reason),
        (Some("1.4.3"), Reason::Moved)
    );
    let edited = policy(&[("semver", "~1.3")]);
    let d = decide(&edited, "1.4.0", Some(&c), &["1.3.9", "1.4.0", "1.4.1"]);
    assert_eq!((d.selected.as_deref(), d.downgrade), (Some("1.3.9"), true));
    let allowed = policy(&[("semver", "~1.4"), ("allow-downgrade", "true")]);
    let c = current("1.4.2", &allowed);
    let d = decide(&allowed, "1.4.0", Some(&c), &["1.3.9", "1.4.0", "1.4.1"]);
    assert_eq!((d.selected.as_deref(), d.downgrade), (Some("1.4.1"), true));
}

#[test]
fn s11_an_incomplete_listing_decides_nothing() {
    let p = policy(&[("semver", "*")]);
    let c = current("1.0.0", &p);
    let d = select(&p, "1.0.0", Some(&c), ["9.9.9"], false, &|_| None, now());
    assert_eq!(
        (d.selected.as_deref(), d.reason),
        (Some("1.0.0"), Reason::ListingIncomplete)
    );
    let d = select(&p, "1.0.0", None, ["9.9.9"], false, &|_| None, now());
    assert_eq!((d.selected, d.reason), (None, Reason::ListingIncomplete));
}

#[test]
fn s12_ten_thousand_tags_three_ranges_one_pass() {
    let tags: Vec<String> = (0..100)
        .flat_map(|m| (0..100).map(move |n| format!("{m}.{n}.0")))
        .collect();
    for (range, want) in [("*", "99.99.0"), ("~42.1", "42.1.0"), ("<50", "49.99.0")] {
        let d = decide(
            &policy(&[("semver", range)]),
            "1.0.0",
            None,
            &tags.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(d.selected.as_deref(), Some(want), "{range}");
        assert_eq!(d.counts.listed, 10_000);
        assert!(d.candidates.len() <= super::select::TOP);
    }
}

#[test]
fn s13_hold_freezes_and_says_what_waits() {
    let tags = ["1.25.3", "1.25.4"];
    for hold in [
        "true",
        "sha256:0000000000000000000000000000000000000000000000000000000000000003",
    ] {
        let p = policy(&[("semver", "~1.25"), ("hold", hold)]);
        let c = current("1.25.3", &p);
        let d = decide(&p, "1.25.3", Some(&c), &tags);
        assert_eq!(
            (d.selected.as_deref(), d.reason),
            (Some("1.25.3"), Reason::Held)
        );
        assert_eq!(d.pending.map(|p| p.tag).as_deref(), Some("1.25.4"));
    }
    let released = policy(&[("semver", "~1.25")]);
    let c = current("1.25.3", &released);
    assert_eq!(
        decide(&released, "1.25.3", Some(&c), &tags)
            .selected
            .as_deref(),
        Some("1.25.4")
    );
}

#[test]
fn s14_min_age_soaks_new_tags() {
    let p = policy(&[("semver", "~1.25"), ("min-age", "24h")]);
    let c = current("1.25.4", &p);
    let hours = |h: i64| {
        now()
            .checked_add(SignedDuration::from_hours(h))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let tags = ["1.25.4", "1.25.5"];
    let d = select(&p, "1.25.4", Some(&c), tags, true, &|_| None, now());
    assert_eq!(
        (d.selected.as_deref(), d.reason),
        (Some("1.25.4"), Reason::Current)
    );
    let pending = d.pending.unwrap_or_else(|| panic!("pending"));
    assert_eq!(
        (
            pending.tag.as_str(),
            pending.blocked_by,
            pending.eligible_at
        ),
        ("1.25.5", "MinAge", Some(hours(24)))
    );
    let seen = |t: &str| (t == "1.25.5").then(now);
    let d = select(&p, "1.25.4", Some(&c), tags, true, &seen, hours(24));
    assert_eq!(
        (d.selected.as_deref(), d.reason),
        (Some("1.25.5"), Reason::Moved)
    );
    // A newer tag still soaking does not hold back an older one that has soaked.
    let tags = ["1.25.4", "1.25.5", "1.25.6"];
    let d = select(&p, "1.25.4", Some(&c), tags, true, &seen, hours(30));
    assert_eq!(d.selected.as_deref(), Some("1.25.5"));
    assert_eq!(d.pending.map(|p| p.tag).as_deref(), Some("1.25.6"));
}

#[test]
fn s15_numbered_builds_move_by_number() {
    let p = policy(&[
        ("pattern", r"^b-(?P<n>\d+)$"),
        ("extract", "$n"),
        ("numerical", "highest"),
    ]);
    let c = current("b-101", &p);
    let d = decide(&p, "b-100", Some(&c), &["b-100", "b-101", "b-102"]);
    assert_eq!(
        (d.selected.as_deref(), d.reason),
        (Some("b-102"), Reason::Moved)
    );
}

#[test]
fn the_seed_is_where_a_new_policy_starts_when_nothing_is_newer() {
    let p = policy(&[("semver", "~1.25")]);
    let d = decide(&p, "1.25.3", None, &["1.25.2", "1.25.3"]);
    assert_eq!(
        (d.selected.as_deref(), d.reason),
        (Some("1.25.3"), Reason::Seed)
    );
}

#[test]
fn what_a_registry_lists_that_is_no_tag_is_never_chosen() {
    let long = "9".repeat(129);
    let tags = [
        "1.0.0",
        "zz\u{1b}[2J",
        "-9.0.0",
        ".9",
        long.as_str(),
        "9.0.0 ",
        "9.0.0\n",
    ];
    let d = decide(
        &policy(&[("alphabetical", "highest")]),
        "1.0.0",
        None,
        &tags,
    );
    assert_eq!(d.selected.as_deref(), Some("1.0.0"));
    assert_eq!(count(&d, Rejection::Unparsable), 6);
    assert!(
        d.samples.is_empty(),
        "no sample of a non-tag reaches status: {:?}",
        d.samples
    );
}
