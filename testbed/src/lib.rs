//! The kubeoc testbed: helpers that tests use to reach the local cluster that
//! `make cluster-up` starts (control plane from Go modules, later the node agent and stub model).

pub mod agents;
pub mod http_client;
pub mod model;
pub mod node;
pub mod tmux;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

/// The repository root (the workspace that holds `testbed/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `.testbed/` in the repository: kubeconfig, logs, pid files, etcd data.
pub fn state_dir() -> PathBuf {
    repo_root().join(".testbed")
}

/// Where tests and the demo keep Git repositories that pods clone: one fixed path outside
/// the clone, so pods (uid 1000) reach them wherever the clone is and whoever owns it.
pub fn git_repos_dir() -> PathBuf {
    PathBuf::from("/var/lib/kubeoc-testbed/git")
}

/// The admin kubeconfig written by `make cluster-up`.
pub fn kubeconfig_path() -> PathBuf {
    state_dir().join("kubeconfig")
}

/// The Kubernetes version pinned in `testbed/controlplane/go.mod`.
pub fn pinned_kube_version() -> anyhow::Result<String> {
    let go_mod = repo_root().join("testbed/controlplane/go.mod");
    let text = std::fs::read_to_string(&go_mod)
        .with_context(|| format!("reading {}", go_mod.display()))?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("require k8s.io/kubernetes "))
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_string())
        .with_context(|| {
            format!(
                "no `require k8s.io/kubernetes` line in {}",
                go_mod.display()
            )
        })
}

/// A client with the testbed's admin credentials. Fails with a hint when the testbed is down.
pub async fn admin_client() -> anyhow::Result<Client> {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path).with_context(|| {
        format!(
            "no testbed kubeconfig at {} (run: make cluster-up)",
            path.display()
        )
    })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("loading the testbed kubeconfig")?;
    Client::try_from(config).context("building a client for the testbed")
}

/// OpenCode's `auth_token` query value for HTTP Basic credentials `opencode:<password>`,
/// URL-encoded: the only way to authenticate through the apiserver service proxy, which strips
/// the `Authorization` header.
pub fn opencode_auth_token(password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("opencode:{password}"));
    encoded
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// A GET through the apiserver's service proxy: `(status, body)`. Bounded by a 10 s deadline:
/// OpenCode can leave a request that arrives while it starts up unanswered forever.
pub async fn service_proxy_get(
    client: &Client,
    namespace: &str,
    service_port: &str,
    path_and_query: &str,
) -> anyhow::Result<(u16, String)> {
    service_proxy_get_with(client, namespace, service_port, path_and_query, &[]).await
}

/// [`service_proxy_get`] with extra request headers (the apiserver forwards all but
/// `Authorization` and its own impersonation headers).
pub async fn service_proxy_get_with(
    client: &Client,
    namespace: &str,
    service_port: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, String)> {
    let uri =
        format!("/api/v1/namespaces/{namespace}/services/{service_port}/proxy{path_and_query}");
    let mut builder = ::http::Request::get(&uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Vec::new())?;
    let exchange = async {
        let response = client.send(request.map(kube::client::Body::from)).await?;
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await?
            .to_bytes();
        Ok::<_, anyhow::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .with_context(|| format!("GET {uri}: no answer within 10s"))?
}

/// Polls `check` until it returns `Ok(Some(value))` or `timeout` passes. On timeout the error
/// says what was awaited and the last thing seen (`Ok(None)` or an error), never a bare "timeout".
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last_seen = match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "condition not met".to_string(),
            Err(err) => format!("{err:#}"),
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {last_seen}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A namespace of its own for one test, labelled so leftovers are easy to find. A test that
/// fails before [`TestNamespace::delete`] still has it deleted on drop, so its pods (an
/// OpenCode server holds ~300-600 MB) do not pile up over a test run; set
/// `KUBEOC_KEEP_FAILED_NAMESPACES=1` to keep them for debugging.
pub struct TestNamespace {
    pub name: String,
    client: Client,
    deleted: bool,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        if std::env::var_os("KUBEOC_KEEP_FAILED_NAMESPACES").is_some() {
            eprintln!(
                "keeping test namespace {} (KUBEOC_KEEP_FAILED_NAMESPACES)",
                self.name
            );
            return;
        }
        eprintln!(
            "deleting test namespace {} left by a failed test (KUBEOC_KEEP_FAILED_NAMESPACES=1 keeps it)",
            self.name
        );
        // Drop cannot await; kubectl returns once the deletion is accepted.
        let _ = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

impl TestNamespace {
    /// Creates `<prefix>-<random suffix>`.
    pub async fn create(client: &Client, prefix: &str) -> anyhow::Result<Self> {
        let api: Api<Namespace> = Api::all(client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{prefix}-")),
                labels: Some([("kubeoc.dev/test".to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let created = api
            .create(&PostParams::default(), &ns)
            .await
            .with_context(|| format!("creating a test namespace {prefix}-*"))?;
        let name = created
            .metadata
            .name
            .context("created namespace has no name")?;
        Ok(Self {
            name,
            client: client.clone(),
            deleted: false,
        })
    }

    /// Deletes the namespace (the namespace controller removes what is in it).
    pub async fn delete(mut self) -> anyhow::Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.delete(&self.name, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting test namespace {}", self.name))?;
        self.deleted = true;
        Ok(())
    }
}
