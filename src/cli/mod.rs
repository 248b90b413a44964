//! `kubectl-imagestream`: the `oc tag`, `oc import-image`, `oc describe is|istag|isimage`,
//! `oc get is|istag`, `oc set triggers`, `oc set image-lookup` workflows (and `rollback`) against
//! the ImageStream CRD. `format.rs` prints, `edit.rs` decides what to write, this file talks to
//! the API server.

pub mod args;
pub mod edit;
pub mod format;

use std::time::Duration;

use clap::Parser;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::api::update::UpdateError;
use crate::api::{
    field_manager, ImageStream, ImageStreamSpec, DOCKER_REPOSITORY_CHECK, RESOLVE_NAMES, TRIGGERS,
};
use crate::triggers::workload::Kind;
pub use args::{Cli, Command, DescribeKind, GetKind, Global, ImportArgs, SetCommand, TagArgs};
use edit::{check_containers, first_container, workload_ref, Source, TagOptions};
use format::structured;

/// A user-facing failure: printed as `error: …`, exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line asks for something impossible or unclear: fix the command.
    #[error("{0}")]
    Usage(String),
    /// The command was fine but the cluster state or the operator did not allow it: not found,
    /// kept changing, not answered in time.
    #[error("{0}")]
    Failed(String),
    #[error("{}", kube_message(.0))]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

/// What the API server said, as kubectl prints it (`deployments.apps "web" not found`), not the
/// whole error structure.
fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

impl From<String> for CliError {
    fn from(s: String) -> Self {
        CliError::Usage(s)
    }
}

pub async fn client(global: &Global) -> Result<(Client, String), CliError> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..Default::default()
    };
    let config = match &global.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| CliError::Usage(format!("reading {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| e.to_string())
        }
        None if global.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| e.to_string()),
        None => kube::Config::infer().await.map_err(|e| e.to_string()),
    }
    .map_err(|e| {
        CliError::Usage(format!(
            "no usable kubeconfig: {e}; pass --kubeconfig or --context"
        ))
    })?;
    let namespace = global
        .namespace
        .clone()
        .unwrap_or(config.default_namespace.clone());
    let client = Client::try_from(config).map_err(CliError::Kube)?;
    Ok((client, namespace))
}

/// Runs one command against `client` in `namespace`, printing to `out`.
pub async fn execute(
    cli: Cli,
    client: Client,
    namespace: &str,
    out: &mut String,
) -> Result<(), CliError> {
    let result = run(cli, client, namespace, out).await;
    // Stream fields, conditions and registry messages are anyone's text: nothing in them may
    // move a terminal's cursor, retitle it or hide what follows.
    *out = crate::api::untrusted::clean_lines(out, usize::MAX);
    result
}

async fn run(cli: Cli, client: Client, namespace: &str, out: &mut String) -> Result<(), CliError> {
    let streams: Api<ImageStream> = Api::namespaced(client.clone(), namespace);
    match cli.command {
        Command::Tag(args) => tag(&client, namespace, args, out).await,
        Command::ImportImage(args) => import_image(&streams, namespace, args, out).await,
        Command::Describe { kind, name } => {
            let (kind, name) = args::kind_and_name::<DescribeKind>(&kind, name)?;
            let name = name.ok_or_else(|| CliError::Usage("describe needs a NAME".into()))?;
            describe(&streams, kind, &name, cli.global.output, out).await
        }
        Command::Get { kind, name } => {
            let (kind, name) = args::kind_and_name::<GetKind>(&kind, name)?;
            get(&streams, kind, name.as_deref(), cli.global.output, out).await
        }
        Command::Set(SetCommand::ImageLookup { names, enabled }) => {
            image_lookup(&client, &streams, namespace, &names, enabled, out).await
        }
        Command::Set(SetCommand::Triggers {
            workload,
            from_image,
            containers,
            manual,
            remove,
            remove_all,
        }) => {
            triggers(
                &client, namespace, &workload, from_image, containers, manual, remove, remove_all,
                out,
            )
            .await
        }
        Command::Rollback { tag, to } => rollback(&streams, &tag, to.as_deref(), out).await,
    }
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(field_manager::CLI.into()),
        ..Default::default()
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(field_manager::CLI.into()),
        ..Default::default()
    }
}

