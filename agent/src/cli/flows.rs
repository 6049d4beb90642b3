//! `tollgate flows`: the most recent dropped and audited flows, read from
//! the pinned LRU table (works while the agent is down).
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use agent_common::{FlowKey, FlowValue, FAMILY_V4, VERDICT_AUDIT};
use serde::Serialize;

use super::{CliError, OutputFormat};
use crate::{
    datapath::{bpffs::PinDir, ids, pinned::Maps},
    runtime::time::boot_ns_to_rfc3339,
};

#[derive(Debug, Serialize)]
pub struct FlowRecord {
    pub time: String,
    pub first_seen: String,
    pub namespace: String,
    pub pod: String,
    pub src: String,
    pub dst: String,
    pub protocol: String,
    pub verdict: &'static str,
    pub reason: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

fn addr(family: u8, b: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*b))
    }
}

fn endpoint(family: u8, b: &[u8; 16], port: u16) -> String {
    match addr(family, b) {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

pub fn protocol_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

fn records(maps: &Maps) -> Result<Vec<(u64, FlowKey, FlowValue)>, CliError> {
    let mut out = Vec::new();
    for item in maps.flows.iter() {
        let (k, v) = item.map_err(|e| CliError::Environment(format!("reading TG_FLOWS: {e}")))?;
        out.push((v.last_ns, k, v));
    }
    out.sort_by_key(|(t, _, _)| *t);
    Ok(out)
}

fn names(maps: &Maps) -> BTreeMap<u32, (String, String)> {
    maps.workloads
        .iter()
        .filter_map(Result::ok)
        .map(|(id, info)| {
            let (ns, pod, _) = ids::decode(&info);
            (id, (ns, pod))
        })
        .collect()
}

fn record(k: &FlowKey, v: &FlowValue, names: &BTreeMap<u32, (String, String)>) -> FlowRecord {
    let (namespace, pod) = names.get(&k.workload).cloned().unwrap_or_default();
    FlowRecord {
        time: boot_ns_to_rfc3339(v.last_ns),
        first_seen: boot_ns_to_rfc3339(v.first_ns),
        namespace,
        pod,
        src: endpoint(k.family, &k.src, k.sport),
        dst: endpoint(k.family, &k.dst, k.dport),
        protocol: protocol_name(k.proto),
        verdict: if k.verdict == VERDICT_AUDIT { "audited" } else { "dropped" },
        reason: agent_common::reason_code(k.reason),
        packets: v.packets,
        bytes: v.bytes,
    }
}

fn print(r: &FlowRecord, format: OutputFormat) {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string(r).unwrap_or_default()),
        OutputFormat::Text => println!(
            "{}  {}/{}  {} -> {} {}  {} ({})  x{}",
            r.time, r.namespace, r.pod, r.src, r.dst, r.protocol, r.verdict, r.reason, r.packets
        ),
    }
}

pub fn run(bpffs: &std::path::Path, follow: bool, format: OutputFormat) -> Result<(), CliError> {
    let maps = Maps::open_pinned(&PinDir::new(bpffs))?;
    let mut seen: BTreeMap<FlowKey, u64> = BTreeMap::new();
    loop {
        let names = names(&maps);
        for (t, k, v) in records(&maps)? {
            if seen.get(&k) == Some(&t) {
                continue;
            }
            seen.insert(k, t);
            print(&record(&k, &v, &names), format);
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
