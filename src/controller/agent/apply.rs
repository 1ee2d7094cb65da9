//! Server-side apply of the Agent's children, skipped when the cached object already carries
//! the digest of exactly what we would apply.
//!
//! The digest decides, not a comparison with the live object: a field removed from the Agent
//! (a toleration, an env var, a label) is gone from what we apply, so the digest changes, the
//! apply runs, and server-side apply drops the fields our manager no longer sets. Values the
//! apiserver normalises (`1000m` stored as `1`, `1.5Gi` as `1536Mi`) cannot make an unchanged
//! Agent look different either: what we compare is our own rendering.

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{Lookup, Store};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::controller::cached::FromApplied;
use crate::controller::{Context, FIELD_MANAGER, stores};

/// Per Agent, the [inputs version](super::inputs_version) of the last pass that applied every
/// child without a refusal: a pass that finds the same version has nothing to build.
#[derive(Debug, Default)]
pub struct AppliedInputs(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl AppliedInputs {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u64>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn get(&self, ns: &str, agent: &str) -> Option<u64> {
        self.map().get(&format!("{ns}/{agent}")).copied()
    }

    pub(super) fn set(&self, ns: &str, agent: &str, version: u64) {
        self.map().insert(format!("{ns}/{agent}"), version);
    }

    pub(super) fn forget(&self, ns: &str, agent: &str) {
        self.map().remove(&format!("{ns}/{agent}"));
    }
}

/// Annotation holding the digest of the object as kubeoc last applied it.
pub const APPLIED_DIGEST_ANNOTATION: &str = "kubeopencode.io/applied-digest";

/// The first 16 bytes of SHA-256, as hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `object` with the digest annotation of its own rendering.
pub(super) fn with_digest<K: Resource + Serialize>(mut object: K) -> (K, String) {
    let rendered = serde_json::to_vec(&object).unwrap_or_default();
    let digest = sha256_hex(&rendered);
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(APPLIED_DIGEST_ANNOTATION.to_string(), digest.clone());
    (object, digest)
}

/// Whether `live` carries `digest` (so applying again would change nothing of ours).
pub(super) fn up_to_date<K: Resource>(live: &K, digest: &str) -> bool {
    live.meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_DIGEST_ANNOTATION))
        .is_some_and(|d| d == digest)
}

/// Applies `object` (force: these fields are ours) unless the cache shows it applied already;
/// returns the object as the cluster has it, in its cached form `C`.
pub(super) async fn apply<K, C>(
    ctx: &Context,
    store: &Store<C>,
    ns: &str,
    object: &K,
) -> Result<Arc<C>, kube::Error>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
    C: Resource + Lookup + FromApplied<K> + Clone + 'static,
    <C as Lookup>::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let (desired, digest) = with_digest(object.clone());
    if let Some(live) = stores::get(store, ns, &name)
        && up_to_date(live.as_ref(), &digest)
    {
        return Ok(live);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await?;
    Ok(Arc::new(C::from_applied(applied)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn config_map(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_digest_follows_what_we_apply_and_only_that() {
        let (applied, digest) = with_digest(config_map(&[("a", "1"), ("b", "2")]));
        assert!(up_to_date(&applied, &digest));
        // The same rendering again: nothing to do, whatever else the live object has.
        let (_, again) = with_digest(config_map(&[("a", "1"), ("b", "2")]));
        assert_eq!(digest, again);
        let mut live = applied.clone();
        live.metadata.resource_version = Some("42".into());
        live.data
            .get_or_insert_with(Default::default)
            .insert("added-by-someone".into(), "x".into());
        assert!(up_to_date(&live, &digest));
        // A removed key changes the digest, so the apply runs and drops it.
        let (_, without_b) = with_digest(config_map(&[("a", "1")]));
        assert_ne!(digest, without_b);
        assert!(!up_to_date(&live, &without_b));
        assert_eq!(digest.len(), 32);
    }
}
