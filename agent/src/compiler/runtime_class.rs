//! Sandboxed runtimes: pods whose `spec.runtimeClassName` names a gVisor or
//! Kata runtime send from a sandbox (a user-space network stack, a VM), not
//! from sockets of the pod's cgroup, so the cgroup hooks never see their
//! packets. The datapath enforces them by the TC layer alone.

/// Runtime class names taken as sandboxed when `--sandboxed-runtime-class`
/// is not given: the names the gVisor and Kata docs use. A trailing `*`
/// matches any suffix (`kata-qemu`, `kata-clh`, `kata-fc`, ...).
pub const DEFAULT_SANDBOXED_RUNTIME_CLASSES: [&str; 4] = ["gvisor", "runsc", "kata", "kata-*"];

/// Does `class` match one of `patterns` (exact names, or prefixes ending
/// in `*`)?
pub fn is_sandboxed(class: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => class.starts_with(prefix),
        None => class == p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        DEFAULT_SANDBOXED_RUNTIME_CLASSES.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn gvisor_and_kata_names_are_sandboxed_others_are_not() {
        let d = defaults();
        for c in ["gvisor", "runsc", "kata", "kata-qemu", "kata-clh", "kata-fc"] {
            assert!(is_sandboxed(c, &d), "{c}");
        }
        for c in ["runc", "crun", "nvidia", "gvisor2", "kat", ""] {
            assert!(!is_sandboxed(c, &d), "{c}");
        }
    }

    #[test]
    fn operator_patterns_replace_the_defaults() {
        let p = vec!["my-sandbox".to_owned(), "vm-*".to_owned()];
        assert!(is_sandboxed("my-sandbox", &p));
        assert!(is_sandboxed("vm-firecracker", &p));
        assert!(!is_sandboxed("gvisor", &p));
    }
}
