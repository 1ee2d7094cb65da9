//! `kubectl kubeoc agent`: create, list, get, describe, delete, suspend, resume, logs and wait
//! for Agents, with kubectl's flags and messages.
//!
//! Reads of Agents for output (`get`, `list`, `-w`) go through dynamic objects so `-o yaml`
//! shows what the apiserver stores, fields this client does not know included; `describe`,
//! `wait` and `logs` read typed Agents because they interpret the spec and status.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures::{AsyncReadExt as _, StreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
    PropagationPolicy,
};
use kube::core::TypeMeta;
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt as _, watcher::Event as WatchEvent};
use kube::{Api, CustomResourceExt as _, Resource as _, ResourceExt as _};
use serde_json::{Value, json};

use super::output::{OutputArgs, OutputFormat, Printer, PrinterColumn, human_age};
use super::progress::Spinner;
use crate::api::agent::{Credential, PersistenceConfig, SecretKeyReference, VolumePersistence};
use crate::api::common::AgentTemplateReference;
use crate::api::context::{ContextItem, ContextType, GitContext};
use crate::api::{API_VERSION, Agent, AgentSpec};
use crate::cluster::{Cluster, ClusterArgs};
use crate::controller::server_pod;

/// Field manager of every write the CLI makes.
pub const FIELD_MANAGER: &str = "kubeoc";
/// How `-o name` and kubectl's messages spell the resource.
const RESOURCE: &str = "agent.kubeopencode.io";
/// Name of the Agent CRD, for its printer columns.
const CRD_NAME: &str = "agents.kubeopencode.io";

/// `kubectl kubeoc agent ...`
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Create an Agent from flags, or from a YAML/JSON file (-f).
    Create(CreateArgs),
    /// List Agents (columns as `kubectl get agents`).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show Agents by name, or all of them.
    Get(GetArgs),
    /// Show an Agent's spec, status, conditions, child objects and recent events.
    Describe(DescribeArgs),
    /// Delete Agents; their Deployment, Service, PVCs, Secret and ConfigMap go with them.
    Delete(DeleteArgs),
    /// Scale an Agent's server to zero (spec.suspend=true); volumes and the Service stay.
    Suspend(SuspendArgs),
    /// Start a suspended Agent's server again (spec.suspend=false).
    Resume(SuspendArgs),
    /// Print the logs of an Agent's OpenCode server.
    Logs(LogsArgs),
    /// Wait until an Agent is ready, suspended or deleted.
    Wait(WaitArgs),
}

/// Dispatches `agent` subcommands.
pub async fn run(cluster: &ClusterArgs, command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Create(args) => create(cluster, args).await,
        AgentCommand::List(args) => list(cluster, &[], args).await,
        AgentCommand::Get(args) => list(cluster, &args.names, args.list).await,
        AgentCommand::Describe(args) => describe(cluster, args).await,
        AgentCommand::Delete(args) => delete(cluster, args).await,
        AgentCommand::Suspend(args) => set_suspend(cluster, args, true).await,
        AgentCommand::Resume(args) => set_suspend(cluster, args, false).await,
        AgentCommand::Logs(args) => logs(cluster, args).await,
        AgentCommand::Wait(args) => wait(cluster, args).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The message for a missing Agent, with the command that lists the ones that exist.
fn not_found(name: &str, namespace: &str) -> anyhow::Error {
    anyhow!(
        "agent {name:?} not found in namespace {namespace:?} (list them with: kubectl kubeoc agent list -n {namespace})"
    )
}

/// Turns an apiserver error on one Agent into a message that says what failed on which object.
/// A 404 that does not name the Agent means the resource type itself is missing.
fn agent_error(err: kube::Error, doing: &str, name: &str, namespace: &str) -> anyhow::Error {
    if let kube::Error::Api(status) = &err
        && status.code == 404
    {
        let (kind, object) = status
            .details
            .as_ref()
            .map_or(("", ""), |d| (d.kind.as_str(), d.name.as_str()));
        if kind == "namespaces" {
            return anyhow!(
                "{doing} agent {name:?}: namespace {namespace:?} not found (list them with: kubectl get namespaces)"
            );
        }
        if object == name {
            return not_found(name, namespace);
        }
        return missing_api(err);
    }
    crate::Error::kube(
        format!("{doing} agent {name:?} in namespace {namespace:?}"),
        err,
    )
    .into()
}

fn missing_api(err: kube::Error) -> anyhow::Error {
    crate::Error::kube(
        format!(
            "the Agent API ({API_VERSION}) is not served by this cluster (install it with: kubectl kubeoc install)"
        ),
        err,
    )
    .into()
}

fn is_api_code(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

fn agents(cluster: &Cluster, namespace: &str) -> Api<Agent> {
    Api::namespaced(cluster.client.clone(), namespace)
}

/// Gets an Agent, with kubectl-style errors.
async fn get_agent(cluster: &Cluster, namespace: &str, name: &str) -> anyhow::Result<Agent> {
    agents(cluster, namespace)
        .get(name)
        .await
        .map_err(|e| agent_error(e, "getting", name, namespace))
}

// ---------------------------------------------------------------------------------------------
// create

/// Output of `create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CreateOutput {
    /// The created object as YAML.
    Yaml,
    /// The created object as JSON.
    Json,
    /// `agent.kubeopencode.io/<name>`.
    Name,
}

/// `--dry-run` modes, as kubectl's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DryRun {
    /// Really create.
    #[default]
    None,
    /// Only build the object; the cluster is not contacted.
    Client,
    /// Send it to the apiserver for admission and validation without persisting it.
    Server,
}

/// `agent create`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:
  kubectl kubeoc agent create dev --image ghcr.io/kubeopencode/kubeopencode-agent-devbox:latest \\
      --workspace-dir /workspace --service-account kubeopencode-agent \\
      --git-context https://github.com/org/repo.git@main:repo --credential ai-keys:openai=OPENAI_API_KEY
  kubectl kubeoc agent create -f agents.yaml
  kubectl kubeoc agent create dev --template team --dry-run=client -o yaml")]
pub struct CreateArgs {
    /// Name of the Agent (not with -f).
    #[arg(required_unless_present = "filename", conflicts_with = "filename")]
    pub name: Option<String>,
    /// YAML or JSON file with one or more Agents ("-" reads stdin).
    #[arg(short = 'f', long, value_name = "FILE")]
    pub filename: Option<PathBuf>,
    /// Image of the container the agent works in (spec.executorImage).
    #[arg(long, value_name = "IMAGE", required_unless_present_any = ["filename", "template"], conflicts_with = "filename")]
    pub image: Option<String>,
    /// Absolute working directory of the agent (spec.workspaceDir).
    #[arg(long, value_name = "DIR", value_parser = parse_workspace_dir,
          required_unless_present_any = ["filename", "template"], conflicts_with = "filename")]
    pub workspace_dir: Option<String>,
    /// ServiceAccount of the agent's pods (spec.serviceAccountName).
    #[arg(long, value_name = "NAME", required_unless_present_any = ["filename", "template"],
          conflicts_with = "filename")]
    pub service_account: Option<String>,
    /// Port of the OpenCode server (default 4096).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=65535),
          conflicts_with = "filename")]
    pub port: Option<i32>,
    /// Size of the sessions volume, e.g. 2Gi (default 1Gi).
    #[arg(long, value_name = "QUANTITY", value_parser = parse_quantity, conflicts_with = "filename")]
    pub sessions_size: Option<String>,
    /// A Git repository cloned into the workspace: URL[@REF]:PATH, PATH absolute or relative
    /// to the workspace dir (repeatable).
    #[arg(long = "git-context", value_name = "URL[@REF]:PATH", value_parser = parse_git_context,
          conflicts_with = "filename")]
    pub git_contexts: Vec<GitContextFlag>,
    /// A Secret for the agent: SECRET (every key as an env variable) or SECRET:KEY=ENV (one
    /// key as variable ENV) (repeatable).
    #[arg(long = "credential", value_name = "SECRET[:KEY=ENV]", value_parser = parse_credential,
          conflicts_with = "filename")]
    pub credentials: Vec<CredentialFlag>,
    /// AgentTemplate (same namespace) to inherit from.
    #[arg(long, value_name = "NAME", conflicts_with = "filename")]
    pub template: Option<String>,
    /// client: print the object without creating it; server: let the apiserver validate it
    /// without persisting it.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = DryRun::None,
          num_args = 0..=1, require_equals = true, default_missing_value = "client")]
    pub dry_run: DryRun,
    /// Print the created object(s) instead of a message.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<CreateOutput>,
}

fn parse_workspace_dir(value: &str) -> Result<String, String> {
    if value.starts_with('/') {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "{value:?} is not an absolute path (it must start with \"/\")"
        ))
    }
}

/// A `--git-context` value: `URL[@REF]:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitContextFlag {
    /// Repository URL as given.
    pub repository: String,
    /// Branch, tag or commit; `None`: the remote's HEAD.
    pub reference: Option<String>,
    /// Where the checkout goes (absolute, or relative to workspaceDir).
    pub mount_path: String,
}

/// Parses `URL[@REF]:PATH`. URLs contain ':' and '@' themselves (`git@host:org/repo.git`,
/// `https://host/...`), so PATH is what follows the last ':', and REF is an '@' in the URL's
/// last segment (after its last '/', or after the ':' of an scp-like `host:repo`).
pub fn parse_git_context(value: &str) -> Result<GitContextFlag, String> {
    const FORM: &str = "expected URL[@REF]:PATH, e.g. https://github.com/org/repo.git@main:repo";
    let (url_ref, path) = value
        .rsplit_once(':')
        .ok_or_else(|| format!("{value:?} has no :PATH ({FORM})"))?;
    if path.is_empty() {
        return Err(format!("{value:?} has an empty PATH ({FORM})"));
    }
    // `https://host/repo` without a PATH splits at the scheme's ':'.
    if path.starts_with("//") || !url_ref.contains(['/', ':', '.']) && path.contains('/') {
        return Err(format!("{value:?} has no :PATH after the URL ({FORM})"));
    }
    if path.chars().any(char::is_whitespace) {
        return Err(format!("the PATH of {value:?} contains whitespace"));
    }
    let last_segment = url_ref.rfind(['/', ':']).map_or(0, |i| i + 1);
    let (repository, reference) = match url_ref[last_segment..].rfind('@') {
        Some(at) => {
            let at = last_segment + at;
            (&url_ref[..at], Some(&url_ref[at + 1..]))
        }
        None => (url_ref, None),
    };
    if reference == Some("") {
        return Err(format!("{value:?} has an empty REF after '@' ({FORM})"));
    }
    if repository.is_empty() {
        return Err(format!("{value:?} has no repository URL ({FORM})"));
    }
    if repository.chars().any(char::is_whitespace) {
        return Err(format!("the URL of {value:?} contains whitespace"));
    }
    let url_like = match repository.split_once("://") {
        Some((scheme, rest)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                // A repository URL has a path after its host.
                && rest
                    .split_once('/')
                    .is_some_and(|(_, path)| !path.trim_matches('/').is_empty())
        }
        // scp-like `[user@]host:path`, or a local path.
        None => {
            repository.starts_with('/')
                || repository
                    .split_once(':')
                    .is_some_and(|(host, repo)| !host.is_empty() && !repo.is_empty())
        }
    };
    if !url_like {
        return Err(format!(
            "{repository:?} is not a repository URL (use https://..., ssh://..., git@host:org/repo.git or file:///path) ({FORM})"
        ));
    }
    Ok(GitContextFlag {
        repository: repository.to_owned(),
        reference: reference.map(str::to_owned),
        mount_path: path.to_owned(),
    })
}

