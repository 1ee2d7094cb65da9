//! `agent describe`: the objects it reads, and the text it renders from them.

use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, ResourceExt as _};

use super::{get_agent, write_stdout};
use crate::api::Agent;
use crate::api::agent::VolumePersistence;
use crate::api::context::ContextType;
pub(super) use crate::cli::describe::{align, event_row, event_time, one_line, or_none, section};
use crate::cli::output::human_age;
use crate::cluster::ClusterArgs;
use crate::cluster::pods::waiting_reason;
use crate::controller::pod;
use crate::redact;

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

pub(super) async fn describe(cluster_args: &ClusterArgs, args: DescribeArgs) -> anyhow::Result<()> {
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
    let service_name = pod::service_name(&name);
    let (deployment_name, sessions_name, workspace_name, secret_name, cm_name) = (
        pod::deployment_name(&name),
        pod::sessions_pvc_name(&name),
        pod::workspace_pvc_name(&name),
        pod::auth_secret_name(&name),
        pod::context_config_map_name(&name),
    );
    let pod_params = ListParams::default().labels(&format!("{}={name}", pod::AGENT_LABEL));
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
            _ => format!("{} (default)", pod::DEFAULT_EXECUTOR_IMAGE),
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
    head.push(vec!["Port:".into(), pod::server_port(spec).to_string()]);
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
            size(&persistence.sessions, pod::DEFAULT_SESSIONS_SIZE),
            pod::SESSIONS_MOUNT_PATH,
            pod::sessions_pvc_name(&name)
        ),
    ]);
    head.push(vec![
        "  Workspace:".into(),
        if persistence.workspace.is_some() {
            format!(
                "{} (PVC {})",
                size(&persistence.workspace, pod::DEFAULT_WORKSPACE_SIZE),
                pod::workspace_pvc_name(&name)
            )
        } else {
            "not persistent (emptyDir)".to_owned()
        },
    ]);
    out.push_str(&align(&head, ""));

    // Contexts: where they come from and where they go, not their content.
    let contexts = spec.contexts.clone().unwrap_or_default();
    let mut rows = Vec::new();
    for (i, c) in contexts.iter().enumerate() {
        let (type_, source) = match c.type_ {
            ContextType::Git => (
                "Git",
                c.git.as_ref().map_or("<none>".to_owned(), |g| {
                    let mut s = redact::redact_url(&g.repository);
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
                    .map_or("<none>".to_owned(), |u| redact::redact_url(&u.source)),
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
                .unwrap_or_else(|| format!("<none> ({})", pod::CONTEXT_FILE_REL_PATH)),
        ]);
    }
    section(
        &mut out,
        "Contexts",
        &["NAME", "TYPE", "SOURCE", "MOUNT PATH"],
        rows,
    );

    let credentials = spec.credentials.clone().unwrap_or_default();
    let mut rows = Vec::new();
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
    section(
        &mut out,
        "Credentials",
        &["NAME", "SECRET", "KEY", "EXPOSED AS"],
        rows,
    );

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
    if let Some(since) = &status.idle_since {
        rows.push(vec![
            "Idle Since:".into(),
            format!("{} ({} ago)", since.0, human_age(since.0, now)),
        ]);
    }
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
    let rows = conditions
        .iter()
        .map(|c| {
            vec![
                c.type_.clone(),
                c.status.clone(),
                or_none(Some(&c.reason)),
                human_age(c.last_transition_time.0, now),
                one_line(&c.message),
            ]
        })
        .collect();
    section(
        &mut out,
        "Conditions",
        &["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"],
        rows,
    );
    // Git contexts with sync policy Rollout: the remote commit the server was rolled to.
    if let Some(synced) = status.git_sync_statuses.as_ref().filter(|s| !s.is_empty()) {
        let rows = synced
            .iter()
            .map(|s| {
                vec![
                    one_line(&s.name),
                    or_none(s.commit_hash.as_deref().map(|c| c.get(..12).unwrap_or(c))),
                    s.last_synced
                        .as_ref()
                        .map_or("<never>".into(), |t| human_age(t.0, now)),
                ]
            })
            .collect();
        section(
            &mut out,
            "Git Sync",
            &["CONTEXT", "COMMIT", "CHANGED"],
            rows,
        );
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
        pod::deployment_name(&name),
        state(&map_lookup(&d.deployment, deployment_state)),
    ]);
    rows.push(vec![
        "Service".into(),
        pod::service_name(&name),
        state(&map_lookup(&d.service, service_state)),
    ]);
    rows.push(vec![
        "PersistentVolumeClaim".into(),
        pod::sessions_pvc_name(&name),
        state(&map_lookup(&d.sessions_pvc, pvc_state)),
    ]);
    if persistence.workspace.is_some() || !matches!(d.workspace_pvc, Lookup::Missing) {
        rows.push(vec![
            "PersistentVolumeClaim".into(),
            pod::workspace_pvc_name(&name),
            state(&map_lookup(&d.workspace_pvc, pvc_state)),
        ]);
    }
    rows.push(vec![
        "Secret".into(),
        pod::auth_secret_name(&name),
        state(&map_lookup(&d.auth_secret, |()| {
            "present (server password; value not shown)".to_owned()
        })),
    ]);
    rows.push(vec![
        "ConfigMap".into(),
        pod::context_config_map_name(&name),
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

    const EVENT_HEADER: &[&str] = &["TYPE", "REASON", "AGE", "FROM", "MESSAGE"];
    match &d.events {
        Lookup::Found(events) => {
            let rows = events.iter().map(|e| event_row(e, now)).collect();
            section(&mut out, "Events", EVENT_HEADER, rows);
        }
        Lookup::Missing => section(&mut out, "Events", EVENT_HEADER, Vec::new()),
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

pub(super) fn phase_name(phase: crate::api::agent::AgentPhase) -> String {
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
    let waiting = waiting_reason(pod);
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::cli::agent::tests::{from, ready_agent};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn now() -> Timestamp {
        "2026-03-01T12:00:00Z".parse().unwrap()
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
    fn describe_shows_the_idle_clock_and_rollout_commits() {
        let mut agent = ready_agent();
        let status = agent.status.get_or_insert_with(Default::default);
        status.idle_since = Some(Time("2026-03-01T11:58:00Z".parse().unwrap()));
        status.git_sync_statuses = Some(vec![crate::api::agent::GitSyncStatus {
            name: "notes".into(),
            commit_hash: Some("0123456789abcdef0123456789abcdef01234567".into()),
            last_synced: Some(Time("2026-03-01T11:00:00Z".parse().unwrap())),
        }]);
        let text = render_describe(&ready_children(agent), now());
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("Idle Since:")
                    && l.ends_with("2026-03-01T11:58:00Z (2m ago)")),
            "{text}"
        );
        let git = text
            .split("Git Sync:\n")
            .nth(1)
            .expect("a Git Sync section");
        let row = git.lines().nth(1).unwrap_or_default();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["notes", "0123456789ab", "60m"],
            "{text}"
        );
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
}
