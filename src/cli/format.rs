//! `oc describe` / `oc get` layouts for image streams, as pure functions of the object and "now",
//! so they are snapshot-tested. Layout follows the seed documentation's examples (tab-aligned
//! `Key:\tvalue` lines, one block per tag in `PrioritizeTags` order, `*` on the current image).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use jiff::Timestamp;

use crate::api::{ImageDetails, ImageStream, SourceKind, TagReference, TagSource};
use crate::import::spec::{source_of, Source};
use crate::registry::tags::prioritize;

/// docker/go-units `HumanDuration`, which `oc` uses for "… ago".
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let minutes = secs / 60;
    let hours = (secs as f64 / 3600.0).round() as i64;
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

fn ago(t: Option<&Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => format!("{} ago", human_duration(now.as_second() - t.as_second())),
        None => "<unknown>".into(),
    }
}

/// docker/go-units `HumanSize` as the seed prints it: 4 significant digits, decimal units.
pub fn human_size(bytes: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut size = bytes.max(0) as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < units.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    let digits = if size >= 1000.0 {
        0
    } else if size >= 100.0 {
        1
    } else if size >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{size:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text} {}", units[unit])
}

fn kv_map(map: Option<&BTreeMap<String, String>>) -> Vec<String> {
    match map {
        Some(m) if !m.is_empty() => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        _ => vec!["<none>".into()],
    }
}

/// `Key:` padded with tabs to `stops` tab stops, as oc's describers print; extra values go on
/// continuation lines at the same column.
fn line_at(out: &mut String, stops: usize, key: &str, values: &[String]) {
    let pad = "\t".repeat(stops.saturating_sub((key.len() + 1) / 8).max(1));
    let _ = writeln!(
        out,
        "{key}:{pad}{}",
        values.first().map(String::as_str).unwrap_or("")
    );
    for v in values.iter().skip(1) {
        let _ = writeln!(out, "{}{v}", "\t".repeat(stops));
    }
}

fn line(out: &mut String, key: &str, values: &[String]) {
    line_at(out, 3, key, values);
}

fn iline(out: &mut String, key: &str, values: &[String]) {
    line_at(out, 2, key, values);
}

fn source_name(stream: &ImageStream, from: &TagSource) -> String {
    match &from.namespace {
        Some(ns) if Some(ns.as_str()) != stream.metadata.namespace.as_deref() && !ns.is_empty() => {
            format!("{ns}/{}", from.name)
        }
        _ => from.name.clone(),
    }
}

fn source_line(stream: &ImageStream, tag: Option<&TagReference>) -> String {
    let Some(tag) = tag else {
        return "  no spec tag".into();
    };
    let Some(from) = &tag.from else {
        return "  tag without source image".into();
    };
    let name = source_name(stream, from);
    let reference = tag.is_reference();
    match from.kind {
        SourceKind::ImageStreamTag if reference => format!("  reference to {name}"),
        SourceKind::ImageStreamTag if tag.scheduled() => {
            format!("  updates automatically from {name}")
        }
        SourceKind::ImageStreamTag => format!("  tagged from {name}"),
        SourceKind::DockerImage if reference => format!("  reference to registry {name}"),
        SourceKind::DockerImage if tag.scheduled() => {
            format!("  updates automatically from registry {name}")
        }
        SourceKind::DockerImage => format!("  tagged from {name}"),
        SourceKind::ImageStreamImage if reference => format!("  reference to image {name}"),
        SourceKind::ImageStreamImage => format!("  tagged from {name}"),
    }
}

/// Same-stream aliases: target tag → the tags tracking it.
fn aliases(stream: &ImageStream) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in stream.spec_tags().iter().filter(|t| !t.is_reference()) {
        if let Some(Source::Alias(target)) = source_of(stream, t) {
            out.entry(target).or_default().push(t.name.clone());
        }
    }
    out
}

