//! Connecting to the cluster the way kubectl does (kubeconfig flags, context, namespace), and
//! installing kubeoc into it.

pub mod controller_install;
pub mod install;
pub mod pods;

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{Error, Result};

/// Field manager of everything the CLI writes, `install` and the `agent` commands alike: one
/// manager, so an object one command wrote and another applies again keeps a single owner.
pub const FIELD_MANAGER: &str = "kubeoc";

/// kubectl's connection flags, shared by every command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file to use (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The name of the kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// The namespace scope for this request (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// List or watch the requested objects across all namespaces.
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,

    /// How long to wait for a single server request before giving up, e.g. 30s or 1m; 0
    /// waits forever.
    #[arg(long, global = true, value_name = "DURATION", default_value = "0",
          value_parser = parse_request_timeout)]
    pub request_timeout: Duration,
}

fn parse_request_timeout(value: &str) -> Result<Duration, String> {
    crate::duration::parse(value)
}

/// A connected client and the namespace commands act in.
#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    /// `-n`, else the kubeconfig context's namespace, else `default`.
    pub namespace: String,
    pub all_namespaces: bool,
    /// Connected with the pod's ServiceAccount (no kubeconfig): the process runs in the
    /// cluster, where Services resolve and answer.
    pub in_cluster: bool,
}

impl ClusterArgs {
    /// Builds the client configuration: kubeconfig (flag, `$KUBECONFIG`, `~/.kube/config`),
    /// or the in-cluster service account when no kubeconfig exists.
    pub async fn config(&self) -> Result<kube::Config> {
        Ok(self.config_and_source().await?.0)
    }

    /// [`ClusterArgs::config`], and whether it is the in-cluster ServiceAccount's.
    async fn config_and_source(&self) -> Result<(kube::Config, bool)> {
        let mut in_cluster = false;
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        let mut config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                    Error::Config(format!(
                        "cannot read kubeconfig {}: {e} (check the --kubeconfig path)",
                        path.display()
                    ))
                })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| kubeconfig_error(&self.context, e))?
            }
            None => match Kubeconfig::read() {
                Ok(kubeconfig) => kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| kubeconfig_error(&self.context, e))?,
                Err(read_err) => {
                    in_cluster = true;
                    kube::Config::incluster().map_err(|_| {
                        Error::Config(format!(
                            "no kubeconfig found ({read_err}) and not running in a cluster; \
                             pass --kubeconfig or set KUBECONFIG"
                        ))
                    })?
                }
            },
        };
        config.read_timeout = (!self.request_timeout.is_zero()).then_some(self.request_timeout);
        if let Some(ns) = &self.namespace {
            config.default_namespace = ns.clone();
        }
        Ok((config, in_cluster))
    }

    /// Connects with [`ClusterArgs::config`], as `kubectl-kubeoc/<version>`.
    pub async fn connect(&self) -> Result<Cluster> {
        self.connect_as("kubectl-kubeoc").await
    }

    /// Connects with a User-Agent of its own (`<agent>/<version>`), so the apiserver's audit
    /// log tells the CLI and the controller apart.
    pub async fn connect_as(&self, agent: &str) -> Result<Cluster> {
        let (mut config, in_cluster) = self.config_and_source().await?;
        let user_agent = format!("{agent}/v{}", env!("CARGO_PKG_VERSION"));
        let value = http::HeaderValue::from_str(&user_agent)
            .map_err(|e| Error::InvalidArgument(format!("user agent {user_agent:?}: {e}")))?;
        config.headers.push((http::header::USER_AGENT, value));
        let namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config)
            .map_err(|e| Error::kube("cannot create a Kubernetes client", e))?;
        Ok(Cluster {
            client,
            namespace,
            all_namespaces: self.all_namespaces,
            in_cluster,
        })
    }
}

fn kubeconfig_error(context: &Option<String>, err: kube::config::KubeconfigError) -> Error {
    match context {
        Some(name) => Error::Config(format!(
            "cannot use kubeconfig context {name:?}: {err} (list contexts with: kubectl config get-contexts)"
        )),
        None => Error::Config(format!("cannot load the current kubeconfig context: {err}")),
    }
}
