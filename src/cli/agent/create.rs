//! `agent create`: flags, `--git-context`/`--credential` parsing, `-f` files and dry runs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow, bail};
use kube::Resource as _;
use serde_json::Value;

use super::{
    FIELD_MANAGER, RESOURCE, agent_error, is_api_code, object_name, render_one, report_failures,
    write_stdout,
};
use crate::api::agent::{Credential, PersistenceConfig, SecretKeyReference, VolumePersistence};
use crate::api::common::AgentTemplateReference;
use crate::api::context::{ContextItem, ContextType, GitContext};
use crate::api::{API_VERSION, Agent, AgentSpec};
use crate::cli::output::{OutputArgs, OutputFormat, Printer};
use crate::cluster::{Cluster, ClusterArgs};

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
            if object_name(&item).is_empty() {
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
    let name = object_name(item).to_owned();
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

pub(super) async fn create(cluster_args: &ClusterArgs, args: CreateArgs) -> anyhow::Result<()> {
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
                Some(cluster) => {
                    warn_missing_service_account(cluster, &namespace, &item).await;
                    post_agent(cluster, &namespace, &item, args.dry_run).await?
                }
            };
            print_created(&object, args.output, args.dry_run)
        }
        .await;
        if let Err(err) = result {
            failures.push(err);
        }
    }
    report_failures(failures)
}

/// Warns (on stderr, as kubectl prints server warnings) when the Agent names a ServiceAccount
/// that does not exist: its server pod could not be created until it does. A lookup that
/// fails for another reason (no permission) says nothing: the Agent's status will.
async fn warn_missing_service_account(cluster: &Cluster, namespace: &str, item: &Value) {
    let Some(account) = item
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
    else {
        return;
    };
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(cluster.client.clone(), namespace);
    if let Ok(None) = accounts.get_opt(account).await {
        eprintln!(
            "Warning: ServiceAccount {account:?} does not exist in namespace {namespace:?}; \
             the Agent's server cannot start until it does (create it with: kubectl create serviceaccount {account} -n {namespace})"
        );
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
    let name = object_name(item);
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
    let name = object_name(object);
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
    write_stdout(&render_one(
        &Printer::new(&args, Vec::new()),
        object,
        &args.output,
    )?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cli::agent::tests::create_args;

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
}
