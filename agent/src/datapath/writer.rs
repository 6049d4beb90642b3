//! Writes of a plan, and who carries them out: the real maps, or (in unit
//! tests) a recording fake that can play a full map.
use agent_common::{CgroupEntry, PodAddrs, RuleSet, WorkloadInfo};
use ipnet::IpNet;

use super::{
    pinned::Maps,
    rule_keys::{self, RuleKey},
};

/// One map write, in the order a plan lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Rule { policy: u32, net: IpNet, rules: RuleSet },
    RemoveRule { policy: u32, net: IpNet },
    Workload { id: u32, info: WorkloadInfo },
    /// Counters to the node bucket, then the name record goes.
    RetireWorkload { id: u32 },
    Addrs { id: u32, addrs: PodAddrs },
    RemoveAddrs { id: u32 },
    Cgroup { id: u64, entry: CgroupEntry },
    RemoveCgroup { id: u64 },
}

impl Write {
    /// The map the write goes to.
    pub fn map(&self) -> &'static str {
        match self {
            Write::Rule { net, .. } | Write::RemoveRule { net, .. } => {
                if net.addr().is_ipv4() {
                    "TG_RULES_V4"
                } else {
                    "TG_RULES_V6"
                }
            }
            Write::Workload { .. } | Write::RetireWorkload { .. } => "TG_WORKLOADS",
            Write::Addrs { .. } | Write::RemoveAddrs { .. } => "TG_ADDRS",
            Write::Cgroup { .. } | Write::RemoveCgroup { .. } => "TG_CGROUPS",
        }
    }
}

/// A write the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    pub map: &'static str,
    /// The map is full (E2BIG, ENOSPC, ENOMEM): nothing is opened, the
    /// affected pods fail closed.
    pub full: bool,
    pub message: String,
}

pub trait Writer {
    fn write(&mut self, w: &Write) -> Result<(), WriteError>;
}

/// errnos that say "no room".
pub fn is_full_errno(errno: i32) -> bool {
    errno == libc::E2BIG || errno == libc::ENOSPC || errno == libc::ENOMEM
}

fn errno_of(e: &aya::maps::MapError) -> Option<i32> {
    match e {
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    }
}

fn refused(map: &'static str) -> impl Fn(aya::maps::MapError) -> WriteError {
    move |e| WriteError { map, full: errno_of(&e).is_some_and(is_full_errno), message: e.to_string() }
}

/// The real maps.
pub struct MapsWriter<'a>(pub &'a mut Maps);

impl Writer for MapsWriter<'_> {
    fn write(&mut self, w: &Write) -> Result<(), WriteError> {
        let maps = &mut *self.0;
        let map = w.map();
        match w {
            Write::Rule { policy, net, rules } => match rule_keys::key(*policy, net) {
                RuleKey::V4(k) => maps.rules_v4.insert(&k, *rules, 0).map_err(refused(map)),
                RuleKey::V6(k) => maps.rules_v6.insert(&k, *rules, 0).map_err(refused(map)),
            },
            Write::RemoveRule { policy, net } => {
                // Already gone is fine: removal is the goal.
                let _ = match rule_keys::key(*policy, net) {
                    RuleKey::V4(k) => maps.rules_v4.remove(&k),
                    RuleKey::V6(k) => maps.rules_v6.remove(&k),
                };
                Ok(())
            }
            Write::Workload { id, info } => maps.workloads.insert(id, info, 0).map_err(refused(map)),
            Write::RetireWorkload { id } => {
                super::counters::retire(maps, *id).map_err(|e| WriteError {
                    map: "TG_COUNTERS",
                    full: false,
                    message: e.to_string(),
                })?;
                let _ = maps.workloads.remove(id);
                Ok(())
            }
            Write::Addrs { id, addrs } => maps.addrs.insert(id, addrs, 0).map_err(refused(map)),
            Write::RemoveAddrs { id } => {
                let _ = maps.addrs.remove(id);
                Ok(())
            }
            Write::Cgroup { id, entry } => maps.cgroups.insert(id, entry, 0).map_err(refused(map)),
            Write::RemoveCgroup { id } => {
                let _ = maps.cgroups.remove(id);
                Ok(())
            }
        }
    }
}

/// A fake for unit tests: records every write; a map given a capacity
/// refuses new keys beyond it, as a full kernel map does.
#[derive(Debug, Default)]
pub struct RecordingWriter {
    pub log: Vec<Write>,
    pub capacity: std::collections::BTreeMap<&'static str, usize>,
    keys: std::collections::BTreeMap<&'static str, std::collections::BTreeSet<String>>,
}

impl RecordingWriter {
    pub fn with_capacity(map: &'static str, n: usize) -> Self {
        let mut w = RecordingWriter::default();
        w.capacity.insert(map, n);
        w
    }

    fn key(w: &Write) -> (bool, String) {
        match w {
            Write::Rule { policy, net, .. } => (true, format!("{policy}/{net}")),
            Write::RemoveRule { policy, net } => (false, format!("{policy}/{net}")),
            Write::Workload { id, .. } => (true, id.to_string()),
            Write::RetireWorkload { id } | Write::RemoveAddrs { id } => (false, id.to_string()),
            Write::Addrs { id, .. } => (true, id.to_string()),
            Write::Cgroup { id, .. } => (true, id.to_string()),
            Write::RemoveCgroup { id } => (false, id.to_string()),
        }
    }
}

impl Writer for RecordingWriter {
    fn write(&mut self, w: &Write) -> Result<(), WriteError> {
        let map = w.map();
        let (insert, key) = Self::key(w);
        let keys = self.keys.entry(map).or_default();
        if insert && !keys.contains(&key) && self.capacity.get(map).is_some_and(|cap| keys.len() >= *cap) {
            return Err(WriteError { map, full: true, message: "E2BIG (fake)".into() });
        }
        if insert {
            keys.insert(key);
        } else {
            keys.remove(&key);
        }
        self.log.push(w.clone());
        Ok(())
    }
}