/// A `--credential` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFlag {
    /// The Secret's name.
    pub secret: String,
    /// `Some((key, env))` for one key as one variable; `None`: every key as a variable.
    pub key_env: Option<(String, String)>,
}

/// Parses `SECRET` or `SECRET:KEY=ENV`.
pub fn parse_credential(value: &str) -> Result<CredentialFlag, String> {
    const FORM: &str = "expected SECRET or SECRET:KEY=ENV";
    let (secret, key_env) = match value.split_once(':') {
        None => (value, None),
        Some((secret, rest)) => {
            let (key, env) = rest
                .split_once('=')
                .ok_or_else(|| format!("{value:?}: missing =ENV after the key ({FORM})"))?;
            (secret, Some((key, env)))
        }
    };
    if !is_dns_subdomain(secret) {
        return Err(format!(
            "{secret:?} is not a valid Secret name (lowercase letters, digits, '-' and '.') ({FORM})"
        ));
    }
    let key_env = match key_env {
        None => None,
        Some((key, env)) => {
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
            {
                return Err(format!(
                    "{key:?} is not a valid Secret key (letters, digits, '-', '_' and '.') ({FORM})"
                ));
            }
            let mut chars = env.chars();
            let valid_env = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_env {
                return Err(format!(
                    "{env:?} is not a valid environment variable name (letters, digits and '_', not starting with a digit) ({FORM})"
                ));
            }
            Some((key.to_owned(), env.to_owned()))
        }
    };
    Ok(CredentialFlag {
        secret: secret.to_owned(),
        key_env,
    })
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Checks a Kubernetes quantity (`1Gi`, `500M`, `1.5e9`) so a typo is a usage error instead of
/// an admission error after the round trip.
fn parse_quantity(value: &str) -> Result<String, String> {
    let bad = || {
        format!("{value:?} is not a quantity (use a number with a unit such as 512Mi, 2Gi or 1G)")
    };
    let number_len = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(number_len);
    let digits = number.replace('.', "");
    if digits.is_empty() || number.matches('.').count() > 1 {
        return Err(bad());
    }
    let suffix_ok = match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        exp => exp
            .strip_prefix(['e', 'E'])
            .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
            .is_some_and(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())),
    };
    if !suffix_ok {
        return Err(bad());
    }
    if digits.chars().all(|c| c == '0') {
        return Err(format!("{value:?}: the size must be more than zero"));
    }
    Ok(value.to_owned())
}

/// A context or credential name from free text: a DNS label, `fallback` when nothing is left.
fn name_from(text: &str, fallback: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut name: String = out.trim_matches('-').chars().take(63).collect();
    while name.ends_with('-') {
        name.pop();
    }
    if name.is_empty() {
        fallback.to_owned()
    } else {
        name
    }
}

/// `name`, or `name-2`, `name-3`, ... when taken.
fn unique(name: String, taken: &mut BTreeSet<String>) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{name}-{n}");
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// The context name for a repository: its last path segment without `.git`.
fn repository_name(repository: &str) -> String {
    let trimmed = repository.trim_end_matches('/');
    let last = trimmed.rsplit(['/', ':']).next().unwrap_or(trimmed);
    name_from(last.strip_suffix(".git").unwrap_or(last), "repo")
}

/// The Agent the `create` flags describe.
pub fn agent_from_flags(name: &str, namespace: &str, args: &CreateArgs) -> Agent {
    let mut taken = BTreeSet::new();
    let contexts: Vec<ContextItem> = args
        .git_contexts
        .iter()
        .map(|g| ContextItem {
            name: Some(unique(repository_name(&g.repository), &mut taken)),
            description: None,
            type_: ContextType::Git,
            mount_path: Some(g.mount_path.clone()),
            file_mode: None,
            text: None,
            config_map: None,
            git: Some(GitContext {
                repository: g.repository.clone(),
                ref_: g.reference.clone(),
                ..GitContext::default()
            }),
            runtime: None,
            url: None,
        })
        .collect();
    let mut taken = BTreeSet::new();
    let credentials: Vec<Credential> = args
        .credentials
        .iter()
        .map(|c| {
            let base = match &c.key_env {
                Some((key, _)) => name_from(&format!("{}-{key}", c.secret), "credential"),
                None => name_from(&c.secret, "credential"),
            };
            Credential {
                name: unique(base, &mut taken),
                secret_ref: SecretKeyReference {
                    name: c.secret.clone(),
                    key: c.key_env.as_ref().map(|(k, _)| k.clone()),
                },
                mount_path: None,
                env: c.key_env.as_ref().map(|(_, e)| e.clone()),
                file_mode: None,
            }
        })
        .collect();
    let spec = AgentSpec {
        template_ref: args
            .template
            .clone()
            .map(|name| AgentTemplateReference { name }),
        executor_image: args.image.clone(),
        workspace_dir: args.workspace_dir.clone(),
        service_account_name: args.service_account.clone(),
        port: args.port,
        persistence: args.sessions_size.clone().map(|size| PersistenceConfig {
            sessions: Some(VolumePersistence {
                storage_class_name: None,
                size: Some(size),
            }),
            workspace: None,
        }),
        contexts: (!contexts.is_empty()).then_some(contexts),
        credentials: (!credentials.is_empty()).then_some(credentials),
        ..AgentSpec::default()
    };
    let mut agent = Agent::new(name, spec);
    agent.metadata.namespace = Some(namespace.to_owned());
    agent
}

/// The Agents of a `-f` file: YAML (one or more documents) or JSON; `v1 List`s are expanded.
/// Anything but an Agent is refused, naming the document.
pub fn agents_from_text(text: &str, source: &str) -> anyhow::Result<Vec<Value>> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| anyhow!("cannot parse {source} as YAML or JSON: {e}"))?;
    let mut out = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        let items = match doc {
            Value::Null => continue,
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                match map.get("items") {
                    Some(Value::Array(items)) => items.clone(),
                    _ => bail!("{source}: document {} is a List without items", i + 1),
                }
            }
            other => vec![other],
        };
        for item in items {
            let kind = item.get("kind").and_then(Value::as_str).unwrap_or("");
            let api_version = item.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            if kind != "Agent" || api_version != API_VERSION {
                let what = if kind.is_empty() {
                    "an object without kind".to_owned()
                } else {
                    format!("a {kind} ({api_version})")
                };
                bail!(
                    "{source}: document {} is {what}; agent create -f takes {API_VERSION} Agents only (use kubectl apply -f for other kinds)",
                    i + 1
                );
            }
            if item
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                bail!(
                    "{source}: document {} is an Agent without metadata.name",
                    i + 1
                );
            }
            out.push(item);
        }
    }
    if out.is_empty() {
        bail!("{source} holds no Agent");
    }
    Ok(out)
}

fn read_source(path: &PathBuf) -> anyhow::Result<(String, String)> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .context("reading stdin")?;
        Ok((text, "stdin".to_owned()))
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok((text, path.display().to_string()))
    }
}

/// Sets the object's namespace the way kubectl does: the file's, unless -n says otherwise.
fn place(item: &mut Value, explicit: Option<&str>, default: &str) -> anyhow::Result<String> {
    let name = item
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let in_file = item
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .map(str::to_owned);
    let namespace = match (in_file, explicit) {
        (Some(file), Some(flag)) if file != flag => bail!(
            "the namespace from the provided object {file:?} does not match the namespace {flag:?} of agent {name:?}; pass -n {file} or remove metadata.namespace"
        ),
        (Some(file), _) => file,
        (None, Some(flag)) => flag.to_owned(),
        (None, None) => default.to_owned(),
    };
    if let Some(meta) = item.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("namespace".into(), Value::String(namespace.clone()));
    }
    Ok(namespace)
}

