//! Drop and audit events: the kernel sends one per dropped or audited
//! packet (within each workload's rate limit) through the ring buffer
//! `TG_EVENTS`. One reader consumes the ring: whoever holds the journal's
//! lock (the agent while it runs; `tollgate flows` when no agent runs)
//! drains it into a bounded journal (`flows.jsonl` and `flows.1.jsonl` in
//! the state folder), which every reader reads.
use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use agent_common::{layer_name, FlowEvent, COUNTED_WORKLOADS, FAMILY_V4, VERDICT_AUDIT};
use serde::{Deserialize, Serialize};

use super::{
    ids,
    pinned::{map_err, Maps},
    DatapathError,
};
use crate::runtime::time::boot_ns_to_rfc3339;

/// One line of `tollgate flows -o json` (the contract's shape plus `layer`
/// and `bytes`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowRecord {
    pub time: String,
    pub namespace: String,
    pub pod: String,
    pub src: String,
    pub dst: String,
    pub protocol: String,
    pub verdict: String,
    pub reason: String,
    pub layer: String,
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

/// (namespace, pod) by workload id.
pub fn names(maps: &Maps) -> BTreeMap<u32, (String, String)> {
    maps.workloads
        .iter()
        .filter_map(Result::ok)
        .map(|(id, info)| {
            let (ns, pod, _) = ids::decode(&info);
            (id, (ns, pod))
        })
        .collect()
}

pub fn decode(e: &FlowEvent, names: &BTreeMap<u32, (String, String)>) -> FlowRecord {
    let (namespace, pod) = names.get(&e.workload).cloned().unwrap_or_default();
    FlowRecord {
        time: boot_ns_to_rfc3339(e.time_ns),
        namespace,
        pod,
        src: endpoint(e.family, &e.src, e.sport),
        dst: endpoint(e.family, &e.dst, e.dport),
        protocol: protocol_name(e.proto),
        verdict: if e.verdict == VERDICT_AUDIT { "audited" } else { "dropped" }.into(),
        reason: agent_common::reason_code(e.reason).into(),
        layer: layer_name(e.layer).into(),
        bytes: e.bytes.into(),
    }
}

/// Takes every event waiting in the ring, decoded.
pub fn drain(maps: &mut Maps) -> Vec<FlowRecord> {
    let names = names(maps);
    let mut out = Vec::new();
    while let Some(item) = maps.events.next() {
        if item.len() >= std::mem::size_of::<FlowEvent>() {
            // SAFETY: the kernel wrote a FlowEvent (plain data) there.
            let e: FlowEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            out.push(decode(&e, &names));
        }
    }
    out
}

/// Events the rate limit held back, by workload id (summed over CPUs).
pub fn suppressed(maps: &Maps) -> Result<BTreeMap<u32, u64>, DatapathError> {
    let mut out = BTreeMap::new();
    let mut ids: Vec<u32> = names(maps).keys().copied().collect();
    ids.push(ids::RETIRED_WORKLOAD);
    for id in ids.into_iter().filter(|id| *id < COUNTED_WORKLOADS) {
        let v = maps.events_suppressed.get(&id, 0).map_err(map_err("TG_EVENTS_SUPPRESSED"))?;
        let n: u64 = v.iter().sum();
        if n > 0 {
            out.insert(id, n);
        }
    }
    Ok(out)
}

/// Lines kept in `flows.jsonl` before it becomes `flows.1.jsonl`.
pub const JOURNAL_LINES: usize = 10_000;

/// The bounded journal of events in the state folder.
pub struct Journal {
    dir: PathBuf,
    lock: Option<File>,
    lines: usize,
}

impl Journal {
    pub fn new(state_dir: &Path) -> Journal {
        Journal { dir: state_dir.to_path_buf(), lock: None, lines: 0 }
    }

    pub fn current(&self) -> PathBuf {
        self.dir.join("flows.jsonl")
    }

    fn previous(&self) -> PathBuf {
        self.dir.join("flows.1.jsonl")
    }

