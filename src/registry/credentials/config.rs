//! The kubelet's credential provider config (`CredentialProviderConfig`, `--image-credential-
//! provider-config`), read the way the kubelet reads it: strict fields, the same required
//! values, the same `matchImages` rules. Pure: running the plugins is `plugins.rs`.
//!
//! `matchImages` (the kubelet's `URLsMatchStr`): a pattern and an image match when both have
//! the same number of DNS labels and each label matches its glob (`*`, `?`, `[…]`, one label
//! each: `*.io` never matches `k8s.example.io`), the ports are identical (none = none), and the
//! pattern's path is a prefix of the image's path — a string prefix, as the kubelet compares it,
//! so `example.com/pong` matches `example.com/pongz`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::duration;

/// The config file's own versions (the kubelet reads all three the same way).
const CONFIG_VERSIONS: [&str; 3] = [
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
];
/// The request/response versions a provider may speak.
pub const PLUGIN_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    api_version: String,
    kind: String,
    #[serde(default)]
    providers: Vec<RawProvider>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawProvider {
    #[serde(default)]
    name: String,
    #[serde(default)]
    match_images: Vec<String>,
    default_cache_duration: Option<String>,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    token_attributes: Option<RawTokenAttributes>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTokenAttributes {
    #[serde(default)]
    service_account_token_audience: String,
    require_service_account: Option<bool>,
    #[serde(default)]
    required_service_account_annotation_keys: Vec<String>,
    #[serde(default)]
    optional_service_account_annotation_keys: Vec<String>,
    cache_type: Option<String>,
}

/// One provider of the config, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub name: String,
    pub match_images: Vec<Pattern>,
    pub default_cache_duration: Duration,
    pub api_version: String,
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    pub token: Option<TokenAttributes>,
}

/// Service-account-token mode: the provider is given a token of the stream's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAttributes {
    pub audience: String,
    pub required_annotations: Vec<String>,
    pub optional_annotations: Vec<String>,
    /// `Token`: credentials live no longer than the token they were fetched with;
    /// `ServiceAccount`: they are kept per ServiceAccount for the cache duration.
    pub per_token: bool,
}

impl ProviderConfig {
    pub fn matches(&self, image: &str) -> bool {
        self.match_images.iter().any(|p| p.matches(image))
    }
}

/// Read the config: a file, or (as newer kubelets allow) a directory whose `*.json`, `*.yaml`
/// and `*.yml` files are merged in name order. Every error names the file and the field.
pub fn load(path: &Path) -> Result<Vec<ProviderConfig>, String> {
    let files = config_files(path)?;
    let mut providers = Vec::new();
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
        for p in parse(&text).map_err(|e| format!("{}: {e}", file.display()))? {
            if !names.insert(p.name.clone()) {
                return Err(format!(
                    "{}: duplicate provider name {:?}",
                    file.display(),
                    p.name
                ));
            }
            providers.push(p);
        }
    }
    Ok(providers)
}

fn config_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|x| x == "json" || x == "yaml" || x == "yml")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "{}: no *.json, *.yaml or *.yml file in the directory",
            path.display()
        ));
    }
    Ok(files)
}

/// Parse one config document (YAML or JSON).
pub fn parse(text: &str) -> Result<Vec<ProviderConfig>, String> {
    let file: File =
        serde_saphyr::from_str(text).map_err(|e| format!("not a valid config: {e}"))?;
    if !CONFIG_VERSIONS.contains(&file.api_version.as_str()) {
        return Err(format!(
            "apiVersion: {:?} is not supported (use one of {})",
            file.api_version,
            CONFIG_VERSIONS.join(", ")
        ));
    }
    if file.kind != "CredentialProviderConfig" {
        return Err(format!(
            "kind: {:?}, expected CredentialProviderConfig",
            file.kind
        ));
    }
    if file.providers.is_empty() {
        return Err("providers: at least one provider is required".into());
    }
    let mut seen = BTreeSet::new();
    file.providers
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let at = format!("providers[{i}]");
            if !seen.insert(raw.name.clone()) {
                return Err(format!("{at}.name: duplicate provider name {:?}", raw.name));
            }
            provider(raw).map_err(|e| format!("{at}.{e}"))
        })
        .collect()
}