pub fn describe_stream(stream: &ImageStream, now: Timestamp) -> String {
    let mut out = String::new();
    let status = stream.status.clone().unwrap_or_default();
    line(
        &mut out,
        "Name",
        &[stream.metadata.name.clone().unwrap_or_default()],
    );
    line(
        &mut out,
        "Namespace",
        &[stream.metadata.namespace.clone().unwrap_or_default()],
    );
    let created = stream.metadata.creation_timestamp.as_ref().map(|t| t.0);
    line(&mut out, "Created", &[ago(created.as_ref(), now)]);
    line(&mut out, "Labels", &kv_map(stream.metadata.labels.as_ref()));
    // As kubectl describe does: the applied copy of the whole object is noise here.
    let mut annotations = stream.metadata.annotations.clone().unwrap_or_default();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    line(&mut out, "Annotations", &kv_map(Some(&annotations)));
    let repository = status
        .public_docker_image_repository
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or(status.docker_image_repository.clone());
    line(&mut out, "Docker Pull Spec", &[repository]);
    let local = stream.spec.lookup_policy.as_ref().is_some_and(|p| p.local);
    line(&mut out, "Image Lookup", &[format!("local={local}")]);
    let unique: BTreeSet<&str> = status
        .tags
        .iter()
        .flat_map(|t| &t.items)
        .map(|i| i.image.as_str())
        .filter(|i| !i.is_empty())
        .collect();
    line(&mut out, "Unique Images", &[unique.len().to_string()]);
    let mut names: BTreeSet<String> = status.tags.iter().map(|t| t.tag.clone()).collect();
    names.extend(stream.spec_tags().iter().map(|t| t.name.clone()));
    if names.is_empty() {
        line(&mut out, "Tags", &["<none>".into()]);
        return out;
    }
    line(&mut out, "Tags", &[names.len().to_string()]);
    let tracked = aliases(stream);
    let hidden: BTreeSet<&String> = tracked.values().flatten().collect();
    let ordered = prioritize(&names.iter().cloned().collect::<Vec<_>>());
    for name in ordered.iter().filter(|n| !hidden.contains(n)) {
        tag_block(&mut out, stream, name, tracked.get(name), now);
    }
    out
}

fn tag_block(
    out: &mut String,
    stream: &ImageStream,
    name: &str,
    aliases: Option<&Vec<String>>,
    now: Timestamp,
) {
    let spec = stream.spec_tag(name);
    let status = stream.status_tag(name);
    let _ = writeln!(out);
    match aliases {
        Some(a) => {
            let _ = writeln!(out, "{name} ({})", a.join(", "));
        }
        None => {
            let _ = writeln!(out, "{name}");
        }
    }
    let _ = writeln!(out, "{}", source_line(stream, spec));
    if spec.is_some_and(|t| t.insecure()) {
        let _ = writeln!(out, "    will use insecure HTTPS or HTTP connections");
    }
    if spec.is_some_and(|t| t.reference_policy() == crate::api::ReferencePolicyType::Local) {
        let _ = writeln!(
            out,
            "    prefer registry pullthrough when referencing this tag"
        );
    }
    let _ = writeln!(out);
    if let Some(t) = spec {
        for (key, label) in [
            ("description", ""),
            ("tags", "Tags: "),
            ("supports", "Supports: "),
            ("sampleRepo", "Example Repo: "),
        ] {
            if let Some(v) = t.annotation(key) {
                let _ = writeln!(out, "  {label}{v}");
            }
        }
    }
    out.push_str(&policy_block(stream, name));
    let generation = stream.metadata.generation.unwrap_or(0);
    let pending = spec.is_some_and(|t| {
        !t.is_reference()
            && t.importable()
            && crate::import::spec::requested_generation(t, generation)
                .is_some_and(|g| g > status.map_or(0, |s| s.observed_generation()))
    });
    if pending {
        let _ = writeln!(out, "  ~ importing latest image ...");
    }
    let Some(status) = status else { return };
    for c in status.conditions.iter().filter(|c| c.status == "False") {
        let _ = writeln!(
            out,
            "  ! error: Import failed ({}): {}",
            c.reason.as_deref().unwrap_or(""),
            c.message.as_deref().unwrap_or("")
        );
        let _ = writeln!(
            out,
            "      {}",
            ago(c.last_transition_time.as_ref().map(|t| &t.0), now)
        );
    }
    for (i, item) in status.items.iter().enumerate() {
        let mark = if i == 0 { "*" } else { " " };
        let _ = writeln!(out, "  {mark} {}", item.docker_image_reference);
        let digest = if !item.image.is_empty() && !item.docker_image_reference.contains(&item.image)
        {
            format!("\t{}", item.image)
        } else {
            String::new()
        };
        let _ = writeln!(out, "      {}{digest}", ago(Some(&item.created.0), now));
    }
}