/// The shared read-modify-write (`api::update`), with the CLI's field manager.
async fn update<T>(
    api: &Api<ImageStream>,
    name: &str,
    change: impl FnMut(&mut ImageStream) -> Result<T, CliError>,
) -> Result<(ImageStream, T), CliError> {
    crate::api::update::update(api, name, &post_params(), 5, change)
        .await
        .map_err(|e| match e {
            UpdateError::Change(e) => e,
            UpdateError::Kube(e) => CliError::Kube(e),
            other => CliError::Failed(other.to_string()),
        })
}

async fn tag(
    client: &Client,
    namespace: &str,
    args: TagArgs,
    out: &mut String,
) -> Result<(), CliError> {
    if args.delete {
        for t in &args.args {
            delete_tag(client, namespace, t, out).await?;
        }
        return Ok(());
    }
    let [source_arg, dests @ ..] = args.args.as_slice() else {
        return Err(CliError::Usage(
            "tag needs SOURCE and at least one DEST".into(),
        ));
    };
    if dests.is_empty() {
        return Err(CliError::Usage(
            "tag needs at least one DEST (STREAM:TAG)".into(),
        ));
    }
    let source = edit::parse_source(source_arg, args.source.as_deref())?;
    let opts = TagOptions {
        alias: args.alias,
        scheduled: args.scheduled,
        reference: args.reference,
        insecure: args.insecure,
        reference_policy: args.reference_policy.map(Into::into),
        import_mode: None,
        remove_policy: args.remove_policy,
        hold: args.hold,
    };
    // A copy (not an alias) of another stream's tag pins its current image: read that stream.
    let source_stream = match &source {
        Source::StreamTag {
            namespace: ns,
            stream,
            ..
        } if !opts.alias => {
            let api: Api<ImageStream> =
                Api::namespaced(client.clone(), ns.as_deref().unwrap_or(namespace));
            api.get_opt(stream).await?
        }
        _ => None,
    };
    for dest in dests {
        let (ns, stream, tag) = edit::parse_dest(dest)?;
        let ns = ns.unwrap_or(namespace.to_string());
        let from = edit::tag_source(&source, &opts, &ns, &stream, source_stream.as_ref())?;
        let api: Api<ImageStream> = Api::namespaced(client.clone(), &ns);
        set_tag_creating_stream(&api, &ns, &stream, &tag, &from, &opts).await?;
        out.push_str(&edit::tag_message(&format!("{stream}:{tag}"), &from, &opts));
        out.push('\n');
    }
    Ok(())
}

/// Sets the spec tag, creating the stream when it does not exist yet (as `oc tag` does).
async fn set_tag_creating_stream(
    api: &Api<ImageStream>,
    ns: &str,
    stream: &str,
    tag: &str,
    from: &crate::api::TagSource,
    opts: &TagOptions,
) -> Result<(), CliError> {
    if api.get_opt(stream).await?.is_none() {
        let mut s = ImageStream::new(stream, ImageStreamSpec::default());
        s.metadata.namespace = Some(ns.to_string());
        edit::set_tag(&mut s, tag, from.clone(), opts);
        api.create(&post_params(), &s).await?;
        return Ok(());
    }
    update(api, stream, |s| {
        edit::check_policy_tag(s, tag, from, opts).map_err(CliError::Usage)?;
        edit::set_tag(s, tag, from.clone(), opts);
        Ok(())
    })
    .await?;
    Ok(())
}

/// `tag -d STREAM:TAG`: the spec tag, then its history in status, so the tag is really gone.
async fn delete_tag(
    client: &Client,
    namespace: &str,
    arg: &str,
    out: &mut String,
) -> Result<(), CliError> {
    let (ns, stream, tag) = edit::parse_dest(arg)?;
    let ns = ns.unwrap_or(namespace.to_string());
    let api: Api<ImageStream> = Api::namespaced(client.clone(), &ns);
    let (written, found) = update(&api, &stream, |s| Ok(edit::delete_tag(s, &tag))).await?;
    if !found {
        return Err(CliError::Failed(format!(
            "image stream tag {ns}/{stream}:{tag} not found"
        )));
    }
    let remaining = written
        .status
        .clone()
        .unwrap_or_default()
        .tags
        .into_iter()
        .filter(|t| t.tag != tag)
        .collect::<Vec<_>>();
    api.patch_status(
        &stream,
        &patch_params(),
        &Patch::Merge(json!({"status": {"tags": remaining}})),
    )
    .await?;
    out.push_str(&format!("Deleted tag {ns}/{stream}:{tag}.\n"));
    Ok(())
}

