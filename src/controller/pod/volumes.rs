//! Volume and mount helpers.

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Volume, VolumeMount};

pub(super) fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

pub(super) fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_string(),
        mount_path: path.to_string(),
        ..Default::default()
    }
}

pub(super) fn read_only(mut mount: VolumeMount) -> VolumeMount {
    mount.read_only = Some(true);
    mount
}

pub(super) fn sub_path_mount(volume: &str, path: &str, sub_path: &str) -> VolumeMount {
    VolumeMount {
        sub_path: Some(sub_path.to_string()),
        ..mount(volume, path)
    }
}
