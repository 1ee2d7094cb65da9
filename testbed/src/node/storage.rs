//! A built-in provisioner: the default StorageClass `testbed-hostpath` and host-directory
//! PersistentVolumes under `.testbed/volumes/`, pre-bound to their claims (the controller
//! manager completes the binding). Data stays across pod restarts; released volumes are
//! deleted with their directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

pub const STORAGE_CLASS: &str = "testbed-hostpath";
const PROVISIONER: &str = "kubeoc.dev/testbed-hostpath";

/// Creates the default StorageClass.
pub async fn ensure_storage_class(client: &kube::Client) -> anyhow::Result<()> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"
    });
    classes
        .patch(
            STORAGE_CLASS,
            &PatchParams::apply("kubeoc-testbed-node").force(),
            &Patch::Apply(&class),
        )
        .await
        .context("creating StorageClass testbed-hostpath")?;
    Ok(())
}

fn volume_dir(root: &std::path::Path, pv_name: &str) -> PathBuf {
    root.join(pv_name)
}

async fn provision(
    client: &kube::Client,
    root: &std::path::Path,
    pvc: &PersistentVolumeClaim,
) -> anyhow::Result<()> {
    let spec = pvc.spec.clone().unwrap_or_default();
    if spec.volume_name.is_some() || spec.storage_class_name.as_deref() != Some(STORAGE_CLASS) {
        return Ok(());
    }
    let (Some(ns), Some(uid)) = (pvc.namespace(), pvc.uid()) else {
        return Ok(());
    };
    let pv_name = format!("pvc-{uid}");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    if pvs.get_opt(&pv_name).await?.is_some() {
        return Ok(());
    }
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "1Gi".into());
    let dir = volume_dir(root, &pv_name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "hostPath": {"path": dir.to_string_lossy(), "type": "Directory"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns,
                         "name": pvc.name_any(), "uid": uid}
        }
    }))?;
    pvs.create(&PostParams::default(), &pv)
        .await
        .with_context(|| format!("creating PersistentVolume {pv_name}"))?;
    tracing::info!(claim = %format!("{ns}/{}", pvc.name_any()), volume = %pv_name, "provisioned");
    Ok(())
}

async fn reclaim(
    client: &kube::Client,
    root: &std::path::Path,
    pv: &PersistentVolume,
) -> anyhow::Result<()> {
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let ours = pv
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        == Some(STORAGE_CLASS);
    if !(released && ours) {
        return Ok(());
    }
    let name = pv.name_any();
    let dir = volume_dir(root, &name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Api::<PersistentVolume>::all(client.clone())
        .delete(&name, &DeleteParams::default())
        .await?;
    tracing::info!(volume = %name, "deleted released volume");
    Ok(())
}

/// Provisions claims of the testbed class and deletes released volumes, forever.
pub async fn run(client: kube::Client, root: PathBuf) {
    let root = Arc::new(root);
    let claims = {
        let (client, root) = (client.clone(), root.clone());
        async move {
            let api: Api<PersistentVolumeClaim> = Api::all(client.clone());
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(pvc) | watcher::Event::InitApply(pvc)) => {
                        if let Err(err) = provision(&client, &root, &pvc).await {
                            tracing::warn!("{err:#}");
                        }
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!("watching PersistentVolumeClaims: {err}"),
                }
            }
        }
    };
    let volumes = async move {
        let api: Api<PersistentVolume> = Api::all(client.clone());
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(pv) | watcher::Event::InitApply(pv)) => {
                    if let Err(err) = reclaim(&client, &root, &pv).await {
                        tracing::warn!("{err:#}");
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!("watching PersistentVolumes: {err}"),
            }
        }
    };
    tokio::join!(claims, volumes);
}
