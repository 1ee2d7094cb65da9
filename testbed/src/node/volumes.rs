//! Pod volumes as host directories under the pod's state directory: emptyDir, configMap,
//! secret, projected (service account token, configMap, secret, downward API), downwardAPI,
//! hostPath and PVCs bound to the testbed's host-path PersistentVolumes.
//! The object-backed ones are written in the kubelet's atomic-writer layout (`..data`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
    Volume,
};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

use super::env::{PodFacts, field_value};

/// Ownership applied to volume files, from the pod's security context.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub fs_group: Option<u32>,
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

fn chown(path: &Path, owner: Ownership) -> anyhow::Result<()> {
    if owner.uid.is_some() || owner.fs_group.is_some() {
        std::os::unix::fs::chown(path, owner.uid, owner.fs_group)
            .with_context(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

/// The kubelet's atomic-writer layout of a volume's files (pkg/volume/util/atomic_writer.go):
/// the files live in a timestamped data directory `..<UTC time>.<n>/`, `..data` links to it,
/// and each top-level entry is a symlink `<name> -> ..data/<name>`.
#[derive(Debug, PartialEq, Eq)]
struct AtomicLayout {
    /// Cleaned relative path -> (content, mode), as written inside the data directory.
    files: BTreeMap<String, (Vec<u8>, u32)>,
    /// The user-visible top-level names, each a symlink into `..data`.
    visible: BTreeSet<String>,
}

/// The symlink to the current data directory.
const DATA_DIR_LINK: &str = "..data";
/// Where the new `..data` link is made before it is renamed over the old one.
const NEW_DATA_DIR_LINK: &str = "..data_tmp";

/// Checks and cleans a payload path as the kubelet does: relative, no `..` element, and a first
/// element that does not start with `..` (those names belong to the writer).
fn clean_payload_path(rel: &str) -> anyhow::Result<String> {
    if rel.starts_with('/') {
        bail!("volume item path {rel:?} is not a relative path");
    }
    let parts: Vec<&str> = rel
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    match parts.first() {
        None => bail!("volume item path {rel:?} is empty"),
        Some(first) if first.starts_with("..") => {
            bail!("volume item path {rel:?} must not start with '..'")
        }
        Some(_) if parts.contains(&"..") => {
            bail!("volume item path {rel:?} must not contain '..'")
        }
        Some(_) => Ok(parts.join("/")),
    }
}

/// Plans the layout of `files`: cleaned paths, and the top-level names that become symlinks.
/// A path that is both a file and a directory of another path is an error.
fn plan_layout(files: &BTreeMap<String, (Vec<u8>, u32)>) -> anyhow::Result<AtomicLayout> {
    let mut cleaned = BTreeMap::new();
    for (rel, file) in files {
        let path = clean_payload_path(rel)?;
        if cleaned.insert(path.clone(), file.clone()).is_some() {
            bail!("volume item path {path:?} is given twice");
        }
    }
    for path in cleaned.keys() {
        let mut prefix = path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if cleaned.contains_key(parent) {
                bail!("volume item path {parent:?} is a file and also the directory of {path:?}");
            }
            prefix = parent;
        }
    }
    let visible = cleaned
        .keys()
        .map(|path| path.split('/').next().unwrap_or(path).to_string())
        .collect();
    Ok(AtomicLayout {
        files: cleaned,
        visible,
    })
}

/// The data directory's name for a write at `now`: `..2026_11_25_07_30_00.` and a number
/// (the kubelet's `os.MkdirTemp` pattern; here the nanoseconds, bumped on a clash).
fn data_dir_name(now: Timestamp, n: u64) -> String {
    format!("{}{n}", now.strftime("..%Y_%m_%d_%H_%M_%S."))
}

/// Writes `files` (relative path -> (content, mode)) into `dir` in the kubelet's atomic-writer
/// layout: a new data directory, `..data` switched to it by a rename, the user-visible
/// symlinks, then stale symlinks and the previous data directory removed. A directory written
/// in another layout is cleared first.
fn write_files(
    dir: &Path,
    files: &BTreeMap<String, (Vec<u8>, u32)>,
    owner: Ownership,
) -> anyhow::Result<()> {
    let layout = plan_layout(files)?;
    let data_link = dir.join(DATA_DIR_LINK);
    let old_data = std::fs::read_link(&data_link).ok();
    if old_data.is_none() && dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(dir, 0o755)?;

    let now = Timestamp::now();
    let mut n = u64::from(now.subsec_nanosecond().unsigned_abs());
    let (data_name, data_dir) = loop {
        let name = data_dir_name(now, n);
        let path = dir.join(&name);
        match std::fs::create_dir(&path) {
            Ok(()) => break (name, path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
    };
    set_mode(&data_dir, 0o755)?;
    for (rel, (content, mode)) in &layout.files {
        let path = data_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        // Group-readable for fsGroup, as the kubelet does.
        let mode = if owner.fs_group.is_some() {
            *mode | 0o040
        } else {
            *mode
        };
        set_mode(&path, mode)?;
        chown(&path, owner)?;
    }

    let new_link = dir.join(NEW_DATA_DIR_LINK);
    if std::fs::symlink_metadata(&new_link).is_ok() {
        std::fs::remove_file(&new_link)
            .with_context(|| format!("removing {}", new_link.display()))?;
    }
    std::os::unix::fs::symlink(&data_name, &new_link)
        .with_context(|| format!("linking {} to {data_name}", new_link.display()))?;
    std::fs::rename(&new_link, &data_link).with_context(|| {
        format!(
            "renaming {} over {}",
            new_link.display(),
            data_link.display()
        )
    })?;

    for name in &layout.visible {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_DIR_LINK).join(name), &path)
                .with_context(|| format!("linking {}", path.display()))?;
        }
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("..") || layout.visible.contains(name.as_ref()) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_symlink()) {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    if let Some(old) = old_data.filter(|old| old.as_os_str() != data_name.as_str()) {
        let old_dir = dir.join(&old);
        // Only the writer's own data directories, never a path the link was pointed at.
        if old.components().count() == 1 && old.to_string_lossy().starts_with("..") {
            std::fs::remove_dir_all(&old_dir)
                .with_context(|| format!("removing {}", old_dir.display()))?;
        }
    }
    Ok(())
}

/// Picks the entries named by `items` (or all), as relative path -> (content, mode).
fn select(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    what: &str,
    optional: bool,
) -> anyhow::Result<BTreeMap<String, (Vec<u8>, u32)>> {
    let mut out = BTreeMap::new();
    match items {
        None => {
            for (key, value) in data {
                out.insert(key.clone(), (value.clone(), default_mode));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(value) => {
                        let mode = item.mode.map_or(default_mode, |m| m as u32);
                        out.insert(item.path.clone(), (value.clone(), mode));
                    }
                    None if optional => {}
                    None => bail!("configmap or secret key {:?} not found in {what}", item.key),
                }
            }
        }
    }
    Ok(out)
}

fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    data
}