/// A policy tag's rule and its last evaluation: what it follows, why, and what waits. Empty
/// for a tag without policy keys. Registry tag names are outside input: cleaned.
pub fn policy_block(stream: &ImageStream, tag: &str) -> String {
    use crate::api::untrusted::clean;
    let Some(spec) = stream.spec_tag(tag) else {
        return String::new();
    };
    let keys = crate::policy::keys::keys_of(spec.annotations.as_ref());
    if keys.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let rule: Vec<String> = crate::policy::keys::KEYS
        .iter()
        .filter_map(|k| Some(format!("{k}={}", clean(keys.get(k)?, 200))))
        .collect();
    let _ = writeln!(out, "  Policy: {}", rule.join(" "));
    let Some(p) = stream.status_tag(tag).and_then(|t| t.policy.as_ref()) else {
        let _ = writeln!(out, "    not evaluated yet");
        return out;
    };
    let selected = p
        .selected
        .as_ref()
        .map_or("<none>".to_string(), |s| clean(&s.tag, 128));
    let _ = writeln!(
        out,
        "    selected: {selected} ({}): {}",
        clean(&p.reason, 64),
        clean(&p.message, 512)
    );
    if let Some(pending) = &p.pending {
        let at = pending
            .eligible_at
            .as_deref()
            .map(|t| format!(", eligible at {}", clean(t, 64)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    pending: {} ({}{at})",
            clean(&pending.tag, 128),
            clean(&pending.blocked_by, 64)
        );
    }
    if let Some(l) = &p.listing {
        let counts: Vec<String> = p
            .counts
            .iter()
            .map(|(k, v)| format!("{} {v}", clean(k, 32)))
            .collect();
        let complete = if l.complete { "complete" } else { "INCOMPLETE" };
        let _ = writeln!(
            out,
            "    listed: {} tags in {} pages ({complete}); {}",
            l.tags,
            l.pages,
            counts.join(", ")
        );
    }
    if !p.candidates.is_empty() {
        let best: Vec<String> = p.candidates.iter().map(|c| clean(&c.tag, 128)).collect();
        let _ = writeln!(out, "    best: {}", best.join(", "));
    }
    for sample in &p.samples {
        let _ = writeln!(
            out,
            "    e.g. {} rejected: {}",
            clean(&sample.tag, 128),
            clean(&sample.reason, 32)
        );
    }
    out
}

/// `describe istag/STREAM:TAG`: the current image of the tag, with its metadata.
pub fn describe_istag(stream: &ImageStream, tag: &str, now: Timestamp) -> Option<String> {
    let item = stream.status_tag(tag)?.items.first()?.clone();
    let pull = stream
        .pull_spec(tag)
        .unwrap_or(item.docker_image_reference.clone());
    let details = stream
        .status
        .as_ref()
        .and_then(|s| s.images.iter().find(|d| d.image == item.image))
        .cloned()
        .unwrap_or(ImageDetails {
            image: item.image.clone(),
            ..Default::default()
        });
    let mut out = describe_image(&details, &pull, Some(&item.created.0), now);
    out.push_str(&policy_block(stream, tag));
    Some(out)
}

/// `describe isimage/STREAM@DIGEST`: any image in the stream's history.
pub fn describe_isimage(stream: &ImageStream, id: &str, now: Timestamp) -> Result<String, String> {
    let status = stream.status.clone().unwrap_or_default();
    let mut matches: Vec<_> = status
        .tags
        .iter()
        .flat_map(|t| &t.items)
        .filter(|i| {
            !i.image.is_empty()
                && (i.image == id
                    || i.image
                        .trim_start_matches("sha256:")
                        .starts_with(id.trim_start_matches("sha256:")))
        })
        .collect();
    matches.sort_by(|a, b| a.image.cmp(&b.image));
    matches.dedup_by(|a, b| a.image == b.image);
    match matches.as_slice() {
        [one] => {
            let details = status
                .images
                .iter()
                .find(|d| d.image == one.image)
                .cloned()
                .unwrap_or(ImageDetails {
                    image: one.image.clone(),
                    ..Default::default()
                });
            Ok(describe_image(
                &details,
                &one.docker_image_reference,
                Some(&one.created.0),
                now,
            ))
        }
        [] => Err(format!(
            "no image {id} in the history of image stream {}",
            stream.metadata.name.as_deref().unwrap_or("")
        )),
        many => Err(format!(
            "{} images match {id}; use a longer prefix",
            many.len()
        )),
    }
}

fn describe_image(
    d: &ImageDetails,
    pull: &str,
    created: Option<&Timestamp>,
    now: Timestamp,
) -> String {
    let mut out = String::new();
    let none = || "<none>".to_string();
    iline(&mut out, "Image Name", std::slice::from_ref(&d.image));
    iline(&mut out, "Docker Image", &[pull.to_string()]);
    iline(&mut out, "Name", std::slice::from_ref(&d.image));
    iline(&mut out, "Created", &[ago(created, now)]);
    if !d.layers.is_empty() {
        let total = d
            .size
            .unwrap_or_else(|| d.layers.iter().map(|l| l.size).sum());
        let first = d.layers.first().map_or(0, |l| l.size);
        let last = d.layers.last().map_or(0, |l| l.size);
        iline(
            &mut out,
            "Image Size",
            &[format!(
                "{} (first layer {}, last binary layer {})",
                human_size(total),
                human_size(first),
                human_size(last)
            )],
        );
        let layers: Vec<String> = d
            .layers
            .iter()
            .map(|l| format!("{}\t{}", human_size(l.size), l.digest))
            .collect();
        iline(&mut out, "Layers", &layers);
    }
    let image_created = d
        .created
        .as_deref()
        .and_then(|c| c.parse::<Timestamp>().ok());
    if image_created.is_some() {
        iline(
            &mut out,
            "Image Created",
            &[ago(image_created.as_ref(), now)],
        );
    }
    iline(&mut out, "Author", &[d.author.clone().unwrap_or_else(none)]);
    let arch = match (&d.architecture, &d.variant) {
        (Some(a), Some(v)) => format!("{a}/{v}"),
        (Some(a), None) => a.clone(),
        _ => none(),
    };
    iline(&mut out, "Arch", &[arch]);
    if !d.manifests.is_empty() {
        let m: Vec<String> = d
            .manifests
            .iter()
            .map(|m| {
                let variant = m
                    .variant
                    .as_deref()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default();
                format!("{}/{}{variant}\t{}", m.os, m.architecture, m.digest)
            })
            .collect();
        iline(&mut out, "Manifests", &m);
    }
    let join = |v: &Option<Vec<String>>| v.as_ref().map(|v| v.join(" "));
    if let Some(e) = join(&d.entrypoint) {
        iline(&mut out, "Entrypoint", &[e]);
    }
    if let Some(c) = join(&d.cmd) {
        iline(&mut out, "Command", &[c]);
    }
    if let Some(w) = &d.working_dir {
        iline(&mut out, "Working Dir", std::slice::from_ref(w));
    }
    if let Some(u) = &d.user {
        iline(&mut out, "User", std::slice::from_ref(u));
    }
    if let Some(p) = &d.exposed_ports {
        iline(&mut out, "Exposes Ports", &[p.join(", ")]);
    }
    if let Some(l) = &d.labels {
        iline(&mut out, "Docker Labels", &kv_map(Some(l)));
    }
    if let Some(e) = &d.env {
        iline(&mut out, "Environment", e);
    }
    out
}

/// `get is`: NAME, IMAGE REPOSITORY, TAGS, UPDATED.
pub fn get_streams(streams: &[ImageStream], wide: bool, now: Timestamp) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "IMAGE REPOSITORY".into(),
        "TAGS".into(),
        "UPDATED".into(),
    ]];
    for s in streams {
        let status = s.status.clone().unwrap_or_default();
        let repo = status
            .public_docker_image_repository
            .clone()
            .filter(|r| !r.is_empty())
            .or(s
                .spec
                .docker_image_repository
                .clone()
                .filter(|r| !r.is_empty()))
            .unwrap_or(status.docker_image_repository.clone());
        let mut tags: Vec<(Timestamp, String)> = status
            .tags
            .iter()
            .filter_map(|t| t.items.first().map(|i| (i.created.0, t.tag.clone())))
            .collect();
        tags.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let updated = tags
            .first()
            .map(|t| ago(Some(&t.0), now))
            .unwrap_or_default();
        rows.push([
            s.metadata.name.clone().unwrap_or_default(),
            repo,
            join_tags(&tags, if wide { usize::MAX } else { 40 }),
            updated,
        ]);
    }
    table(&rows)
}