fn provider(raw: RawProvider) -> Result<ProviderConfig, String> {
    let name = raw.name;
    if name.is_empty() || name.contains(['/', ' ']) || name == "." || name == ".." {
        return Err(format!(
            "name: {name:?} must be the file name of an executable in the bin dir (no '/', no spaces)"
        ));
    }
    if !PLUGIN_VERSIONS.contains(&raw.api_version.as_str()) {
        return Err(format!(
            "apiVersion: {:?} is not supported (use one of {})",
            raw.api_version,
            PLUGIN_VERSIONS.join(", ")
        ));
    }
    if raw.match_images.is_empty() {
        return Err("matchImages: at least one pattern is required".into());
    }
    let match_images = raw
        .match_images
        .iter()
        .map(|m| Pattern::parse(m).map_err(|e| format!("matchImages: {m:?} is invalid: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let default_cache_duration = match raw.default_cache_duration.as_deref() {
        None => return Err("defaultCacheDuration: required (for example \"12h\")".into()),
        Some(d) => duration::parse(d).map_err(|e| format!("defaultCacheDuration: {e}"))?,
    };
    let token = raw
        .token_attributes
        .map(|t| token_attributes(t, &raw.api_version))
        .transpose()
        .map_err(|e| format!("tokenAttributes.{e}"))?;
    Ok(ProviderConfig {
        name,
        match_images,
        default_cache_duration,
        api_version: raw.api_version,
        args: raw.args,
        env: raw.env,
        token,
    })
}

fn token_attributes(raw: RawTokenAttributes, version: &str) -> Result<TokenAttributes, String> {
    if version != PLUGIN_VERSIONS[0] {
        return Err(format!(
            "serviceAccountTokenAudience: token mode needs apiVersion {}",
            PLUGIN_VERSIONS[0]
        ));
    }
    if raw.service_account_token_audience.is_empty() {
        return Err("serviceAccountTokenAudience: required".into());
    }
    let Some(require) = raw.require_service_account else {
        return Err("requireServiceAccount: required".into());
    };
    if !require && !raw.required_service_account_annotation_keys.is_empty() {
        return Err(
            "requiredServiceAccountAnnotationKeys: needs requireServiceAccount: true".into(),
        );
    }
    let required: BTreeSet<_> = raw
        .required_service_account_annotation_keys
        .iter()
        .collect();
    let optional: BTreeSet<_> = raw
        .optional_service_account_annotation_keys
        .iter()
        .collect();
    if let Some(both) = required.intersection(&optional).next() {
        return Err(format!(
            "optionalServiceAccountAnnotationKeys: {both:?} is also required"
        ));
    }
    let per_token = match raw.cache_type.as_deref() {
        Some("Token") => true,
        Some("ServiceAccount") => false,
        other => {
            return Err(format!(
                "cacheType: {other:?}, expected \"ServiceAccount\" or \"Token\""
            ))
        }
    };
    Ok(TokenAttributes {
        audience: raw.service_account_token_audience,
        required_annotations: raw.required_service_account_annotation_keys,
        optional_annotations: raw.optional_service_account_annotation_keys,
        per_token,
    })
}

/// A `matchImages` entry or a response's `auth` key: host labels (globs, validated and kept as
/// characters, so matching an image does no parsing), port, path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    labels: Vec<Vec<char>>,
    port: String,
    path: String,
}

/// `host`, `port` (when there is a `:`) and `/path` (empty when none) of a schemeless URL;
/// `https://` is tolerated, as in `auth` keys.
fn split_url(text: &str) -> (&str, Option<&str>, &str) {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .unwrap_or(text);
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    match hostport.rsplit_once(':') {
        Some((host, port)) => (host, Some(port), path),
        None => (hostport, None, path),
    }
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

impl Pattern {
    /// A schemeless URL as the kubelet reads one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port, path) = split_url(text);
        if let Some(port) = port.filter(|p| !is_port(p)) {
            return Err(format!("port {port:?} is not a number"));
        }
        if host.is_empty() {
            return Err("no host".into());
        }
        let labels = host
            .split('.')
            .map(|label| {
                let chars: Vec<char> = label.chars().collect();
                check_classes(&chars).map_err(|e| format!("label {label:?}: {e}"))?;
                Ok(chars)
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self {
            labels,
            port: port.unwrap_or_default().to_string(),
            path: path.to_string(),
        })
    }

    /// `image` is `registry[:port]/repository`, without tag or digest.
    pub fn matches(&self, image: &str) -> bool {
        let (host, port, path) = split_url(image);
        !host.is_empty()
            && port.is_none_or(is_port)
            && self.port == port.unwrap_or_default()
            && path.starts_with(&self.path)
            && self.labels.len() == host.split('.').count()
            && self.labels.iter().zip(host.split('.')).all(|(p, label)| {
                let label: Vec<char> = label.chars().collect();
                glob_at(p, &label)
            })
    }
}

/// Go's `filepath.Match` for one DNS label (the pattern checked by `check_classes` first):
/// `*` any run, `?` one character, `[a-z]`, `[^…]`, `\` escapes.
fn glob_at(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|skip| glob_at(&p[1..], &s[skip..])),
        Some(_) if s.is_empty() => false,
        Some('?') => glob_at(&p[1..], &s[1..]),
        Some('[') => match class(&p[1..], s[0]) {
            Some((true, used)) => glob_at(&p[1 + used..], &s[1..]),
            _ => false,
        },
        Some('\\') if p.len() > 1 => p[1] == s[0] && glob_at(&p[2..], &s[1..]),
        Some(c) => *c == s[0] && glob_at(&p[1..], &s[1..]),
    }
}

