//! The plugin's command line (clap): every command, flag and accepted value. Values with a fixed
//! set of spellings are `ValueEnum`s, so a typo is refused by the parser with the valid choices.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::api::ReferencePolicyType;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-imagestream",
    version,
    about = "OpenShift image stream commands (oc tag, oc import-image, oc describe is/istag) for any cluster",
    after_help = "Examples:\n  kubectl imagestream import-image python:3.5 --from=centos/python-35-centos7 --confirm\n  kubectl imagestream tag python:3.5 python:latest\n  kubectl imagestream tag docker.io/python:3.6.0 python:3.6 --scheduled\n  kubectl imagestream tag -d python:3.5\n  kubectl imagestream describe is python\n  kubectl imagestream describe istag python:latest\n  kubectl imagestream set triggers deploy/example --from-image=example:latest -c web\n  kubectl imagestream rollback python:latest"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Kubeconfig context.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Path to the kubeconfig file.
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Output format for get and describe: json or yaml instead of the table/text.
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Point tags at an image, another tag (pinned), or track another tag (--alias); -d deletes.
    #[command(
        after_help = "Examples:\n  kubectl imagestream tag python:3.5 python:latest\n  kubectl imagestream tag docker.io/python:3.6.0 python:3.6 --scheduled\n  kubectl imagestream tag --alias python:3.6 python:latest\n  kubectl imagestream tag -d python:3.5"
    )]
    Tag(TagArgs),
    /// Import an image now (create the stream with --from and --confirm) and show the result.
    #[command(name = "import-image")]
    ImportImage(ImportArgs),
    /// Describe an image stream (is NAME), a tag (istag NAME:TAG) or an image (isimage
    /// NAME@DIGEST); kubectl's KIND/NAME form (is/python) works too.
    Describe {
        /// is, istag or isimage (or their long names), alone or as KIND/NAME.
        kind: String,
        name: Option<String>,
    },
    /// List image streams (is) or tags (istag [STREAM]); also is/NAME.
    Get {
        /// is or istag (or their long names), alone or as KIND/NAME.
        kind: String,
        name: Option<String>,
    },
    /// Set triggers or image lookup.
    #[command(subcommand)]
    Set(SetCommand),
    /// Point a tag back at an earlier image of its history (default: the previous one).
    Rollback {
        /// STREAM:TAG
        tag: String,
        /// History index (1 = previous) or digest (prefix).
        #[arg(long)]
        to: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// SOURCE DEST… (or, with -d, the tags to delete)
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Delete the given tags (spec and history).
    #[arg(short = 'd', long)]
    pub delete: bool,
    /// Track the source tag instead of copying its current image (same stream only).
    #[arg(long)]
    pub alias: bool,
    /// Re-import the source periodically.
    #[arg(long)]
    pub scheduled: bool,
    /// Record the source as a reference; never import it.
    #[arg(long)]
    pub reference: bool,
    /// Allow insecure HTTPS or HTTP for the source registry.
    #[arg(long)]
    pub insecure: bool,
    /// local or source.
    #[arg(long, value_enum, ignore_case = true)]
    pub reference_policy: Option<ReferencePolicy>,
    /// Force the source kind: docker, istag or isimage.
    #[arg(long)]
    pub source: Option<String>,
    /// Onto a tag with a policy: drop the policy (the tag then follows SOURCE like any tag).
    #[arg(long)]
    pub remove_policy: bool,
    /// Onto a tag with a policy: keep the policy and hold the tag at SOURCE's image (by digest).
    #[arg(long)]
    pub hold: bool,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// NAME[:TAG]
    pub name: String,
    /// The image to import (required to create a stream or a tag).
    #[arg(long)]
    pub from: Option<String>,
    /// Create the stream or tag, or change its source.
    #[arg(long)]
    pub confirm: bool,
    /// Import every tag (and the whole repository when the stream names one).
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub scheduled: bool,
    #[arg(long)]
    pub insecure: bool,
    /// local or source.
    #[arg(long, value_enum, ignore_case = true)]
    pub reference_policy: Option<ReferencePolicy>,
    /// How long to wait for the controller's result (60s, 1m, 2m30s; a plain number is seconds).
    #[arg(long, default_value = "60s", value_parser = crate::api::duration::parse_flag)]
    pub timeout: Duration,
}

#[derive(Subcommand, Debug)]
pub enum SetCommand {
    /// Add, pause, remove or list image triggers on a workload (KIND/NAME).
    Triggers {
        workload: String,
        #[arg(long)]
        from_image: Option<String>,
        #[arg(short = 'c', long)]
        containers: Option<String>,
        /// Add the trigger paused.
        #[arg(long)]
        manual: bool,
        #[arg(long)]
        remove: bool,
        #[arg(long)]
        remove_all: bool,
    },
    /// Enable or disable image lookup for streams, or resolve-names on a workload (KIND/NAME).
    ImageLookup {
        names: Vec<String>,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        enabled: bool,
    },
}

/// `-o`: structured output instead of the table or text, or the wide table.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// `get`: every tag, none counted as "+ N more"; elsewhere the usual text.
    Wide,
}

/// `describe`/`get`'s KIND and NAME, given as two words (`is python`) or as kubectl's
/// `KIND/NAME` (`is/python`, `imagestream.image.openshift.io/python`).
pub fn kind_and_name<K: ValueEnum>(
    kind: &str,
    name: Option<String>,
) -> Result<(K, Option<String>), String> {
    let (kind, name) = match (kind.split_once('/'), name) {
        (Some(_), Some(extra)) => {
            return Err(format!(
                "{kind:?} already names the object; {extra:?} is one too many"
            ))
        }
        (Some((k, n)), None) => (k, Some(n.to_string())),
        (None, name) => (kind, name),
    };
    let bare = kind.strip_suffix(".image.openshift.io").unwrap_or(kind);
    let parsed = K::from_str(bare, true).map_err(|_| {
        let known: Vec<String> = K::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        format!("{kind:?} is not one of {}", known.join(", "))
    })?;
    Ok((parsed, name))
}

/// What `describe` shows.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescribeKind {
    #[value(name = "is", alias = "imagestream", alias = "imagestreams")]
    Is,
    #[value(name = "istag", alias = "imagestreamtag", alias = "imagestreamtags")]
    Istag,
    #[value(
        name = "isimage",
        alias = "imagestreamimage",
        alias = "imagestreamimages"
    )]
    Isimage,
}

/// What `get` lists.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetKind {
    #[value(name = "is", alias = "imagestream", alias = "imagestreams")]
    Is,
    #[value(
        name = "istag",
        alias = "istags",
        alias = "imagestreamtag",
        alias = "imagestreamtags"
    )]
    Istag,
}

/// `--reference-policy`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferencePolicy {
    Local,
    Source,
}

impl From<ReferencePolicy> for ReferencePolicyType {
    fn from(p: ReferencePolicy) -> Self {
        match p {
            ReferencePolicy::Local => ReferencePolicyType::Local,
            ReferencePolicy::Source => ReferencePolicyType::Source,
        }
    }
}
