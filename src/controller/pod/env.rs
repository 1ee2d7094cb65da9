//! Environment variables: the CA bundle and the proxy, which reach every container, and the
//! EnvVar helpers.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, EnvVarSource, KeyToPath, SecretKeySelector, SecretVolumeSource,
    Volume, VolumeMount,
};

use super::volumes::{mount, read_only};
use crate::api::agent::CaBundleConfig;
use crate::api::common::ProxyConfig;

const CA_VOLUME: &str = "ca-bundle";
const CA_MOUNT_PATH: &str = "/etc/ssl/certs/custom-ca";
const CA_FILE_PATH: &str = "/etc/ssl/certs/custom-ca/tls.crt";

pub(super) fn env_value(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..Default::default()
    }
}

pub(super) fn env_secret(name: &str, secret: &str, key: &str, optional: Option<bool>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Upstream's CA layout (volume `ca-bundle` at /etc/ssl/certs/custom-ca, file `tls.crt`, env
/// CUSTOM_CA_CERT_PATH), plus NODE_EXTRA_CA_CERTS, which OpenCode (Bun) adds to its trust store.
pub(super) fn ca_bundle(ca: &CaBundleConfig) -> Option<(Volume, VolumeMount, Vec<EnvVar>)> {
    let items = |key: String| {
        Some(vec![KeyToPath {
            key,
            path: "tls.crt".to_string(),
            mode: None,
        }])
    };
    let volume = match ca_bundle_source(ca)? {
        CaBundleSource::ConfigMap { name, key } => Volume {
            name: CA_VOLUME.to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.to_string(),
                items: items(key),
                ..Default::default()
            }),
            ..Default::default()
        },
        CaBundleSource::Secret { name, key } => Volume {
            name: CA_VOLUME.to_string(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.to_string()),
                items: items(key),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    Some((
        volume,
        read_only(mount(CA_VOLUME, CA_MOUNT_PATH)),
        vec![
            env_value("CUSTOM_CA_CERT_PATH", CA_FILE_PATH),
            env_value("NODE_EXTRA_CA_CERTS", CA_FILE_PATH),
        ],
    ))
}

/// Where an Agent's CA bundle is, with the default key applied.
pub enum CaBundleSource<'a> {
    ConfigMap { name: &'a str, key: String },
    Secret { name: &'a str, key: String },
}

/// The CA bundle's ConfigMap (key default `ca-bundle.crt`) or, without one, its Secret (key
/// default `ca.crt`).
pub fn ca_bundle_source(ca: &CaBundleConfig) -> Option<CaBundleSource<'_>> {
    let key = |key: &Option<String>, default: &str| {
        key.clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    if let Some(reference) = &ca.config_map_ref {
        return Some(CaBundleSource::ConfigMap {
            name: &reference.name,
            key: key(&reference.key, "ca-bundle.crt"),
        });
    }
    ca.secret_ref
        .as_ref()
        .map(|reference| CaBundleSource::Secret {
            name: &reference.name,
            key: key(&reference.key, "ca.crt"),
        })
}

/// HTTP(S)_PROXY and NO_PROXY in both spellings; NO_PROXY always covers `.svc` and the cluster
/// domain (as upstream).
pub(super) fn proxy_env(proxy: &ProxyConfig, cluster_domain: &str) -> Vec<EnvVar> {
    proxy_variables(proxy, cluster_domain)
        .iter()
        .map(|(name, value)| env_value(name, value))
        .collect()
}

/// The proxy variables of [`proxy_env`] as (name, value) pairs, for processes the controller
/// runs itself (`git ls-remote`).
pub fn proxy_variables(proxy: &ProxyConfig, cluster_domain: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for (upper, lower, value) in [
        ("HTTP_PROXY", "http_proxy", &proxy.http_proxy),
        ("HTTPS_PROXY", "https_proxy", &proxy.https_proxy),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            env.push((upper.to_string(), value.to_string()));
            env.push((lower.to_string(), value.to_string()));
        }
    }
    let domain = format!(".{cluster_domain}");
    let mut no_proxy = proxy.no_proxy.clone().unwrap_or_default();
    for suffix in [".svc", domain.as_str()] {
        if !no_proxy.split(',').any(|entry| entry.trim() == suffix) {
            if !no_proxy.is_empty() {
                no_proxy.push(',');
            }
            no_proxy.push_str(suffix);
        }
    }
    env.push(("NO_PROXY".to_string(), no_proxy.clone()));
    env.push(("no_proxy".to_string(), no_proxy));
    env
}
