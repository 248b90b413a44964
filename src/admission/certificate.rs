//! The generated serving certificate's life, pure: what a new one looks like (one year, the
//! Service's names, a CN that says what it is), and whether a stored one may still be served
//! (its names are today's, and it is not past two thirds of its life).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// How long a generated certificate is valid.
pub const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Issued this far in the past, so an API server whose clock is a little behind accepts it.
const BACKDATE: Duration = Duration::from_secs(3600);

/// The Common Name of every generated certificate: who issued it, for whom.
pub const COMMON_NAME: &str = "imagestream-operator webhook";

/// A certificate and its key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A self-signed certificate for `hosts` (the webhook Service's DNS names or addresses), valid
/// from `now` for [`VALIDITY`].
pub fn generate(hosts: &[String], now: SystemTime) -> anyhow::Result<Pair> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(hosts.to_vec())?;
    params.is_ca = rcgen::IsCa::NoCa;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, COMMON_NAME);
    params.not_before = now.checked_sub(BACKDATE).unwrap_or(now).into();
    params.not_after = now.checked_add(VALIDITY).unwrap_or(now).into();
    let cert = params.self_signed(&key)?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What a stored certificate is good for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it; renew it at `renew_at` (two thirds of its life).
    Serve { renew_at: SystemTime },
    /// Replace it now, for this reason.
    Replace(String),
}

/// Reads a stored certificate: its names must be exactly `hosts` (a certificate for a Service
/// that was renamed is useless to the API server), and it must not be past two thirds of its
/// life (so its replacement is in every replica and in the caBundle long before it expires).
pub fn assess(cert_pem: &str, hosts: &[String], now: SystemTime) -> Verdict {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else {
        return Verdict::Replace("the stored certificate is not PEM".into());
    };
    let Ok(cert) = pem.parse_x509() else {
        return Verdict::Replace("the stored certificate does not parse".into());
    };
    let names = match names_of(&cert) {
        Some(names) => names,
        None => return Verdict::Replace("the stored certificate's names do not parse".into()),
    };
    let wanted = wanted(hosts);
    if names != wanted {
        return Verdict::Replace(format!(
            "the stored certificate is for {names:?}, the webhook is now {wanted:?}"
        ));
    }
    let validity = cert.validity();
    let (from, until) = (
        at(validity.not_before.timestamp()),
        at(validity.not_after.timestamp()),
    );
    let life = until.duration_since(from).unwrap_or_default();
    let renew_at = from.checked_add(life * 2 / 3).unwrap_or(from);
    if now >= renew_at {
        return Verdict::Replace("the stored certificate is past two thirds of its life".into());
    }
    Verdict::Serve { renew_at }
}

/// Whether a certificate (PEM) is still within its validity at `now`: the caBundle keeps the
/// previous certificate while it is, so replicas that have not reloaded yet stay trusted.
pub fn still_valid(cert_pem: &str, now: SystemTime) -> bool {
    x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .ok()
        .and_then(|(_, pem)| {
            pem.parse_x509()
                .ok()
                .map(|c| now < at(c.validity().not_after.timestamp()))
        })
        .unwrap_or(false)
}

/// The host names as a certificate carries them: DNS names lower-cased, addresses parsed.
fn wanted(hosts: &[String]) -> BTreeSet<String> {
    hosts
        .iter()
        .map(|h| match h.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => h.to_ascii_lowercase(),
        })
        .collect()
}

fn names_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<BTreeSet<String>> {
    use x509_parser::extensions::GeneralName;
    let mut names = BTreeSet::new();
    let Some(san) = cert.subject_alternative_name().ok()? else {
        return Some(names);
    };
    for name in &san.value.general_names {
        match name {
            GeneralName::DNSName(d) => {
                names.insert(d.to_ascii_lowercase());
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).ok()?),
                    16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).ok()?),
                    _ => return None,
                };
                names.insert(ip.to_string());
            }
            _ => {}
        }
    }
    Some(names)
}

fn at(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(secs))
            .unwrap_or(SystemTime::UNIX_EPOCH),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec![
            "iso-webhook.imagestream-system.svc".into(),
            "127.0.0.1".into(),
        ]
    }

    fn parsed(pem: &str) -> (i64, i64, String) {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let v = cert.validity();
        let cn = cert.subject().to_string();
        (v.not_before.timestamp(), v.not_after.timestamp(), cn)
    }

    #[test]
    fn a_new_certificate_lasts_a_year_and_says_what_it_is() {
        let now = SystemTime::now();
        let pair = generate(&hosts(), now).unwrap();
        let (from, until, cn) = parsed(&pair.cert_pem);
        let now_s = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert_eq!(from, now_s - 3600);
        assert_eq!(until, now_s + 365 * 24 * 3600);
        assert_eq!(cn, format!("CN={COMMON_NAME}"));
        assert!(matches!(
            assess(&pair.cert_pem, &hosts(), now),
            Verdict::Serve { .. }
        ));
    }

    #[test]
    fn renewed_at_two_thirds_of_its_life() {
        let now = SystemTime::now();
        let pair = generate(&hosts(), now).unwrap();
        let Verdict::Serve { renew_at } = assess(&pair.cert_pem, &hosts(), now) else {
            panic!("fresh certificate refused")
        };
        let from = now - BACKDATE;
        let life = VALIDITY + BACKDATE;
        let expected = from + life * 2 / 3;
        let drift = renew_at
            .duration_since(expected)
            .unwrap_or_else(|e| e.duration());
        assert!(drift <= Duration::from_secs(1), "{drift:?}");
        let just_before = renew_at - Duration::from_secs(1);
        assert!(matches!(
            assess(&pair.cert_pem, &hosts(), just_before),
            Verdict::Serve { .. }
        ));
        assert!(matches!(
            assess(&pair.cert_pem, &hosts(), renew_at),
            Verdict::Replace(_)
        ));
        assert!(still_valid(&pair.cert_pem, renew_at));
        assert!(!still_valid(
            &pair.cert_pem,
            now + VALIDITY + Duration::from_secs(1)
        ));
    }

    #[test]
    fn names_must_be_todays() {
        let now = SystemTime::now();
        let pair = generate(&hosts(), now).unwrap();
        // Same names in another order and case still match.
        let reordered = vec![
            "127.0.0.1".into(),
            "ISO-webhook.imagestream-system.svc".into(),
        ];
        assert!(matches!(
            assess(&pair.cert_pem, &reordered, now),
            Verdict::Serve { .. }
        ));
        let renamed = vec!["other-webhook.imagestream-system.svc".to_string()];
        let Verdict::Replace(why) = assess(&pair.cert_pem, &renamed, now) else {
            panic!("a certificate for another name was kept")
        };
        assert!(why.contains("other-webhook"), "{why}");
        let more = [hosts(), vec!["extra.svc".into()]].concat();
        assert!(matches!(
            assess(&pair.cert_pem, &more, now),
            Verdict::Replace(_)
        ));
    }

    #[test]
    fn garbage_is_replaced() {
        let now = SystemTime::now();
        assert!(matches!(
            assess("not a certificate", &hosts(), now),
            Verdict::Replace(_)
        ));
        assert!(!still_valid("junk", now));
    }
}
