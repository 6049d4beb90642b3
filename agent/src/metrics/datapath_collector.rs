//! The families read from the datapath at scrape time: traffic per pod and
//! per node, suppressed drop events, and map fill. Each scrape emits the
//! current state only, so the series of a pod that left the node are gone
//! from the next scrape on.
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tracing::warn;

use super::encode::{counters, gauges, value};
use super::sources::{CounterSource, DatapathCounters, MapFill, MapFillSource};

pub(super) struct DatapathCollector {
    pub counters: Arc<dyn CounterSource>,
    pub maps: Arc<dyn MapFillSource>,
}

impl fmt::Debug for DatapathCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatapathCollector")
    }
}

impl Collector for DatapathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // A source that cannot be read leaves its families without samples
        // for this scrape; the others are still served.
        let c = self.counters.read().unwrap_or_else(|e| {
            warn!(error = %e, "metrics: the counters are not served in this scrape");
            DatapathCounters::default()
        });
        let fill = self.maps.read().unwrap_or_else(|e| {
            warn!(error = %e, "metrics: the map fill is not served in this scrape");
            Vec::new()
        });
        encode_traffic(&mut encoder, &c)?;
        encode_fill(&mut encoder, &fill)
    }
}

fn encode_traffic(encoder: &mut DescriptorEncoder, c: &DatapathCounters) -> fmt::Result {
    let pod_labels = |p: &super::sources::PodTraffic| {
        [
            ("namespace", value(&p.namespace)),
            ("pod", value(&p.pod)),
            ("verdict", p.verdict.as_str().to_string()),
            ("reason", value(&p.reason)),
        ]
    };
    counters(
        encoder,
        "tollgate_packets",
        "Packets of enforced and audited pods on this node, by verdict and reason",
        c.pods.iter().map(|p| (pod_labels(p), p.traffic.packets)),
    )?;
    counters(
        encoder,
        "tollgate_bytes",
        "Bytes of enforced and audited pods on this node, by verdict and reason",
        c.pods.iter().map(|p| (pod_labels(p), p.traffic.bytes)),
    )?;
    let verdict = |v: super::sources::Verdict| [("verdict", v.as_str().to_string())];
    counters(
        encoder,
        "tollgate_node_packets",
        "Packets of this node's enforced and audited pods, including pods that are gone, by verdict",
        c.node.iter().map(|(v, t)| (verdict(*v), t.packets)),
    )?;
    counters(
        encoder,
        "tollgate_node_bytes",
        "Bytes of this node's enforced and audited pods, including pods that are gone, by verdict",
        c.node.iter().map(|(v, t)| (verdict(*v), t.bytes)),
    )?;
    counters(
        encoder,
        "tollgate_flow_events_suppressed",
        "Drop events that the kernel's rate limit did not send (the packets are still counted)",
        c.suppressed.iter().map(|s| ([("namespace", value(&s.namespace)), ("pod", value(&s.pod))], s.events)),
    )
}

fn encode_fill(encoder: &mut DescriptorEncoder, fill: &[MapFill]) -> fmt::Result {
    let map = |f: &MapFill| [("map", value(&f.map))];
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    gauges(
        encoder,
        "tollgate_map_entries",
        "Entries in the map",
        fill.iter().filter_map(|f| Some((map(f), gauge(f.entries?)))),
    )?;
    gauges(
        encoder,
        "tollgate_map_capacity",
        "Most entries the map can hold",
        fill.iter().map(|f| (map(f), gauge(f.capacity))),
    )
}
