//! Typed handles on the Tollgate maps, either from a fresh load (the
//! agent, private verify loads) or from their pins (read-only commands).
use agent_common::{
    map_names, CgroupEntry, CounterValue, PodAddrs, RuleKeyV4, RuleKeyV6, RuleSet, WorkloadInfo,
};
use aya::{
    maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuArray, RingBuf},
    Ebpf,
};

use super::{bpffs::PinDir, DatapathError};

pub struct Maps {
    pub cgroups: HashMap<MapData, u64, CgroupEntry>,
    pub rules_v4: LpmTrie<MapData, RuleKeyV4, RuleSet>,
    pub rules_v6: LpmTrie<MapData, RuleKeyV6, RuleSet>,
    /// Per-CPU array indexed by `agent_common::counter_index`.
    pub counters: PerCpuArray<MapData, CounterValue>,
    pub workloads: HashMap<MapData, u32, WorkloadInfo>,
    /// Drop and audit events (see `events`).
    pub events: RingBuf<MapData>,
    /// Events the kernel's rate limit held back, by workload.
    pub events_suppressed: PerCpuArray<MapData, u64>,
    pub meta: Array<MapData, u64>,
    pub addrs: HashMap<MapData, u32, PodAddrs>,
    /// What the maps hold, kept between applies (see `reconcile`).
    pub shadow: Option<super::shadow::Shadow>,
}

fn typed<T>((name, map): (String, Map)) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(map).map_err(|source| DatapathError::Map { name, source })
}

impl Maps {
    /// Takes the maps out of a loaded object (the programs keep using them).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Self::build(|name| {
            ebpf.take_map(name).ok_or_else(|| DatapathError::MissingMap { name: name.to_string() })
        })
    }

    /// Opens the maps an agent pinned, without loading any program.
    pub fn open_pinned(pins: &PinDir) -> Result<Self, DatapathError> {
        pins.require_pinned()?;
        Self::build(|name| {
            let data = MapData::from_pin(pins.map(name)).map_err(map_err(name))?;
            Map::from_map_data(data).map_err(map_err(name))
        })
    }

    fn build(mut get: impl FnMut(&str) -> Result<Map, DatapathError>) -> Result<Self, DatapathError> {
        let mut map = |name: &str| get(name).map(|m| (name.to_string(), m));
        Ok(Self {
            cgroups: typed(map(map_names::CGROUPS)?)?,
            rules_v4: typed(map(map_names::RULES_V4)?)?,
            rules_v6: typed(map(map_names::RULES_V6)?)?,
            counters: typed(map(map_names::COUNTERS)?)?,
            workloads: typed(map(map_names::WORKLOADS)?)?,
            events: typed(map(map_names::EVENTS)?)?,
            events_suppressed: typed(map(map_names::EVENTS_SUPPRESSED)?)?,
            meta: typed(map(map_names::META)?)?,
            addrs: typed(map(map_names::ADDRS)?)?,
            shadow: None,
        })
    }

    /// (map, max entries) of every map the agent writes or reads.
    pub fn capacities(&self) -> Result<Vec<(&'static str, u32)>, DatapathError> {
        use aya::maps::IterableMap;
        let cap = |name: &'static str, data: &MapData| {
            data.info().map(|i| (name, i.max_entries())).map_err(map_err(name))
        };
        Ok(vec![
            cap(map_names::CGROUPS, self.cgroups.map())?,
            cap(map_names::RULES_V4, self.rules_v4.map())?,
            cap(map_names::RULES_V6, self.rules_v6.map())?,
            cap(map_names::WORKLOADS, self.workloads.map())?,
            cap(map_names::ADDRS, self.addrs.map())?,
            (map_names::COUNTERS, self.counters.len()),
        ])
    }

    /// Workload ids must stay below the workloads map's capacity.
    pub fn max_workload_id(&self) -> Result<u32, DatapathError> {
        use aya::maps::IterableMap;
        let cap = self.workloads.map().info().map_err(map_err(map_names::WORKLOADS))?.max_entries();
        Ok(super::reconcile::workload_id_limit(cap))
    }
}

/// Maps a map error to a DatapathError naming the map.
pub fn map_err(name: &str) -> impl Fn(aya::maps::MapError) -> DatapathError + '_ {
    move |source| DatapathError::Map { name: name.to_string(), source }
}
