//! The watch caches every reconcile reads from: one reflector per kind, shared between the
//! reconciler's triggers and its reads, so a steady cluster costs the watches and nothing
//! more (no GET or LIST per reconcile); the changes reach the triggers as the cached objects
//! (see [`super::subscription`]). Child kinds are watched by the children's labels only:
//! a cluster's other Secrets and ConfigMaps never sit in memory.
//!
//! The caches hold slim copies: no managedFields (an Agent keeps only who owns spec.suspend),
//! no `kubectl apply` annotation (a copy of the whole object), and of a child only what a
//! reconcile reads (children are compared by their applied digest, never field by field;
//! see [`super::cached`] for the forms they are decoded into).
//! With the reconcile cap beside them, they took the controller's peak at 1,000 Agents from
//! 286 to 99 MiB in `make bench`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::agent::{APPLIED_DIGEST_ANNOTATION, keep_suspend_ownership};
use super::cached::{ChildMeta, ServerDeployment, ServerPod};
use super::pod::{AGENT_LABEL, CHILD_SELECTOR, TASK_CHILD_SELECTOR};
use super::subscription::{self, Subscription};
use crate::api::config::CONFIG_NAME;
use crate::api::{Agent, AgentTemplate, CronTask, KubeOpenCodeConfig, Task};

/// How many changes a subscriber may lag behind before the watch waits for it.
const BUFFER: usize = 1024;

/// Read handles of the caches.
#[derive(Clone)]
pub struct Stores {
    pub agents: Store<Agent>,
    pub templates: Store<AgentTemplate>,
    /// `None` when this controller may not read the cluster's KubeOpenCodeConfig.
    pub configs: Option<Store<KubeOpenCodeConfig>>,
    pub deployments: Store<ServerDeployment>,
    pub services: Store<ChildMeta<Service>>,
    pub claims: Store<ChildMeta<PersistentVolumeClaim>>,
    pub secrets: Store<Secret>,
    pub config_maps: Store<ChildMeta<ConfigMap>>,
    /// Server pods.
    pub pods: Store<ServerPod>,
    /// Pods of Tasks (label `kubeopencode.io/task`).
    pub task_pods: Store<Pod>,
    /// Secrets of templateRef Tasks (label `kubeopencode.io/task`): their servers' passwords.
    pub task_secrets: Store<Secret>,
    pub tasks: Store<Task>,
    pub cron_tasks: Store<CronTask>,
    synced: Arc<AtomicBool>,
}

/// Change streams of the caches, for the controller's triggers.
pub struct Subscriptions {
    pub agents: Subscription<Agent>,
    pub templates: Subscription<AgentTemplate>,
    pub configs: Option<Subscription<KubeOpenCodeConfig>>,
    pub deployments: Subscription<ServerDeployment>,
    pub services: Subscription<ChildMeta<Service>>,
    pub claims: Subscription<ChildMeta<PersistentVolumeClaim>>,
    pub secrets: Subscription<Secret>,
    pub config_maps: Subscription<ChildMeta<ConfigMap>>,
    pub pods: Subscription<ServerPod>,
    pub task_pods: Subscription<Pod>,
    pub tasks: Subscription<Task>,
    pub cron_tasks: Subscription<CronTask>,
}

/// The running watches; they stop when this is dropped.
pub struct Watches {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn namespaced<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The annotation `kubectl apply` keeps a whole copy of the object in.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What no reconcile reads of any object: its managedFields and `kubectl apply`'s copy.
fn slim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
    drop_last_applied(object);
}

fn drop_last_applied<K: Resource>(object: &mut K) {
    if let Some(annotations) = &mut object.meta_mut().annotations {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// An Agent keeps who owns spec.suspend: standby tells its own suspend from a person's by it.
fn slim_agent(agent: &mut Agent) {
    keep_suspend_ownership(agent);
    drop_last_applied(agent);
}

/// A child's metadata as reconciles read it: no labels (the watch selects by them, the
/// triggers follow owner references) and, of the annotations, only the digest of what was
/// applied. Each map costs a B-tree node of over 500 bytes however few entries it has.
fn slim_child_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.labels = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.retain(|key, _| key == APPLIED_DIGEST_ANNOTATION);
    }
}

