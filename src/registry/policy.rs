//! Which registries the operator may contact, and which may use TLS without verification or
//! plain HTTP. A tenant who can create an ImageStream can name any host, so every host the
//! operator is about to contact — registry, token realm, redirect target — passes through here
//! twice: by name as a URL parser reads it (so `2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`
//! and `[::ffff:127.0.0.1]` are all 127.0.0.1), and by every address its name resolves to, in
//! the HTTP client's resolver ([`GuardedResolver`]), so no DNS name reaches a refused address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;

use crate::api::untrusted;

/// Never contacted, whatever the flags say: link-local (cloud metadata services live there),
/// the metadata services at other addresses, the unspecified address (which reaches the
/// operator's own host), multicast and broadcast.
const ALWAYS_BLOCKED_NETS: &[(IpAddr, u8)] = &[
    (IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
    (IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)), 32),
    (IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 8),
    (IpAddr::V4(Ipv4Addr::new(224, 0, 0, 0)), 4),
    (IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)), 32),
    (IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
    (
        IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
        128,
    ),
    (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 128),
    (IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)), 8),
];

/// Metadata services' host names, refused before any lookup.
const ALWAYS_BLOCKED_NAMES: &[&str] = &["metadata.google.internal", "metadata", "instance-data"];

#[derive(Debug, Clone, Default)]
pub struct RegistryPolicy {
    /// Registries (host or host:port) that may use TLS without verification or plain HTTP.
    pub insecure: Vec<String>,
    /// When non-empty, only these registries (host, host:port, `*.domain`, CIDR) may be imported from.
    pub allowed: Vec<String>,
    /// Registries never contacted, in addition to the link-local/metadata defaults. Addresses
    /// and CIDRs here are also refused when a name resolves to them.
    pub blocked: Vec<String>,
}

/// A host as an HTTP client will contact it: an address in its one canonical form, or a
/// lower-case name without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

/// One entry of a list flag.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Net(IpAddr, u8),
    /// `*.corp.io`: every name below the domain.
    Below(String),
    Exact(Host, Option<u16>),
}

impl RegistryPolicy {
    /// Every entry of every list parses; the error names the flag and the entry. Run at start-up,
    /// so a typo never silently blocks or allows nothing.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, list) in [
            ("--insecure-registries", &self.insecure),
            ("--allowed-registries", &self.allowed),
            ("--blocked-registries", &self.blocked),
        ] {
            for entry in list.iter().filter(|e| !e.trim().is_empty()) {
                Pattern::parse(entry).map_err(|why| format!("{flag} {entry:?}: {why}"))?;
            }
        }
        Ok(())
    }

    /// Refuses a registry that is blocked or not allowed; `registry` is `host[:port]`.
    pub fn check_registry(&self, registry: &str) -> Result<(), String> {
        self.check_blocked(registry)?;
        let (host, port) = parse_host(registry).ok_or_else(|| unparsable(registry))?;
        if !self.allowed.is_empty() && !patterns(&self.allowed).any(|p| p.matches(&host, port)) {
            return Err(format!(
                "importing from registry {} is forbidden: it is not on the operator's --allowed-registries list",
                shown(registry)
            ));
        }
        Ok(())
    }

    /// Refuses hosts on the block list only: redirect targets (a CDN) are legitimately outside
    /// the allow list but must never be internal endpoints.
    pub fn check_blocked(&self, registry: &str) -> Result<(), String> {
        let (host, port) = parse_host(registry).ok_or_else(|| unparsable(registry))?;
        let blocked = match &host {
            Host::Ip(ip) => self.address_refused(*ip),
            Host::Name(name) => ALWAYS_BLOCKED_NAMES.contains(&name.as_str()),
        } || patterns(&self.blocked).any(|p| p.matches(&host, port));
        match blocked {
            true => Err(format!(
                "importing from registry {} is forbidden: it is on the operator's blocked list",
                shown(registry)
            )),
            false => Ok(()),
        }
    }

    /// Refuses an address a name resolved to: the built-in ranges, and every address or CIDR
    /// of `--blocked-registries` (entries with a port apply to that spelling only).
    pub fn check_address(&self, ip: IpAddr) -> Result<(), String> {
        match self.address_refused(ip) {
            true => Err(format!(
                "{} is an address the operator's policy refuses (link-local, metadata, unspecified, multicast, or --blocked-registries)",
                canonical(ip)
            )),
            false => Ok(()),
        }
    }

    fn address_refused(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let listed = patterns(&self.blocked).any(|p| match p {
            Pattern::Net(net, bits) => in_cidr(ip, net, bits),
            Pattern::Exact(Host::Ip(a), None) => a == ip,
            _ => false,
        });
        listed
            || ALWAYS_BLOCKED_NETS
                .iter()
                .any(|(net, bits)| in_cidr(ip, *net, *bits))
    }

    pub fn is_insecure(&self, registry: &str) -> bool {
        let Some((host, port)) = parse_host(registry) else {
            return false;
        };
        patterns(&self.insecure).any(|p| p.matches(&host, port))
    }
}

