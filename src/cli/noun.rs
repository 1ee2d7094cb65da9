//! The kinds the command line manages (Agent, Task, CronTask) and what every noun's commands
//! share: kubectl-style errors that name the object and the next command, and the dynamic
//! access that `get`/`list` print from (so `-o yaml` shows what the apiserver stores).

use anyhow::anyhow;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject};
use kube::core::TypeMeta;
use kube::{Api, CustomResourceExt as _};
use serde_json::Value;

use super::output::{ColumnType, PrinterColumn};
use crate::api::{API_VERSION, Agent, CronTask, Task};

/// One kind as the command line names it.
pub struct Noun {
    /// The command's noun and kubectl's lower-case kind: `agent`.
    pub name: &'static str,
    /// `Agent`.
    pub kind: &'static str,
    /// The CRD's name, for its printer columns: `agents.kubeopencode.io`.
    pub crd_name: &'static str,
    /// How `-o name` and kubectl's messages spell the resource: `agent.kubeopencode.io`.
    pub resource_name: &'static str,
    resource: fn() -> ApiResource,
    crd: fn() -> CustomResourceDefinition,
    /// Columns no jsonPath can compute, placed before the CRD's last column (AGE).
    computed: &'static [ComputedColumn],
}

/// A column the command line computes, as kubectl does for built-in kinds.
pub struct ComputedColumn {
    pub name: &'static str,
    pub type_: ColumnType,
    pub json_path: &'static str,
    pub priority: i32,
}

pub const AGENT: Noun = Noun {
    name: "agent",
    kind: "Agent",
    crd_name: "agents.kubeopencode.io",
    resource_name: "agent.kubeopencode.io",
    resource: || ApiResource::erase::<Agent>(&()),
    crd: Agent::crd,
    computed: &[],
};

pub const TASK: Noun = Noun {
    name: "task",
    kind: "Task",
    crd_name: "tasks.kubeopencode.io",
    resource_name: "task.kubeopencode.io",
    resource: || ApiResource::erase::<Task>(&()),
    crd: Task::crd,
    // As kubectl's Job DURATION: from the start to completion, or to now while running.
    computed: &[ComputedColumn {
        name: "Duration",
        type_: ColumnType::Elapsed {
            until: ".status.completionTime",
        },
        json_path: ".status.startTime",
        priority: 0,
    }],
};

pub const CRONTASK: Noun = Noun {
    name: "crontask",
    kind: "CronTask",
    crd_name: "crontasks.kubeopencode.io",
    resource_name: "crontask.kubeopencode.io",
    resource: || ApiResource::erase::<CronTask>(&()),
    crd: CronTask::crd,
    computed: &[],
};

impl Noun {
    /// The message for a missing object, with the command that lists the ones that exist.
    pub fn not_found(&self, name: &str, namespace: &str) -> anyhow::Error {
        anyhow!(
            "{} {name:?} not found in namespace {namespace:?} (list them with: kubectl kubeoc {} list -n {namespace})",
            self.name,
            self.name
        )
    }

    /// Turns an apiserver error on one object into a message that says what failed on which
    /// object. A 404 that does not name the object means the resource type itself is missing.
    pub fn error(
        &self,
        err: kube::Error,
        doing: &str,
        name: &str,
        namespace: &str,
    ) -> anyhow::Error {
        if let kube::Error::Api(status) = &err
            && status.code == 404
        {
            let (kind, object) = status
                .details
                .as_ref()
                .map_or(("", ""), |d| (d.kind.as_str(), d.name.as_str()));
            if kind == "namespaces" {
                return anyhow!(
                    "{doing} {} {name:?}: namespace {namespace:?} not found (list them with: kubectl get namespaces)",
                    self.name
                );
            }
            if object == name {
                return self.not_found(name, namespace);
            }
            return self.missing_api(err);
        }
        crate::Error::kube(
            format!("{doing} {} {name:?} in namespace {namespace:?}", self.name),
            err,
        )
        .into()
    }

    /// The resource type is not served: the CRDs are not installed.
    pub fn missing_api(&self, err: kube::Error) -> anyhow::Error {
        crate::Error::kube(
            format!(
                "the {} API ({API_VERSION}) is not served by this cluster (install it with: kubectl kubeoc install)",
                self.kind
            ),
            err,
        )
        .into()
    }

    /// Objects of this kind as the apiserver stores them, in `namespace` or all.
    pub fn dynamic_api(
        &self,
        client: &kube::Client,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        let resource = (self.resource)();
        match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        }
    }

    /// The object as JSON with apiVersion and kind (list items may come without them).
    pub fn to_value(&self, mut object: DynamicObject) -> anyhow::Result<Value> {
        if object.types.as_ref().is_none_or(|t| t.kind.is_empty()) {
            object.types = Some(TypeMeta {
                api_version: API_VERSION.to_owned(),
                kind: self.kind.to_owned(),
            });
        }
        Ok(serde_json::to_value(object)?)
    }

    /// Whether the apiserver can print this noun's table: every column is the CRD's (none
    /// is computed here).
    pub fn printed_by_server(&self) -> bool {
        self.computed.is_empty()
    }

    /// Printer columns from the cluster's CRD, so the table matches `kubectl get`; the
    /// built-in CRD when the user may not read CRDs.
    pub async fn columns(&self, client: &kube::Client) -> Vec<PrinterColumn> {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let mut columns = match crds.get(self.crd_name).await {
            Ok(crd) => PrinterColumn::from_crd(&crd),
            Err(_) => PrinterColumn::from_crd(&(self.crd)()),
        };
        let at = columns.len().saturating_sub(1);
        columns.splice(
            at..at,
            self.computed
                .iter()
                .map(|c| PrinterColumn::new(c.name, c.type_, c.json_path, c.priority)),
        );
        columns
    }
}
