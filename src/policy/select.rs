//! The selector: a registry's tag list, streamed page by page, against one policy. Pure: the
//! controller feeds it tags and acts on the [`Decision`]. Nothing but counters, one sample per
//! rejection reason and the best [`TOP`] candidates is kept, whatever the listing's size.
//!
//! Safety rules, each a peer's bug report: never decide on an incomplete listing; never move to
//! a lower version unless the user changed the rule or allowed downgrades (a tag missing from a
//! listing is not a reason to go back); one unparsable tag is counted, never fatal; equal
//! versions never move (`1.11`/`1.11.0`, `v1.2.3`/`1.2.3`) and ties are broken the same way
//! whatever order the registry listed them in.

use std::cmp::Ordering;
use std::time::Duration;

use jiff::Timestamp;
use regex::Regex;

use super::keys::{Flavor, Hold, Kind, Order, Policy};
use super::version::{Decimal, Version};

/// Signature and attestation tags (`sha256-<hex>.sig`, `.att`, `.sbom`): never versions.
static SIGNATURE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
    Regex::new(r"^sha256-[a-f0-9]{64}(\..+)?$")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

/// Candidates kept (and shown in status).
pub const TOP: usize = 5;
/// The registry tag grammar's limit; anything longer is not a tag.
const MAX_TAG: usize = 128;

/// Why a listed tag is not a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    /// A signature/attestation tag (`sha256-<hex>.sig`) or one `exclude` matches.
    Excluded,
    /// `pattern` does not match the whole tag.
    Filtered,
    /// Another flavour (`-alpine` vs plain) or another number of version parts than the seed.
    Flavor,
    /// Not a version (or number) under the policy's kind.
    Unparsable,
    OutOfRange,
    Prerelease,
}

impl Rejection {
    pub const ALL: [Rejection; 6] = [
        Rejection::Excluded,
        Rejection::Filtered,
        Rejection::Flavor,
        Rejection::Unparsable,
        Rejection::OutOfRange,
        Rejection::Prerelease,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Excluded => "Excluded",
            Rejection::Filtered => "Filtered",
            Rejection::Flavor => "Flavor",
            Rejection::Unparsable => "Unparsable",
            Rejection::OutOfRange => "OutOfRange",
            Rejection::Prerelease => "Prerelease",
        }
    }
}

/// What the policy concluded, as `status.tags[].policy.reason` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The first selection is the seed itself.
    Seed,
    Moved,
    Current,
    Held,
    SelectedTagMissing,
    NoTagMatchesPolicy,
    ListingIncomplete,
    PolicyInvalid,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Seed => "Seed",
            Reason::Moved => "Moved",
            Reason::Current => "Current",
            Reason::Held => "Held",
            Reason::SelectedTagMissing => "SelectedTagMissing",
            Reason::NoTagMatchesPolicy => "NoTagMatchesPolicy",
            Reason::ListingIncomplete => "ListingIncomplete",
            Reason::PolicyInvalid => "PolicyInvalid",
        }
    }

    /// Reasons the user must act on (a Warning, `ImportSuccess=False` without an image).
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            Reason::SelectedTagMissing
                | Reason::NoTagMatchesPolicy
                | Reason::ListingIncomplete
                | Reason::PolicyInvalid
        )
    }
}

/// The selection the tag holds now, and the rule it was made under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current {
    pub tag: String,
    pub rule_fingerprint: String,
}

/// A tag the policy would take, with when it was first seen (for `min-age`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub tag: String,
    pub first_seen: Timestamp,
    rank: Rank,
    seed_shaped: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rank {
    Version(Version),
    Number(Decimal),
    Text(String),
}

/// Why the best candidate is not taken yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub tag: String,
    pub blocked_by: &'static str,
    pub eligible_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub listed: u64,
    pub matched: u64,
    /// Per [`Rejection`], in `Rejection::ALL`'s order.
    pub rejected: [u64; 6],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub reason: Reason,
    /// The tag the image stream tag follows after this evaluation (`None`: nothing yet).
    pub selected: Option<String>,
    /// The selection is lower than the previous one (the user changed the rule, or allowed it).
    pub downgrade: bool,
    pub pending: Option<Pending>,
    pub counts: Counts,
    /// The best candidates, best first, with when each was first seen.
    pub candidates: Vec<Candidate>,
    /// A sample tag per rejection reason (the byte-wise greatest, so the same on every run).
    pub samples: Vec<(String, Rejection)>,
    /// One line for status, conditions and Events.
    pub message: String,
}