async fn import_image(
    streams: &Api<ImageStream>,
    namespace: &str,
    args: ImportArgs,
    out: &mut String,
) -> Result<(), CliError> {
    let (name, tag) = match args.name.split_once(':') {
        Some((n, t)) => (n.to_string(), Some(t.to_string())),
        None => (args.name.clone(), None),
    };
    if args.all && tag.is_some() {
        return Err(CliError::Usage(
            "--all imports every tag; do not name one".into(),
        ));
    }
    let opts = TagOptions {
        scheduled: args.scheduled,
        insecure: args.insecure,
        reference_policy: args.reference_policy.map(Into::into),
        ..Default::default()
    };
    let existing = streams.get_opt(&name).await?;
    let tag_name = tag.clone().unwrap_or("latest".into());
    let written = match (existing, &args.from) {
        (None, None) => return Err(CliError::Usage(format!("image stream {namespace}/{name} does not exist; pass --from=PULLSPEC --confirm to create it"))),
        (None, Some(_)) | (Some(_), Some(_)) if !args.confirm && !has_same_source(streams, &name, &tag_name, args.from.as_deref()).await? => {
            return Err(CliError::Usage("--confirm is required to create a stream or tag or to change where it imports from".into()))
        }
        (None, Some(from)) => {
            let s = new_stream_to_import(namespace, &name, &tag_name, from, args.all, &opts);
            streams.create(&post_params(), &s).await?
        }
        (Some(_), from) => {
            let ask = |s: &mut ImageStream| {
                if let Some(from) = from {
                    set_import_source(s, &tag_name, from, args.all, &opts);
                }
                let target = tag.as_deref().map(|t| edit::import_target(s, t));
                let one = target.as_deref().unwrap_or("latest");
                edit::request_import(s, (!args.all).then_some(one), args.all)
                    .map_err(CliError::Usage)
            };
            update(streams, &name, ask).await?.0
        }
    };
    wait_for_import(
        streams,
        &name,
        &written,
        &tag_name,
        args.all,
        args.timeout,
        out,
    )
    .await
}

/// A new stream whose creation is the import request: the tag (or, with `--all`, the whole
/// repository) points at `from`.
fn new_stream_to_import(
    namespace: &str,
    name: &str,
    tag: &str,
    from: &str,
    all: bool,
    opts: &TagOptions,
) -> ImageStream {
    let mut s = ImageStream::new(name, ImageStreamSpec::default());
    s.metadata.namespace = Some(namespace.to_string());
    set_import_source(&mut s, tag, from, all, opts);
    s
}

/// `--from`: the repository to import whole (`--all`), or the tag's source.
fn set_import_source(s: &mut ImageStream, tag: &str, from: &str, all: bool, opts: &TagOptions) {
    if all {
        s.spec.docker_image_repository = Some(from.to_string());
    } else {
        edit::set_tag(s, tag, docker(from), opts);
    }
}

fn docker(from: &str) -> crate::api::TagSource {
    crate::api::TagSource {
        kind: crate::api::SourceKind::DockerImage,
        name: from.to_string(),
        namespace: None,
        api_version: None,
    }
}

async fn has_same_source(
    streams: &Api<ImageStream>,
    name: &str,
    tag: &str,
    from: Option<&str>,
) -> Result<bool, CliError> {
    let Some(s) = streams.get_opt(name).await? else {
        return Ok(false);
    };
    Ok(s.spec_tag(tag)
        .and_then(|t| t.from.as_ref())
        .map(|f| f.name.as_str())
        == from)
}