/// The same `host[:port]` in its canonical form, as the policy compares it: equal spellings of
/// one host compare equal.
pub fn same_host(a: &str, b: &str) -> bool {
    matches!((parse_host(a), parse_host(b)), (Some(x), Some(y)) if x == y)
}

fn patterns(list: &[String]) -> impl Iterator<Item = Pattern> + '_ {
    list.iter().filter_map(|e| Pattern::parse(e).ok())
}

impl Pattern {
    fn parse(entry: &str) -> Result<Pattern, String> {
        let entry = entry.trim();
        if let Some((net, bits)) = entry.split_once('/') {
            let net: IpAddr = net
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| "not a CIDR: the part before / is not an IP address".to_string())?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let bits = bits
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("not a CIDR: the prefix length must be 0 to {max}"))?;
            return Ok(Pattern::Net(canonical(net), bits));
        }
        if let Some(domain) = entry.strip_prefix("*.") {
            return match parse_host(domain) {
                Some((Host::Name(d), None)) => Ok(Pattern::Below(d)),
                _ => Err("*. must be followed by a domain name".into()),
            };
        }
        let (host, port) =
            parse_host(entry).ok_or("not a host, host:port, *.domain or CIDR".to_string())?;
        Ok(Pattern::Exact(host, port))
    }

    fn matches(&self, host: &Host, port: Option<u16>) -> bool {
        match (self, host) {
            (Pattern::Net(net, bits), Host::Ip(ip)) => in_cidr(*ip, *net, *bits),
            (Pattern::Below(domain), Host::Name(name)) => name
                .strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.ends_with('.')),
            // A pattern without a port covers every port of that host.
            (Pattern::Exact(h, p), host) => h == host && (p.is_none() || *p == port),
            _ => false,
        }
    }
}

/// `host[:port]` as an HTTP client parses it: WHATWG URL host parsing, so every numeric
/// spelling of an IPv4 address is that address, IPv6 is compressed, IPv4-mapped and -compatible
/// IPv6 is the IPv4 address, and names are lower case without a trailing dot.
fn parse_host(registry: &str) -> Option<(Host, Option<u16>)> {
    let url = Url::parse(&format!("https://{registry}/")).ok()?;
    if url.path() != "/" || !url.username().is_empty() || url.query().is_some() {
        return None;
    }
    // The parser has already rewritten every IPv4 spelling as dotted decimal.
    let text = url.host_str()?;
    let host = match text.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(ip) => Host::Ip(canonical(ip)),
        Err(_) => Host::Name(text.trim_end_matches('.').to_ascii_lowercase()),
    };
    // An explicit default port ("host:443") is dropped by the parser; keep it, as written.
    let port = url
        .port()
        .or_else(|| registry.rsplit_once(':').and_then(|(_, p)| p.parse().ok()));
    Some((host, port))
}

