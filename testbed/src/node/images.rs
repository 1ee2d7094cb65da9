//! What an image carries, for a node without a container runtime (pure). Pods run on the host
//! filesystem, so an image contributes only the files it would add (bind-mounted into the
//! container) and the entrypoint used when a container gives no command.

use std::path::PathBuf;

/// The parts of an image the node agent reproduces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageSpec {
    /// `(path in the container, file on the host)`, bind-mounted read-only.
    pub files: Vec<(String, PathBuf)>,
    /// ENTRYPOINT, used when the container has no `command`.
    pub entrypoint: Option<Vec<String>>,
    /// ENV of the image, overridden by the container's env.
    pub env: Vec<(String, String)>,
}

/// Maps image references to [`ImageSpec`]s.
#[derive(Debug, Clone)]
pub struct ImageMap {
    /// The pinned OpenCode binary (testbed/opencode), if installed.
    pub opencode_bin: Option<PathBuf>,
    /// Where kubeoc's own image would have its binary: the repository's builds (release and
    /// debug); the newest one that exists is used.
    pub kubeoc_bins: Vec<PathBuf>,
}

/// kubeoc's own image (the in-cluster controller, the server pods' authenticating front).
const KUBEOC_IMAGE: &str = "kubectl-kubeoc";
/// Where that image carries the binary, on PATH.
pub const KUBEOC_IMAGE_BIN: &str = "/usr/local/bin/kubectl-kubeoc";

/// Upstream's agent image: carries `/opencode` and copies it into `$TOOLS_DIR` (its init role).
const OPENCODE_AGENT_IMAGE: &str = "kubeopencode-agent-opencode";

/// Our equivalent of that image's entrypoint: copy the binary to the shared tools volume.
const OPENCODE_INIT_SCRIPT: &str = r#"set -e
target="${TOOLS_DIR:-/tools}/${OPENCODE_BIN:-opencode}"
mkdir -p "$(dirname "$target")"
cp /opencode "$target"
chmod +x "$target"
echo "[opencode-init] installed $target"
"#;

/// The repository part of an image reference: no registry host, tag or digest.
pub fn repository_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

impl ImageMap {
    /// The spec for `image`, or an error naming what the testbed lacks to run it.
    pub fn lookup(&self, image: &str) -> Result<ImageSpec, String> {
        if repository_name(image) == OPENCODE_AGENT_IMAGE {
            let bin = self.opencode_bin.clone().ok_or_else(|| {
                format!(
                    "image {image:?} needs the pinned opencode binary, which is not installed \
                     (run: npm ci in testbed/opencode)"
                )
            })?;
            return Ok(ImageSpec {
                files: vec![("/opencode".to_string(), bin)],
                entrypoint: Some(vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    OPENCODE_INIT_SCRIPT.into(),
                ]),
                env: vec![
                    ("TOOLS_DIR".into(), "/tools".into()),
                    ("OPENCODE_BIN".into(), "opencode".into()),
                ],
            });
        }
        if repository_name(image) == KUBEOC_IMAGE {
            let newest = self
                .kubeoc_bins
                .iter()
                .filter_map(|p| Some((std::fs::metadata(p).ok()?.modified().ok()?, p)))
                .max()
                .map(|(_, p)| p.clone())
                .ok_or_else(|| {
                    format!(
                        "image {image:?} needs a build of kubectl-kubeoc, and none exists at {:?} \
                         (run: cargo build)",
                        self.kubeoc_bins
                    )
                })?;
            return Ok(ImageSpec {
                files: vec![(KUBEOC_IMAGE_BIN.to_string(), newest)],
                entrypoint: Some(vec![KUBEOC_IMAGE_BIN.into()]),
                env: Vec::new(),
            });
        }
        // Any other image is the host filesystem as it is; it has no known entrypoint.
        Ok(ImageSpec::default())
    }
}

