//! spec.credentials: Secrets as the server's environment variables, files or directories.

use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, KeyToPath, SecretEnvSource, SecretVolumeSource, Volume, VolumeMount,
};

use super::env::env_secret;
use super::volumes::{mount, sub_path_mount};
use crate::api::agent::Credential;

const DEFAULT_SECRET_FILE_MODE: i32 = 0o600;

#[derive(Default)]
pub(super) struct CredentialParts {
    pub(super) volumes: Vec<Volume>,
    pub(super) mounts: Vec<VolumeMount>,
    pub(super) env: Vec<EnvVar>,
    pub(super) env_from: Vec<EnvFromSource>,
}

/// The four credential forms, with upstream's volume names (`credential-<i>`) and its
/// single-file layout (item path and subPath `secret-file`).
pub(super) fn credentials(credentials: &[Credential]) -> CredentialParts {
    let mut parts = CredentialParts::default();
    for (i, credential) in credentials.iter().enumerate() {
        let secret = &credential.secret_ref.name;
        let key = credential
            .secret_ref
            .key
            .as_deref()
            .filter(|k| !k.is_empty());
        let mount_path = credential.mount_path.as_deref().filter(|p| !p.is_empty());
        let mode = credential.file_mode.unwrap_or(DEFAULT_SECRET_FILE_MODE);
        let volume = format!("credential-{i}");
        match (key, mount_path) {
            (None, None) => parts.env_from.push(EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            (None, Some(path)) => {
                parts.volumes.push(Volume {
                    name: volume.clone(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(secret.clone()),
                        default_mode: Some(mode),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                parts.mounts.push(mount(&volume, path));
            }
            (Some(key), path) => {
                if let Some(env) = credential.env.as_deref().filter(|e| !e.is_empty()) {
                    parts.env.push(env_secret(env, secret, key, None));
                }
                if let Some(path) = path {
                    parts.volumes.push(Volume {
                        name: volume.clone(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(secret.clone()),
                            items: Some(vec![KeyToPath {
                                key: key.to_string(),
                                path: "secret-file".to_string(),
                                mode: Some(mode),
                            }]),
                            default_mode: Some(mode),
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                    parts
                        .mounts
                        .push(sub_path_mount(&volume, path, "secret-file"));
                }
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use crate::controller::pod::test_support::*;

    #[test]
    fn credential_forms() {
        let agent = agent_yaml(
            r#"
apiVersion: kubeopencode.io/v1alpha1
kind: Agent
metadata: {name: creds}
spec:
  workspaceDir: /workspace
  serviceAccountName: sa
  credentials:
    - {name: whole-env, secretRef: {name: all-keys}}
    - {name: whole-dir, secretRef: {name: ssh}, mountPath: /home/agent/.ssh}
    - {name: one-env, secretRef: {name: ai, key: api-key}, env: API_KEY}
    - {name: one-file, secretRef: {name: gh, key: token}, mountPath: /etc/gh/token}
    - {name: one-file-mode, secretRef: {name: gh, key: script}, mountPath: /etc/gh/run.sh, fileMode: 493}
"#,
        );
        let objects = build_agent(&agent);
        let pod = pod(&objects);
        let server = server(&objects);
        // No key, no mountPath: envFrom.
        let env_from = server.env_from.as_deref().expect("envFrom");
        assert_eq!(env_from.len(), 1);
        assert_eq!(
            env_from[0].secret_ref.as_ref().map(|s| s.name.as_str()),
            Some("all-keys")
        );
        // No key, mountPath: the Secret as a directory, 0600.
        assert_eq!(mount_at(server, "/home/agent/.ssh").name, "credential-1");
        assert_eq!(mount_at(server, "/home/agent/.ssh").sub_path, None);
        let dir = volume(pod, "credential-1")
            .secret
            .as_ref()
            .expect("a Secret volume");
        assert_eq!(
            (
                dir.secret_name.as_deref(),
                dir.default_mode,
                dir.items.as_ref()
            ),
            (Some("ssh"), Some(0o600), None)
        );
        // Key and env: one variable.
        assert_eq!(secret_ref(env(server, "API_KEY")), ("ai", "api-key"));
        // Key and mountPath: one file through items, 0600 unless fileMode says otherwise.
        for (path, volume_name, key, mode) in [
            ("/etc/gh/token", "credential-3", "token", 0o600),
            ("/etc/gh/run.sh", "credential-4", "script", 0o755),
        ] {
            let m = mount_at(server, path);
            assert_eq!(
                (m.name.as_str(), m.sub_path.as_deref()),
                (volume_name, Some("secret-file"))
            );
            let source = volume(pod, volume_name)
                .secret
                .as_ref()
                .expect("a Secret volume");
            let items = source.items.as_deref().expect("items");
            assert_eq!(
                (items[0].key.as_str(), items[0].path.as_str(), items[0].mode),
                (key, "secret-file", Some(mode))
            );
        }
        check_consistent("credentials", &objects);
        check_restricted("credentials", pod);
    }
}
