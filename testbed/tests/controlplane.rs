//! The testbed's control plane is a real Kubernetes: these tests talk to it through kube-rs
//! with the admin kubeconfig that `make cluster-up` writes.

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use kubeoc_testbed::{
    TestNamespace, admin_client, kubeconfig_path, pinned_kube_version, wait_until,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

#[tokio::test]
async fn server_version_is_the_one_built_from_go_modules() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let info = client.apiserver_version().await?;
    assert_eq!(info.git_version, pinned_kube_version()?);
    assert_eq!(info.major, "1");
    Ok(())
}

#[tokio::test]
async fn configmap_create_get_list_watch_delete() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "cp-configmap").await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);

    let start = api.list(&ListParams::default()).await?;
    let rv = start
        .metadata
        .resource_version
        .context("list has no resourceVersion")?;
    let mut events = api.watch(&WatchParams::default(), &rv).await?.boxed();

    let cm = ConfigMap {
        metadata: meta("greeting"),
        data: Some([("hello".to_string(), "world".to_string())].into()),
        ..ConfigMap::default()
    };
    api.create(&PostParams::default(), &cm).await?;
    let got = api.get("greeting").await?;
    assert_eq!(
        got.data
            .as_ref()
            .and_then(|d| d.get("hello"))
            .map(String::as_str),
        Some("world")
    );
    let names: Vec<_> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert!(
        names.contains(&"greeting".to_string()),
        "list returned {names:?}"
    );
    api.delete("greeting", &DeleteParams::default()).await?;

    let mut seen = Vec::new();
    let watched = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.try_next().await? {
            match event {
                WatchEvent::Added(c) if c.metadata.name.as_deref() == Some("greeting") => {
                    seen.push("added")
                }
                WatchEvent::Deleted(c) if c.metadata.name.as_deref() == Some("greeting") => {
                    seen.push("deleted");
                    return Ok::<_, anyhow::Error>(());
                }
                _ => {}
            }
        }
        bail!("watch ended early")
    })
    .await;
    assert!(watched.is_ok(), "watch saw only {seen:?} within {WAIT:?}");
    assert_eq!(seen, ["added", "deleted"]);
    assert!(api.get_opt("greeting").await?.is_none());
    ns.delete().await
}

#[tokio::test]
async fn deployment_gets_a_replicaset_and_pods() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "cp-deploy").await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "sleeper"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "sleeper"}},
            "template": {
                "metadata": {"labels": {"app": "sleeper"}},
                "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}
            }
        }
    }))?;
    let created = deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let deploy_uid = created.metadata.uid.context("deployment has no uid")?;

    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
    let rs_uid = wait_until("a ReplicaSet owned by the Deployment", WAIT, || async {
        let list = replica_sets.list(&ListParams::default()).await?;
        Ok(list.items.into_iter().find_map(|rs| {
            let owned = rs
                .metadata
                .owner_references
                .as_ref()?
                .iter()
                .any(|o| o.uid == deploy_uid && o.controller == Some(true));
            owned.then_some(rs.metadata.uid?)
        }))
    })
    .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let owned_pods = wait_until("2 Pods owned by the ReplicaSet", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("app=sleeper"))
            .await?;
        let owned: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == rs_uid && o.kind == "ReplicaSet")
            })
            .collect();
        Ok((owned.len() == 2).then_some(owned))
    })
    .await?;
    for pod in &owned_pods {
        let spec = pod.spec.as_ref().context("pod has no spec")?;
        assert_eq!(
            spec.containers[0].command.as_deref(),
            Some(&["sleep".to_string(), "3600".to_string()][..])
        );
    }
    ns.delete().await
}

#[tokio::test]
async fn default_service_account_appears_in_a_new_namespace() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "cp-sa").await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    wait_until("ServiceAccount default", WAIT, || async {
        Ok(accounts.get_opt("default").await?)
    })
    .await?;
    ns.delete().await
}

/// A client that authenticates with a bearer token instead of the admin certificate.
async fn client_with_token(token: &str) -> anyhow::Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig_path())?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_string().into()),
        ..kube::config::AuthInfo::default()
    };
    Ok(Client::try_from(config)?)
}

#[tokio::test]
async fn rbac_is_enforced_for_service_account_tokens() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "cp-rbac").await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    accounts
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: meta("reader"),
                ..Default::default()
            },
        )
        .await?;
    let request = TokenRequest {
        spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request("reader", &PostParams::default(), &request)
        .await?
        .status
        .context("TokenRequest has no status")?
        .token;
    let as_reader: Api<Secret> = Api::namespaced(client_with_token(&token).await?, &ns.name);

    match as_reader.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "expected Forbidden, got {status:?}")
        }
        other => bail!("listing Secrets without a RoleBinding must be forbidden, got {other:?}"),
    }

    // The same token works once RBAC grants it, so the 403 above came from authorization.
    let roles: Api<Role> = Api::namespaced(client.clone(), &ns.name);
    roles
        .create(
            &PostParams::default(),
            &Role {
                metadata: meta("secret-reader"),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["secrets".into()]),
                    verbs: vec!["list".into()],
                    ..Default::default()
                }]),
            },
        )
        .await?;
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns.name);
    bindings
        .create(
            &PostParams::default(),
            &RoleBinding {
                metadata: meta("reader-reads-secrets"),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into(),
                    name: "secret-reader".into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: "reader".into(),
                    namespace: Some(ns.name.clone()),
                    ..Default::default()
                }]),
            },
        )
        .await?;
    wait_until("the RoleBinding to take effect", WAIT, || async {
        Ok(as_reader.list(&ListParams::default()).await.ok())
    })
    .await?;
    ns.delete().await
}

#[tokio::test]
async fn a_test_namespace_left_by_a_failed_test_is_deleted_on_drop() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let ns = TestNamespace::create(&client, "dropped").await?;
    let name = ns.name.clone();
    // What a test that returns early with an error does.
    drop(ns);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let phase = namespaces
        .get_opt(&name)
        .await?
        .and_then(|n| n.status)
        .and_then(|s| s.phase);
    assert!(
        phase.as_deref().is_none_or(|p| p == "Terminating"),
        "namespace {name} still {phase:?} after drop"
    );
    Ok(())
}