/// The seed's shape, for `flavor: auto` and for tie-breaks.
#[derive(Clone, Debug, Default)]
struct Shape {
    flavor: Option<String>,
    parts: Option<usize>,
    v_prefix: bool,
}

/// Splits `tag` (less a leading `v`) into its numeric core, prerelease and flavour: the flavour
/// is what follows the core and its leading prerelease identifiers (`1.25.5-rc.1-alpine` →
/// core `1.25.5`, prerelease `rc.1`, flavour `alpine`; `3.12-slim-bookworm` → flavour
/// `slim-bookworm`; `v0.0.1-1-abcd` → flavour `1-abcd`, which keeps git-describe builds apart).
fn split_flavor(tag: &str) -> (&str, &str, &str) {
    let body = tag.strip_prefix('v').unwrap_or(tag);
    let core_len = body
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.'))
        .map_or(body.len(), |(i, _)| i);
    let (core, rest) = body.split_at(core_len);
    let Some(rest) = rest.strip_prefix('-') else {
        return (core, "", rest);
    };
    let ids: Vec<&str> = rest.split('-').collect();
    let mut n = 0;
    if ids.first().is_some_and(|id| prerelease_word(id)) {
        n = 1;
        while ids
            .get(n)
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
        {
            n += 1;
        }
    }
    let pre_len = ids
        .iter()
        .take(n)
        .map(|id| id.len() + 1)
        .sum::<usize>()
        .saturating_sub(1);
    let (pre, flavor) = rest.split_at(pre_len.min(rest.len()));
    (core, pre, flavor.trim_start_matches('-'))
}

/// The registry tag grammar (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`): a registry is outside input,
/// and whatever it lists that is no tag never reaches a pull spec, status or a terminal.
fn tag_grammar(tag: &str) -> bool {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-';
    !tag.is_empty() && tag.len() <= MAX_TAG && tag.bytes().all(ok) && !tag.starts_with(['.', '-'])
}

/// `alpha`, `beta2`, `rc.1`, `M3`…: words that mark a prerelease rather than a flavour.
fn prerelease_word(id: &str) -> bool {
    const WORDS: [&str; 12] = [
        "alpha",
        "beta",
        "rc",
        "pre",
        "preview",
        "dev",
        "snapshot",
        "nightly",
        "canary",
        "next",
        "milestone",
        "m",
    ];
    let lower = id.to_ascii_lowercase();
    WORDS.iter().any(|w| {
        lower
            .strip_prefix(w)
            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
    })
}

fn seed_shape(seed: &str, policy: &Policy) -> Shape {
    let (core, _, flavor) = split_flavor(seed);
    let version = Version::parse(core, policy.parse);
    Shape {
        flavor: version.as_ref().map(|_| flavor.to_owned()),
        parts: version.map(|v| usize::from(v.parts)),
        v_prefix: seed.starts_with('v'),
    }
}

/// Streams tags through one policy.
pub struct Selector<'a> {
    policy: &'a Policy,
    seed_tag: &'a str,
    seed: Shape,
    current: Option<&'a Current>,
    first_seen: &'a (dyn Fn(&str) -> Option<Timestamp> + Sync),
    now: Timestamp,
    top: Vec<Candidate>,
    current_candidate: Option<Candidate>,
    seed_candidate: Option<Candidate>,
    counts: Counts,
    samples: [Option<String>; 6],
    best_rejected: Option<(Rank, String, Rejection)>,
}

