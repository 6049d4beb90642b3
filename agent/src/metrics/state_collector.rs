//! The gauges the runtime sets as a whole (objects rejected and ignored,
//! sync state, pods by mode), readiness, and build info. Kept as plain
//! values and emitted per scrape, so that a (kind, reason) that no longer
//! occurs disappears instead of lingering at 0 or at an old count, and a
//! scrape never sees a half-replaced set.
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::encode::{gauge, gauges, value};
use super::health::Health;

/// Enforced pods of this node by mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodModes {
    pub enforce: u64,
    pub audit: u64,
    pub off: u64,
}

impl PodModes {
    /// Counts `modes` (one per pod).
    pub fn count(modes: impl IntoIterator<Item = crate::desired::Mode>) -> PodModes {
        use crate::desired::Mode;
        let mut m = PodModes::default();
        for mode in modes {
            match mode {
                Mode::Enforce => m.enforce += 1,
                Mode::Audit => m.audit += 1,
                Mode::Off => m.off += 1,
            }
        }
        m
    }
}

#[derive(Debug, Default)]
pub(super) struct RuntimeState {
    /// (kind, reason) → objects.
    pub rejected: BTreeMap<(String, String), u64>,
    /// (kind, rule) → objects.
    pub ignored: BTreeMap<(String, String), u64>,
    /// kind → initial list done.
    pub synced: BTreeMap<String, bool>,
    pub modes: PodModes,
}

#[derive(Debug)]
pub(super) struct StateCollector {
    pub state: Arc<Mutex<RuntimeState>>,
    pub health: Arc<Health>,
    pub version: String,
    pub object_hash: String,
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let pairs = |m: &BTreeMap<(String, String), u64>, second: &'static str| {
            m.iter()
                .map(|((kind, other), n)| ([("kind", value(kind)), (second, value(other))], count(*n)))
                .collect::<Vec<_>>()
        };
        gauges(
            &mut encoder,
            "tollgate_objects_rejected",
            "Objects Tollgate cannot read now (invalid), by kind and short reason",
            pairs(&state.rejected, "reason"),
        )?;
        gauges(
            &mut encoder,
            "tollgate_objects_ignored",
            "Objects ignored under the trust rules, by kind and rule",
            pairs(&state.ignored, "rule"),
        )?;
        gauges(
            &mut encoder,
            "tollgate_source_synced",
            "1 when the watch of that kind has done its initial list",
            state.synced.iter().map(|(kind, synced)| ([("kind", value(kind))], i64::from(*synced))),
        )?;
        let m = state.modes;
        gauges(
            &mut encoder,
            "tollgate_enforced_pods",
            "Pods of this node by mode",
            [("enforce", m.enforce), ("audit", m.audit), ("off", m.off)]
                .map(|(mode, n)| ([("mode", mode.to_string())], count(n))),
        )?;
        drop(state);
        gauge(&mut encoder, "tollgate_ready", "1 when /readyz answers ready", i64::from(self.health.is_ready()))?;
        gauges(
            &mut encoder,
            "tollgate_build_info",
            "Always 1: the agent's version and the hash of its kernel object",
            [([("version", self.version.clone()), ("object_hash", self.object_hash.clone())], 1)],
        )
    }
}