/// A Deployment as the Agent's status reads it: the decoding kept only its wanted replicas
/// and its status ([`ServerDeployment`]).
fn slim_deployment(deployment: &mut ServerDeployment) {
    slim_child_meta(&mut deployment.metadata);
}

/// A Service, PersistentVolumeClaim or ConfigMap: the reconcile reads only its metadata (the
/// applied digest and resourceVersion), which is all its watch brings.
fn slim_child<K>(child: &mut ChildMeta<K>) {
    slim_child_meta(&mut child.metadata);
    child.types = None;
}

/// The server's password Secret keeps its data: health checks and Tasks read it.
fn slim_secret(secret: &mut Secret) {
    slim_child_meta(&mut secret.metadata);
}

/// A server pod with only the label naming its Agent; the decoding kept only its metadata
/// and status ([`ServerPod`]).
fn slim_server_pod(pod: &mut ServerPod) {
    let agent = pod
        .metadata
        .labels
        .as_mut()
        .and_then(|labels| labels.remove_entry(AGENT_LABEL));
    slim_child_meta(&mut pod.metadata);
    pod.metadata.labels = agent.map(|entry| BTreeMap::from([entry]));
}

/// A watch keeps going after an error (with backoff); the error is only logged.
fn ok_or_log<T>(event: Result<T, watcher::Error>) -> std::future::Ready<Option<T>> {
    std::future::ready(event.inspect_err(|err| tracing::warn!("watch: {err}")).ok())
}

/// Starts one watch feeding a store, every object passed through `slim` first; returns the
/// store and a subscription to its changes.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    slim: fn(&mut K),
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> (Store<K>, Subscription<K>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let writer = Writer::default();
    let store = writer.as_reader();
    let (publisher, subscription) = subscription::channel(BUFFER);
    let events = watcher(api, config)
        .default_backoff()
        .modify(slim)
        .filter_map(ok_or_log);
    tasks.push(tokio::spawn(publisher.run(events, writer)));
    (store, subscription)
}

/// Starts one watch feeding a store nothing subscribes to (a subscription never read would
/// fill its buffer and stall the watch).
fn cache<K>(
    api: Api<K>,
    config: watcher::Config,
    slim: fn(&mut K),
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .filter_map(ok_or_log)
        .for_each(|_| std::future::ready(()));
    tasks.push(tokio::spawn(stream));
    store
}

/// Starts every watch (in `namespace`, or cluster-wide); the cluster's KubeOpenCodeConfig
/// only with `watch_config`.
pub fn start(
    client: &Client,
    namespace: Option<&str>,
    watch_config: bool,
) -> (Stores, Subscriptions, Watches) {
    let mut tasks = Vec::new();
    let children = || watcher::Config::default().labels(CHILD_SELECTOR);
    let (agents, agents_sub) = watch(
        namespaced::<Agent>(client, namespace),
        watcher::Config::default(),
        slim_agent,
        &mut tasks,
    );
    let (templates, templates_sub) = watch(
        namespaced::<AgentTemplate>(client, namespace),
        watcher::Config::default(),
        slim,
        &mut tasks,
    );
    let (configs, configs_sub) = if watch_config {
        let (store, subscription) = watch(
            Api::<KubeOpenCodeConfig>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={CONFIG_NAME}")),
            slim,
            &mut tasks,
        );
        (Some(store), Some(subscription))
    } else {
        (None, None)
    };
    let (deployments, deployments_sub) = watch(
        namespaced(client, namespace),
        children(),
        slim_deployment,
        &mut tasks,
    );
    let (services, services_sub) = watch(
        namespaced(client, namespace),
        children(),
        slim_child,
        &mut tasks,
    );
    let (claims, claims_sub) = watch(
        namespaced(client, namespace),
        children(),
        slim_child,
        &mut tasks,
    );
    let (secrets, secrets_sub) = watch(
        namespaced(client, namespace),
        children(),
        slim_secret,
        &mut tasks,
    );
    let (config_maps, config_maps_sub) = watch(
        namespaced(client, namespace),
        children(),
        slim_child,
        &mut tasks,
    );
    // Server pods carry the children's labels too (the pod template has them).
    let (pods, pods_sub) = watch(
        namespaced(client, namespace),
        children(),
        slim_server_pod,
        &mut tasks,
    );
    let (task_pods, task_pods_sub) = watch(
        namespaced(client, namespace),
        watcher::Config::default().labels(TASK_CHILD_SELECTOR),
        slim,
        &mut tasks,
    );
    // The passwords of templateRef Tasks' servers, read at every look at a running turn.
    let task_secrets = cache(
        namespaced(client, namespace),
        watcher::Config::default().labels(TASK_CHILD_SELECTOR),
        slim,
        &mut tasks,
    );
    let (tasks_store, tasks_sub) = watch(
        namespaced::<Task>(client, namespace),
        watcher::Config::default(),
        slim,
        &mut tasks,
    );
    let (cron_tasks, cron_tasks_sub) = watch(
        namespaced::<CronTask>(client, namespace),
        watcher::Config::default(),
        slim,
        &mut tasks,
    );
    let stores = Stores {
        agents,
        templates,
        configs,
        deployments,
        services,
        claims,
        secrets,
        config_maps,
        pods,
        task_pods,
        task_secrets,
        tasks: tasks_store,
        cron_tasks,
        synced: Arc::default(),
    };
    let subscriptions = Subscriptions {
        agents: agents_sub,
        templates: templates_sub,
        configs: configs_sub,
        deployments: deployments_sub,
        services: services_sub,
        claims: claims_sub,
        secrets: secrets_sub,
        config_maps: config_maps_sub,
        pods: pods_sub,
        task_pods: task_pods_sub,
        tasks: tasks_sub,
        cron_tasks: cron_tasks_sub,
    };
    (stores, subscriptions, Watches { tasks })
}

