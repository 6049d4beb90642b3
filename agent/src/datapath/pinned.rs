//! Typed handles on the Tollgate maps, either from a fresh load (the
//! agent, private verify loads) or from their pins (read-only commands).
use agent_common::{
    map_names, CgroupEntry, CounterKey, CounterValue, FlowKey, FlowValue, RuleKeyV4, RuleKeyV6,
    RuleSet, WorkloadInfo,
};
use aya::{
    maps::{Array, HashMap, LpmTrie, Map, MapData, PerCpuHashMap},
    Ebpf,
};

use super::{bpffs::PinDir, DatapathError};

pub struct Maps {
    pub cgroups: HashMap<MapData, u64, CgroupEntry>,
    pub rules_v4: LpmTrie<MapData, RuleKeyV4, RuleSet>,
    pub rules_v6: LpmTrie<MapData, RuleKeyV6, RuleSet>,
    pub counters: PerCpuHashMap<MapData, CounterKey, CounterValue>,
    pub workloads: HashMap<MapData, u32, WorkloadInfo>,
    pub flows: HashMap<MapData, FlowKey, FlowValue>,
    pub meta: Array<MapData, u64>,
}

fn typed<T>(name: &str, map: Map) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    T::try_from(map).map_err(|source| DatapathError::Map { name: name.to_string(), source })
}

impl Maps {
    /// Takes the maps out of a loaded object (the programs keep using them).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        let mut take = |name: &str| {
            ebpf.take_map(name).ok_or_else(|| DatapathError::MissingMap { name: name.to_string() })
        };
        Ok(Self {
            cgroups: typed(map_names::CGROUPS, take(map_names::CGROUPS)?)?,
            rules_v4: typed(map_names::RULES_V4, take(map_names::RULES_V4)?)?,
            rules_v6: typed(map_names::RULES_V6, take(map_names::RULES_V6)?)?,
            counters: typed(map_names::COUNTERS, take(map_names::COUNTERS)?)?,
            workloads: typed(map_names::WORKLOADS, take(map_names::WORKLOADS)?)?,
            flows: typed(map_names::FLOWS, take(map_names::FLOWS)?)?,
            meta: typed(map_names::META, take(map_names::META)?)?,
        })
    }

    /// Opens the maps an agent pinned, without loading any program.
    pub fn open_pinned(pins: &PinDir) -> Result<Self, DatapathError> {
        pins.require_pinned()?;
        let open = |name: &str| -> Result<Map, DatapathError> {
            let data = MapData::from_pin(pins.map(name))
                .map_err(|source| DatapathError::Map { name: name.to_string(), source })?;
            Map::from_map_data(data).map_err(|source| DatapathError::Map { name: name.to_string(), source })
        };
        Ok(Self {
            cgroups: typed(map_names::CGROUPS, open(map_names::CGROUPS)?)?,
            rules_v4: typed(map_names::RULES_V4, open(map_names::RULES_V4)?)?,
            rules_v6: typed(map_names::RULES_V6, open(map_names::RULES_V6)?)?,
            counters: typed(map_names::COUNTERS, open(map_names::COUNTERS)?)?,
            workloads: typed(map_names::WORKLOADS, open(map_names::WORKLOADS)?)?,
            flows: typed(map_names::FLOWS, open(map_names::FLOWS)?)?,
            meta: typed(map_names::META, open(map_names::META)?)?,
        })
    }
}

/// Maps a map error to a DatapathError naming the map.
pub fn map_err(name: &str) -> impl Fn(aya::maps::MapError) -> DatapathError + '_ {
    move |source| DatapathError::Map { name: name.to_string(), source }
}
