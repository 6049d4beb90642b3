//! Label values with a bounded set of values: the failure cause of an
//! apply ([`MetricLabel`], as kube-rs controllers label their errors), and
//! the label sets of the metric families.
use prometheus_client::encoding::EncodeLabelSet;

use crate::datapath::DatapathError;

/// An error that names its cause for `tollgate_apply_failures_total`.
/// Implementations return one of [`APPLY_FAILURE_CAUSES`]; anything else
/// is counted as `other`.
pub trait MetricLabel {
    fn metric_label(&self) -> &'static str;
}

/// The values of the `cause` label (METRICS.md).
pub const APPLY_FAILURE_CAUSES: [&str; 6] = ["map_full", "map_write", "bpffs", "program", "cgroup", "other"];

/// `label` when it is a known cause, else `other`.
pub fn bounded_cause(label: &str) -> &'static str {
    APPLY_FAILURE_CAUSES.iter().copied().find(|c| *c == label).unwrap_or("other")
}

impl MetricLabel for &'static str {
    fn metric_label(&self) -> &'static str {
        self
    }
}

impl MetricLabel for DatapathError {
    fn metric_label(&self) -> &'static str {
        DatapathError::metric_label(self)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CauseLabel {
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MapLabel {
    pub map: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_error(errno: i32) -> DatapathError {
        DatapathError::Map {
            name: "TG_CGROUPS".into(),
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "bpf_map_update_elem",
                io_error: std::io::Error::from_raw_os_error(errno),
            }),
        }
    }

    #[test]
    fn datapath_errors_name_their_cause() {
        assert_eq!(map_error(libc::E2BIG).metric_label(), "map_full");
        assert_eq!(map_error(libc::ENOSPC).metric_label(), "map_full");
        assert_eq!(map_error(libc::EPERM).metric_label(), "map_write");
        assert_eq!(DatapathError::NoWorkloadId(4096).metric_label(), "map_full");
        assert_eq!(DatapathError::NotPinned { path: "/sys/fs/bpf/x".into() }.metric_label(), "bpffs");
        assert_eq!(DatapathError::NoKernelObject.metric_label(), "program");
        for e in [map_error(libc::E2BIG), DatapathError::NoVerdict] {
            assert!(APPLY_FAILURE_CAUSES.contains(&e.metric_label()));
        }
    }

    #[test]
    fn unknown_causes_count_as_other() {
        assert_eq!(bounded_cause("cgroup"), "cgroup");
        assert_eq!(bounded_cause("made-up"), "other");
        assert_eq!(bounded_cause("map_full".metric_label()), "map_full");
    }
}