async fn create(cluster_args: &ClusterArgs, args: CreateArgs) -> anyhow::Result<()> {
    let explicit_ns = cluster_args.namespace.as_deref();
    // Client dry-run must work without a cluster; only the default namespace is needed.
    let (cluster, default_ns) = if args.dry_run == DryRun::Client {
        let ns = match explicit_ns {
            Some(ns) => ns.to_owned(),
            None => cluster_args
                .config()
                .await
                .map(|c| c.default_namespace)
                .unwrap_or_else(|_| "default".to_owned()),
        };
        (None, ns)
    } else {
        let cluster = cluster_args.connect().await?;
        let ns = cluster.namespace.clone();
        (Some(cluster), ns)
    };
    let items = match (&args.filename, &args.name) {
        (Some(path), _) => {
            let (text, source) = read_source(path)?;
            agents_from_text(&text, &source)?
        }
        (None, Some(name)) => {
            vec![serde_json::to_value(agent_from_flags(
                name,
                &default_ns,
                &args,
            ))?]
        }
        (None, None) => bail!("give an Agent name, or -f FILE"),
    };
    let mut failures = Vec::new();
    for mut item in items {
        let result = async {
            let namespace = place(&mut item, explicit_ns, &default_ns)?;
            let object = match &cluster {
                None => item,
                Some(cluster) => post_agent(cluster, &namespace, &item, args.dry_run).await?,
            };
            print_created(&object, args.output, args.dry_run)
        }
        .await;
        if let Err(err) = result {
            failures.push(err);
        }
    }
    // Like kubectl: every object is tried; each failure is reported, the last one fails the
    // command.
    let last = failures.pop();
    for err in failures {
        eprintln!("Error: {}", crate::error::render(&err));
    }
    match last {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// POSTs an Agent with field manager `kubeoc` and strict field validation, so a misspelt
/// field in a file is an error instead of silently dropped.
async fn post_agent(
    cluster: &Cluster,
    namespace: &str,
    item: &Value,
    dry_run: DryRun,
) -> anyhow::Result<Value> {
    let name = item
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut query = format!("fieldManager={FIELD_MANAGER}&fieldValidation=Strict");
    if dry_run == DryRun::Server {
        query.push_str("&dryRun=All");
    }
    let url = format!("{}?{query}", Agent::url_path(&(), Some(namespace)));
    let request = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(item)?)
        .context("building the create request")?;
    match cluster.client.request::<Value>(request).await {
        Ok(created) => Ok(created),
        Err(err) if is_api_code(&err, 409) => Err(anyhow!(
            "agent {name:?} already exists in namespace {namespace:?} (see it with: kubectl kubeoc agent describe {name} -n {namespace})"
        )),
        Err(err) => Err(agent_error(err, "creating", name, namespace)),
    }
}

fn print_created(
    object: &Value,
    output: Option<CreateOutput>,
    dry_run: DryRun,
) -> anyhow::Result<()> {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let format = match output {
        None => {
            let suffix = match dry_run {
                DryRun::None => "",
                DryRun::Client => " (dry run)",
                DryRun::Server => " (server dry run)",
            };
            return write_stdout(&format!("{RESOURCE}/{name} created{suffix}\n"));
        }
        Some(CreateOutput::Yaml) => OutputFormat::Yaml,
        Some(CreateOutput::Json) => OutputFormat::Json,
        Some(CreateOutput::Name) => OutputFormat::Name,
    };
    let args = OutputArgs {
        output: format,
        no_headers: false,
    };
    let mut text = Printer::new(&args, Vec::new())
        .render_objects(std::slice::from_ref(object))?
        .stdout;
    if format == OutputFormat::Yaml {
        text.insert_str(0, "---\n");
    }
    write_stdout(&text)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

// ---------------------------------------------------------------------------------------------
// list / get

/// `agent list`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Label selector, e.g. team=a,tier!=dev.
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// After listing, print a row for every change until Ctrl-C.
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// `agent get`.
#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    /// Agents to show; none: all in the namespace.
    pub names: Vec<String>,
    #[command(flatten)]
    pub list: ListArgs,
}

fn dynamic_agents(cluster: &Cluster, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = ApiResource::erase::<Agent>(&());
    match namespace {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &resource),
        None => Api::all_with(cluster.client.clone(), &resource),
    }
}

/// The object as JSON with apiVersion and kind (list items may come without them).
fn to_value(mut object: DynamicObject) -> anyhow::Result<Value> {
    if object.types.as_ref().is_none_or(|t| t.kind.is_empty()) {
        object.types = Some(TypeMeta {
            api_version: API_VERSION.to_owned(),
            kind: "Agent".to_owned(),
        });
    }
    Ok(serde_json::to_value(object)?)
}

/// Printer columns from the cluster's CRD, so the table matches `kubectl get agents`; the
/// built-in CRD when the user may not read CRDs.
async fn columns(cluster: &Cluster) -> Vec<PrinterColumn> {
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    match crds.get(CRD_NAME).await {
        Ok(crd) => PrinterColumn::from_crd(&crd),
        Err(_) => PrinterColumn::from_crd(&Agent::crd()),
    }
}

async fn list(cluster_args: &ClusterArgs, names: &[String], args: ListArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    if cluster.all_namespaces && !names.is_empty() {
        bail!("an Agent cannot be retrieved by name across all namespaces (drop -A, or pass -n)");
    }
    let namespace = cluster.namespace.clone();
    let scope = (!cluster.all_namespaces).then_some(namespace.as_str());
    let api = dynamic_agents(&cluster, scope);
    let columns = columns(&cluster).await;
    let printer =
        Printer::new(&args.output, columns.clone()).namespace(&namespace, cluster.all_namespaces);
    if args.watch {
        return watch(api, &args, names, printer, columns).await;
    }
    let where_ = if cluster.all_namespaces {
        "in all namespaces".to_owned()
    } else {
        format!("in namespace {namespace:?}")
    };
    if names.is_empty() {
        let mut params = ListParams::default();
        if let Some(selector) = &args.selector {
            params = params.labels(selector);
        }
        let listed = api.list(&params).await.map_err(|e| {
            if is_api_code(&e, 404) {
                missing_api(e)
            } else {
                crate::Error::kube(format!("listing agents {where_}"), e).into()
            }
        })?;
        let items = listed
            .items
            .into_iter()
            .map(to_value)
            .collect::<anyhow::Result<Vec<_>>>()?;
        printer.print_list(&items)?;
        return Ok(());
    }
    let mut items = Vec::new();
    let mut failures = Vec::new();
    for name in names {
        match api.get(name).await {
            Ok(object) => items.push(to_value(object)?),
            Err(err) => failures.push(agent_error(err, "getting", name, &namespace)),
        }
    }
    if !items.is_empty() {
        printer.print_objects(&items)?;
    }
    let last = failures.pop();
    for err in failures {
        eprintln!("Error: {}", crate::error::render(&err));
    }
    last.map_or(Ok(()), Err)
}

/// `-w`: the current table, then one row per change, as `kubectl get -w` prints them. After a
/// re-list (the watch expired) only objects whose resourceVersion moved are printed again.
async fn watch(
    api: Api<DynamicObject>,
    args: &ListArgs,
    names: &[String],
    printer: Printer,
    columns: Vec<PrinterColumn>,
) -> anyhow::Result<()> {
    let mut config = watcher::Config::default();
    if let Some(selector) = &args.selector {
        config = config.labels(selector);
    }
    if let [one] = names {
        config = config.fields(&format!("metadata.name={one}"));
    }
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let row_printer = Printer::new(
        &OutputArgs {
            output: args.output.output,
            no_headers: true,
        },
        columns,
    );
    let mut header_printed = args.output.no_headers;
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut initial: Option<Vec<DynamicObject>> = None;
    let mut first_list = true;
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let print = |object: DynamicObject, header_printed: &mut bool| -> anyhow::Result<()> {
        let value = to_value(object)?;
        let rendered = if *header_printed {
            row_printer.render_objects(std::slice::from_ref(&value))?
        } else {
            *header_printed = true;
            printer.render_objects(std::slice::from_ref(&value))?
        };
        let mut text = rendered.stdout;
        if args.output.output == OutputFormat::Yaml {
            text.insert_str(0, "---\n");
        }
        write_stdout(&text)
    };
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                if first_list {
                    return Err(anyhow::Error::new(err).context("watching agents"));
                }
                eprintln!("warning: watching agents: {err} (retrying)");
                continue;
            }
        };
        let keep = |o: &DynamicObject| wanted.is_empty() || wanted.contains(o.name_any().as_str());
        match event {
            WatchEvent::Init => initial = Some(Vec::new()),
            WatchEvent::InitApply(object) => {
                if let Some(buffer) = initial.as_mut()
                    && keep(&object)
                {
                    buffer.push(object);
                }
            }
            WatchEvent::InitDone => {
                let mut buffer = initial.take().unwrap_or_default();
                buffer.sort_by_key(|o| (o.namespace(), o.name_any()));
                if first_list {
                    first_list = false;
                    if !buffer.is_empty()
                        && matches!(args.output.output, OutputFormat::Table | OutputFormat::Wide)
                    {
                        let values = buffer
                            .iter()
                            .cloned()
                            .map(to_value)
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        let text = printer.render_objects(&values)?.stdout;
                        header_printed = true;
                        write_stdout(&text)?;
                        for o in &buffer {
                            seen.insert(key(o), o.resource_version().unwrap_or_default());
                        }
                        continue;
                    }
                }
                for object in buffer {
                    let rv = object.resource_version().unwrap_or_default();
                    if seen.insert(key(&object), rv.clone()).as_deref() != Some(rv.as_str()) {
                        print(object, &mut header_printed)?;
                    }
                }
            }
            WatchEvent::Apply(object) => {
                if keep(&object) {
                    seen.insert(key(&object), object.resource_version().unwrap_or_default());
                    print(object, &mut header_printed)?;
                }
            }
            WatchEvent::Delete(object) => {
                if keep(&object) {
                    seen.remove(&key(&object));
                    print(object, &mut header_printed)?;
                }
            }
        }
    }
    Ok(())
}

fn key(object: &DynamicObject) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

// ---------------------------------------------------------------------------------------------
// describe

/// `agent describe`.
#[derive(Debug, Clone, clap::Args)]
pub struct DescribeArgs {
    /// The Agent.
    pub name: String,
}

/// The outcome of reading one related object: found, absent, or unreadable (and why).
#[derive(Debug, Clone)]
pub enum Lookup<T> {
    /// The object exists.
    Found(T),
    /// The apiserver says it does not exist.
    Missing,
    /// It could not be read (forbidden, unreachable, ...): the reason.
    Failed(String),
}

impl<T> Lookup<T> {
    fn from_result(result: Result<Option<T>, kube::Error>) -> Self {
        match result {
            Ok(Some(value)) => Lookup::Found(value),
            Ok(None) => Lookup::Missing,
            Err(err) => Lookup::Failed(short_error(&err)),
        }
    }
}

fn short_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.reason.is_empty() => {
            format!("{} ({})", status.message, status.reason)
        }
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Everything `describe` shows about one Agent. The auth Secret is looked up by metadata only:
/// its data never reaches this process.
#[derive(Debug, Clone)]
pub struct Described {
    /// The Agent.
    pub agent: Agent,
    /// Deployment `<a>-server`.
    pub deployment: Lookup<Deployment>,
    /// Service `<a>`.
    pub service: Lookup<Service>,
    /// PVC `<a>-server-sessions`.
    pub sessions_pvc: Lookup<PersistentVolumeClaim>,
    /// PVC `<a>-server-workspace`.
    pub workspace_pvc: Lookup<PersistentVolumeClaim>,
    /// Secret `<a>-server-auth`: presence only.
    pub auth_secret: Lookup<()>,
    /// ConfigMap `<a>-server-context`.
    pub context_config_map: Lookup<ConfigMap>,
    /// The server pods (label `kubeopencode.io/agent=<a>`).
    pub pods: Lookup<Vec<Pod>>,
    /// Events regarding the Agent, oldest first.
    pub events: Lookup<Vec<Event>>,
}

