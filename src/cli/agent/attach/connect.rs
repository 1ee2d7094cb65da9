//! Everything `agent attach` checks before it talks to a server: what the user may do (one
//! SelfSubjectAccessReview per permission, so a refusal names the Role rule to add), that the
//! Agent exists, is resumed if suspended and is Ready, its password, and that the server speaks
//! an OpenCode API kubeoc knows.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt as _};
use serde_json::json;

use super::super::lifecycle::wait_for;
use super::super::{WaitFor, agent_error, get_agent};
use crate::api::{Agent, AgentTemplate};
use crate::cli::progress::Spinner;
use crate::cluster::{Cluster, FIELD_MANAGER};
use crate::controller::agent::suspended_by_standby;
use crate::controller::pod;
use crate::opencode::client::{ProxyError, ServerProxy};

/// A server ready to talk to, and who is talking.
pub struct Attached {
    pub proxy: ServerProxy,
    pub agent: String,
    pub namespace: String,
    /// The kube user (from a SelfSubjectReview), for session titles.
    pub user: String,
    /// The server's OpenCode version.
    pub version: String,
}

/// One permission attach needs, and the Role rule that grants it.
struct Need {
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    verb: &'static str,
    name: String,
    why: &'static str,
}

impl Need {
    fn rule(&self) -> String {
        let resource = if self.subresource.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        format!(
            "apiGroups [\"{}\"], resources [\"{resource}\"], resourceNames [\"{}\"], verbs [\"{}\"]",
            self.group, self.name, self.verb
        )
    }
}

/// Asks the apiserver whether the user may do each of `needs`; the refusals, each with its rule.
async fn refused(client: &kube::Client, ns: &str, needs: &[Need]) -> anyhow::Result<Vec<String>> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut refused = Vec::new();
    for need in needs {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    group: Some(need.group.to_string()),
                    resource: Some(need.resource.to_string()),
                    subresource: (!need.subresource.is_empty())
                        .then(|| need.subresource.to_string()),
                    verb: Some(need.verb.to_string()),
                    name: Some(need.name.clone()),
                    namespace: Some(ns.to_string()),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                crate::Error::kube("checking your permissions (SelfSubjectAccessReview)", e)
            })?;
        if !answer.status.is_some_and(|s| s.allowed) {
            refused.push(format!("{} ({})", need.rule(), need.why));
        }
    }
    Ok(refused)
}

/// The user's name as the apiserver sees it; `unknown user` when the review is not served.
async fn whoami(client: &kube::Client) -> String {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    match api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(review) => review
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .unwrap_or_else(|| "unknown user".to_string()),
        Err(_) => "unknown user".to_string(),
    }
}

