//! `agent attach NAME --prompt TEXT`: one prompt to an Agent's OpenCode server through the
//! apiserver's service proxy, with the user's kubeconfig; the answer on stdout. (The chat
//! terminal comes with the attach issue; this is its scriptable mode, without streaming yet.)

use std::io::{IsTerminal, Read};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::{get_agent, write_stdout};
use crate::cluster::ClusterArgs;
use crate::controller::pod;
use crate::opencode::client::{ProxyError, ServerProxy};

/// `agent attach`.
#[derive(Debug, Clone, clap::Args)]
pub struct AttachArgs {
    /// The Agent.
    pub name: String,
    /// Send this prompt, print the answer on stdout and exit: no terminal UI, for scripts.
    /// Without it, a prompt piped on stdin is sent the same way.
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// Continue this session instead of starting a new one.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "10m", value_parser = crate::duration::parse)]
    pub timeout: Duration,
}

/// Reads the password of the Agent's server, with the RBAC rule to add when it is forbidden.
async fn server_password(client: &kube::Client, ns: &str, agent: &str) -> anyhow::Result<String> {
    let name = pod::auth_secret_name(agent);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = match secrets.get(&name).await {
        Ok(secret) => secret,
        Err(kube::Error::Api(s)) if s.code == 403 => bail!(
            "you may not read Secret {name:?} in namespace {ns:?}, which holds the server's password \
             (a Role needs: apiGroups [\"\"], resources [\"secrets\"], resourceNames [\"{name}\"], verbs [\"get\"]; \
             the kubeoc-user ClusterRole has it)"
        ),
        Err(kube::Error::Api(s)) if s.code == 404 => bail!(
            "agent {agent:?} in namespace {ns:?} has no Secret {name:?} yet: is its controller running? \
             (see: kubectl kubeoc agent describe {agent} -n {ns})"
        ),
        Err(e) => return Err(crate::Error::kube(format!("reading Secret {ns}/{name}"), e).into()),
    };
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(pod::PASSWORD_KEY))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .filter(|p| !p.is_empty())
        .with_context(|| format!("Secret {ns}/{name} holds no password"))
}

/// What a failed proxied call means for the user.
fn explain(err: ProxyError, agent: &str, ns: &str) -> anyhow::Error {
    match err {
        ProxyError::Status { status: 403, body } => anyhow!(
            "you may not reach agent {agent:?}'s server through the apiserver ({body}); a Role in namespace {ns:?} needs: \
             apiGroups [\"\"], resources [\"services/proxy\"], resourceNames [\"{agent}\"], verbs [\"get\", \"create\"]"
        ),
        ProxyError::Unauthorized => anyhow!(
            "agent {agent:?}'s server refused its password: it may have just changed; try again when the agent is Ready \
             (kubectl kubeoc agent wait {agent} -n {ns} --for=ready)"
        ),
        other => anyhow!("talking to agent {agent:?} in namespace {ns:?}: {other}"),
    }
}

pub(super) async fn attach(cluster_args: &ClusterArgs, args: AttachArgs) -> anyhow::Result<()> {
    let prompt = match args.prompt {
        Some(prompt) => prompt,
        None if !std::io::stdin().is_terminal() => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the prompt from stdin")?;
            text
        }
        None => bail!(
            "the chat terminal is not in this version of kubeoc yet: pass --prompt TEXT, or pipe a prompt on stdin"
        ),
    };
    if prompt.trim().is_empty() {
        bail!("the prompt is empty");
    }
    let cluster = cluster_args.connect().await?;
    let ns = cluster.namespace.clone();
    let agent = get_agent(&cluster, &ns, &args.name).await?;
    let status = agent.status.clone().unwrap_or_default();
    if status.ready != Some(true) {
        let why = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .map(|c| format!(": {} ({})", c.reason, c.message))
            .unwrap_or_default();
        bail!(
            "agent {:?} in namespace {ns:?} is not ready{why} (wait for it with: kubectl kubeoc agent wait {} -n {ns} --for=ready)",
            args.name,
            args.name
        );
    }
    let password = server_password(&cluster.client, &ns, &args.name).await?;
    let spec = &agent.spec;
    let workspace = spec.workspace_dir.clone().unwrap_or_default();
    let proxy = ServerProxy::new(
        cluster.client.clone(),
        &ns,
        &pod::service_name(&args.name),
        &password,
        &workspace,
    );
    let session = match args.session {
        Some(id) => id,
        None => {
            proxy
                .create_session("kubectl kubeoc agent attach")
                .await
                .map_err(|e| explain(e, &args.name, &ns))?
                .id
        }
    };
    let reply = proxy
        .prompt(&session, &prompt, args.timeout)
        .await
        .map_err(|e| explain(e, &args.name, &ns))?;
    if let Some(error) = &reply.info.error {
        bail!(
            "agent {:?} could not answer (session {session}): {}",
            args.name,
            error.message()
        );
    }
    let mut text = reply.text();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_stdout(&text)
}