/// The argv a container runs, as a runtime builds it: `command` (else the image entrypoint)
/// followed by `args`.
pub fn container_argv(
    image: &str,
    spec: &ImageSpec,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, String> {
    let mut argv = if !command.is_empty() {
        command.to_vec()
    } else if let Some(entrypoint) = &spec.entrypoint {
        entrypoint.clone()
    } else if !args.is_empty() {
        // No entrypoint: args alone are the command, as Docker does with an empty ENTRYPOINT.
        Vec::new()
    } else {
        return Err(format!(
            "image {image:?} has no entrypoint in the testbed image map; give the container a command"
        ));
    };
    argv.extend(args.iter().cloned());
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn repository_name_strips_registry_tag_and_digest() {
        assert_eq!(
            repository_name("ghcr.io/kubeopencode/kubeopencode-agent-opencode:latest"),
            "kubeopencode-agent-opencode"
        );
        assert_eq!(
            repository_name("localhost:5000/busybox@sha256:abc"),
            "busybox"
        );
        assert_eq!(repository_name("alpine"), "alpine");
    }

    #[test]
    fn agent_image_carries_the_pinned_opencode() {
        let map = ImageMap {
            opencode_bin: Some(PathBuf::from("/cache/opencode.exe")),
            kubeoc_bins: Vec::new(),
        };
        let spec = map
            .lookup("ghcr.io/kubeopencode/kubeopencode-agent-opencode:v0.1.7")
            .expect("known image");
        assert_eq!(
            spec.files,
            vec![(
                "/opencode".to_string(),
                PathBuf::from("/cache/opencode.exe")
            )]
        );
        let argv = container_argv("x", &spec, &[], &[]).expect("entrypoint");
        assert_eq!(argv[0], "/bin/sh");
        assert!(argv[2].contains("cp /opencode"));
    }

    #[test]
    fn kubeocs_image_carries_the_newest_build() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (old, new) = (dir.path().join("release"), dir.path().join("debug"));
        std::fs::write(&old, "old").expect("write");
        let earlier = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(earlier))
            .expect("set mtime");
        std::fs::write(&new, "new").expect("write");
        let map = ImageMap {
            opencode_bin: None,
            kubeoc_bins: vec![old.clone(), new.clone(), dir.path().join("missing")],
        };
        let spec = map
            .lookup("ghcr.io/kubeoc/kubectl-kubeoc:v0.1.0")
            .expect("known image");
        assert_eq!(spec.files, vec![(KUBEOC_IMAGE_BIN.to_string(), new)]);
        assert_eq!(spec.entrypoint, Some(vec![KUBEOC_IMAGE_BIN.to_string()]));
        let none = ImageMap {
            opencode_bin: None,
            kubeoc_bins: vec![dir.path().join("missing")],
        };
        let err = none
            .lookup("ghcr.io/kubeoc/kubectl-kubeoc:v0.1.0")
            .expect_err("no build");
        assert!(err.contains("cargo build"), "{err}");
    }

    #[test]
    fn agent_image_without_the_binary_says_how_to_install_it() {
        let map = ImageMap {
            opencode_bin: None,
            kubeoc_bins: Vec::new(),
        };
        let err = map
            .lookup("ghcr.io/kubeopencode/kubeopencode-agent-opencode:latest")
            .expect_err("missing binary");
        assert!(err.contains("npm ci"), "{err}");
    }

    #[test]
    fn argv_prefers_command_then_entrypoint_and_appends_args() {
        let spec = ImageSpec {
            entrypoint: Some(strings(&["/entry"])),
            ..ImageSpec::default()
        };
        assert_eq!(
            container_argv("i", &spec, &strings(&["sh", "-c"]), &strings(&["echo hi"])),
            Ok(strings(&["sh", "-c", "echo hi"]))
        );
        assert_eq!(
            container_argv("i", &spec, &[], &strings(&["--flag"])),
            Ok(strings(&["/entry", "--flag"]))
        );
        let plain = ImageSpec::default();
        assert_eq!(
            container_argv("i", &plain, &[], &strings(&["sleep", "1"])),
            Ok(strings(&["sleep", "1"]))
        );
        assert!(
            container_argv("busybox", &plain, &[], &[])
                .expect_err("nothing to run")
                .contains("busybox")
        );
    }
}