fn join_tags(tags: &[(Timestamp, String)], width: usize) -> String {
    let mut out = String::new();
    for (i, (_, t)) in tags.iter().enumerate() {
        if !out.is_empty() && out.len().saturating_add(t.len()) > width {
            return format!("{out} + {} more...", tags.len() - i);
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(t);
    }
    out
}

/// `get istag`: NAME, IMAGE REFERENCE, UPDATED for every tag with an image.
pub fn get_tags(streams: &[ImageStream], now: Timestamp) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "IMAGE REFERENCE".into(),
        "UPDATED".into(),
    ]];
    for s in streams {
        let name = s.metadata.name.clone().unwrap_or_default();
        for t in &s.status.clone().unwrap_or_default().tags {
            let Some(item) = t.items.first() else {
                continue;
            };
            let pull = s
                .pull_spec(&t.tag)
                .unwrap_or(item.docker_image_reference.clone());
            rows.push([
                format!("{name}:{}", t.tag),
                pull,
                ago(Some(&item.created.0), now),
            ]);
        }
    }
    table(&rows)
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut l = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}   ", w = widths[i]);
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    }
    out
}

/// What `import-image` prints once the controller answered: the outcome, each failed tag's
/// condition, the repository's tags left out, then the stream. True when something failed.
pub fn import_result(s: &ImageStream, tag: &str, all: bool, now: Timestamp) -> (String, bool) {
    let failed: Vec<String> = s
        .status
        .iter()
        .flat_map(|st| &st.tags)
        .filter(|t| all || t.tag == tag)
        .flat_map(|t| {
            t.conditions.iter().map(move |c| {
                format!(
                    "tag {}: {}: {}",
                    t.tag,
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or("")
                )
            })
        })
        .collect();
    let asked = s
        .status
        .iter()
        .flat_map(|st| &st.tags)
        .filter(|t| all || t.tag == tag)
        .count();
    let failed_tags = s
        .status
        .iter()
        .flat_map(|st| &st.tags)
        .filter(|t| (all || t.tag == tag) && !t.conditions.is_empty())
        .count();
    let mut out = String::from(match (failed.is_empty(), failed_tags >= asked) {
        (true, _) => "imported\n\n",
        (false, true) => "import failed\n\n",
        (false, false) => "imported with errors\n\n",
    });
    for f in &failed {
        out.push_str(&format!("error: {f}\n"));
    }
    if let Some(r) = s
        .status
        .as_ref()
        .and_then(|st| st.repository.as_ref())
        .filter(|r| !r.additional_tags.is_empty())
    {
        out.push_str(&format!("info: The remote repository contained {} additional tags which were not imported: {}\n", r.additional_tags.len(), r.additional_tags.join(", ")));
    }
    out.push_str(&describe_stream(s, now));
    (out, !failed.is_empty())
}