async fn describe(cluster_args: &ClusterArgs, args: DescribeArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let name = args.name;
    let agent = get_agent(&cluster, &ns, &name).await?;
    let client = cluster.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let service_name = server_pod::service_name(&name);
    let (deployment_name, sessions_name, workspace_name, secret_name, cm_name) = (
        server_pod::deployment_name(&name),
        server_pod::sessions_pvc_name(&name),
        server_pod::workspace_pvc_name(&name),
        server_pod::auth_secret_name(&name),
        server_pod::context_config_map_name(&name),
    );
    let pod_params = ListParams::default().labels(&format!("{}={name}", server_pod::AGENT_LABEL));
    let event_params = ListParams::default().fields(&format!(
        "involvedObject.kind=Agent,involvedObject.name={name}"
    ));
    let (deployment, service, sessions, workspace, secret, cm, pod_list, event_list) = tokio::join!(
        deployments.get_opt(&deployment_name),
        services.get_opt(&service_name),
        pvcs.get_opt(&sessions_name),
        pvcs.get_opt(&workspace_name),
        secrets.get_metadata_opt(&secret_name),
        config_maps.get_opt(&cm_name),
        pods.list(&pod_params),
        events.list(&event_params),
    );
    let uid = agent.metadata.uid.clone();
    let events = Lookup::from_result(event_list.map(|l| {
        let mut items: Vec<Event> = l
            .items
            .into_iter()
            // An older Agent of the same name had other events.
            .filter(|e| e.involved_object.uid.is_none() || e.involved_object.uid == uid)
            .collect();
        items.sort_by_key(event_time);
        Some(items)
    }));
    let described = Described {
        agent,
        deployment: Lookup::from_result(deployment),
        service: Lookup::from_result(service),
        sessions_pvc: Lookup::from_result(sessions),
        workspace_pvc: Lookup::from_result(workspace),
        auth_secret: Lookup::from_result(secret.map(|s| s.map(|_| ()))),
        context_config_map: Lookup::from_result(cm),
        pods: Lookup::from_result(pod_list.map(|l| Some(l.items))),
        events,
    };
    write_stdout(&render_describe(&described, Timestamp::now()))
}

fn event_time(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Masks a password in a URL's user info (`https://user:token@host` shows `user:***`), so a
/// repository URL with an inline token does not leak through describe.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                format!("{scheme}://***@{host}{path}")
            }
        }
        None => url.to_owned(),
    }
}

/// Aligned columns, as kubectl's describe tabwriter prints them (two spaces between columns,
/// the last column unpadded).
fn align(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        out.push_str(indent);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out
}

/// One line of a cell: kubectl cuts multi-line values in tables.
fn one_line(text: &str) -> String {
    match text.split_once(['\n', '\r']) {
        Some((first, _)) => format!("{first}..."),
        None => text.to_owned(),
    }
}

fn or_none(value: Option<&str>) -> String {
    value
        .filter(|v| !v.is_empty())
        .unwrap_or("<none>")
        .to_owned()
}

/// The text of `agent describe`, from objects already read: a pure function, so the layout is
/// tested without a cluster. Secret values are never inputs.
pub fn render_describe(d: &Described, now: Timestamp) -> String {
    let agent = &d.agent;
    let spec = &agent.spec;
    let name = agent.name_any();
    let ns = agent.namespace().unwrap_or_default();
    let status = agent.status.clone().unwrap_or_default();
    let mut out = String::new();

    let mut head: Vec<Vec<String>> = vec![
        vec!["Name:".into(), name.clone()],
        vec!["Namespace:".into(), ns.clone()],
    ];
    let labels = agent.labels();
    if labels.is_empty() {
        head.push(vec!["Labels:".into(), "<none>".into()]);
    } else {
        for (i, (k, v)) in labels.iter().enumerate() {
            let label = if i == 0 { "Labels:" } else { "" };
            head.push(vec![label.into(), format!("{k}={v}")]);
        }
    }
    if let Some(created) = &agent.metadata.creation_timestamp {
        head.push(vec![
            "Created:".into(),
            format!("{} ({} ago)", created.0, human_age(created.0, now)),
        ]);
    }
    if let Some(deleted) = &agent.metadata.deletion_timestamp {
        head.push(vec![
            "Deleting:".into(),
            format!("since {} ago", human_age(deleted.0, now)),
        ]);
    }
    head.push(vec![
        "Template:".into(),
        or_none(spec.template_ref.as_ref().map(|t| t.name.as_str())),
    ]);
    if let Some(profile) = &spec.profile {
        head.push(vec!["Profile:".into(), one_line(profile)]);
    }
    let inherited = |v: Option<&str>| match (v, &spec.template_ref) {
        (Some(v), _) if !v.is_empty() => v.to_owned(),
        (_, Some(t)) => format!("<from template {}>", t.name),
        _ => "<none>".to_owned(),
    };
    head.push(vec![
        "Image:".into(),
        match (&spec.executor_image, &spec.template_ref) {
            (Some(i), _) if !i.is_empty() => i.clone(),
            (_, Some(t)) => format!("<from template {}>", t.name),
            _ => format!("{} (default)", server_pod::DEFAULT_EXECUTOR_IMAGE),
        },
    ]);
    if let Some(image) = spec.agent_image.as_deref().filter(|i| !i.is_empty()) {
        head.push(vec!["Agent Image:".into(), image.to_owned()]);
    }
    head.push(vec![
        "Workspace Dir:".into(),
        inherited(spec.workspace_dir.as_deref()),
    ]);
    head.push(vec![
        "Service Account:".into(),
        inherited(spec.service_account_name.as_deref()),
    ]);
    head.push(vec![
        "Port:".into(),
        server_pod::server_port(spec).to_string(),
    ]);
    head.push(vec![
        "Suspend:".into(),
        spec.suspend.unwrap_or(false).to_string(),
    ]);
    let persistence = spec.persistence.clone().unwrap_or_default();
    let size = |v: &Option<VolumePersistence>, default: &str| {
        let v = v.clone().unwrap_or_default();
        let size = v.size.unwrap_or_else(|| default.to_owned());
        match v.storage_class_name {
            Some(class) => format!("{size}, storage class {class}"),
            None => size,
        }
    };
    head.push(vec!["Persistence:".into(), String::new()]);
    head.push(vec![
        "  Sessions:".into(),
        format!(
            "{} at {} (PVC {})",
            size(&persistence.sessions, server_pod::DEFAULT_SESSIONS_SIZE),
            server_pod::SESSIONS_MOUNT_PATH,
            server_pod::sessions_pvc_name(&name)
        ),
    ]);
    head.push(vec![
        "  Workspace:".into(),
        if persistence.workspace.is_some() {
            format!(
                "{} (PVC {})",
                size(&persistence.workspace, server_pod::DEFAULT_WORKSPACE_SIZE),
                server_pod::workspace_pvc_name(&name)
            )
        } else {
            "not persistent (emptyDir)".to_owned()
        },
    ]);
    out.push_str(&align(&head, ""));

    // Contexts: where they come from and where they go, not their content.
    let contexts = spec.contexts.clone().unwrap_or_default();
    if contexts.is_empty() {
        out.push_str("Contexts:         <none>\n");
    } else {
        out.push_str("Contexts:\n");
        let mut rows = vec![vec![
            "NAME".into(),
            "TYPE".into(),
            "SOURCE".into(),
            "MOUNT PATH".into(),
        ]];
        for (i, c) in contexts.iter().enumerate() {
            let (type_, source) = match c.type_ {
                ContextType::Git => (
                    "Git",
                    c.git.as_ref().map_or("<none>".to_owned(), |g| {
                        let mut s = redact_url(&g.repository);
                        if let Some(r) = g.ref_.as_deref().filter(|r| !r.is_empty()) {
                            let _ = write!(s, "@{r}");
                        }
                        if let Some(p) = g.path.as_deref().filter(|p| !p.is_empty()) {
                            let _ = write!(s, " (path {p})");
                        }
                        s
                    }),
                ),
                ContextType::Text => (
                    "Text",
                    format!("inline, {} bytes", c.text.as_deref().map_or(0, str::len)),
                ),
                ContextType::ConfigMap => (
                    "ConfigMap",
                    c.config_map
                        .as_ref()
                        .map_or("<none>".to_owned(), |m| match &m.key {
                            Some(key) => format!("configmap/{} key {key}", m.name),
                            None => format!("configmap/{}", m.name),
                        }),
                ),
                ContextType::Url => (
                    "URL",
                    c.url
                        .as_ref()
                        .map_or("<none>".to_owned(), |u| redact_url(&u.source)),
                ),
                ContextType::Runtime => ("Runtime", "the KubeOpenCode environment".to_owned()),
            };
            rows.push(vec![
                one_line(&c.name.clone().unwrap_or_else(|| format!("<context {i}>"))),
                type_.to_owned(),
                one_line(&source),
                c.mount_path
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| format!("<none> ({})", server_pod::CONTEXT_FILE_REL_PATH)),
            ]);
        }
        out.push_str(&align(&rows, "  "));
    }

    let credentials = spec.credentials.clone().unwrap_or_default();
    if credentials.is_empty() {
        out.push_str("Credentials:      <none>\n");
    } else {
        out.push_str("Credentials:\n");
        let mut rows = vec![vec![
            "NAME".into(),
            "SECRET".into(),
            "KEY".into(),
            "EXPOSED AS".into(),
        ]];
        for c in &credentials {
            let key = c.secret_ref.key.clone();
            let exposed = match (&key, &c.env, &c.mount_path) {
                (Some(_), Some(env), _) => format!("env {env}"),
                (Some(_), None, Some(path)) => format!("file {path}"),
                (None, _, Some(path)) => format!("files in {path}"),
                (None, _, None) => "env (every key)".to_owned(),
                (Some(_), None, None) => "<nothing: set env or mountPath>".to_owned(),
            };
            rows.push(vec![
                one_line(&c.name),
                c.secret_ref.name.clone(),
                key.unwrap_or_else(|| "<all>".into()),
                exposed,
            ]);
        }
        out.push_str(&align(&rows, "  "));
    }

    out.push_str("Status:\n");
    let mut rows: Vec<Vec<String>> = vec![
        vec![
            "Phase:".into(),
            or_none(status.phase.map(phase_name).as_deref()),
        ],
        vec![
            "Ready:".into(),
            status.ready.map_or("<unknown>".into(), |r| r.to_string()),
        ],
        vec!["URL:".into(), or_none(status.url.as_deref())],
    ];
    let generation = agent.metadata.generation;
    rows.push(vec![
        "Observed Generation:".into(),
        match (status.observed_generation, generation) {
            (Some(o), Some(g)) if o == g => format!("{o} (current)"),
            (Some(o), Some(g)) => format!("{o} (spec is at {g}: not reconciled yet)"),
            (Some(o), None) => o.to_string(),
            (None, _) => "<none> (the controller has not reconciled it: is it running?)".into(),
        },
    ]);
    out.push_str(&align(&rows, "  "));

    let conditions = status.conditions.clone().unwrap_or_default();
    if conditions.is_empty() {
        out.push_str("Conditions:       <none>\n");
    } else {
        out.push_str("Conditions:\n");
        let mut rows = vec![vec![
            "TYPE".into(),
            "STATUS".into(),
            "REASON".into(),
            "AGE".into(),
            "MESSAGE".into(),
        ]];
        for c in &conditions {
            rows.push(vec![
                c.type_.clone(),
                c.status.clone(),
                or_none(Some(&c.reason)),
                human_age(c.last_transition_time.0, now),
                one_line(&c.message),
            ]);
        }
        out.push_str(&align(&rows, "  "));
    }

    out.push_str("Children:\n");
    let mut rows = vec![vec!["KIND".into(), "NAME".into(), "STATE".into()]];
    let state = |lookup: &Lookup<String>| match lookup {
        Lookup::Found(s) => s.clone(),
        Lookup::Missing => "not found".to_owned(),
        Lookup::Failed(why) => format!("unknown: {}", one_line(why)),
    };
    rows.push(vec![
        "Deployment".into(),
        server_pod::deployment_name(&name),
        state(&map_lookup(&d.deployment, deployment_state)),
    ]);
    rows.push(vec![
        "Service".into(),
        server_pod::service_name(&name),
        state(&map_lookup(&d.service, service_state)),
    ]);
    rows.push(vec![
        "PersistentVolumeClaim".into(),
        server_pod::sessions_pvc_name(&name),
        state(&map_lookup(&d.sessions_pvc, pvc_state)),
    ]);
    if persistence.workspace.is_some() || !matches!(d.workspace_pvc, Lookup::Missing) {
        rows.push(vec![
            "PersistentVolumeClaim".into(),
            server_pod::workspace_pvc_name(&name),
            state(&map_lookup(&d.workspace_pvc, pvc_state)),
        ]);
    }
    rows.push(vec![
        "Secret".into(),
        server_pod::auth_secret_name(&name),
        state(&map_lookup(&d.auth_secret, |()| {
            "present (server password; value not shown)".to_owned()
        })),
    ]);
    rows.push(vec![
        "ConfigMap".into(),
        server_pod::context_config_map_name(&name),
        state(&map_lookup(&d.context_config_map, config_map_state)),
    ]);
    match &d.pods {
        Lookup::Found(pods) => {
            let mut pods: Vec<&Pod> = pods.iter().collect();
            pods.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            for pod in pods {
                rows.push(vec!["Pod".into(), pod.name_any(), pod_state(pod, now)]);
            }
        }
        Lookup::Missing => {}
        Lookup::Failed(why) => rows.push(vec![
            "Pod".into(),
            "<unknown>".into(),
            format!("unknown: {}", one_line(why)),
        ]),
    }
    out.push_str(&align(&rows, "  "));

    match &d.events {
        Lookup::Found(events) if events.is_empty() => out.push_str("Events:           <none>\n"),
        Lookup::Found(events) => {
            out.push_str("Events:\n");
            let mut rows = vec![vec![
                "TYPE".into(),
                "REASON".into(),
                "AGE".into(),
                "FROM".into(),
                "MESSAGE".into(),
            ]];
            for e in events {
                let count = e
                    .series
                    .as_ref()
                    .and_then(|s| s.count)
                    .or(e.count)
                    .unwrap_or(1);
                let last = event_time(e);
                let first = e
                    .first_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .or_else(|| e.event_time.as_ref().map(|t| t.0))
                    .or(last);
                let age = match (last, first) {
                    (Some(last), Some(first)) if count > 1 => format!(
                        "{} (x{count} over {})",
                        human_age(last, now),
                        human_age(first, now)
                    ),
                    (Some(last), _) => human_age(last, now),
                    _ => "<unknown>".into(),
                };
                let from = e
                    .reporting_component
                    .clone()
                    .filter(|c| !c.is_empty())
                    .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()))
                    .unwrap_or_default();
                rows.push(vec![
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    age,
                    from,
                    one_line(e.message.as_deref().unwrap_or_default()),
                ]);
            }
            out.push_str(&align(&rows, "  "));
        }
        Lookup::Missing => out.push_str("Events:           <none>\n"),
        Lookup::Failed(why) => {
            let _ = writeln!(out, "Events:           unknown: {}", one_line(why));
        }
    }
    let _ = writeln!(
        out,
        "\nAttach:           kubectl kubeoc agent attach {name} -n {ns}"
    );
    out
}