impl<'a> Selector<'a> {
    /// `first_seen` answers for tags an earlier evaluation recorded; others are new at `now`.
    pub fn new(
        policy: &'a Policy,
        seed_tag: &'a str,
        current: Option<&'a Current>,
        first_seen: &'a (dyn Fn(&str) -> Option<Timestamp> + Sync),
        now: Timestamp,
    ) -> Selector<'a> {
        Selector {
            policy,
            seed_tag,
            seed: seed_shape(seed_tag, policy),
            current,
            first_seen,
            now,
            top: Vec::with_capacity(TOP + 1),
            current_candidate: None,
            seed_candidate: None,
            counts: Counts::default(),
            samples: Default::default(),
            best_rejected: None,
        }
    }

    /// Feeds one listed tag.
    pub fn offer(&mut self, tag: &str) {
        self.counts.listed = self.counts.listed.saturating_add(1);
        match self.judge(tag) {
            Ok(candidate) => {
                self.counts.matched = self.counts.matched.saturating_add(1);
                self.keep(candidate);
            }
            Err((rejection, rank)) => self.reject(tag, rejection, rank),
        }
    }

    fn reject(&mut self, tag: &str, rejection: Rejection, rank: Option<Rank>) {
        let i = rejection as usize;
        if let Some(count) = self.counts.rejected.get_mut(i) {
            *count = count.saturating_add(1);
        }
        // Only a tag the grammar accepts is worth showing (and safe to write to status).
        if let Some(sample) = self.samples.get_mut(i).filter(|_| tag_grammar(tag)) {
            if sample
                .as_deref()
                .is_none_or(|s| s.as_bytes() < tag.as_bytes())
            {
                *sample = Some(tag.to_owned());
            }
        }
        if let Some(rank) = rank {
            let better = match &self.best_rejected {
                None => true,
                Some((r, t, _)) => {
                    self.compare_rank(&rank, r)
                        .then_with(|| t.as_bytes().cmp(tag.as_bytes()))
                        == Ordering::Greater
                }
            };
            if better {
                self.best_rejected = Some((rank, tag.to_owned(), rejection));
            }
        }
    }

    /// The tag's rank, or why it is no candidate (with its rank when it parsed).
    fn judge(&self, tag: &str) -> Result<Candidate, (Rejection, Option<Rank>)> {
        let policy = self.policy;
        if !tag_grammar(tag) {
            return Err((Rejection::Unparsable, None));
        }
        if SIGNATURE.is_match(tag) || policy.exclude.as_ref().is_some_and(|r| r.is_match(tag)) {
            return Err((Rejection::Excluded, None));
        }
        let key = match &policy.pattern {
            None => tag.to_owned(),
            Some(pattern) => {
                let captures = pattern.captures(tag).ok_or((Rejection::Filtered, None))?;
                match &policy.extract {
                    Some(template) => {
                        let mut key = String::new();
                        captures.expand(template, &mut key);
                        key
                    }
                    None => tag.to_owned(),
                }
            }
        };
        if key.is_empty() {
            return Err((Rejection::Unparsable, None));
        }
        let rank = self.rank(&key)?;
        Ok(Candidate {
            tag: tag.to_owned(),
            first_seen: (self.first_seen)(tag).unwrap_or(self.now),
            seed_shaped: self.seed_shaped(tag),
            rank,
        })
    }

    fn rank(&self, key: &str) -> Result<Rank, (Rejection, Option<Rank>)> {
        let policy = self.policy;
        let (version_text, flavor_ok) = self.strip_flavor(key);
        match &policy.kind {
            Kind::Alphabetical(_) => Ok(Rank::Text(key.to_owned())),
            Kind::Numerical(_) => {
                let number = Decimal::parse(&version_text).ok_or((Rejection::Unparsable, None))?;
                if !flavor_ok {
                    return Err((Rejection::Flavor, None));
                }
                Ok(Rank::Number(number))
            }
            Kind::Semver(range) => {
                let version = Version::parse(&version_text, policy.parse)
                    .ok_or((Rejection::Unparsable, None))?;
                if !flavor_ok {
                    return Err((Rejection::Flavor, None));
                }
                let rank = Rank::Version(version.clone());
                if version.is_prerelease()
                    && !policy.include_prerelease
                    && !range.admits_prereleases()
                {
                    return Err((Rejection::Prerelease, Some(rank)));
                }
                if !range.matches(&version, policy.include_prerelease) {
                    return Err((Rejection::OutOfRange, Some(rank)));
                }
                Ok(rank)
            }
        }
    }

    /// The text to parse once the flavour is taken off, and whether the flavour is acceptable.
    fn strip_flavor(&self, key: &str) -> (String, bool) {
        let policy = self.policy;
        let auto = matches!(policy.flavor, Flavor::Auto) && policy.pattern.is_none();
        let semver = matches!(policy.kind, Kind::Semver(_));
        let (core, pre, flavor) = split_flavor(key);
        let prefix = if key.starts_with('v') { "v" } else { "" };
        let bare = if pre.is_empty() {
            format!("{prefix}{core}")
        } else {
            format!("{prefix}{core}-{pre}")
        };
        match &policy.flavor {
            Flavor::Any => (key.to_owned(), true),
            Flavor::Exactly(want) => (bare, flavor == want),
            Flavor::Glob(glob) => (bare, glob.is_match(flavor)),
            Flavor::Auto if !auto || !semver => (key.to_owned(), true),
            Flavor::Auto => match (&self.seed.flavor, self.seed.parts) {
                (Some(seed_flavor), Some(parts)) => {
                    let same_parts = core.split('.').count() == parts;
                    (bare, flavor == seed_flavor && same_parts)
                }
                // A seed that is no version (`latest`) imposes nothing.
                _ => (key.to_owned(), true),
            },
        }
    }

    fn seed_shaped(&self, tag: &str) -> bool {
        let (core, _, _) = split_flavor(tag);
        tag.starts_with('v') == self.seed.v_prefix
            && self.seed.parts.is_none_or(|p| core.split('.').count() == p)
    }

    fn compare_rank(&self, a: &Rank, b: &Rank) -> Ordering {
        let order = match &self.policy.kind {
            Kind::Semver(_) => Order::Highest,
            Kind::Numerical(o) | Kind::Alphabetical(o) => *o,
        };
        let natural = match (a, b) {
            (Rank::Version(x), Rank::Version(y)) => x.precedence(y),
            (Rank::Number(x), Rank::Number(y)) => x.cmp(y),
            (Rank::Text(x), Rank::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
            _ => Ordering::Equal,
        };
        match order {
            Order::Highest => natural,
            Order::Lowest => natural.reverse(),
        }
    }

    /// Greater is better: rank, then the current selection, then the seed's shape, then the
    /// byte-wise smallest tag — never the listing order.
    fn compare(&self, a: &Candidate, b: &Candidate) -> Ordering {
        let is_current = |c: &Candidate| self.current.is_some_and(|cur| cur.tag == c.tag);
        self.compare_rank(&a.rank, &b.rank)
            .then_with(|| is_current(a).cmp(&is_current(b)))
            .then_with(|| a.seed_shaped.cmp(&b.seed_shaped))
            .then_with(|| b.tag.as_bytes().cmp(a.tag.as_bytes()))
    }

    fn keep(&mut self, candidate: Candidate) {
        if self.current.is_some_and(|c| c.tag == candidate.tag) {
            self.current_candidate = Some(candidate.clone());
        }
        if candidate.tag == self.seed_tag {
            self.seed_candidate = Some(candidate.clone());
        }
        let at = self
            .top
            .iter()
            .position(|kept| self.compare(&candidate, kept) == Ordering::Greater)
            .unwrap_or(self.top.len());
        if at < TOP {
            self.top.insert(at, candidate);
            self.top.truncate(TOP);
        }
    }

    /// The decision once the listing ended; `complete` is false when it was cut short.
    pub fn finish(self, complete: bool) -> Decision {
        let verdict = self.verdict(complete);
        let message = self.message(&verdict);
        let samples = Rejection::ALL
            .iter()
            .zip(&self.samples)
            .filter_map(|(r, s)| Some((s.clone()?, *r)))
            .collect();
        Decision {
            reason: verdict.reason,
            selected: verdict.selected,
            downgrade: verdict.downgrade,
            pending: verdict.pending,
            counts: self.counts,
            candidates: self.top,
            samples,
            message,
        }
    }

    fn verdict(&self, complete: bool) -> Verdict {
        let current = self.current.map(|c| c.tag.clone());
        let keep = |reason| Verdict {
            reason,
            selected: current.clone(),
            downgrade: false,
            pending: None,
        };
        if !complete {
            return keep(Reason::ListingIncomplete);
        }
        let Some(best) = self.top.first() else {
            return keep(Reason::NoTagMatchesPolicy);
        };
        if self.policy.hold != Hold::Off {
            let mut held = keep(Reason::Held);
            held.pending = (current.as_deref() != Some(best.tag.as_str())).then(|| Pending {
                tag: best.tag.clone(),
                blocked_by: "Held",
                eligible_at: None,
            });
            return held;
        }
        let Some(now) = self.current else {
            return self.first_selection();
        };
        let floor = self.rank_of(&now.tag);
        let rule_changed = now.rule_fingerprint != self.policy.rule_fingerprint;
        let may_go_down = rule_changed || self.policy.allow_downgrade;
        if self.current_candidate.is_none() && may_go_down {
            let downgrade = floor
                .as_ref()
                .is_some_and(|f| self.compare_rank(&best.rank, f) == Ordering::Less);
            return self.gated(None, downgrade);
        }
        let verdict = self.gated(floor.as_ref(), false);
        let stays = verdict.selected == current && verdict.pending.is_none();
        if stays && self.current_candidate.is_none() {
            return keep(Reason::SelectedTagMissing);
        }
        verdict
    }

    /// No selection yet: the seed if it qualifies (a stream moved from OpenShift starts where it
    /// was), or the best above it that passes the gates.
    fn first_selection(&self) -> Verdict {
        let Some(seed) = &self.seed_candidate else {
            return self.gated(None, false);
        };
        let mut verdict = self.gated(Some(&seed.rank), false);
        if verdict.selected.is_none() {
            verdict.selected = Some(seed.tag.clone());
            verdict.reason = Reason::Seed;
        }
        verdict
    }

    /// The best candidate ranked above `floor` that has been seen `min-age` long; else the
    /// current selection, with the best as `pending` when a gate held it back.
    fn gated(&self, floor: Option<&Rank>, downgrade: bool) -> Verdict {
        let min_age = self.policy.min_age.unwrap_or(Duration::ZERO);
        let mut pending = None;
        for candidate in &self.top {
            if floor.is_some_and(|f| self.compare_rank(&candidate.rank, f) != Ordering::Greater) {
                break;
            }
            let eligible_at = candidate
                .first_seen
                .checked_add(min_age)
                .unwrap_or(Timestamp::MAX);
            if eligible_at <= self.now {
                let selected = Some(candidate.tag.clone());
                return Verdict {
                    reason: Reason::Moved,
                    selected,
                    downgrade,
                    pending,
                };
            }
            pending.get_or_insert(Pending {
                tag: candidate.tag.clone(),
                blocked_by: "MinAge",
                eligible_at: Some(eligible_at),
            });
        }
        let selected = self.current.map(|c| c.tag.clone());
        let reason = if selected.is_some() {
            Reason::Current
        } else {
            Reason::NoTagMatchesPolicy
        };
        Verdict {
            reason,
            selected,
            downgrade: false,
            pending,
        }
    }

    /// A tag's rank as the policy reads it, also when the policy no longer accepts it.
    fn rank_of(&self, tag: &str) -> Option<Rank> {
        match self.judge(tag) {
            Ok(candidate) => Some(candidate.rank),
            Err((_, rank)) => rank,
        }
    }

    fn message(&self, verdict: &Verdict) -> String {
        let rule = &self.policy.rule;
        let (listed, matched) = (self.counts.listed, self.counts.matched);
        let rejected = || match &self.best_rejected {
            Some((_, tag, why)) => format!("; highest rejected: {tag} ({})", why.as_str()),
            None => String::new(),
        };
        let pending = || match &verdict.pending {
            Some(p) => format!("; {} waits for {}", p.tag, p.blocked_by),
            None => String::new(),
        };
        match verdict.reason {
            Reason::ListingIncomplete => format!("the tag listing was incomplete after {listed} tags; nothing changes until a complete one"),
            Reason::NoTagMatchesPolicy => format!("0 of {listed} tags in {rule}{}{}", rejected(), pending()),
            Reason::Held => format!("held by {}hold{}", super::keys::PREFIX, pending()),
            Reason::SelectedTagMissing => format!(
                "{} is no longer listed and every other match is lower; staying (set {}allow-downgrade: \"true\" to follow)",
                self.current.map_or("", |c| c.tag.as_str()),
                super::keys::PREFIX
            ),
            Reason::Seed | Reason::Moved | Reason::Current => format!(
                "{} is the {} of {matched} of {listed} tags matching {rule}{}{}",
                verdict.selected.as_deref().unwrap_or(""),
                if self.counts.matched == 1 { "only one" } else { "best" },
                if verdict.downgrade { " (the rule changed)" } else { "" },
                pending()
            ),
            Reason::PolicyInvalid => String::new(),
        }
    }
}

struct Verdict {
    reason: Reason,
    selected: Option<String>,
    downgrade: bool,
    pending: Option<Pending>,
}

/// The whole evaluation over an in-memory list (tests, and notifications of one tag).
pub fn select<'t>(
    policy: &Policy,
    seed: &str,
    current: Option<&Current>,
    tags: impl IntoIterator<Item = &'t str>,
    complete: bool,
    first_seen: &(dyn Fn(&str) -> Option<Timestamp> + Sync),
    now: Timestamp,
) -> Decision {
    let mut selector = Selector::new(policy, seed, current, first_seen, now);
    for tag in tags {
        selector.offer(tag);
    }
    selector.finish(complete)
}