/// Waits until the controller answered the request (the tag's observed generation reached the
/// requested one), with dots on stderr, then prints the describe view or the failure.
async fn wait_for_import(
    streams: &Api<ImageStream>,
    name: &str,
    written: &ImageStream,
    tag: &str,
    all: bool,
    timeout: Duration,
    out: &mut String,
) -> Result<(), CliError> {
    let requested = written
        .spec_tag(tag)
        .and_then(|t| t.generation)
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut progress = std::io::stderr();
    loop {
        let s = streams.get(name).await?;
        let answered = if all {
            s.annotation(DOCKER_REPOSITORY_CHECK)
                .is_some_and(|a| !a.is_empty())
        } else {
            s.status_tag(tag)
                .is_some_and(|t| t.observed_generation() >= requested)
        };
        if answered {
            eprintln_to(&mut progress, "");
            let (text, failed) = format::import_result(&s, tag, all, jiff::Timestamp::now());
            out.push_str(&text);
            return match failed {
                false => Ok(()),
                true => Err(CliError::Failed(format!(
                    "import of {name} failed; see above"
                ))),
            };
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Failed(format!("the import of {name}:{tag} was not answered within {}s; is imagestream-operator running? (`kubectl get pods -A -l app.kubernetes.io/name=imagestream-operator`)", timeout.as_secs())));
        }
        eprint_to(&mut progress, ".");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn eprint_to(w: &mut impl std::io::Write, s: &str) {
    let _ = write!(w, "{s}");
    let _ = w.flush();
}

fn eprintln_to(w: &mut impl std::io::Write, s: &str) {
    let _ = writeln!(w, "{s}");
}

async fn describe(
    streams: &Api<ImageStream>,
    kind: DescribeKind,
    name: &str,
    output: Option<args::Output>,
    out: &mut String,
) -> Result<(), CliError> {
    let now = jiff::Timestamp::now();
    match kind {
        DescribeKind::Is => {
            let s = streams
                .get_opt(name)
                .await?
                .ok_or_else(|| CliError::Failed(format!("image stream {name} not found")))?;
            out.push_str(&match output {
                Some(o @ (args::Output::Json | args::Output::Yaml)) => structured(&s, o)?,
                _ => format::describe_stream(&s, now),
            });
        }
        DescribeKind::Istag => {
            let (stream, tag) = name
                .split_once(':')
                .ok_or_else(|| CliError::Usage(format!("{name:?} must be STREAM:TAG")))?;
            let s = streams
                .get_opt(stream)
                .await?
                .ok_or_else(|| CliError::Failed(format!("image stream {stream} not found")))?;
            let text = format::describe_istag(&s, tag, now).ok_or_else(|| match s.spec_tag(tag) {
                Some(_) => CliError::Failed(format!(
                    "image stream tag {stream}:{tag} has no image yet (`kubectl imagestream describe is {stream}` says why)"
                )),
                None => CliError::Failed(format!("image stream tag {stream}:{tag} not found")),
            })?;
            out.push_str(&text);
        }
        DescribeKind::Isimage => {
            let (stream, id) = name
                .split_once('@')
                .ok_or_else(|| CliError::Usage(format!("{name:?} must be STREAM@DIGEST")))?;
            let s = streams
                .get_opt(stream)
                .await?
                .ok_or_else(|| CliError::Failed(format!("image stream {stream} not found")))?;
            out.push_str(&format::describe_isimage(&s, id, now)?);
        }
    }
    Ok(())
}

async fn get(
    streams: &Api<ImageStream>,
    kind: GetKind,
    name: Option<&str>,
    output: Option<args::Output>,
    out: &mut String,
) -> Result<(), CliError> {
    let now = jiff::Timestamp::now();
    let list: Vec<ImageStream> = match name {
        Some(n) => vec![streams
            .get_opt(n)
            .await?
            .ok_or_else(|| CliError::Failed(format!("image stream {n} not found")))?],
        None => streams.list(&Default::default()).await?.items,
    };
    if let Some(o @ (args::Output::Json | args::Output::Yaml)) = output {
        out.push_str(&structured(&list, o)?);
        return Ok(());
    }
    let wide = output == Some(args::Output::Wide);
    out.push_str(&match kind {
        GetKind::Is => format::get_streams(&list, wide, now),
        GetKind::Istag => format::get_tags(&list, now),
    });
    Ok(())
}

async fn image_lookup(
    client: &Client,
    streams: &Api<ImageStream>,
    namespace: &str,
    names: &[String],
    enabled: bool,
    out: &mut String,
) -> Result<(), CliError> {
    if names.is_empty() {
        // As oc does: with nothing named, say which streams resolve short names.
        let list = streams.list(&Default::default()).await?.items;
        out.push_str(&format::image_lookup_table(&list));
        return Ok(());
    }
    for n in names {
        if n.contains('/') {
            let (kind, name) = workload_ref(n)?;
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
            let value = if enabled {
                json!("*")
            } else {
                serde_json::Value::Null
            };
            let body = match kind {
                Kind::Pod => json!({"metadata": {"annotations": {RESOLVE_NAMES: value}}}),
                Kind::CronJob => {
                    json!({"spec": {"jobTemplate": {"spec": {"template": {"metadata": {"annotations": {RESOLVE_NAMES: value}}}}}}})
                }
                _ => {
                    json!({"spec": {"template": {"metadata": {"annotations": {RESOLVE_NAMES: value}}}}})
                }
            };
            api.patch(&name, &patch_params(), &Patch::Merge(&body))
                .await?;
            out.push_str(&format!(
                "{}/{name} {} image lookup\n",
                kind.name().to_ascii_lowercase(),
                if enabled {
                    "now uses"
                } else {
                    "no longer uses"
                }
            ));
        } else {
            update(streams, n, |s| {
                s.spec.lookup_policy = Some(crate::api::ImageLookupPolicy { local: enabled });
                Ok(())
            })
            .await?;
            out.push_str(&format!(
                "imagestream.image.openshift.io/{n} image lookup {}\n",
                if enabled { "updated" } else { "disabled" }
            ));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn triggers(
    client: &Client,
    namespace: &str,
    workload: &str,
    from_image: Option<String>,
    containers: Option<String>,
    manual: bool,
    remove: bool,
    remove_all: bool,
    out: &mut String,
) -> Result<(), CliError> {
    let (kind, name) = workload_ref(workload)?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
    let obj = api.get(&name).await?;
    let current = obj.annotations().get(TRIGGERS).cloned();
    let new_value = if remove_all {
        edit::remove_trigger(current.as_deref(), kind, None)?
    } else if remove {
        let c = containers
            .as_deref()
            .ok_or_else(|| CliError::Usage("--remove needs -c CONTAINER".into()))?;
        edit::remove_trigger(current.as_deref(), kind, Some(c))?
    } else if let Some(from) = &from_image {
        let (ns, stream, tag) = edit::parse_dest(from)?;
        let c = match containers {
            Some(c) => {
                check_containers(kind, &obj.data, workload, &c)?;
                c
            }
            None => first_container(kind, &obj.data).ok_or_else(|| {
                CliError::Usage("the pod template has no containers; pass -c CONTAINER".into())
            })?,
        };
        Some(edit::add_trigger(
            current.as_deref(),
            kind,
            &format!("{stream}:{tag}"),
            ns.as_deref(),
            &c,
            manual,
        )?)
    } else {
        out.push_str(&format::list_triggers(kind, &name, current.as_deref()));
        return Ok(());
    };
    let body = json!({"metadata": {"annotations": {TRIGGERS: new_value}}});
    api.patch(&name, &patch_params(), &Patch::Merge(&body))
        .await?;
    out.push_str(&format!(
        "{}/{name} triggers updated\n",
        kind.name().to_ascii_lowercase()
    ));
    Ok(())
}

async fn rollback(
    streams: &Api<ImageStream>,
    tag_arg: &str,
    to: Option<&str>,
    out: &mut String,
) -> Result<(), CliError> {
    let (_, stream, tag) = edit::parse_dest(tag_arg)?;
    let (_, done) = update(streams, &stream, |s| {
        edit::rollback(s, &tag, to).map_err(CliError::Usage)
    })
    .await?;
    let after = match done.held {
        true => format!("Its policy holds it there until you remove the annotation policy.imagestream-operator.io/hold from spec tag {tag} (or tag it again with --remove-policy)."),
        false => "It now stays on that image: scheduled imports and triggers follow it only after you tag it again.".to_string(),
    };
    out.push_str(&format!(
        "Tag {stream}:{tag} rolled back from {} to {}.\n{after}\n",
        done.from, done.to
    ));
    Ok(())
}

/// The plugin's entry point: parses arguments, runs, prints; returns the exit code.
pub async fn main() -> i32 {
    let cli = Cli::parse();
    let (client, namespace) = match client(&cli.global).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let mut out = String::new();
    let result = execute(cli, client, &namespace, &mut out).await;
    print!("{out}");
    match result {
        Ok(()) => 0,
        Err(e) => {
            let e = crate::api::untrusted::clean_lines(&e.to_string(), usize::MAX);
            eprintln!("error: {e}");
            1
        }
    }
}