fn map_lookup<T>(lookup: &Lookup<T>, f: impl Fn(&T) -> String) -> Lookup<String> {
    match lookup {
        Lookup::Found(v) => Lookup::Found(f(v)),
        Lookup::Missing => Lookup::Missing,
        Lookup::Failed(why) => Lookup::Failed(why.clone()),
    }
}

fn phase_name(phase: crate::api::agent::AgentPhase) -> String {
    serde_json::to_value(phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{phase:?}"))
}

fn deployment_state(d: &Deployment) -> String {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let ready = status.ready_replicas.unwrap_or(0);
    let mut s = format!("{ready}/{want} ready");
    if want == 0 {
        s.push_str(" (scaled to zero)");
    }
    let updated = status.updated_replicas.unwrap_or(0);
    if want > 0 && updated < want {
        let _ = write!(s, ", {updated}/{want} up to date");
    }
    s
}

fn service_state(svc: &Service) -> String {
    let spec = svc.spec.clone().unwrap_or_default();
    let mut s = spec.type_.unwrap_or_else(|| "ClusterIP".into());
    if let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty()) {
        let _ = write!(s, " {ip}");
    }
    let ports: Vec<String> = spec
        .ports
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            match &p.name {
                Some(n) => format!("{n} {}/{proto}", p.port),
                None => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    if !ports.is_empty() {
        let _ = write!(s, ", ports {}", ports.join(", "));
    }
    s
}

fn pvc_state(pvc: &PersistentVolumeClaim) -> String {
    let phase = pvc
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    let capacity = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.clone());
    let requested = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    match (capacity, requested) {
        (Some(c), _) => format!("{phase}, {c}"),
        (None, Some(r)) => format!("{phase}, {r} requested"),
        (None, None) => phase,
    }
}

fn config_map_state(cm: &ConfigMap) -> String {
    let mut keys: Vec<&String> = cm
        .data
        .iter()
        .flat_map(|d| d.keys())
        .chain(cm.binary_data.iter().flat_map(|d| d.keys()))
        .collect();
    keys.sort();
    match keys.len() {
        0 => "present, no keys".to_owned(),
        n if n <= 4 => format!(
            "{n} key{}: {}",
            if n == 1 { "" } else { "s" },
            keys.iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        n => format!("{n} keys"),
    }
}

fn pod_state(pod: &Pod, now: Timestamp) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_else(|| "Pending".into());
    let containers = status.container_statuses.unwrap_or_default();
    let ready = containers.iter().filter(|c| c.ready).count();
    let restarts: i32 = containers.iter().map(|c| c.restart_count).sum();
    let waiting = containers
        .iter()
        .chain(status.init_container_statuses.iter().flatten())
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    let mut s = if pod.metadata.deletion_timestamp.is_some() {
        "Terminating".to_owned()
    } else {
        phase
    };
    if let Some(reason) = waiting {
        let _ = write!(s, " ({reason})");
    }
    let total = pod
        .spec
        .as_ref()
        .map_or(containers.len(), |s| s.containers.len());
    let _ = write!(s, ", {ready}/{total} ready, {restarts} restarts");
    if let Some(created) = &pod.metadata.creation_timestamp {
        let _ = write!(s, ", age {}", human_age(created.0, now));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// delete, suspend, resume

/// `agent delete`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeleteArgs {
    /// Agents to delete.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Wait until each Agent and its children are gone (foreground deletion).
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long to wait.
    #[arg(long, default_value = "5m", value_parser = crate::duration::parse)]
    pub timeout: Duration,
    /// A missing Agent is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

async fn delete(cluster_args: &ClusterArgs, args: DeleteArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let api = agents(&cluster, &ns);
    // Foreground: the Agent stays until the garbage collector removed its children, so
    // "gone" means everything is gone.
    let params = if args.wait {
        DeleteParams::foreground()
    } else {
        DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        }
    };
    let mut deleted = Vec::new();
    let mut failures = Vec::new();
    for name in &args.names {
        match api.delete(name, &params).await {
            Ok(_) => {
                write_stdout(&format!("{RESOURCE} {name:?} deleted\n"))?;
                deleted.push(name.clone());
            }
            Err(err) if args.ignore_not_found && is_api_code(&err, 404) => {}
            Err(err) => failures.push(agent_error(err, "deleting", name, &ns)),
        }
    }
    if args.wait {
        for name in &deleted {
            let spinner = Spinner::start(format!(
                "waiting for agent {name} and its children to be deleted"
            ));
            let waited = wait_for(&cluster, &ns, name, WaitFor::Delete, args.timeout).await;
            spinner.finish();
            if let Err(err) = waited {
                failures.push(err);
            }
        }
    }
    let last = failures.pop();
    for err in failures {
        eprintln!("Error: {}", crate::error::render(&err));
    }
    last.map_or(Ok(()), Err)
}

/// `agent suspend` / `agent resume`.
#[derive(Debug, Clone, clap::Args)]
pub struct SuspendArgs {
    /// The Agents.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// A JSON merge patch of spec.suspend, not server-side apply: the controller sets
/// spec.suspend for standby too, and an apply would take the field's ownership from it.
async fn set_suspend(
    cluster_args: &ClusterArgs,
    args: SuspendArgs,
    suspend: bool,
) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let api = agents(&cluster, &ns);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let patch = Patch::Merge(json!({"spec": {"suspend": suspend}}));
    let (doing, done) = if suspend {
        ("suspending", "suspended")
    } else {
        ("resuming", "resumed")
    };
    let mut failures = Vec::new();
    for name in &args.names {
        match api.patch(name, &params, &patch).await {
            Ok(_) => write_stdout(&format!("{RESOURCE}/{name} {done}\n"))?,
            Err(err) => failures.push(agent_error(err, doing, name, &ns)),
        }
    }
    let last = failures.pop();
    for err in failures {
        eprintln!("Error: {}", crate::error::render(&err));
    }
    last.map_or(Ok(()), Err)
}

// ---------------------------------------------------------------------------------------------
// logs

/// `agent logs`.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// The Agent.
    pub name: String,
    /// Stream new lines until the server pod ends or Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Lines from the end to show; -1: all.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    pub tail: i64,
    /// Only lines newer than this, e.g. 10m or 1h.
    #[arg(long, value_parser = crate::duration::parse, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Prefix every line with its RFC 3339 timestamp.
    #[arg(long)]
    pub timestamps: bool,
}

