//! The counters' metric source: [`cli::counters::read`](crate::cli::counters::read)
//! through map handles the agent holds (opened once, not per scrape). When
//! the layout changes, this file changes; the metrics do not.
use std::sync::Mutex;

use agent_common::{VERDICT_ALLOW, VERDICT_AUDIT, VERDICT_DROP};

use super::sources::{
    CounterSource, DatapathCounters, PodSuppressed, PodTraffic, SourceError, Traffic, Verdict,
};
use crate::cli::counters;
use crate::datapath::pinned::Maps;

/// Counters and map fill read from the agent's maps: a set of handles
/// opened once from the pins, given when the datapath is loaded (until
/// then, the datapath families are empty).
#[derive(Default)]
pub struct MapsSource {
    maps: Mutex<Option<Maps>>,
}

impl MapsSource {
    pub fn new(maps: Maps) -> Self {
        MapsSource { maps: Mutex::new(Some(maps)) }
    }

    /// The handles to read from from now on.
    pub fn set(&self, maps: Maps) {
        *self.maps.lock().unwrap_or_else(|p| p.into_inner()) = Some(maps);
    }

    fn with<T>(&self, f: impl FnOnce(&Maps) -> Result<T, SourceError>) -> Result<T, SourceError> {
        let maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        match maps.as_ref() {
            Some(m) => f(m),
            None => Err(SourceError::new("the datapath maps", "not loaded yet")),
        }
    }
}

fn verdict(v: u8) -> Option<Verdict> {
    match v {
        VERDICT_ALLOW => Some(Verdict::Allowed),
        VERDICT_DROP => Some(Verdict::Dropped),
        VERDICT_AUDIT => Some(Verdict::Audited),
        _ => None,
    }
}

/// The metric view of what `tollgate counters` reads.
pub fn from_counters(c: &counters::Counters) -> DatapathCounters {
    let n = &c.node;
    let node = vec![
        (Verdict::Allowed, Traffic { packets: n.allowed_packets, bytes: n.allowed_bytes }),
        (Verdict::Dropped, Traffic { packets: n.dropped_packets, bytes: n.dropped_bytes }),
        (Verdict::Audited, Traffic { packets: n.audited_packets, bytes: n.audited_bytes }),
    ];
    let pods = c
        .workloads
        .iter()
        .flat_map(|w| {
            w.by_verdict_reason.iter().filter_map(|((v, reason), (packets, bytes))| {
                Some(PodTraffic {
                    namespace: w.namespace.clone(),
                    pod: w.pod.clone(),
                    verdict: verdict(*v)?,
                    reason: reason.clone(),
                    traffic: Traffic { packets: *packets, bytes: *bytes },
                })
            })
        })
        .collect();
    let suppressed = c
        .workloads
        .iter()
        .map(|w| PodSuppressed { namespace: w.namespace.clone(), pod: w.pod.clone(), events: w.events_suppressed })
        .collect();
    DatapathCounters { node, pods, suppressed }
}

impl CounterSource for MapsSource {
    fn read(&self) -> Result<DatapathCounters, SourceError> {
        self.with(|maps| {
            counters::read(maps).map(|c| from_counters(&c)).map_err(|e| SourceError::new("the datapath counters", e))
        })
    }
}

/// Against the kernel's own maps: needs the kernel object (`cargo xtask
/// build`), root and bpffs, as the datapath does.
#[cfg(all(test, tollgate_ebpf))]
mod tests {
    use std::path::PathBuf;

    use agent_common::{CounterValue, MODE_ENFORCE, REASON_GATEWAY, REASON_NO_RULE};
    use aya::maps::PerCpuValues;

    use super::*;
    use crate::datapath::{bpffs::PinDir, ids, load::load_object};

    /// A pin folder of this test run, removed at the end.
    struct Pins(PathBuf);

    impl Drop for Pins {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn per_cpu(packets: u64) -> PerCpuValues<CounterValue> {
        let cpus = aya::util::nr_cpus().expect("number of CPUs");
        let mut values = vec![CounterValue::default(); cpus];
        values[0] = CounterValue { packets, bytes: packets * 100 };
        PerCpuValues::try_from(values).expect("one value per CPU")
    }

    #[test]
    fn reads_counters_from_the_kernel_maps() {
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let pins = Pins(PathBuf::from(format!("/sys/fs/bpf/tollgate-metrics-test-{}-{clock}", std::process::id())));
        let dir = PinDir::new(&pins.0);
        dir.create().expect("a pin folder on bpffs (root, bpffs mounted)");
        let mut ebpf = load_object(&dir).expect("the kernel object loads");
        let mut maps = Maps::take(&mut ebpf).expect("maps");
        maps.workloads.insert(7, ids::encode("test-egress", "sleep", "uid-7", MODE_ENFORCE, 0, 0), 0).expect("workload");
        let slot = |workload, verdict, reason| agent_common::counter_index(workload, verdict, reason).expect("a counted slot");
        maps.counters.set(slot(7, VERDICT_DROP, REASON_NO_RULE), per_cpu(3), 0).expect("counter");
        maps.counters.set(slot(7, VERDICT_ALLOW, REASON_GATEWAY), per_cpu(4), 0).expect("counter");
        // A pod that is gone: node totals only.
        maps.counters.set(slot(ids::RETIRED_WORKLOAD, VERDICT_DROP, REASON_NO_RULE), per_cpu(5), 0).expect("counter");
        let source = MapsSource::new(maps);

        let c = CounterSource::read(&source).expect("counters");
        let mut pods = c.pods.clone();
        pods.sort_by_key(|p| p.verdict);
        let sleep = |verdict, reason: &str, packets| PodTraffic {
            namespace: "test-egress".into(),
            pod: "sleep".into(),
            verdict,
            reason: reason.into(),
            traffic: Traffic { packets, bytes: packets * 100 },
        };
        assert_eq!(pods, [sleep(Verdict::Allowed, "gateway", 4), sleep(Verdict::Dropped, "no-rule", 3)]);
        let node: std::collections::BTreeMap<_, _> = c.node.iter().copied().collect();
        assert_eq!(node[&Verdict::Dropped], Traffic { packets: 8, bytes: 800 });
        assert_eq!(node[&Verdict::Allowed], Traffic { packets: 4, bytes: 400 });

        drop(ebpf);
    }
}
