//! The forms in which the watch caches hold an Agent's children: only what a reconcile reads.
//!
//! A k8s-openapi object takes its full inline size whatever it holds (a `Deployment` 2,424
//! bytes, with the pod template's spec inside; a `Pod` 2,248), so emptying fields saves
//! little. These types keep what the status reads and nothing else, and serde skips the rest
//! of the JSON while decoding it. Services, PersistentVolumeClaims and ConfigMaps are compared
//! by their applied digest only, so they are watched as metadata
//! ([`ChildMeta`]): the apiserver sends nothing else.

use std::borrow::Cow;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::PartialObjectMeta;
use serde::Deserialize;

/// A child whose cache holds its metadata only (the applied digest, the resourceVersion,
/// owner references).
pub type ChildMeta<K> = PartialObjectMeta<K>;

/// An Agent's server Deployment as its status reads it: the wanted replicas and the status.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServerDeployment {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<WantedReplicas>,
    pub status: Option<DeploymentStatus>,
}

/// The replicas a Deployment's spec asks for.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WantedReplicas {
    pub replicas: Option<i32>,
}

/// A server pod as its Agent's status reads it: metadata (the label naming its Agent) and
/// the status. The few reconciles that need a pod's volumes read the pod from the API.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServerPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub status: Option<PodStatus>,
}

/// Implements [`Resource`] for a cached form by the full kind's own API coordinates, so its
/// watch and its cache keys are the full kind's.
macro_rules! cached_form_of {
    ($cached:ty, $full:ty) => {
        impl Resource for $cached {
            type DynamicType = ();
            type Scope = <$full as Resource>::Scope;

            fn kind(_: &()) -> Cow<'_, str> {
                <$full as Resource>::kind(&())
            }

            fn group(_: &()) -> Cow<'_, str> {
                <$full as Resource>::group(&())
            }

            fn version(_: &()) -> Cow<'_, str> {
                <$full as Resource>::version(&())
            }

            fn plural(_: &()) -> Cow<'_, str> {
                <$full as Resource>::plural(&())
            }

            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

cached_form_of!(ServerDeployment, Deployment);
cached_form_of!(ServerPod, Pod);

/// The cached form of an object the API just returned (from an apply), so a reconcile
/// reads one type whether its child came from the cache or from its own write.
pub trait FromApplied<K> {
    fn from_applied(applied: K) -> Self;
}

impl<K: Resource> FromApplied<K> for ChildMeta<K> {
    fn from_applied(applied: K) -> Self {
        let mut metadata = applied.meta().clone();
        metadata.managed_fields = None;
        PartialObjectMeta {
            types: None,
            metadata,
            _phantom: std::marker::PhantomData,
        }
    }
}

impl FromApplied<Deployment> for ServerDeployment {
    fn from_applied(applied: Deployment) -> Self {
        ServerDeployment {
            metadata: applied.metadata,
            spec: applied.spec.map(|spec| WantedReplicas {
                replicas: spec.replicas,
            }),
            status: applied.status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    #[test]
    fn a_deployment_decodes_to_its_replicas_and_status_only() {
        let deployment: ServerDeployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "team-agent-server", "namespace": "team", "generation": 3},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"spec": {"containers": [{"name": "server", "image": "x"}]}}},
            "status": {"observedGeneration": 3, "availableReplicas": 1},
        }))
        .expect("a Deployment decodes");
        assert_eq!(deployment.spec.and_then(|s| s.replicas), Some(0));
        assert_eq!(
            deployment.status.and_then(|s| s.available_replicas),
            Some(1)
        );
        assert_eq!(deployment.metadata.generation, Some(3));
    }

    #[test]
    fn cached_forms_keep_the_full_kinds_api_coordinates() {
        assert_eq!(
            ServerDeployment::url_path(&(), Some("team")),
            Deployment::url_path(&(), Some("team"))
        );
        assert_eq!(
            ServerPod::url_path(&(), Some("team")),
            Pod::url_path(&(), Some("team"))
        );
        assert_eq!(ServerPod::kind(&()), "Pod");
        assert_eq!(ServerDeployment::api_version(&()), "apps/v1");
    }

    #[test]
    fn an_applied_object_keeps_its_metadata_without_managed_fields() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "team-agent", "resourceVersion": "7",
                         "annotations": {"kubeopencode.io/applied-digest": "abc"},
                         "managedFields": [{"manager": "kubeoc-controller"}]},
            "spec": {"ports": [{"port": 4096}]},
        }))
        .expect("a Service decodes");
        let cached = ChildMeta::<Service>::from_applied(service);
        assert_eq!(cached.metadata.resource_version.as_deref(), Some("7"));
        assert!(cached.metadata.managed_fields.is_none());
        assert_eq!(
            cached
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubeopencode.io/applied-digest"))
                .map(String::as_str),
            Some("abc")
        );
    }
}