/// The pod whose logs to show: the newest running one, else the newest that ran (its logs
/// are still there), else an error that says why there is none.
pub fn pick_server_pod(agent: &Agent, pods: &[Pod]) -> anyhow::Result<String> {
    let name = agent.name_any();
    let ns = agent.namespace().unwrap_or_default();
    let phase = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into())
    };
    let newest = |pred: &dyn Fn(&Pod) -> bool| {
        pods.iter()
            .filter(|p| pred(p))
            .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
            .map(|p| p.name_any())
    };
    if let Some(pod) = newest(&|p| phase(p) == "Running" && p.metadata.deletion_timestamp.is_none())
        .or_else(|| newest(&|p| phase(p) == "Running"))
        .or_else(|| newest(&|p| matches!(phase(p).as_str(), "Succeeded" | "Failed")))
    {
        return Ok(pod);
    }
    let suspended = agent.spec.suspend == Some(true)
        || agent.status.as_ref().and_then(|s| s.suspended) == Some(true);
    if suspended {
        bail!(
            "agent {name:?} in namespace {ns:?} is suspended: its server is scaled to zero and has no pod to show logs of (resume it with: kubectl kubeoc agent resume {name} -n {ns})"
        );
    }
    if let Some(pending) = newest(&|_| true) {
        bail!(
            "the server pod {pending:?} of agent {name:?} in namespace {ns:?} has not started yet (see why with: kubectl kubeoc agent describe {name} -n {ns})"
        );
    }
    bail!(
        "agent {name:?} in namespace {ns:?} has no server pod (see why with: kubectl kubeoc agent describe {name} -n {ns})"
    )
}

async fn logs(cluster_args: &ClusterArgs, args: LogsArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let agent = get_agent(&cluster, &ns, &args.name).await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let selector = format!("{}={}", server_pod::AGENT_LABEL, args.name);
    let listed = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            crate::Error::kube(
                format!(
                    "listing the server pods of agent {:?} in namespace {ns:?}",
                    args.name
                ),
                e,
            )
        })?;
    let pod = pick_server_pod(&agent, &listed.items)?;
    let params = LogParams {
        container: Some(server_pod::SERVER_CONTAINER.into()),
        follow: args.follow,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        since_seconds: args
            .since
            .map(|d| i64::try_from(d.as_secs().max(1)).unwrap_or(i64::MAX)),
        timestamps: args.timestamps,
        ..LogParams::default()
    };
    let doing = || {
        format!(
            "reading the logs of pod {pod:?} (agent {:?}) in namespace {ns:?}",
            args.name
        )
    };
    let mut stream = pods
        .log_stream(&pod, &params)
        .await
        .map_err(|e| crate::Error::kube(doing(), e))?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await.with_context(doing)?;
        if n == 0 {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(&buf[..n]).and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other.context("writing to stdout")?,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// wait

/// What `agent wait --for` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WaitFor {
    /// status.ready is true for the current generation.
    Ready,
    /// status.suspended is true for the current generation.
    Suspended,
    /// The Agent is gone.
    Delete,
}

impl WaitFor {
    fn describe(self) -> &'static str {
        match self {
            WaitFor::Ready => "be ready",
            WaitFor::Suspended => "be suspended",
            WaitFor::Delete => "be deleted",
        }
    }
}

/// `agent wait`.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// The Agent.
    pub name: String,
    /// The state to wait for.
    #[arg(long = "for", value_enum, value_name = "ready|suspended|delete")]
    pub for_: WaitFor,
    /// Give up after this long, e.g. 90s or 5m.
    #[arg(long, default_value = "5m", value_parser = crate::duration::parse)]
    pub timeout: Duration,
}

/// Whether `agent` is in the awaited state. Both checks need the status to describe the
/// current spec: right after an edit the old status would otherwise answer.
pub fn condition_met(agent: &Agent, for_: WaitFor) -> bool {
    let Some(status) = &agent.status else {
        return false;
    };
    let current = status.observed_generation.is_some()
        && status.observed_generation == agent.metadata.generation;
    match for_ {
        WaitFor::Ready => current && status.ready == Some(true),
        WaitFor::Suspended => current && status.suspended == Some(true),
        WaitFor::Delete => false,
    }
}

/// What the agent looked like, for a timeout message: the Ready condition and any sign that
/// the status is stale.
pub fn last_seen(agent: &Agent, for_: WaitFor) -> String {
    if for_ == WaitFor::Delete {
        let mut s = "the agent still exists".to_owned();
        if agent.metadata.deletion_timestamp.is_some() {
            s.push_str(" (being deleted");
            let finalizers = agent.finalizers();
            if !finalizers.is_empty() {
                let _ = write!(s, "; finalizers: {}", finalizers.join(", "));
            }
            s.push(')');
        }
        return s;
    }
    let Some(status) = &agent.status else {
        return "no status yet (is the controller running? kubectl kubeoc controller run)".into();
    };
    let condition = |type_: &str| -> Option<&Condition> {
        status
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == type_)
    };
    let mut s = match condition("Ready") {
        Some(c) => format!(
            "Ready={} ({}): {}",
            c.status,
            c.reason,
            one_line(&c.message)
        ),
        None => "no Ready condition".to_owned(),
    };
    if for_ == WaitFor::Suspended {
        let _ = write!(
            s,
            "; phase {}",
            or_none(status.phase.map(phase_name).as_deref())
        );
    }
    if for_ == WaitFor::Ready && status.suspended == Some(true) {
        let _ = write!(
            s,
            "; the agent is suspended (resume it with: kubectl kubeoc agent resume {} -n {})",
            agent.name_any(),
            agent.namespace().unwrap_or_default()
        );
    }
    if status.observed_generation != agent.metadata.generation {
        let _ = write!(
            s,
            "; the status describes generation {}, the spec is at {}",
            status
                .observed_generation
                .map_or("<none>".into(), |g| g.to_string()),
            agent
                .metadata
                .generation
                .map_or("<none>".into(), |g| g.to_string())
        );
    }
    s
}

async fn wait(cluster_args: &ClusterArgs, args: WaitArgs) -> anyhow::Result<()> {
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let spinner = Spinner::start(format!(
        "waiting for agent {} to {}",
        args.name,
        args.for_.describe()
    ));
    let result = wait_for(&cluster, &ns, &args.name, args.for_, args.timeout).await;
    spinner.finish();
    result?;
    write_stdout(&format!("{RESOURCE}/{} condition met\n", args.name))
}

