//! Which registries the operator may contact, and which may use TLS without verification or
//! plain HTTP. A tenant who can create an ImageStream can name any host, so every host the
//! operator is about to contact — registry, token realm, redirect target — passes through here.

use std::net::IpAddr;

use super::reference::host_of;

/// Link-local (cloud metadata services live there) and well-known metadata host names.
const DEFAULT_BLOCKED: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254",
    "100.100.100.200",
    "metadata.google.internal",
    "metadata",
];

#[derive(Debug, Clone, Default)]
pub struct RegistryPolicy {
    /// Registries (host or host:port) that may use TLS without verification or plain HTTP.
    pub insecure: Vec<String>,
    /// When non-empty, only these registries (host, host:port, `*.domain`, CIDR) may be imported from.
    pub allowed: Vec<String>,
    /// Registries never contacted, in addition to the link-local/metadata defaults.
    pub blocked: Vec<String>,
}

impl RegistryPolicy {
    /// Refuses a registry that is blocked or not allowed; `registry` is `host[:port]`.
    pub fn check_registry(&self, registry: &str) -> Result<(), String> {
        self.check_blocked(registry)?;
        let host = host_of(registry);
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| matches(a, registry, host)) {
            return Err(format!(
                "importing from registry {registry} is forbidden: it is not on the operator's --allowed-registries list"
            ));
        }
        Ok(())
    }

    /// Refuses hosts on the block list only: token realms and redirect targets (a CDN, an auth
    /// server) are legitimately outside the allow list but must never be internal endpoints.
    pub fn check_blocked(&self, registry: &str) -> Result<(), String> {
        let host = host_of(registry);
        let blocked = DEFAULT_BLOCKED
            .iter()
            .copied()
            .chain(self.blocked.iter().map(String::as_str))
            .any(|b| matches(b, registry, host));
        if blocked {
            return Err(format!(
                "importing from registry {registry} is forbidden: it is on the operator's blocked list"
            ));
        }
        Ok(())
    }

    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_of(registry);
        self.insecure.iter().any(|r| matches(r, registry, host))
    }
}

fn matches(pattern: &str, registry: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Some((net, bits)) = pattern.split_once('/') {
        let (Ok(net), Ok(bits), Ok(ip)) = (
            net.parse::<IpAddr>(),
            bits.parse::<u32>(),
            host.parse::<IpAddr>(),
        ) else {
            return false;
        };
        return in_cidr(ip, net, bits);
    }
    if let Some(domain) = pattern.strip_prefix("*.") {
        return host
            .to_ascii_lowercase()
            .ends_with(&format!(".{}", domain.to_ascii_lowercase()));
    }
    if let (Ok(p), Ok(h)) = (pattern.parse::<IpAddr>(), host.parse::<IpAddr>()) {
        // A bare IP pattern covers every port on that address.
        return p == h;
    }
    pattern.eq_ignore_ascii_case(registry)
        || (!pattern.contains(':') && pattern.eq_ignore_ascii_case(host))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
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
            "[fe80::1]:5000",
            "100.100.100.200",
        ] {
            assert!(p.check_registry(r).is_err(), "{r}");
        }
        assert!(p.check_registry("quay.io").is_ok());
        assert!(p.check_registry("127.0.0.1:5000").is_ok());
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
        assert!(p.check_registry("10.1.2.3:5000").is_ok());
        assert!(p.check_registry("127.0.0.1:5001").is_err());
        assert!(p.check_registry("quay.io").is_err());
        assert!(p.check_registry("bad.corp.io").is_err());
        assert!(p.check_blocked("auth.docker.io").is_ok());
    }
}
