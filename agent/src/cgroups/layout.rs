//! Names in the kubelet's cgroup layout, for both cgroup drivers.
//!
//! ```text
//! systemd:  kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/<container>.scope
//!           kubepods.slice/kubepods-pod<uid_>.slice/...                  (Guaranteed)
//! cgroupfs: kubepods/<qos>/pod<uid>/<container>
//!           kubepods/pod<uid>/<container>                                (Guaranteed)
//! ```
//!
//! With the systemd driver and a kubelet `--cgroup-root` such as `/kubelet`,
//! systemd's slice naming prefixes every level with the parent's name
//! (`kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/
//! kubelet-kubepods-besteffort-pod<uid_>.slice`, as on kind nodes); those
//! names are recognised too.

/// Kubernetes QoS class of a pod, as encoded in its cgroup path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl Qos {
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "guaranteed",
            Qos::Burstable => "burstable",
            Qos::BestEffort => "besteffort",
        }
    }
}

impl std::fmt::Display for Qos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest pod uid accepted after `pod`.
const MAX_UID_LEN: usize = 64;

/// Parses a pod cgroup directory name of either driver and returns the pod's
/// canonical uid (lowercase, dashes) and QoS class.
///
/// - systemd: `kubepods-pod<uid_>.slice`, `kubepods-burstable-pod<uid_>.slice`,
///   `kubepods-besteffort-pod<uid_>.slice` (optionally with a parent prefix
///   such as `kubelet-kubepods-…`);
/// - cgroupfs: `pod<uid>`.
///
/// A cgroupfs pod directory name does not carry the QoS class (it is the name
/// of the parent directory), so `pod<uid>` is reported as
/// [`Qos::Guaranteed`], its class when it sits directly under `kubepods`;
/// use [`qos_dir_name`] on the parent to learn the class of other pods.
///
/// The uid is 1 to 64 characters of `[0-9a-f_-]`, at least one a hex digit
/// (RFC 4122 UUIDs, and the 32-hex-digit hashes of static pods); anything
/// else yields `None`.
pub fn parse_pod_dir_name(name: &str) -> Option<(String, Qos)> {
    let (raw_uid, qos) = split_pod_dir_name(name)?;
    Some((canonical_uid(raw_uid), qos))
}

/// Like [`parse_pod_dir_name`], without allocating: the uid is returned as
/// written in the name (it may still hold underscores or uppercase).
pub(crate) fn split_pod_dir_name(name: &str) -> Option<(&str, Qos)> {
    if let Some(stem) = name.strip_suffix(".slice") {
        // systemd: `<prefix>-pod<uid>`; the uid contains no `p`, so the last
        // `-pod` is the separator.
        let at = stem.rfind("-pod")?;
        let uid = &stem[at + "-pod".len()..];
        let qos = if is_systemd_level(&stem[..at], "kubepods") {
            Qos::Guaranteed
        } else if is_systemd_level(&stem[..at], "kubepods-burstable") {
            Qos::Burstable
        } else if is_systemd_level(&stem[..at], "kubepods-besteffort") {
            Qos::BestEffort
        } else {
            return None;
        };
        return valid_uid(uid).then_some((uid, qos));
    }
    let uid = name.strip_prefix("pod")?;
    valid_uid(uid).then_some((uid, Qos::Guaranteed))
}

/// Whether `name` is the top-level kubepods cgroup of either driver:
/// `kubepods`, `kubepods.slice` or `<parent>-kubepods.slice`.
pub fn is_kubepods_dir_name(name: &str) -> bool {
    name == "kubepods"
        || name
            .strip_suffix(".slice")
            .is_some_and(|stem| is_systemd_level(stem, "kubepods"))
}

/// The QoS class named by a QoS-level directory under kubepods:
/// `burstable`, `besteffort` (cgroupfs) or `kubepods-burstable.slice`,
/// `kubepods-besteffort.slice` (systemd, optionally with a parent prefix).
pub fn qos_dir_name(name: &str) -> Option<Qos> {
    match name {
        "burstable" => return Some(Qos::Burstable),
        "besteffort" => return Some(Qos::BestEffort),
        _ => {}
    }
    let stem = name.strip_suffix(".slice")?;
    if is_systemd_level(stem, "kubepods-burstable") {
        Some(Qos::Burstable)
    } else if is_systemd_level(stem, "kubepods-besteffort") {
        Some(Qos::BestEffort)
    } else {
        None
    }
}