/// `-o json|yaml`.
pub fn structured<T: serde::Serialize>(
    value: &T,
    output: super::args::Output,
) -> anyhow::Result<String> {
    Ok(match output {
        // Wide is a table, not a structure; callers print their table for it.
        super::args::Output::Json | super::args::Output::Wide => {
            serde_json::to_string_pretty(value)? + "\n"
        }
        super::args::Output::Yaml => {
            serde_saphyr::to_string(value).map_err(|e| anyhow::anyhow!("{e}"))?
        }
    })
}

/// `set image-lookup` with no names: each stream and whether its short name resolves.
pub fn image_lookup_table(streams: &[ImageStream]) -> String {
    let mut rows = vec![["NAME".to_string(), "LOCAL".to_string()]];
    for s in streams {
        let local = s.spec.lookup_policy.as_ref().is_some_and(|p| p.local);
        rows.push([
            s.metadata.name.clone().unwrap_or_default(),
            local.to_string(),
        ]);
    }
    table(&rows)
}

/// `set triggers KIND/NAME` with nothing to change: the workload's triggers as a table.
pub fn list_triggers(
    kind: crate::triggers::workload::Kind,
    name: &str,
    annotation: Option<&str>,
) -> String {
    let mut out = String::from("NAME\tTYPE\tVALUE\tAUTO\n");
    let Some(a) = annotation else { return out };
    match crate::triggers::annotation::parse(a, kind) {
        Ok(ts) => {
            for t in ts {
                let container = match t.container.select {
                    crate::triggers::annotation::Select::Name(n) => n,
                    crate::triggers::annotation::Select::Index(i) => format!("#{i}"),
                };
                let from = match &t.namespace {
                    Some(ns) => format!("{ns}/{}:{}", t.stream, t.tag),
                    None => format!("{}:{}", t.stream, t.tag),
                };
                out.push_str(&format!(
                    "{}/{name}\timage\t{from} ({container})\t{}\n",
                    kind.name().to_ascii_lowercase(),
                    !t.paused
                ));
            }
        }
        Err(e) => out.push_str(&format!("error: {}\n", e.message)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(14), "14 seconds");
        assert_eq!(human_duration(70), "About a minute");
        assert_eq!(human_duration(300), "5 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(25 * 3600), "25 hours");
        assert_eq!(human_duration(15 * 86400), "2 weeks");
    }

    #[test]
    fn sizes_match_the_seed() {
        assert_eq!(human_size(251_200_000), "251.2 MB");
        assert_eq!(human_size(2_898_000), "2.898 MB");
        assert_eq!(human_size(72_260_000), "72.26 MB");
        assert_eq!(human_size(999), "999 B");
    }
}