/// Waits until `store` has its first full list. Polled on a timer: a store's readiness wakes
/// only its latest poller, and the controller polls the Agents' store itself.
async fn ready<K>(store: &Store<K>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            Ok(Ok(())) => return true,
            Ok(Err(_)) => return false,
            Err(_) => continue,
        }
    }
}

impl Stores {
    /// Whether every cache has its first full list (reconciles wait for it, so they never
    /// take a child that is merely not listed yet for a missing one).
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Resolves once every cache is synced (false when a watch ended first).
    pub async fn wait_synced(&self) -> bool {
        let all = ready(&self.agents).await
            && ready(&self.templates).await
            && match &self.configs {
                Some(configs) => ready(configs).await,
                None => true,
            }
            && ready(&self.deployments).await
            && ready(&self.services).await
            && ready(&self.claims).await
            && ready(&self.secrets).await
            && ready(&self.config_maps).await
            && ready(&self.pods).await
            && ready(&self.task_pods).await
            && ready(&self.task_secrets).await
            && ready(&self.tasks).await
            && ready(&self.cron_tasks).await;
        if all {
            self.synced.store(true, Ordering::Release);
        }
        all
    }
}

/// The cached object `name` in `namespace`.
pub fn get<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            name: Some("a-server".into()),
            labels: Some(BTreeMap::from([
                (AGENT_LABEL.to_string(), "a".to_string()),
                ("app.kubernetes.io/name".to_string(), "opencode".to_string()),
            ])),
            annotations: Some(BTreeMap::from([
                (APPLIED_DIGEST_ANNOTATION.to_string(), "d1".to_string()),
                (
                    "deployment.kubernetes.io/revision".to_string(),
                    "3".to_string(),
                ),
            ])),
            managed_fields: Some(vec![Default::default()]),
            ..Default::default()
        }
    }

    #[test]
    fn a_cached_child_keeps_its_digest_and_a_server_pod_its_agent() {
        let mut deployment = ServerDeployment {
            metadata: meta(),
            ..Default::default()
        };
        slim_deployment(&mut deployment);
        assert_eq!(deployment.metadata.labels, None);
        assert_eq!(deployment.metadata.managed_fields, None);
        assert_eq!(
            deployment.metadata.annotations,
            Some(BTreeMap::from([(
                APPLIED_DIGEST_ANNOTATION.to_string(),
                "d1".to_string()
            )]))
        );

        let mut pod = ServerPod {
            metadata: meta(),
            ..Default::default()
        };
        slim_server_pod(&mut pod);
        assert_eq!(
            pod.metadata.labels,
            Some(BTreeMap::from([(AGENT_LABEL.to_string(), "a".to_string())]))
        );
    }
}
