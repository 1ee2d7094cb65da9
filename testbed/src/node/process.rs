//! Starting a container's process: in the pod's network namespace, in a mount namespace of its
//! own with the container's volumes bind-mounted over the host filesystem, in a cgroup of its
//! own (so every process it forks can be killed), as the container's user.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything needed to start one container process.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub supplementary_groups: Vec<u32>,
    pub netns: PathBuf,
    /// The hostname the container sees (its own UTS namespace): the pod name.
    pub hostname: String,
    /// A cgroup v2 directory the process joins.
    pub cgroup: PathBuf,
    pub mounts: Vec<Mount>,
}

fn cstring(path: &Path) -> anyhow::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("path {} contains NUL", path.display()))
}

/// Where a mount's target lives before it is mounted: inside the source of an earlier mount
/// that covers it (e.g. `/workspace/code` inside the volume mounted at `/workspace`), else on
/// the host filesystem.
fn mountpoint_on_disk(earlier: &[Mount], target: &Path) -> PathBuf {
    earlier
        .iter()
        .filter_map(|m| Some((m, target.strip_prefix(&m.target).ok()?)))
        .filter(|(m, rest)| !rest.as_os_str().is_empty() || m.target == target)
        .max_by_key(|(m, _)| m.target.components().count())
        .map_or_else(|| target.to_path_buf(), |(m, rest)| m.source.join(rest))
}

/// Bind mounts need a mountpoint of the same kind as the source: an empty directory or file is
/// created where the target will be looked up when it is mounted (it stays empty there; only
/// the container sees the mount).
fn ensure_mountpoint(mount: &Mount, at: &Path) -> anyhow::Result<()> {
    let source_is_dir = std::fs::metadata(&mount.source)
        .with_context(|| format!("volume source {} is missing", mount.source.display()))?
        .is_dir();
    match std::fs::metadata(at) {
        Ok(meta) if meta.is_dir() == source_is_dir => Ok(()),
        Ok(_) => bail!(
            "cannot mount {} at {}: one is a file and the other a directory",
            mount.source.display(),
            mount.target.display()
        ),
        Err(_) if source_is_dir => std::fs::create_dir_all(at)
            .with_context(|| format!("creating mountpoint {}", at.display())),
        Err(_) => {
            if let Some(parent) = at.parent() {
                std::fs::create_dir_all(parent)?;
            }
            File::create(at)
                .map(drop)
                .with_context(|| format!("creating mountpoint {}", at.display()))
        }
    }
}

