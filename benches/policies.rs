//! Tag policies against a real docker-registry on 127.0.0.1 with 10,000 tags (`M.m.0` for M, m
//! in 0..100), paged 1,000 at a time by the test proxy as distribution 3 and GHCR page:
//! `cargo bench --bench policies`. Prints, for one policy and for three streams with different
//! ranges sharing one listing: tag-list requests, HEADs, evaluation time, the bytes a kept
//! listing holds and the process's resident memory before and after.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Fault, FaultProxy, Registry};
use imagestream_operator::api::ImageStream;
use imagestream_operator::import::listings::{self, Listings};
use imagestream_operator::import::policy::{evaluate, Sources, Step};
use imagestream_operator::import::requests::request_for;
use imagestream_operator::registry::{ImageResolver, Keyring};

const SIDE: usize = 100;

fn stream(name: &str, from: &str, range: &str) -> ImageStream {
    let mut s = ImageStream::test(name).tag("stable", from);
    if let Some(tags) = s.spec.tags.as_mut() {
        let keys = BTreeMap::from([(
            format!("{}semver", imagestream_operator::policy::PREFIX),
            range.to_string(),
        )]);
        tags[0].annotations = Some(keys);
    }
    s
}

/// Resident memory of this process, in KiB (the registry runs in its own).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn run() {
    let Some(reg) = Registry::start(None).await else {
        return;
    };
    let (bytes, mt) = reg
        .image_manifest("big/app", "one", "linux", "amd64", false)
        .await;
    let pushing = Instant::now();
    let tags: Vec<String> = (0..SIDE)
        .flat_map(|m| (0..SIDE).map(move |n| format!("{m}.{n}.0")))
        .collect();
    futures::future::join_all(tags.chunks(tags.len() / 16).map(|chunk| {
        let (reg, bytes, mt) = (&reg, bytes.clone(), mt);
        async move {
            for tag in chunk {
                reg.push_manifest("big/app", tag, bytes.clone(), mt).await;
            }
        }
    }))
    .await;
    println!("pushed {} tags in {:.1?}", tags.len(), pushing.elapsed());
    let proxy = FaultProxy::start(&reg.addr);
    proxy.fail("/tags/list", Fault::Paginate);
    let from = format!("{}/big/app:1.0.0", proxy.addr);
    let r = common::unbudgeted_resolver(&proxy.addr, 16);

    // One policy, nothing kept.
    let nothing_kept = Listings::new(0, Duration::from_secs(900));
    let sources = Sources {
        resolver: &r,
        listings: &nothing_kept,
        max_tags: 100_000,
    };
    let s = stream("one", &from, "*");
    let seed = request_for(&s, &s.spec_tags()[0], &Keyring::default()).expect("seed");
    let rss = rss_kib();
    let started = Instant::now();
    let e = evaluate(&sources, &s, &s.spec_tags()[0], seed, true).await;
    let took = started.elapsed();
    let lists = proxy.count("GET", "/tags/list");
    let chosen = match &e.step {
        Step::Import(r) => r.reference.to_string(),
        _ => "nothing".into(),
    };
    println!(
        "one policy (*): chose {chosen} in {took:.1?}: {lists} tag-list requests, {} HEADs, {} listed in {} pages; RSS {} -> {} KiB",
        proxy.count("HEAD", "/"),
        e.status.listing.as_ref().map_or(0, |l| l.tags),
        e.status.listing.as_ref().map_or(0, |l| l.pages),
        rss,
        rss_kib()
    );
    if let Step::Import(request) = e.step {
        let before = (
            proxy.count("HEAD", "/"),
            proxy.count("GET", "/manifests/") + proxy.count("GET", "/blobs/"),
        );
        r.resolve(request).await.expect("import of the choice");
        println!(
            "  importing the choice: {} HEAD, {} GETs",
            proxy.count("HEAD", "/") - before.0,
            proxy.count("GET", "/manifests/") + proxy.count("GET", "/blobs/") - before.1
        );
    }

    // Three streams, two ranges narrower, one listing between them.
    let shared = Listings::new(listings::DEFAULT_BUDGET, Duration::from_secs(900));
    let sources = Sources {
        resolver: &r,
        listings: &shared,
        max_tags: 100_000,
    };
    let before = proxy.count("GET", "/tags/list");
    let rss = rss_kib();
    let started = Instant::now();
    let mut chosen = Vec::new();
    for (name, range) in [("all", "*"), ("pinned", "~42.1"), ("below", "<50")] {
        let s = stream(name, &from, range);
        let seed = request_for(&s, &s.spec_tags()[0], &Keyring::default()).expect("seed");
        let e = evaluate(&sources, &s, &s.spec_tags()[0], seed, true).await;
        chosen.push(format!(
            "{range} -> {}",
            e.status.selected.map(|x| x.tag).unwrap_or_default()
        ));
    }
    println!(
        "three policies sharing one listing: {} in {:.1?}: {} tag-list requests; kept listing {} KiB; RSS {} -> {} KiB",
        chosen.join(", "),
        started.elapsed(),
        proxy.count("GET", "/tags/list") - before,
        shared.kept_bytes() / 1024,
        rss,
        rss_kib()
    );
}

fn main() {
    common::install_crypto();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}
