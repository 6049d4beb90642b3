//! The maps, pinned by name under the agent's bpffs folder.
use agent_common::{
    map_sizes, CgroupEntry, CounterKey, CounterValue, FlowKey, FlowValue, ReplyKey, RuleKeyV4,
    RuleKeyV6, RuleSet, WorkloadInfo, META_ENTRIES,
};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuHashMap},
};

/// BPF_F_NO_PREALLOC: entries are allocated when inserted.
const NO_PREALLOC: u32 = 1;

#[map]
pub static TG_CGROUPS: HashMap<u64, CgroupEntry> = HashMap::pinned(map_sizes::CGROUPS, 0);

#[map]
pub static TG_RULES_V4: LpmTrie<RuleKeyV4, RuleSet> = LpmTrie::pinned(map_sizes::RULES, 0);

#[map]
pub static TG_RULES_V6: LpmTrie<RuleKeyV6, RuleSet> = LpmTrie::pinned(map_sizes::RULES, 0);

#[map]
pub static TG_COUNTERS: PerCpuHashMap<CounterKey, CounterValue> =
    PerCpuHashMap::pinned(map_sizes::COUNTERS, 0);

#[map]
pub static TG_WORKLOADS: HashMap<u32, WorkloadInfo> =
    HashMap::pinned(map_sizes::WORKLOADS, NO_PREALLOC);

#[map]
pub static TG_FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::pinned(map_sizes::FLOWS, 0);

#[map]
pub static TG_REPLIES: LruHashMap<ReplyKey, u64> = LruHashMap::pinned(map_sizes::REPLIES, 0);

#[map]
pub static TG_META: Array<u64> = Array::pinned(META_ENTRIES, 0);