/// Returns -1 as an io::Error with errno, for use in `pre_exec`.
fn check(ret: libc::c_int) -> std::io::Result<()> {
    if ret == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Spawns the container process. Its stdout and stderr are piped for the log writer.
pub fn spawn(spec: &LaunchSpec) -> anyhow::Result<tokio::process::Child> {
    let (program, args) = spec
        .argv
        .split_first()
        .context("container has nothing to run")?;
    for (i, mount) in spec.mounts.iter().enumerate() {
        ensure_mountpoint(mount, &mountpoint_on_disk(&spec.mounts[..i], &mount.target))?;
    }
    let netns = File::open(&spec.netns)
        .with_context(|| format!("opening network namespace {}", spec.netns.display()))?;
    std::fs::create_dir_all(&spec.cgroup)
        .with_context(|| format!("creating cgroup {}", spec.cgroup.display()))?;
    let cgroup_procs = OpenOptions::new()
        .write(true)
        .open(spec.cgroup.join("cgroup.procs"))
        .with_context(|| format!("opening {}/cgroup.procs", spec.cgroup.display()))?;

    // Everything the child needs is prepared here: between fork and exec it may only make
    // system calls (the parent is multi-threaded, so no allocation there).
    let mounts: Vec<(CString, CString, bool)> = spec
        .mounts
        .iter()
        .map(|m| Ok((cstring(&m.source)?, cstring(&m.target)?, m.read_only)))
        .collect::<anyhow::Result<_>>()?;
    let working_dir = spec
        .working_dir
        .as_deref()
        .map(|d| cstring(Path::new(d)))
        .transpose()?;
    let root = c"/";
    let hostname = spec.hostname.clone().into_bytes();
    let netns_fd = netns.as_raw_fd();
    let cgroup_fd = cgroup_procs.as_raw_fd();
    let (uid, gid) = (spec.uid, spec.gid.or(spec.uid.map(|_| 0)));
    let groups: Vec<libc::gid_t> = spec.supplementary_groups.clone();

    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    // SAFETY: the closure only makes async-signal-safe system calls on data prepared above.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::setns(netns_fd, libc::CLONE_NEWNET))?;
            check(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
            check(libc::sethostname(hostname.as_ptr().cast(), hostname.len()))?;
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for (source, target, read_only) in &mounts {
                check(libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                if *read_only {
                    check(libc::mount(
                        std::ptr::null(),
                        target.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    ))?;
                }
            }
            if libc::write(cgroup_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            check(libc::setsid())?;
            if let Some(gid) = gid {
                check(libc::setgroups(groups.len(), groups.as_ptr()))?;
                check(libc::setgid(gid))?;
            }
            if let Some(uid) = uid {
                check(libc::setuid(uid))?;
            }
            if let Some(dir) = &working_dir {
                check(libc::chdir(dir.as_ptr()))?;
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| {
            format!("starting {program:?} (it must exist on the host; joining the pod's namespaces, mounting volumes, switching user or entering the working directory can fail too)")
        })?;
    drop((netns, cgroup_procs));
    Ok(child)
}

/// The pids in a cgroup.
pub fn cgroup_pids(cgroup: &Path) -> Vec<i32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Sends `signal` to every process in the cgroup.
pub fn signal_cgroup(cgroup: &Path, signal: libc::c_int) {
    for pid in cgroup_pids(cgroup) {
        // SAFETY: kill(2) with a pid read from the cgroup; a stale pid yields ESRCH.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Kills every process in the cgroup at once (cgroup.kill), then removes the cgroup when empty.
pub async fn kill_cgroup(cgroup: &Path) {
    if !cgroup.exists() {
        return;
    }
    let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
    for _ in 0..100 {
        if cgroup_pids(cgroup).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    remove_cgroup_tree(cgroup);
}

/// Removes a cgroup directory and its children, deepest first (rmdir only works when empty).
pub fn remove_cgroup_tree(cgroup: &Path) {
    if let Ok(entries) = std::fs::read_dir(cgroup) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(cgroup);
}

/// Resident memory of all processes in a cgroup tree, in bytes (from /proc/<pid>/status).
pub fn cgroup_rss_bytes(cgroup: &Path) -> u64 {
    let mut total = 0;
    for pid in cgroup_pids(cgroup) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        total += status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
    }
    if let Ok(entries) = std::fs::read_dir(cgroup) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                total += cgroup_rss_bytes(&entry.path());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: &str, target: &str) -> Mount {
        Mount {
            source: source.into(),
            target: target.into(),
            read_only: false,
        }
    }

    #[test]
    fn nested_mountpoints_are_created_inside_the_covering_volume() {
        let earlier = [
            mount("/pods/u/volumes/ws", "/workspace"),
            mount("/pods/u/volumes/tools", "/tools"),
        ];
        assert_eq!(
            mountpoint_on_disk(&earlier, Path::new("/workspace/code")),
            PathBuf::from("/pods/u/volumes/ws/code")
        );
        assert_eq!(
            mountpoint_on_disk(&earlier, Path::new("/workspace2")),
            PathBuf::from("/workspace2")
        );
        assert_eq!(
            mountpoint_on_disk(&earlier, Path::new("/data/sessions")),
            PathBuf::from("/data/sessions")
        );
    }
}