/// Whether `c` is in the class starting after `[`, and how many pattern characters the class
/// used (through its `]`).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let (negated, mut i) = match p.first() {
        Some('^') => (true, 1),
        _ => (false, 0),
    };
    let mut hit = false;
    let mut first = true;
    loop {
        let lo = match p.get(i)? {
            ']' if !first => return Some((hit != negated, i + 1)),
            '\\' => {
                i += 1;
                *p.get(i)?
            }
            ch => *ch,
        };
        first = false;
        i += 1;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|n| *n != ']') {
            i += 1;
            let h = if p[i] == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                p[i]
            };
            i += 1;
            h
        } else {
            lo
        };
        hit |= lo <= c && c <= hi;
    }
}

fn check_classes(p: &[char]) -> Result<(), String> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '[' => match class(&p[i + 1..], '\0') {
                Some((_, used)) => i += used,
                None => return Err("unclosed '['".into()),
            },
            '\\' if i + 1 == p.len() => return Err("trailing '\\'".into()),
            '\\' => i += 1,
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kubelet's own table (`TestURLsMatch`, pkg/credentialprovider), and its doc examples.
    #[test]
    fn match_images_follows_the_kubelet_table() {
        let cases = [
            ("*.kubernetes.io", "prefix.kubernetes.io", true),
            ("prefix.*.io", "prefix.kubernetes.io", true),
            ("prefix.kubernetes.*", "prefix.kubernetes.io", true),
            ("*-good.kubernetes.io", "prefix-good.kubernetes.io", true),
            ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", true),
            ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", true),
            (
                "*.kubernetes.io:1111/blah",
                "prefix.kubernetes.io:1111/blah",
                true,
            ),
            (
                "prefix.*.io:1111/foo",
                "prefix.kubernetes.io:1111/foo/bar",
                true,
            ),
            ("*.kubernetes.io", "kubernetes.io", false),
            ("*.*.kubernetes.io", "prefix.kubernetes.io", false),
            ("*.*.kubernetes.io", "kubernetes.io", false),
            ("kubernetes.io", "kubernetes.com", false),
            ("k*.io", "quay.io", false),
            (
                "*.kubernetes.io:1234/blah",
                "prefix.kubernetes.io:1111/blah",
                false,
            ),
            (
                "prefix.*.io/foo",
                "prefix.kubernetes.io:1111/foo/bar",
                false,
            ),
            // The documentation's examples.
            (
                "*.dkr.ecr.*.amazonaws.com",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
                true,
            ),
            (
                "*.dkr.ecr.*.amazonaws.com",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn/app",
                false,
            ),
            ("*.azurecr.io", "myregistry.azurecr.io/team/app", true),
            ("*.azurecr.io", "azurecr.io/app", false),
            ("*-docker.pkg.dev", "europe-docker.pkg.dev/p/r/app", true),
            ("*.*.registry.io", "a.b.registry.io/x", true),
            ("registry.io:8080/path", "registry.io:8080/path/app", true),
            ("registry.io:8080/path", "registry.io/path/app", false),
            ("registry.io", "registry.io:8080/app", false),
            // A string prefix, as the kubelet compares paths.
            ("bar.example.com/pong", "bar.example.com/pongz", true),
            ("bar.example.com/pong", "bar.example.com/ping", false),
            // Go's other glob forms.
            ("reg?.io", "reg1.io/x", true),
            ("reg[0-9].io", "reg7.io/x", true),
            ("reg[^0-9].io", "reg7.io/x", false),
            ("reg[^0-9].io", "regx.io/x", true),
        ];
        for (pattern, image, want) in cases {
            let p = Pattern::parse(pattern).unwrap();
            assert_eq!(p.matches(image), want, "{pattern} vs {image}");
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", ":80", "host:x", "reg[0-9.io", "reg\\"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    const GOOD: &str = r#"
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages: ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"]
    defaultCacheDuration: "12h"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
    env: [{name: AWS_PROFILE, value: temp}]
  - name: acr-credential-provider
    matchImages: ["*.azurecr.io"]
    defaultCacheDuration: "10m"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    tokenAttributes:
      serviceAccountTokenAudience: api://AzureADTokenExchange
      requireServiceAccount: true
      requiredServiceAccountAnnotationKeys: [azure.workload.identity/client-id]
      cacheType: ServiceAccount
"#;

    #[test]
    fn the_kubelet_config_parses() {
        let p = parse(GOOD).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "ecr-credential-provider");
        assert_eq!(p[0].default_cache_duration, Duration::from_secs(43200));
        assert_eq!(p[0].args, ["get-credentials"]);
        assert_eq!(p[0].env[0].name, "AWS_PROFILE");
        assert!(p[0].token.is_none());
        assert!(p[0].matches("1.dkr.ecr.eu-west-1.amazonaws.com/app"));
        let token = p[1].token.as_ref().unwrap();
        assert_eq!(token.audience, "api://AzureADTokenExchange");
        assert!(!token.per_token);
        // JSON is read as well.
        let json = r#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"CredentialProviderConfig",
            "providers":[{"name":"p","matchImages":["r.io"],"defaultCacheDuration":"1m",
            "apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1"}]}"#;
        assert_eq!(parse(json).unwrap()[0].api_version, PLUGIN_VERSIONS[1]);
    }

    /// Each mistake is reported with the field that holds it.
    #[test]
    fn config_errors_name_the_field() {
        let with = |from: &str, to: &str| {
            assert!(GOOD.contains(from), "{from}");
            parse(&GOOD.replacen(from, to, 1)).unwrap_err()
        };
        let cases = [
            (with("kubelet.config.k8s.io/v1", "v1"), "apiVersion: \"v1\""),
            (
                with("kind: CredentialProviderConfig", "kind: Config"),
                "kind: \"Config\"",
            ),
            (
                with("name: ecr-credential-provider", "name: bin/ecr"),
                "providers[0].name",
            ),
            (
                with(
                    "name: acr-credential-provider",
                    "name: ecr-credential-provider",
                ),
                "providers[1].name: duplicate",
            ),
            (
                with("matchImages: [\"*.azurecr.io\"]", "matchImages: []"),
                "providers[1].matchImages: at least one",
            ),
            (
                with("\"*.azurecr.io\"", "\"azurecr.io:x\""),
                "providers[1].matchImages: \"azurecr.io:x\" is invalid",
            ),
            (
                with("    defaultCacheDuration: \"12h\"\n", ""),
                "providers[0].defaultCacheDuration: required",
            ),
            (
                with("\"12h\"", "\"12 hours\""),
                "providers[0].defaultCacheDuration: \"12 hours\" is not a duration",
            ),
            (
                with(
                    "credentialprovider.kubelet.k8s.io/v1\n    args",
                    "credentialprovider.kubelet.k8s.io/v2\n    args",
                ),
                "providers[0].apiVersion: \"credentialprovider.kubelet.k8s.io/v2\"",
            ),
            (
                with("cacheType: ServiceAccount", "cacheType: Pod"),
                "providers[1].tokenAttributes.cacheType",
            ),
            (
                with("      requireServiceAccount: true\n", ""),
                "providers[1].tokenAttributes.requireServiceAccount: required",
            ),
            (with("args:", "argz:"), "unknown field `argz`"),
        ];
        for (err, want) in cases {
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn a_config_file_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("providers.yaml");
        std::fs::write(&file, GOOD.replace("\"12h\"", "\"soon\"")).unwrap();
        let err = load(&file).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "{}: providers[0].defaultCacheDuration",
                file.display()
            )),
            "{err}"
        );
        let missing = load(&dir.path().join("nope.yaml")).unwrap_err();
        assert!(missing.contains("nope.yaml: cannot read"), "{missing}");
        // A directory: files merged in name order, names unique across them.
        std::fs::write(&file, GOOD).unwrap();
        std::fs::write(dir.path().join("z.yml"), GOOD).unwrap();
        let dup = load(dir.path()).unwrap_err();
        assert!(dup.contains("z.yml: duplicate provider name"), "{dup}");
        std::fs::remove_file(dir.path().join("z.yml")).unwrap();
        assert_eq!(load(dir.path()).unwrap().len(), 2);
    }
}
