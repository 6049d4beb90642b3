//! `tollgate counters`: per-workload and node packet counters, read from
//! the pinned maps (works while the agent is down).
use std::collections::BTreeMap;

use agent_common::{VERDICT_ALLOW, VERDICT_AUDIT, VERDICT_DROP};
use serde::Serialize;

use super::{CliError, OutputFormat};
use crate::datapath::{bpffs::PinDir, counters as datapath_counters, ids, pinned::Maps};

/// Packets and bytes by verdict, for the node or one workload.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub allowed_packets: u64,
    pub allowed_bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub audited_packets: u64,
    pub audited_bytes: u64,
}

#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct WorkloadCounters {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    #[serde(flatten)]
    pub totals: Totals,
    /// Packets by reason code, e.g. {"no-rule": 3, "gateway": 10}.
    pub reasons: BTreeMap<String, u64>,
    /// Packets and bytes by (verdict, reason code), for `/metrics`.
    #[serde(skip)]
    pub by_verdict_reason: BTreeMap<(u8, String), (u64, u64)>,
    /// Drop events the kernel's rate limit did not send.
    pub events_suppressed: u64,
}

impl Totals {
    /// Adds what a counter holds; false for an unknown verdict.
    fn add(&mut self, verdict: u8, packets: u64, bytes: u64) -> bool {
        let (p, b) = match verdict {
            VERDICT_ALLOW => (&mut self.allowed_packets, &mut self.allowed_bytes),
            VERDICT_DROP => (&mut self.dropped_packets, &mut self.dropped_bytes),
            VERDICT_AUDIT => (&mut self.audited_packets, &mut self.audited_bytes),
            _ => return false,
        };
        *p += packets;
        *b += bytes;
        true
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Counters {
    pub node: Totals,
    pub workloads: Vec<WorkloadCounters>,
}

pub fn read(maps: &Maps) -> Result<Counters, CliError> {
    let env = |e: crate::datapath::DatapathError| CliError::Environment(format!("reading the counters: {e}"));
    let mut names = BTreeMap::new();
    for item in maps.workloads.iter() {
        let (id, info) = item.map_err(|e| CliError::Environment(format!("reading TG_WORKLOADS: {e}")))?;
        names.insert(id, ids::decode(&info));
    }
    let mut node = Totals::default();
    for ((verdict, _), (p, b)) in datapath_counters::of_workload(maps, ids::RETIRED_WORKLOAD).map_err(env)? {
        node.add(verdict, p, b);
    }
    let suppressed = crate::datapath::events::suppressed(maps).map_err(env)?;
    let mut workloads = Vec::new();
    for (id, (ns, pod, uid)) in names {
        let events_suppressed = suppressed.get(&id).copied().unwrap_or(0);
        let mut w = WorkloadCounters { namespace: ns, pod, uid, events_suppressed, ..Default::default() };
        for ((verdict, reason), (p, b)) in datapath_counters::of_workload(maps, id).map_err(env)? {
            if w.totals.add(verdict, p, b) {
                node.add(verdict, p, b);
                let code = agent_common::reason_code(reason).to_string();
                let by = w.by_verdict_reason.entry((verdict, code.clone())).or_default();
                (by.0, by.1) = (by.0 + p, by.1 + b);
                *w.reasons.entry(code).or_default() += p;
            }
        }
        workloads.push(w);
    }
    workloads.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    Ok(Counters { node, workloads })
}

pub fn run(bpffs: &std::path::Path, format: OutputFormat) -> Result<(), CliError> {
    let maps = Maps::open_pinned(&PinDir::new(bpffs))?;
    let c = read(&maps)?;
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default()),
        OutputFormat::Text => print!("{}", render(&c)),
    }
    Ok(())
}

pub fn render(c: &Counters) -> String {
    let mut s = format!(
        "NODE  allowed {} pkts / {} B   dropped {} pkts / {} B   audited {} pkts / {} B\n\n",
        c.node.allowed_packets,
        c.node.allowed_bytes,
        c.node.dropped_packets,
        c.node.dropped_bytes,
        c.node.audited_packets,
        c.node.audited_bytes
    );
    s.push_str(&format!(
        "{:<16} {:<28} {:>10} {:>12} {:>10} {:>12} {:>10}\n",
        "NAMESPACE", "POD", "ALLOWED", "ALLOWED_B", "DROPPED", "DROPPED_B", "AUDITED"
    ));
    for w in &c.workloads {
        s.push_str(&format!(
            "{:<16} {:<28} {:>10} {:>12} {:>10} {:>12} {:>10}\n",
            w.namespace,
            w.pod,
            w.totals.allowed_packets,
            w.totals.allowed_bytes,
            w.totals.dropped_packets,
            w.totals.dropped_bytes,
            w.totals.audited_packets
        ));
    }
    s
}