/// Whether to resume a suspended Agent: `--resume`, else a yes at the terminal.
fn confirm_resume(agent: &str, ns: &str, resume: bool) -> anyhow::Result<bool> {
    if resume {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(false);
    }
    let mut err = std::io::stderr().lock();
    write!(
        err,
        "agent {agent:?} in namespace {ns:?} is suspended. Resume it? [y/N] "
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Sets spec.suspend false with a merge patch. A suspend of standby's is lifted as a Task lifts
/// it, under the controller's field manager, so standby may suspend the Agent again once
/// nobody uses it; a person's suspend is lifted as `agent resume` does.
async fn resume(cluster: &Cluster, agent: &Agent) -> anyhow::Result<()> {
    let (ns, name) = (agent.namespace().unwrap_or_default(), agent.name_any());
    let api: Api<Agent> = Api::namespaced(cluster.client.clone(), &ns);
    let manager = if suspended_by_standby(agent) {
        crate::controller::FIELD_MANAGER
    } else {
        FIELD_MANAGER
    };
    let params = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    api.patch(
        &name,
        &params,
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .map_err(|e| agent_error(e, "resuming", &name, &ns))?;
    Ok(())
}

/// Reads the password of the Agent's server.
async fn server_password(client: &kube::Client, ns: &str, agent: &str) -> anyhow::Result<String> {
    let name = pod::auth_secret_name(agent);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = match secrets.get(&name).await {
        Ok(secret) => secret,
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

/// The Agent's server through the apiserver's service proxy, in the directory its sessions
/// live in (the workspaceDir after the AgentTemplate merge, as the server pod has it).
pub async fn server_proxy(client: &kube::Client, agent: &Agent) -> anyhow::Result<ServerProxy> {
    let ns = agent.namespace().unwrap_or_default();
    let name = agent.name_any();
    let template = match &agent.spec.template_ref {
        Some(r) => Api::<AgentTemplate>::namespaced(client.clone(), &ns)
            .get_opt(&r.name)
            .await
            // A template the user may not read: the Agent's own fields are all we know.
            .unwrap_or_default(),
        None => None,
    };
    let spec = pod::effective_spec(&agent.spec, template.as_ref().map(|t| &t.spec));
    let password = server_password(client, &ns, &name).await?;
    Ok(ServerProxy::new(
        client.clone(),
        &ns,
        &pod::service_name(&name),
        &password,
        &pod::workspace_dir(&spec),
    ))
}

/// What a failed proxied call means for the user.
pub fn explain(err: ProxyError, agent: &str, ns: &str) -> anyhow::Error {
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

/// Checks, resumes and waits, then returns the server to talk to.
pub async fn connect(
    cluster: &Cluster,
    name: &str,
    resume_suspended: bool,
    ready_timeout: Duration,
) -> anyhow::Result<Attached> {
    let ns = cluster.namespace.clone();
    let service = pod::service_name(name);
    let needs = [
        Need {
            group: "kubeopencode.io",
            resource: "agents",
            subresource: "",
            verb: "get",
            name: name.to_string(),
            why: "to read the Agent",
        },
        Need {
            group: "",
            resource: "services",
            subresource: "proxy",
            verb: "create",
            name: service.clone(),
            why: "to send prompts through the apiserver's service proxy",
        },
        Need {
            group: "",
            resource: "services",
            subresource: "proxy",
            verb: "get",
            name: service.clone(),
            why: "to read sessions and events through the service proxy",
        },
        Need {
            group: "",
            resource: "secrets",
            subresource: "",
            verb: "get",
            name: pod::auth_secret_name(name),
            why: "to read the server's password",
        },
    ];
    let refused = refused(&cluster.client, &ns, &needs).await?;
    if !refused.is_empty() {
        bail!(
            "you may not attach to agent {name:?} in namespace {ns:?}: a Role there (or the kubeoc-user ClusterRole, \
             bound with: kubectl create rolebinding <name> --clusterrole=kubeoc-user --user=<you> -n {ns}) needs:\n  {}",
            refused.join("\n  ")
        );
    }
    let agent = get_agent(cluster, &ns, name).await?;
    if agent.spec.suspend == Some(true) {
        if !confirm_resume(name, &ns, resume_suspended)? {
            bail!(
                "agent {name:?} in namespace {ns:?} is suspended: attach with --resume to start it, or run: kubectl kubeoc agent resume {name} -n {ns}"
            );
        }
        resume(cluster, &agent).await?;
    }
    if !super::super::condition_met(&agent, WaitFor::Ready) || agent.spec.suspend == Some(true) {
        let spinner = Spinner::start(format!("waiting for agent {name} to be ready"));
        let waited = wait_for(cluster, &ns, name, WaitFor::Ready, ready_timeout).await;
        spinner.finish();
        waited?;
    }
    let proxy = server_proxy(&cluster.client, &agent).await?;
    let health = proxy.health().await.map_err(|e| explain(e, name, &ns))?;
    health
        .check_supported()
        .map_err(|e| anyhow!("agent {name:?} in namespace {ns:?}: {e}"))?;
    let user = whoami(&cluster.client).await;
    Ok(Attached {
        proxy,
        agent: name.to_string(),
        namespace: ns,
        user,
        version: health.version,
    })
}