fn secret_data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// The objects whose keys become files.
#[derive(Debug, Clone, Copy)]
enum KeySource {
    ConfigMap,
    Secret,
}

/// Resolves the pod's volumes to host paths, writing files for the object-backed ones.
pub struct VolumeBuilder<'a> {
    pub client: &'a kube::Client,
    pub pod: &'a Pod,
    pub facts: &'a PodFacts,
    pub pod_dir: &'a Path,
    pub owner: Ownership,
}

impl VolumeBuilder<'_> {
    fn ns(&self) -> &str {
        &self.facts.namespace
    }

    /// The files a configMap or secret source projects: its keys (or just `items`) with
    /// `mode`. A missing object is an error unless the source is optional.
    async fn key_files(
        &self,
        kind: KeySource,
        name: &str,
        items: Option<&Vec<KeyToPath>>,
        optional: Option<bool>,
        mode: u32,
    ) -> anyhow::Result<BTreeMap<String, (Vec<u8>, u32)>> {
        let optional = optional.unwrap_or(false);
        let data = match kind {
            KeySource::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), self.ns())
                .get_opt(name)
                .await?
                .map(|c| config_map_data(&c)),
            KeySource::Secret => Api::<Secret>::namespaced(self.client.clone(), self.ns())
                .get_opt(name)
                .await?
                .map(|s| secret_data(&s)),
        };
        let label = match kind {
            KeySource::ConfigMap => format!("configmap {name:?}"),
            KeySource::Secret => format!("secret {name:?}"),
        };
        match data {
            Some(data) => select(&data, items, mode, &label, optional),
            None if optional => Ok(BTreeMap::new()),
            None => bail!("{label} not found"),
        }
    }

    async fn token(
        &self,
        audience: Option<&str>,
        expiration: Option<i64>,
    ) -> anyhow::Result<String> {
        let sa = if self.facts.service_account.is_empty() {
            "default"
        } else {
            &self.facts.service_account
        };
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
                expiration_seconds: expiration,
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(self.facts.name.clone()),
                    uid: Some(self.facts.uid.clone()),
                }),
            },
            ..TokenRequest::default()
        };
        let response = Api::<ServiceAccount>::namespaced(self.client.clone(), self.ns())
            .create_token_request(sa, &PostParams::default(), &request)
            .await
            .with_context(|| format!("requesting a token for service account {sa:?}"))?;
        Ok(response
            .status
            .context("token request has no status")?
            .token)
    }

    async fn pvc_path(&self, claim: &str) -> anyhow::Result<PathBuf> {
        let pvc = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), self.ns())
            .get_opt(claim)
            .await?
            .ok_or_else(|| anyhow!("persistentvolumeclaim {claim:?} not found"))?;
        let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let volume = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|_| bound);
        let volume =
            volume.ok_or_else(|| anyhow!("persistentvolumeclaim {claim:?} is not bound yet"))?;
        let pv = Api::<PersistentVolume>::all(self.client.clone())
            .get(&volume)
            .await?;
        let spec = pv.spec.unwrap_or_default();
        let path = spec
            .host_path
            .map(|h| h.path)
            .or(spec.local.map(|l| l.path))
            .ok_or_else(|| anyhow!("persistentvolume {volume:?} is not a host path volume"))?;
        std::fs::create_dir_all(&path)?;
        Ok(PathBuf::from(path))
    }

    async fn volume_path(&self, volume: &Volume) -> anyhow::Result<PathBuf> {
        let dir = self.pod_dir.join("volumes").join(&volume.name);
        if volume.empty_dir.is_some() {
            std::fs::create_dir_all(&dir)?;
            set_mode(&dir, 0o777)?;
            return Ok(dir);
        }
        if let Some(source) = &volume.config_map {
            let mode = source.default_mode.map_or(0o644, |m| m as u32);
            let files = self
                .key_files(
                    KeySource::ConfigMap,
                    &source.name,
                    source.items.as_ref(),
                    source.optional,
                    mode,
                )
                .await?;
            write_files(&dir, &files, self.owner)?;
            return Ok(dir);
        }
        if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let mode = source.default_mode.map_or(0o644, |m| m as u32);
            let files = self
                .key_files(
                    KeySource::Secret,
                    &name,
                    source.items.as_ref(),
                    source.optional,
                    mode,
                )
                .await?;
            write_files(&dir, &files, self.owner)?;
            return Ok(dir);
        }
        if let Some(projected) = &volume.projected {
            let mode = projected.default_mode.map_or(0o644, |m| m as u32);
            let mut files = BTreeMap::new();
            for source in projected.sources.iter().flatten() {
                if let Some(token) = &source.service_account_token {
                    let value = self
                        .token(token.audience.as_deref(), token.expiration_seconds)
                        .await?;
                    files.insert(token.path.clone(), (value.into_bytes(), mode));
                }
                if let Some(cm) = &source.config_map {
                    let kind = KeySource::ConfigMap;
                    files.extend(
                        self.key_files(kind, &cm.name, cm.items.as_ref(), cm.optional, mode)
                            .await?,
                    );
                }
                if let Some(secret) = &source.secret {
                    let kind = KeySource::Secret;
                    files.extend(
                        self.key_files(
                            kind,
                            &secret.name,
                            secret.items.as_ref(),
                            secret.optional,
                            mode,
                        )
                        .await?,
                    );
                }
                if let Some(downward) = &source.downward_api {
                    files.extend(self.downward_files(downward.items.iter().flatten(), mode)?);
                }
            }
            write_files(&dir, &files, self.owner)?;
            return Ok(dir);
        }
        if let Some(downward) = &volume.downward_api {
            let mode = downward.default_mode.map_or(0o644, |m| m as u32);
            let files = self.downward_files(downward.items.iter().flatten(), mode)?;
            write_files(&dir, &files, self.owner)?;
            return Ok(dir);
        }
        if let Some(host) = &volume.host_path {
            let path = PathBuf::from(&host.path);
            if matches!(host.type_.as_deref(), Some("DirectoryOrCreate")) {
                std::fs::create_dir_all(&path)?;
            }
            return Ok(path);
        }
        if let Some(claim) = &volume.persistent_volume_claim {
            return self.pvc_path(&claim.claim_name).await;
        }
        bail!(
            "volume {:?}: this volume type is not supported by the testbed node",
            volume.name
        )
    }

    fn downward_files<'i>(
        &self,
        items: impl Iterator<Item = &'i k8s_openapi::api::core::v1::DownwardAPIVolumeFile>,
        default_mode: u32,
    ) -> anyhow::Result<BTreeMap<String, (Vec<u8>, u32)>> {
        let mut files = BTreeMap::new();
        for item in items {
            let field = item.field_ref.as_ref().ok_or_else(|| {
                anyhow!(
                    "downwardAPI item {:?}: only fieldRef is supported",
                    item.path
                )
            })?;
            let value = field_value(&field.field_path, self.facts).map_err(|e| anyhow!(e))?;
            let mode = item.mode.map_or(default_mode, |m| m as u32);
            files.insert(item.path.clone(), (value.into_bytes(), mode));
        }
        Ok(files)
    }

    /// Host paths of every volume of the pod, by volume name. Fails on the first volume that
    /// cannot be set up yet (missing object, unbound claim), naming it.
    pub async fn build(&self) -> anyhow::Result<HashMap<String, PathBuf>> {
        let mut paths = HashMap::new();
        for volume in self
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
        {
            let path = self.volume_path(volume).await.with_context(|| {
                format!("MountVolume.SetUp failed for volume {:?}", volume.name)
            })?;
            paths.insert(volume.name.clone(), path);
        }
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_honours_items_modes_and_optional() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]
        .into();
        let all = select(&data, None, 0o644, "cm", false).expect("all keys");
        assert_eq!(all.len(), 2);
        let items = vec![KeyToPath {
            key: "b".into(),
            path: "dir/b.txt".into(),
            mode: Some(0o600),
        }];
        let some = select(&data, Some(&items), 0o644, "cm", false).expect("items");
        assert_eq!(some.get("dir/b.txt"), Some(&(b"2".to_vec(), 0o600)));
        let missing = vec![KeyToPath {
            key: "zz".into(),
            path: "zz".into(),
            mode: None,
        }];
        assert!(select(&data, Some(&missing), 0o644, "cm", false).is_err());
        assert!(
            select(&data, Some(&missing), 0o644, "cm", true)
                .expect("optional")
                .is_empty()
        );
    }

    fn files(paths: &[(&str, u32)]) -> BTreeMap<String, (Vec<u8>, u32)> {
        paths
            .iter()
            .map(|(p, mode)| (p.to_string(), (p.as_bytes().to_vec(), *mode)))
            .collect()
    }

    #[test]
    fn layout_links_each_top_level_entry_and_cleans_paths() {
        let layout = plan_layout(&files(&[
            ("a/b", 0o600),
            ("a/c/d", 0o644),
            (".env", 0o644),
            ("./x//y", 0o644),
            ("tls.crt", 0o400),
        ]))
        .expect("plans");
        let visible: Vec<&str> = layout.visible.iter().map(String::as_str).collect();
        assert_eq!(visible, [".env", "a", "tls.crt", "x"]);
        let paths: Vec<&str> = layout.files.keys().map(String::as_str).collect();
        assert_eq!(paths, [".env", "a/b", "a/c/d", "tls.crt", "x/y"]);
        assert_eq!(layout.files.get("a/b").map(|f| f.1), Some(0o600));
    }

    #[test]
    fn layout_rejects_escaping_reserved_and_clashing_paths() {
        for bad in [
            "../escape",
            "a/../../b",
            "/abs",
            "",
            "..data",
            "..2026_x/y",
            "./..data",
        ] {
            assert!(plan_layout(&files(&[(bad, 0o644)])).is_err(), "{bad:?}");
        }
        // "..." is not an element of its own; "a..b" and "a/..b" are ordinary names.
        assert!(plan_layout(&files(&[("a..b", 0o644), ("c/..d", 0o644)])).is_ok());
        assert!(plan_layout(&files(&[("a", 0o644), ("a/b", 0o644)])).is_err());
        assert!(plan_layout(&files(&[("a/b", 0o644), ("a/b/c/d", 0o644)])).is_err());
        assert!(plan_layout(&files(&[("a/b", 0o644), ("./a/b", 0o600)])).is_err());
    }

    #[test]
    fn data_dir_is_named_like_the_kubelets() {
        let at: Timestamp = "2026-11-25T07:30:00.123456789Z".parse().expect("timestamp");
        assert_eq!(
            data_dir_name(at, 123456789),
            "..2026_11_25_07_30_00.123456789"
        );
    }

    fn link(path: &Path) -> String {
        std::fs::read_link(path)
            .expect("a symlink")
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn write_files_makes_the_atomic_layout_and_swaps_it() {
        let dir = std::env::temp_dir().join(format!("kubeoc-volumes-test-{}", std::process::id()));
        // A directory in the plain layout (an older agent's) is cleared.
        std::fs::create_dir_all(dir.join("old")).expect("plain layout");
        let first = files(&[("x/y", 0o600), ("top", 0o644)]);
        write_files(&dir, &first, Ownership::default()).expect("writes");
        let data = link(&dir.join(DATA_DIR_LINK));
        assert!(data.starts_with("..") && !data.contains('/'), "{data}");
        assert_eq!(link(&dir.join("x")), "..data/x");
        assert_eq!(link(&dir.join("top")), "..data/top");
        assert!(!dir.join("old").exists());
        let meta = std::fs::metadata(dir.join("x/y")).expect("file through the links");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let real = std::fs::symlink_metadata(dir.join(&data).join("x/y")).expect("real file");
        assert!(real.is_file());
        assert_eq!(std::fs::read(dir.join("top")).expect("readable"), b"top");

        let second = files(&[("top", 0o640), ("new", 0o644)]);
        write_files(&dir, &second, Ownership::default()).expect("rewrites");
        let swapped = link(&dir.join(DATA_DIR_LINK));
        assert_ne!(swapped, data);
        assert!(
            !dir.join(&data).exists(),
            "the old data directory is removed"
        );
        assert!(
            std::fs::symlink_metadata(dir.join("x")).is_err(),
            "stale link removed"
        );
        assert_eq!(link(&dir.join("new")), "..data/new");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("lists")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [swapped.as_str(), "..data", "new", "top"]);

        let bad = files(&[("../escape", 0o600)]);
        assert!(write_files(&dir, &bad, Ownership::default()).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
