//! The maps, pinned by name under the agent's bpffs folder.
use agent_common::{
    map_sizes, CgroupEntry, ConnKey, CounterValue, EventBucket, PeerKey, PodAddrs, RuleKeyV4, RuleKeyV6, RuleSet,
    SockState, TcFlowKey, TcPod, WorkloadInfo, COUNTED_WORKLOADS, META_ENTRIES,
};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};

use crate::sock_storage::SockStorage;

/// BPF_F_NO_PREALLOC: entries are allocated when inserted.
const NO_PREALLOC: u32 = 1;

#[map]
pub static TG_CGROUPS: HashMap<u64, CgroupEntry> = HashMap::pinned(map_sizes::CGROUPS, 0);

#[map]
pub static TG_RULES_V4: LpmTrie<RuleKeyV4, RuleSet> = LpmTrie::pinned(map_sizes::RULES, 0);

#[map]
pub static TG_RULES_V6: LpmTrie<RuleKeyV6, RuleSet> = LpmTrie::pinned(map_sizes::RULES, 0);

/// Packets and bytes per (workload, verdict, reason) slot
/// (`agent_common::counter_index`): an array, so counting is a lookup
/// the verifier inlines, never an insert. 256 KiB per CPU.
#[map(name = "TG_COUNTS")]
pub static TG_COUNTS: PerCpuArray<CounterValue> = PerCpuArray::pinned(map_sizes::COUNTERS, 0);

#[map]
pub static TG_WORKLOADS: HashMap<u32, WorkloadInfo> =
    HashMap::pinned(map_sizes::WORKLOADS, NO_PREALLOC);

/// One event per dropped or audited packet (within each workload's rate
/// limit), for the agent (or `tollgate flows`) to read.
#[map]
pub static TG_EVENTS: RingBuf = RingBuf::pinned(map_sizes::EVENTS_BYTES, 0);

/// Token buckets of the events, by workload (updated without atomics: a
/// race between CPUs can only let an event more through or hold one back).
#[map]
pub static TG_EVENT_LIMITS: Array<EventBucket> = Array::pinned(COUNTED_WORKLOADS, 0);

/// Events the rate limit held back, by workload (per CPU, exact).
#[map]
pub static TG_EVENTS_SUPPRESSED: PerCpuArray<u64> = PerCpuArray::pinned(COUNTED_WORKLOADS, 0);

#[map]
pub static TG_META: Array<u64> = Array::pinned(META_ENTRIES, 0);

/// Reply state (and, later, cached verdicts) of each socket: freed with
/// the socket, never evicted by other traffic.
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "TG_SOCKS")]
pub static TG_SOCKS: SockStorage<SockState> = SockStorage::new();

/// Inbound TCP SYNs that arrived on a real device, until `tg_sockops`
/// sees their connection accepted (or the LRU drops them: a handshake
/// then fails closed, an established connection is never affected).
#[map]
pub static TG_SYN_SEEN: LruHashMap<ConnKey, u64> = LruHashMap::pinned(map_sizes::SYN_SEEN, 0);

/// UDP/SCTP peers a socket heard from (boot time of the last packet).
#[map]
pub static TG_UDP_PEERS: LruHashMap<PeerKey, u64> = LruHashMap::pinned(map_sizes::UDP_PEERS, 0);

/// Each workload's own addresses.
#[map]
pub static TG_ADDRS: HashMap<u32, PodAddrs> = HashMap::pinned(map_sizes::ADDRS, NO_PREALLOC);

/// The TC layer: the pod behind each watched host-side veth (by ifindex).
#[map]
pub static TG_TC_PODS: HashMap<u32, TcPod> = HashMap::pinned(map_sizes::TC_PODS, NO_PREALLOC);

/// The TC layer: TCP handshakes a peer outside the pod started
/// (`TC_SYN_SEEN`, then `TC_SYN_ANSWERED`). A SYN flood can only push out
/// handshakes in progress, never an established flow (a map of its own).
#[map]
pub static TG_TC_SYN: LruHashMap<TcFlowKey, u64> = LruHashMap::pinned(map_sizes::TC_SYN, 0);

/// The TC layer: flows the pod may answer (boot time of the peer's last
/// packet; `UDP_INITIATED` for UDP/SCTP flows the pod started itself).
#[map]
pub static TG_TC_FLOWS: LruHashMap<TcFlowKey, u64> = LruHashMap::pinned(map_sizes::TC_FLOWS, 0);