/// IPv4 behind IPv6 spellings (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d`) is the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let embedded = Ipv4Addr::from(u128::from(v6) as u32);
    let compatible = s[..6] == [0; 6] && u32::from(embedded) > 1;
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    match compatible || nat64 {
        true => IpAddr::V4(embedded),
        false => ip,
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

fn shown(registry: &str) -> String {
    untrusted::clean(registry, 256)
}

fn unparsable(registry: &str) -> String {
    format!(
        "importing from registry {} is forbidden: it is not a host name or address",
        shown(registry)
    )
}

/// Why a connection was not made: every address the name resolved to is refused. The transport
/// finds it in the error chain and reports the import as forbidden, not as unreachable.
#[derive(Debug, thiserror::Error)]
#[error("registry host {name} resolves only to refused addresses: {why}")]
pub struct AddressRefused {
    name: String,
    why: String,
}

/// The HTTP clients' DNS resolver: the system's lookup, then only the addresses the policy
/// allows. Names that resolve inside (`localhost`, a tenant's DNS record pointing at the
/// metadata service) are caught here, after resolution, where a name check cannot see them.
pub struct GuardedResolver {
    pub policy: Arc<RegistryPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let mut why = String::from("no address");
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check_address(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        why = e;
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let name = untrusted::clean(&name, 256);
                return Err(Box::new(AddressRefused { name, why }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_are_blocked_by_default() {
        let p = RegistryPolicy::default();
        for r in [
            "169.254.169.254",
            "169.254.169.254:80",
            "metadata.google.internal",
            "METADATA.google.internal.",
            "[fe80::1]:5000",
            "100.100.100.200",
            "0.0.0.0:5000",
            "0:5000",
            "[::]:5000",
            "[::ffff:169.254.169.254]",
            "2852039166",
            "0xa9fea9fe",
            "0251.0376.0251.0376",
            "169.254.43518",
        ] {
            assert!(p.check_registry(r).is_err(), "{r}");
        }
        assert!(p.check_registry("quay.io").is_ok());
        assert!(p.check_registry("127.0.0.1:5000").is_ok());
    }

    /// The spellings the issue found contacted despite `--blocked-registries 127.0.0.2/32`.
    #[test]
    fn every_spelling_of_a_blocked_address_is_that_address() {
        let p = RegistryPolicy {
            blocked: vec!["127.0.0.2/32".into()],
            ..Default::default()
        };
        for r in [
            "127.0.0.2:5000",
            "2130706434:5000",
            "0x7f000002:5000",
            "0177.0.0.2:5000",
            "127.2:5000",
            "[::ffff:127.0.0.2]:5000",
            "[::ffff:7f00:2]:5000",
            "[::127.0.0.2]:5000",
            "[64:ff9b::7f00:2]:5000",
        ] {
            assert!(p.check_registry(r).is_err(), "{r}");
        }
        assert!(p.check_registry("127.0.0.3:5000").is_ok());
        assert!(p
            .check_address("::ffff:127.0.0.2".parse().unwrap())
            .is_err());
        assert!(p.check_address("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check_address("::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn allow_list_matches_ports_globs_and_cidrs() {
        let p = RegistryPolicy {
            allowed: vec![
                "*.corp.io".into(),
                "127.0.0.1:5000".into(),
                "10.0.0.0/8".into(),
            ],
            blocked: vec!["bad.corp.io".into()],
            ..Default::default()
        };
        assert!(p.check_registry("r.corp.io").is_ok());
        assert!(p.check_registry("R.Corp.IO:443").is_ok());
        assert!(p.check_registry("127.0.0.1:5000").is_ok());
        assert!(p.check_registry("2130706433:5000").is_ok());
        assert!(p.check_registry("10.1.2.3:5000").is_ok());
        assert!(p.check_registry("127.0.0.1:5001").is_err());
        assert!(p.check_registry("quay.io").is_err());
        assert!(p.check_registry("corp.io").is_err());
        assert!(p.check_registry("evilcorp.io").is_err());
        assert!(p.check_registry("bad.corp.io").is_err());
        assert!(p.check_blocked("auth.docker.io").is_ok());
    }

    #[test]
    fn bad_entries_are_named_at_start_up() {
        for (entry, why) in [
            ("not a cidr/99", "not a CIDR"),
            ("10.0.0.0/33", "0 to 32"),
            ("*.", "domain"),
            ("host/path", "not a CIDR"),
            ("a b", "not a host"),
        ] {
            let p = RegistryPolicy {
                blocked: vec!["10.0.0.0/8".into(), entry.into()],
                ..Default::default()
            };
            let err = p.validate().unwrap_err();
            assert!(
                err.contains("--blocked-registries") && err.contains(why),
                "{entry}: {err}"
            );
        }
        let ok = RegistryPolicy {
            insecure: vec!["r:5000".into(), "[::1]:5000".into()],
            allowed: vec!["*.corp.io".into(), "fd00::/8".into(), "".into()],
            blocked: vec!["127.0.0.0/8".into(), "10.0.0.1".into()],
        };
        assert_eq!(ok.validate(), Ok(()));
    }

    #[test]
    fn insecure_and_same_host_compare_canonical_forms() {
        let p = RegistryPolicy {
            insecure: vec!["127.0.0.1:5000".into()],
            ..Default::default()
        };
        assert!(p.is_insecure("2130706433:5000"));
        assert!(!p.is_insecure("127.0.0.1:5001"));
        assert!(same_host("Registry.Example:5000", "registry.example.:5000"));
        assert!(!same_host("registry.example", "registry.example:5000"));
    }

    /// Names resolving to refused addresses are refused after resolution; only loopback is
    /// looked up (`localhost`, from /etc/hosts).
    #[tokio::test]
    async fn the_resolver_drops_refused_addresses() {
        use reqwest::dns::Resolve;
        let blocked = GuardedResolver {
            policy: Arc::new(RegistryPolicy {
                blocked: vec!["127.0.0.0/8".into(), "::1".into()],
                ..Default::default()
            }),
        };
        let err = match blocked.resolve("localhost".parse().unwrap()).await {
            Err(e) => e,
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
        };
        assert!(err.downcast_ref::<AddressRefused>().is_some(), "{err}");
        let open = GuardedResolver {
            policy: Arc::default(),
        };
        let addrs: Vec<_> = match open.resolve("localhost".parse().unwrap()).await {
            Ok(a) => a.collect(),
            Err(e) => panic!("{e}"),
        };
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