/// Watches one Agent until `for_` holds or `timeout` passes; the timeout error names what was
/// last seen.
async fn wait_for(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    for_: WaitFor,
    timeout: Duration,
) -> anyhow::Result<()> {
    let api = agents(cluster, ns);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut last: Option<Agent> = None;
    let mut last_error: Option<String> = None;
    let mut listing: Option<bool> = None;
    let watched = async {
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(err) => {
                    // A watch that can never work (no permission, no CRD) fails now; anything
                    // else is retried with backoff until the deadline.
                    if let watcher::Error::InitialListFailed(e)
                    | watcher::Error::WatchStartFailed(e) = err
                    {
                        if matches!(&e, kube::Error::Api(s) if matches!(s.code, 401 | 403 | 404)) {
                            return Err(agent_error(e, "watching", name, ns));
                        }
                        last_error = Some(e.to_string());
                        continue;
                    }
                    last_error = Some(err.to_string());
                    continue;
                }
            };
            match event {
                WatchEvent::Init => listing = Some(false),
                WatchEvent::InitApply(agent) | WatchEvent::Apply(agent) => {
                    if listing.is_some() {
                        listing = Some(true);
                    }
                    if condition_met(&agent, for_) {
                        return Ok(());
                    }
                    last = Some(agent);
                }
                WatchEvent::InitDone => {
                    if listing.take() == Some(false) {
                        // The list came back empty: the Agent does not exist.
                        if for_ == WaitFor::Delete {
                            return Ok(());
                        }
                        return Err(not_found(name, ns));
                    }
                }
                WatchEvent::Delete(_) => {
                    if for_ == WaitFor::Delete {
                        return Ok(());
                    }
                    bail!(
                        "agent {name:?} in namespace {ns:?} was deleted while waiting for it to {}",
                        for_.describe()
                    );
                }
            }
        }
        bail!("the watch on agent {name:?} in namespace {ns:?} ended unexpectedly")
    };
    match tokio::time::timeout(timeout, watched).await {
        Ok(result) => result,
        Err(_) => {
            let seen = match (&last, &last_error) {
                (Some(agent), _) => last_seen(agent, for_),
                (None, Some(err)) => format!("watch error: {err}"),
                (None, None) => "nothing (no answer from the apiserver)".to_owned(),
            };
            Err(anyhow!(
                "timed out waiting for agent {name:?} in namespace {ns:?} to {}; last seen: {seen}",
                for_.describe()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn git(value: &str) -> GitContextFlag {
        match parse_git_context(value) {
            Ok(flag) => flag,
            Err(e) => panic!("{value}: {e}"),
        }
    }

    fn flag(repository: &str, reference: Option<&str>, mount_path: &str) -> GitContextFlag {
        GitContextFlag {
            repository: repository.into(),
            reference: reference.map(Into::into),
            mount_path: mount_path.into(),
        }
    }

    #[test]
    fn git_context_urls_with_colons_and_ats() {
        assert_eq!(
            git("git@github.com:org/repo.git@v1:src"),
            flag("git@github.com:org/repo.git", Some("v1"), "src")
        );
        assert_eq!(
            git("https://host/org/repo.git:/workspace/repo"),
            flag("https://host/org/repo.git", None, "/workspace/repo")
        );
        assert_eq!(
            git("file:///var/lib/x/repo@main:repo"),
            flag("file:///var/lib/x/repo", Some("main"), "repo")
        );
        assert_eq!(
            git("https://user@host:8443/org/repo.git@release/v2:."),
            // The '@' of the user info is before the last '/', so it is part of the URL; a
            // REF with a '/' cannot be told from the URL's path and stays in it.
            flag("https://user@host:8443/org/repo.git@release/v2", None, ".")
        );
        assert_eq!(
            git("https://user@host:8443/org/repo.git@feature-x:code"),
            flag(
                "https://user@host:8443/org/repo.git",
                Some("feature-x"),
                "code"
            )
        );
        assert_eq!(
            git("git@host:repo.git@abc123:r"),
            flag("git@host:repo.git", Some("abc123"), "r")
        );
        assert_eq!(
            git("ssh://git@host/org/repo:sub/dir"),
            flag("ssh://git@host/org/repo", None, "sub/dir")
        );
        assert_eq!(
            git("/srv/git/repo.git:repo"),
            flag("/srv/git/repo.git", None, "repo")
        );
    }

    #[test]
    fn git_context_rejects_bad_values() {
        for bad in [
            "",
            "repo.git",
            "https://github.com/org/repo.git",
            "git@github.com:org/repo.git",
            "https://github.com/org/repo.git:",
            "https://github.com/org/repo.git@:src",
            ":src",
            "@v1:src",
            "foo:bar",
            "https://host:8443/org/repo",
            "https://host:src",
            "https://h/o/r.git:a b",
            "https://h/o/r .git:src",
            "://h/o/r:src",
        ] {
            assert!(
                parse_git_context(bad).is_err(),
                "{bad:?} parsed as {:?}",
                parse_git_context(bad)
            );
        }
        let err = parse_git_context("https://github.com/org/repo.git").unwrap_err();
        assert!(err.contains("URL[@REF]:PATH"), "{err}");
    }

    #[test]
    fn context_names_come_from_the_repository() {
        assert_eq!(repository_name("git@github.com:org/repo.git"), "repo");
        assert_eq!(repository_name("file:///var/lib/x/repo"), "repo");
        assert_eq!(repository_name("https://h/Org/My_Repo.git/"), "my-repo");
        assert_eq!(repository_name("git@host:Repo.git"), "repo");
        assert_eq!(repository_name("https://h/o/.git"), "repo");
        let mut taken = BTreeSet::new();
        assert_eq!(unique("repo".into(), &mut taken), "repo");
        assert_eq!(unique("repo".into(), &mut taken), "repo-2");
        assert_eq!(unique("repo".into(), &mut taken), "repo-3");
    }

    #[test]
    fn credentials_parse() {
        assert_eq!(
            parse_credential("ai-keys"),
            Ok(CredentialFlag {
                secret: "ai-keys".into(),
                key_env: None
            })
        );
        assert_eq!(
            parse_credential("ai-keys:openai.key=OPENAI_API_KEY"),
            Ok(CredentialFlag {
                secret: "ai-keys".into(),
                key_env: Some(("openai.key".into(), "OPENAI_API_KEY".into()))
            })
        );
        for bad in [
            "", "AI", "ai:key", "ai:=X", "ai:k=1X", "ai:k=", "ai:k=A-B", ":k=X", "-ai", "ai:k/x=X",
        ] {
            assert!(parse_credential(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn quantities() {
        for good in ["2Gi", "512Mi", "1.5G", "1e9", "100", "1E+3", "0.5Ti"] {
            assert_eq!(parse_quantity(good), Ok(good.to_owned()), "{good}");
        }
        for bad in ["", "2GB", "0", "0Gi", "abc", "-1Gi", "1..5Gi", "Gi", "1e"] {
            assert!(parse_quantity(bad).is_err(), "{bad:?} parsed");
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut full = vec!["kubectl-kubeoc"];
        full.extend_from_slice(args);
        Cli::try_parse_from(full)
    }

    fn create_args(args: &[&str]) -> CreateArgs {
        match parse(args) {
            Ok(Cli {
                command: Command::Agent(AgentCommand::Create(create)),
                ..
            }) => create,
            Ok(other) => panic!("parsed as {other:?}"),
            Err(e) => panic!("{e}"),
        }
    }

    const FULL: &[&str] = &[
        "agent",
        "create",
        "dev",
        "--image",
        "devbox:1",
        "--workspace-dir",
        "/workspace",
        "--service-account",
        "agent-sa",
        "--port",
        "8080",
        "--sessions-size",
        "2Gi",
        "--git-context",
        "git@github.com:org/repo.git@v1:src",
        "--git-context",
        "https://host/other/repo.git:/workspace/repo2",
        "--credential",
        "ai-keys",
        "--credential",
        "ai-keys:openai=OPENAI_API_KEY",
        "--template",
        "team",
    ];

    #[test]
    fn flags_build_the_agent() {
        let args = create_args(FULL);
        let agent = agent_from_flags("dev", "team-a", &args);
        let value = serde_json::to_value(&agent).unwrap();
        assert_eq!(
            value,
            json!({
                "apiVersion": "kubeopencode.io/v1alpha1",
                "kind": "Agent",
                "metadata": {"name": "dev", "namespace": "team-a"},
                "spec": {
                    "templateRef": {"name": "team"},
                    "executorImage": "devbox:1",
                    "workspaceDir": "/workspace",
                    "serviceAccountName": "agent-sa",
                    "port": 8080,
                    "persistence": {"sessions": {"size": "2Gi"}},
                    "contexts": [
                        {"name": "repo", "type": "Git", "mountPath": "src",
                         "git": {"repository": "git@github.com:org/repo.git", "ref": "v1"}},
                        {"name": "repo-2", "type": "Git", "mountPath": "/workspace/repo2",
                         "git": {"repository": "https://host/other/repo.git"}},
                    ],
                    "credentials": [
                        {"name": "ai-keys", "secretRef": {"name": "ai-keys"}},
                        {"name": "ai-keys-openai", "secretRef": {"name": "ai-keys", "key": "openai"},
                         "env": "OPENAI_API_KEY"},
                    ],
                }
            })
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        let bad: &[&[&str]] = &[
            &[
                "agent",
                "create",
                "x",
                "--image",
                "i",
                "--workspace-dir",
                "/w",
                "--service-account",
                "s",
                "--git-context",
                "https://github.com/org/repo.git",
            ],
            &["agent", "create", "x", "--image", "i"],
            &[
                "agent",
                "create",
                "x",
                "--image",
                "i",
                "--workspace-dir",
                "relative",
                "--service-account",
                "s",
            ],
            &["agent", "create", "-f", "a.yaml", "--image", "i"],
            &["agent", "create", "x", "-f", "a.yaml"],
            &["agent", "create", "x", "--template", "t", "--port", "0"],
            &[
                "agent",
                "create",
                "x",
                "--template",
                "t",
                "--credential",
                "A",
            ],
            &[
                "agent",
                "create",
                "x",
                "--template",
                "t",
                "--dry-run",
                "client",
            ],
            &["agent", "wait", "x", "--for=happy"],
            &["agent", "wait", "x"],
            &["agent", "logs", "x", "--since", "yesterday"],
            &["agent", "delete"],
            &["agent", "suspend"],
        ];
        for args in bad {
            match parse(args) {
                Ok(cli) => panic!("{args:?} parsed as {cli:?}"),
                Err(e) => assert_eq!(e.exit_code(), 2, "{args:?}: {e}"),
            }
        }
    }

    #[test]
    fn flags_that_parse() {
        let args = create_args(&["ag", "create", "x", "--template", "t", "--dry-run"]);
        assert_eq!(args.dry_run, DryRun::Client);
        let args = create_args(&[
            "agents",
            "create",
            "-f",
            "-",
            "--dry-run=server",
            "-o",
            "yaml",
        ]);
        assert_eq!(args.dry_run, DryRun::Server);
        assert_eq!(args.output, Some(CreateOutput::Yaml));
        for args in [
            &[
                "agent",
                "ls",
                "-A",
                "-o",
                "wide",
                "--no-headers",
                "-l",
                "a=b",
                "-w",
            ][..],
            &["agent", "get", "a", "b", "-o", "name"],
            &["agent", "describe", "a"],
            &[
                "agent",
                "delete",
                "a",
                "b",
                "--wait",
                "--ignore-not-found",
                "--timeout=1m",
            ],
            &["agent", "suspend", "a"],
            &["agent", "resume", "a"],
            &[
                "agent",
                "logs",
                "a",
                "-f",
                "--tail",
                "10",
                "--since",
                "5m",
                "--timestamps",
            ],
            &["agent", "wait", "a", "--for=suspended", "--timeout=90s"],
            &["agent", "wait", "a", "--for", "delete"],
        ] {
            if let Err(e) = parse(args) {
                panic!("{args:?}: {e}");
            }
        }
    }

    #[test]
    fn files_hold_agents_only() {
        let yaml = "\
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: a}
spec: {workspaceDir: /w}
---
---
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: b, namespace: other}
";
        let items = agents_from_text(yaml, "a.yaml").unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1]["metadata"]["namespace"], "other");

        let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "kubeopencode.io/v1alpha1", "kind": "Agent", "metadata": {"name": "c"}}]}"#;
        let items = agents_from_text(json, "a.json").unwrap();
        assert_eq!(items[0]["metadata"]["name"], "c");

        let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n";
        let err = agents_from_text(deployment, "d.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("document 1 is a Deployment (apps/v1)"),
            "{err}"
        );
        let nameless = "apiVersion: kubeopencode.io/v1alpha1\nkind: Agent\nmetadata: {}\n";
        let err = agents_from_text(nameless, "n.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("without metadata.name"), "{err}");
        assert!(agents_from_text("", "e.yaml").is_err());
        assert!(agents_from_text("a: [", "bad.yaml").is_err());
    }

    #[test]
    fn namespaces_like_kubectl() {
        let mut item = json!({"metadata": {"name": "a", "namespace": "x"}});
        assert_eq!(place(&mut item, None, "d").unwrap(), "x");
        assert_eq!(place(&mut item, Some("x"), "d").unwrap(), "x");
        let err = place(&mut item, Some("y"), "d").unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        let mut item = json!({"metadata": {"name": "a"}});
        assert_eq!(place(&mut item, None, "d").unwrap(), "d");
        assert_eq!(item["metadata"]["namespace"], "d");
        let mut item = json!({"metadata": {"name": "a"}});
        assert_eq!(place(&mut item, Some("y"), "d").unwrap(), "y");
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("https://bot:ghp_secret@github.com/org/repo.git"),
            "https://bot:***@github.com/org/repo.git"
        );
        assert_eq!(
            redact_url("https://ghp_secret@github.com/org/repo.git"),
            "https://***@github.com/org/repo.git"
        );
        assert_eq!(
            redact_url("https://github.com/org/repo.git"),
            "https://github.com/org/repo.git"
        );
        assert_eq!(
            redact_url("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
    }

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    fn ready_agent() -> Agent {
        from(json!({
            "apiVersion": "kubeopencode.io/v1alpha1",
            "kind": "Agent",
            "metadata": {
                "name": "team-agent", "namespace": "team-a", "generation": 2,
                "uid": "u-1", "creationTimestamp": "2026-03-01T11:00:00Z",
                "labels": {"team": "a", "tier": "dev"},
            },
            "spec": {
                "profile": "Team development agent",
                "executorImage": "ghcr.io/kubeopencode/kubeopencode-agent-devbox:latest",
                "workspaceDir": "/workspace",
                "serviceAccountName": "kubeopencode-agent",
                "persistence": {"sessions": {"size": "2Gi"}},
                "contexts": [
                    {"name": "codebase", "type": "Git", "mountPath": "code",
                     "git": {"repository": "https://bot:tok3n@github.com/org/repo.git", "ref": "main"}},
                    {"name": "rules", "type": "Text", "text": "be nice\nalways"},
                    {"type": "ConfigMap", "configMap": {"name": "docs", "key": "a.md"}, "mountPath": "/docs/a.md"},
                ],
                "credentials": [
                    {"name": "api-key", "secretRef": {"name": "ai-credentials", "key": "api-key"},
                     "env": "OPENCODE_API_KEY"},
                    {"name": "all-keys", "secretRef": {"name": "more-keys"}},
                    {"name": "ssh", "secretRef": {"name": "ssh", "key": "id"}, "mountPath": "/home/.ssh/id"},
                ],
            },
            "status": {
                "observedGeneration": 2, "phase": "Ready", "ready": true, "suspended": false,
                "url": "http://team-agent.team-a.svc.cluster.local:4096",
                "conditions": [
                    {"type": "ServerReady", "status": "True", "reason": "DeploymentAvailable",
                     "message": "1/1 server replicas available",
                     "lastTransitionTime": "2026-03-01T11:01:00Z"},
                    {"type": "ServerHealthy", "status": "True", "reason": "Healthy",
                     "message": "OpenCode 1.18.33 answers /global/health",
                     "lastTransitionTime": "2026-03-01T11:01:30Z"},
                    {"type": "Ready", "status": "True", "reason": "ServerHealthy",
                     "message": "the OpenCode server is available and healthy",
                     "lastTransitionTime": "2026-03-01T11:01:30Z"},
                ],
            },
        }))
    }

    fn ready_children(agent: Agent) -> Described {
        Described {
            agent,
            deployment: Lookup::Found(from(json!({
                "metadata": {"name": "team-agent-server"},
                "spec": {"replicas": 1, "selector": {}, "template": {}},
                "status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1},
            }))),
            service: Lookup::Found(from(json!({
                "metadata": {"name": "team-agent"},
                "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20",
                         "ports": [{"name": "http", "port": 4096, "protocol": "TCP"}]},
            }))),
            sessions_pvc: Lookup::Found(from(json!({
                "metadata": {"name": "team-agent-server-sessions"},
                "spec": {"resources": {"requests": {"storage": "2Gi"}}},
                "status": {"phase": "Bound", "capacity": {"storage": "2Gi"}},
            }))),
            workspace_pvc: Lookup::Missing,
            auth_secret: Lookup::Found(()),
            context_config_map: Lookup::Found(from(json!({
                "metadata": {"name": "team-agent-server-context"},
                "data": {"tools-opencode.json": "{}", "workspace-.kubeopencode-context.md": "x"},
            }))),
            pods: Lookup::Found(vec![from(json!({
                "metadata": {"name": "team-agent-server-6d9f-abcde",
                             "creationTimestamp": "2026-03-01T11:00:05Z"},
                "spec": {"containers": [{"name": "opencode-server"}]},
                "status": {"phase": "Running", "containerStatuses": [{
                    "name": "opencode-server", "ready": true, "restartCount": 1, "image": "x",
                    "imageID": "", }]},
            }))]),
            events: Lookup::Found(vec![
                from(json!({
                    "metadata": {"name": "e1", "creationTimestamp": "2026-03-01T11:00:01Z"},
                    "involvedObject": {"kind": "Agent", "name": "team-agent", "uid": "u-1"},
                    "type": "Normal", "reason": "Created",
                    "message": "created Deployment team-agent-server",
                    "eventTime": "2026-03-01T11:00:01.000000Z",
                    "reportingComponent": "kubeoc-controller",
                })),
                from(json!({
                    "metadata": {"name": "e2", "creationTimestamp": "2026-03-01T11:01:30Z"},
                    "involvedObject": {"kind": "Agent", "name": "team-agent", "uid": "u-1"},
                    "type": "Warning", "reason": "Unhealthy",
                    "message": "health check failed:\nconnection refused",
                    "firstTimestamp": "2026-03-01T11:00:30Z",
                    "lastTimestamp": "2026-03-01T11:01:00Z",
                    "count": 3,
                    "source": {"component": "kubeoc-controller"},
                })),
            ]),
        }
    }

    #[test]
    fn describe_a_ready_agent() {
        let text = render_describe(&ready_children(ready_agent()), now());
        assert!(!text.contains("tok3n"), "a token in a URL leaked:\n{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn describe_a_new_agent_with_missing_and_unreadable_children() {
        let agent: Agent = from(json!({
            "apiVersion": "kubeopencode.io/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "fresh", "namespace": "dev", "generation": 1,
                         "creationTimestamp": "2026-03-01T11:59:50Z"},
            "spec": {"templateRef": {"name": "team"}, "suspend": true,
                     "persistence": {"workspace": {"size": "20Gi", "storageClassName": "fast"}}},
        }));
        let described = Described {
            agent,
            deployment: Lookup::Found(from(json!({
                "metadata": {"name": "fresh-server"},
                "spec": {"replicas": 0, "selector": {}, "template": {}},
            }))),
            service: Lookup::Missing,
            sessions_pvc: Lookup::Found(from(json!({
                "metadata": {"name": "fresh-server-sessions"},
                "spec": {"resources": {"requests": {"storage": "1Gi"}}},
                "status": {"phase": "Pending"},
            }))),
            workspace_pvc: Lookup::Missing,
            auth_secret: Lookup::Failed(
                "secrets \"fresh-server-auth\" is forbidden: User \"dev\" cannot get resource \"secrets\" (Forbidden)".into(),
            ),
            context_config_map: Lookup::Missing,
            pods: Lookup::Found(Vec::new()),
            events: Lookup::Failed("events is forbidden (Forbidden)".into()),
        };
        insta::assert_snapshot!(render_describe(&described, now()));
    }

    fn pod(name: &str, phase: &str, created: &str) -> Pod {
        from(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": phase},
        }))
    }

    #[test]
    fn logs_come_from_the_newest_running_pod() {
        let agent = ready_agent();
        let pods = [
            pod("old", "Running", "2026-03-01T10:00:00Z"),
            pod("new", "Running", "2026-03-01T11:00:00Z"),
            pod("starting", "Pending", "2026-03-01T11:30:00Z"),
        ];
        assert_eq!(pick_server_pod(&agent, &pods).unwrap(), "new");
        let pods = [pod("done", "Failed", "2026-03-01T10:00:00Z")];
        assert_eq!(pick_server_pod(&agent, &pods).unwrap(), "done");

        let pending = [pod("starting", "Pending", "2026-03-01T11:30:00Z")];
        let err = pick_server_pod(&agent, &pending).unwrap_err().to_string();
        assert!(
            err.contains("has not started yet")
                && err.contains("kubectl kubeoc agent describe team-agent -n team-a"),
            "{err}"
        );
        let err = pick_server_pod(&agent, &[]).unwrap_err().to_string();
        assert!(
            err.contains("has no server pod") && err.contains("agent describe"),
            "{err}"
        );
        let mut suspended = ready_agent();
        suspended.spec.suspend = Some(true);
        let err = pick_server_pod(&suspended, &[]).unwrap_err().to_string();
        assert!(
            err.contains("is suspended")
                && err.contains("kubectl kubeoc agent resume team-agent -n team-a"),
            "{err}"
        );
    }

    #[test]
    fn wait_conditions_need_the_current_generation() {
        let mut agent = ready_agent();
        assert!(condition_met(&agent, WaitFor::Ready));
        assert!(!condition_met(&agent, WaitFor::Suspended));
        assert!(!condition_met(&agent, WaitFor::Delete));
        agent.metadata.generation = Some(3);
        assert!(!condition_met(&agent, WaitFor::Ready));
        assert_eq!(
            last_seen(&agent, WaitFor::Ready),
            "Ready=True (ServerHealthy): the OpenCode server is available and healthy; the status describes generation 2, the spec is at 3"
        );
        let mut status = agent.status.take().unwrap();
        assert!(last_seen(&agent, WaitFor::Ready).contains("no status yet"));
        status.observed_generation = Some(3);
        status.suspended = Some(true);
        status.ready = Some(false);
        status.phase = Some(crate::api::agent::AgentPhase::Suspended);
        if let Some(ready) = status
            .conditions
            .as_mut()
            .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
        {
            ready.status = "False".into();
            ready.reason = "Suspended".into();
            ready.message = "spec.suspend is true: the server is scaled to zero".into();
        }
        agent.status = Some(status);
        assert!(condition_met(&agent, WaitFor::Suspended));
        assert!(!condition_met(&agent, WaitFor::Ready));
        assert_eq!(
            last_seen(&agent, WaitFor::Ready),
            "Ready=False (Suspended): spec.suspend is true: the server is scaled to zero; the agent is suspended (resume it with: kubectl kubeoc agent resume team-agent -n team-a)"
        );
        assert!(last_seen(&agent, WaitFor::Suspended).ends_with("; phase Suspended"));
        assert_eq!(last_seen(&agent, WaitFor::Delete), "the agent still exists");
    }

    #[test]
    fn apiserver_errors_name_the_object() {
        let status = |code: u16, reason: &str, details: Value| -> kube::Error {
            kube::Error::Api(Box::new(from(json!({
                "status": "Failure", "code": code, "reason": reason,
                "message": format!("{reason} happened"), "details": details,
            }))))
        };
        let err = agent_error(
            status(404, "NotFound", json!({"name": "x", "kind": "agents"})),
            "getting",
            "x",
            "y",
        );
        assert_eq!(
            crate::error::render(&err),
            "agent \"x\" not found in namespace \"y\" (list them with: kubectl kubeoc agent list -n y)"
        );
        let err = agent_error(status(404, "NotFound", json!({})), "getting", "x", "y");
        assert!(
            crate::error::render(&err).contains("kubectl kubeoc install"),
            "{err:#}"
        );
        let err = agent_error(
            status(404, "NotFound", json!({"name": "y", "kind": "namespaces"})),
            "creating",
            "x",
            "y",
        );
        assert_eq!(
            crate::error::render(&err),
            "creating agent \"x\": namespace \"y\" not found (list them with: kubectl get namespaces)"
        );
        let err = agent_error(status(403, "Forbidden", json!({})), "deleting", "x", "y");
        assert_eq!(
            crate::error::render(&err),
            "deleting agent \"x\" in namespace \"y\": from server (Forbidden): Forbidden happened"
        );
    }
}