    /// Becomes the ring's one consumer, if nobody else is (a non-blocking
    /// flock on `flows.lock`, released when the process ends).
    pub fn try_lock(&mut self) -> Result<bool, DatapathError> {
        if self.lock.is_some() {
            return Ok(true);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| DatapathError::io(format!("creating {}", self.dir.display()), e))?;
        let path = self.dir.join("flows.lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DatapathError::io(format!("opening {}", path.display()), e))?;
        // SAFETY: flock on a file we hold open.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Ok(false);
        }
        self.lines = std::fs::read_to_string(self.current()).map(|t| t.lines().count()).unwrap_or(0);
        self.lock = Some(f);
        Ok(true)
    }

    /// Appends records (the caller holds the lock), rotating when full.
    pub fn append(&mut self, records: &[FlowRecord]) -> Result<(), DatapathError> {
        if records.is_empty() {
            return Ok(());
        }
        let io = |what: &str, p: &Path| {
            let what = format!("{what} {}", p.display());
            move |e| DatapathError::io(what, e)
        };
        if self.lines + records.len() > JOURNAL_LINES {
            let (cur, prev) = (self.current(), self.previous());
            std::fs::rename(&cur, &prev).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) }).map_err(io("rotating", &cur))?;
            self.lines = 0;
        }
        let path = self.current();
        let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(io("opening", &path))?;
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        f.write_all(text.as_bytes()).map_err(io("writing", &path))?;
        self.lines += records.len();
        Ok(())
    }

    /// Every record kept, oldest first.
    pub fn read_all(&self) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        for p in [self.previous(), self.current()] {
            if let Ok(f) = File::open(&p) {
                out.extend(BufReader::new(f).lines().map_while(Result::ok).filter_map(|l| serde_json::from_str(&l).ok()));
            }
        }
        out
    }
}

/// The runtime's view: drains the ring into the journal while it holds
/// the lock, and hands the new records back (for JSON logging).
pub struct FlowEvents {
    pub journal: Journal,
}

impl FlowEvents {
    pub fn new(state_dir: &Path) -> FlowEvents {
        FlowEvents { journal: Journal::new(state_dir) }
    }

    /// New events since the last poll (empty while another process holds
    /// the journal).
    pub fn poll(&mut self, maps: &mut Maps) -> Result<Vec<FlowRecord>, DatapathError> {
        if !self.journal.try_lock()? {
            return Ok(Vec::new());
        }
        let records = drain(maps);
        self.journal.append(&records)?;
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> FlowRecord {
        FlowRecord {
            time: format!("t{i}"),
            namespace: "ns".into(),
            pod: "p".into(),
            src: "10.0.0.1:1".into(),
            dst: "10.0.0.2:2".into(),
            protocol: "tcp".into(),
            verdict: "dropped".into(),
            reason: "no-rule".into(),
            layer: "connect".into(),
            bytes: 0,
        }
    }

    #[test]
    fn journal_is_bounded_and_has_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::new(dir.path());
        assert!(j.try_lock().unwrap());
        let mut other = Journal::new(dir.path());
        assert!(!other.try_lock().unwrap(), "a second consumer got the lock");
        for chunk in 0..25 {
            let batch: Vec<FlowRecord> = (0..1000).map(|i| record(chunk * 1000 + i)).collect();
            j.append(&batch).unwrap();
        }
        let all = other.read_all();
        assert!(all.len() <= 2 * JOURNAL_LINES && all.len() >= JOURNAL_LINES, "{}", all.len());
        assert_eq!(all.last().unwrap().time, "t24999");
        drop(j);
        assert!(other.try_lock().unwrap(), "the lock was not released");
    }

    #[test]
    fn events_decode_with_names() {
        let mut e = FlowEvent { workload: 3, family: FAMILY_V4, proto: 6, verdict: 1, reason: 8, layer: 2, dport: 80, sport: 0, ..Default::default() };
        e.src[..4].copy_from_slice(&[10, 244, 0, 10]);
        e.dst[..4].copy_from_slice(&[203, 0, 113, 10]);
        let names = BTreeMap::from([(3, ("test-egress".to_string(), "sleep".to_string()))]);
        let r = decode(&e, &names);
        assert_eq!((r.namespace.as_str(), r.pod.as_str()), ("test-egress", "sleep"));
        assert_eq!((r.src.as_str(), r.dst.as_str()), ("10.244.0.10:0", "203.0.113.10:80"));
        assert_eq!((r.verdict.as_str(), r.reason.as_str(), r.layer.as_str(), r.protocol.as_str()), ("dropped", "no-rule", "connect", "tcp"));
    }
}