/// Canonical form of a pod uid: underscores (systemd) become dashes, letters
/// are lowercased.
pub fn canonical_uid(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// `stem` is `level` or `<something>-level` (systemd's nested slice naming).
fn is_systemd_level(stem: &str, level: &str) -> bool {
    match stem.strip_suffix(level) {
        Some("") => true,
        Some(prefix) => prefix.len() > 1 && prefix.ends_with('-'),
        None => false,
    }
}

fn valid_uid(uid: &str) -> bool {
    (1..=MAX_UID_LEN).contains(&uid.len())
        && uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
        && uid.bytes().any(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b7e6d3a-5f1c-4c2e-9a8b-1234567890ab";
    const UID_: &str = "0b7e6d3a_5f1c_4c2e_9a8b_1234567890ab";
    const STATIC_UID: &str = "c1a5e0e0b07d1c8b5f9a3d2e4f6a7b8c";

    fn parsed(name: &str) -> Option<(String, Qos)> {
        parse_pod_dir_name(name)
    }

    #[test]
    fn systemd_pod_names_all_qos() {
        assert_eq!(
            parsed(&format!("kubepods-burstable-pod{UID_}.slice")),
            Some((UID.to_string(), Qos::Burstable))
        );
        assert_eq!(
            parsed(&format!("kubepods-besteffort-pod{UID_}.slice")),
            Some((UID.to_string(), Qos::BestEffort))
        );
        assert_eq!(
            parsed(&format!("kubepods-pod{UID_}.slice")),
            Some((UID.to_string(), Qos::Guaranteed))
        );
    }

    #[test]
    fn systemd_pod_names_with_parent_prefix() {
        assert_eq!(
            parsed(&format!("kubelet-kubepods-besteffort-pod{UID_}.slice")),
            Some((UID.to_string(), Qos::BestEffort))
        );
        assert_eq!(
            parsed(&format!("kubelet-kubepods-pod{UID_}.slice")),
            Some((UID.to_string(), Qos::Guaranteed))
        );
        // A prefix must be a whole systemd level.
        assert_eq!(parsed(&format!("xkubepods-pod{UID_}.slice")), None);
        assert_eq!(parsed(&format!("-kubepods-pod{UID_}.slice")), None);
    }

    #[test]
    fn cgroupfs_pod_names() {
        assert_eq!(
            parsed(&format!("pod{UID}")),
            Some((UID.to_string(), Qos::Guaranteed))
        );
        assert_eq!(
            parsed(&format!("pod{STATIC_UID}")),
            Some((STATIC_UID.to_string(), Qos::Guaranteed))
        );
    }

    #[test]
    fn uids_are_canonical() {
        assert_eq!(
            parsed("kubepods-pod0B7E6D3A_5F1C.slice").unwrap().0,
            "0b7e6d3a-5f1c"
        );
        assert_eq!(parsed("podABCDEF").unwrap().0, "abcdef");
    }

    #[test]
    fn rejects_non_pod_names() {
        for name in [
            "",
            "pod",
            "podXYZ!",
            "pod ",
            "pod-",
            "pod_-_",
            "kubepods-pod___.slice",
            "podé",
            "kubepods",
            "kubepods.slice",
            "kubepods-burstable.slice",
            "kubepods-besteffort.slice",
            "kubepods-pod.slice",
            "kubepods-burstable-pod.slice",
            "kubepods-burstable-podxyz.slice",
            "kubepods-guaranteed-pod1234.slice",
            "system-pod1234.slice",
            "burstable",
            "cri-containerd-abc.scope",
            "cgroup.procs",
            "kubepods-pod1234.scope",
            "pod1234.slice",
            ".slice",
            "-pod.slice",
            "ᴘod1234",
            "kubepods-pod1234.slice\u{0}",
        ] {
            assert_eq!(parsed(name), None, "{name:?}");
        }
        let long = format!("pod{}", "a".repeat(65));
        assert_eq!(parsed(&long), None);
        let max = format!("pod{}", "a".repeat(64));
        assert!(parsed(&max).is_some());
    }

    #[test]
    fn kubepods_and_qos_dirs() {
        for name in ["kubepods", "kubepods.slice", "kubelet-kubepods.slice"] {
            assert!(is_kubepods_dir_name(name), "{name}");
        }
        for name in [
            "kubepods-burstable.slice",
            "xkubepods.slice",
            "kubepods.scope",
            "pods",
            "",
        ] {
            assert!(!is_kubepods_dir_name(name), "{name}");
        }
        assert_eq!(qos_dir_name("burstable"), Some(Qos::Burstable));
        assert_eq!(qos_dir_name("besteffort"), Some(Qos::BestEffort));
        assert_eq!(
            qos_dir_name("kubepods-burstable.slice"),
            Some(Qos::Burstable)
        );
        assert_eq!(
            qos_dir_name("kubepods-besteffort.slice"),
            Some(Qos::BestEffort)
        );
        assert_eq!(
            qos_dir_name("kubelet-kubepods-besteffort.slice"),
            Some(Qos::BestEffort)
        );
        for name in [
            "guaranteed",
            "kubepods.slice",
            "kubepods-guaranteed.slice",
            "Burstable",
        ] {
            assert_eq!(qos_dir_name(name), None, "{name}");
        }
    }
}
