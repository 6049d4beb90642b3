//! Map keys and values shared by the Tollgate kernel programs and the agent.
//!
//! Every type is `#[repr(C)]` with explicit padding so that the kernel and
//! user space agree byte for byte. With the `user` feature the types
//! implement `aya::Pod` so the agent can read and write them in BPF maps.
#![no_std]

pub mod parse;
pub mod rule_key;

pub use rule_key::{RuleKeyV4, RuleKeyV6, POLICY_ID_BITS};

/// Names of the maps, as pinned under the bpffs folder.
pub mod map_names {
    pub const CGROUPS: &str = "TG_CGROUPS";
    pub const RULES_V4: &str = "TG_RULES_V4";
    pub const RULES_V6: &str = "TG_RULES_V6";
    /// Per-CPU array of counters (renamed from the per-CPU hash
    /// `TG_COUNTERS` of older builds: another map type under the old pin
    /// would not load).
    pub const COUNTERS: &str = "TG_COUNTS";
    pub const WORKLOADS: &str = "TG_WORKLOADS";
    pub const META: &str = "TG_META";
    /// Socket storage: reply state and cached verdicts of each socket.
    pub const SOCKS: &str = "TG_SOCKS";
    /// TCP SYNs that arrived on a real device, until their connection is
    /// accepted.
    pub const SYN_SEEN: &str = "TG_SYN_SEEN";
    /// Peers that sent to a UDP/SCTP socket, by socket cookie.
    pub const UDP_PEERS: &str = "TG_UDP_PEERS";
    /// Each workload's own addresses.
    pub const ADDRS: &str = "TG_ADDRS";
    /// Ring buffer of drop and audit events.
    pub const EVENTS: &str = "TG_EVENTS";
    /// Per-workload token buckets of the events.
    pub const EVENT_LIMITS: &str = "TG_EVENT_LIMITS";
    /// Per-workload (per-CPU) count of events the rate limit held back.
    pub const EVENTS_SUPPRESSED: &str = "TG_EVENTS_SUPPRESSED";
    /// Host-side veth (ifindex) of each pod the TC layer enforces.
    pub const TC_PODS: &str = "TG_TC_PODS";
    /// TCP handshakes from outside a pod, seen by the TC layer.
    pub const TC_SYN: &str = "TG_TC_SYN";
    /// Flows a pod may answer at the TC layer (established inbound TCP,
    /// UDP/SCTP peers).
    pub const TC_FLOWS: &str = "TG_TC_FLOWS";
    pub const ALL: [&str; 16] = [
        CGROUPS, RULES_V4, RULES_V6, COUNTERS, WORKLOADS, META, SOCKS, SYN_SEEN, UDP_PEERS, ADDRS, EVENTS,
        EVENT_LIMITS, EVENTS_SUPPRESSED, TC_PODS, TC_SYN, TC_FLOWS,
    ];
}

/// Map sizes. The rule tries are allocated on demand (LPM tries never
/// preallocate), so their bound is a ceiling, not a cost.
pub mod map_sizes {
    /// Pod and container cgroups on one node (kubelet's default max is 110 pods).
    pub const CGROUPS: u32 = 65_536;
    /// Rule prefixes (per policy and address) for a 5,000-node cluster:
    /// e.g. 50 distinct policies on a node each naming 20,000 pod IPs.
    pub const RULES: u32 = 1_048_576;
    /// Counter slots: `COUNTED_WORKLOADS` workloads × `COUNTER_SLOTS`.
    pub const COUNTERS: u32 = super::COUNTED_WORKLOADS * super::COUNTER_SLOTS;
    /// Workloads (pods) known on one node.
    pub const WORKLOADS: u32 = 16_384;
    /// Bytes of the event ring buffer (about 13,000 events of 80 bytes).
    pub const EVENTS_BYTES: u32 = 1 << 20;
    /// Inbound TCP handshakes in progress (SYN seen, not yet accepted).
    pub const SYN_SEEN: u32 = 65_536;
    /// (UDP/SCTP socket, peer) pairs that may be answered.
    pub const UDP_PEERS: u32 = 65_536;
    /// Workloads whose addresses are known (one entry per workload).
    pub const ADDRS: u32 = WORKLOADS;
    /// Pod veths the TC layer watches (one per pod).
    pub const TC_PODS: u32 = WORKLOADS;
    /// Inbound TCP handshakes in progress at the TC layer.
    pub const TC_SYN: u32 = 65_536;
    /// Answerable flows at the TC layer (established inbound TCP and
    /// UDP/SCTP peers).
    pub const TC_FLOWS: u32 = 262_144;
}

/// How long a UDP/SCTP socket may answer a peer after it last heard from
/// it (Linux conntrack keeps an answered UDP flow for 120 s).
pub const UDP_REPLY_IDLE_NS: u64 = 120_000_000_000;
/// `TG_UDP_PEERS` value of a flow the pod's socket started itself (the
/// rules allowed it): the peer's answers do not make it a reply flow, so
/// it stays under the rules.
pub const UDP_INITIATED: u64 = u64::MAX;

pub const MODE_OFF: u8 = 0;
pub const MODE_ENFORCE: u8 = 1;
pub const MODE_AUDIT: u8 = 2;

/// The workload is an egress gateway: never enforced.
pub const FLAG_GATEWAY: u8 = 1;
/// The pod's outbound TCP is redirected by iptables to a sidecar (Istio,
/// OSM): `connect()` names the original destination, so the connect-time
/// check would refuse connections the sidecar is about to carry. Such pods
/// are enforced on the packet (after NAT) only.
pub const FLAG_SIDECAR_REDIRECT: u8 = 2;
/// A marker cgroup (the kubepods folder, a QoS folder): a socket whose
/// nearest registered ancestor is a marker belongs to a pod the agent has
/// not classified yet, and is denied (`unclassified`).
pub const FLAG_UNCLASSIFIED: u8 = 4;
/// The pod could not be fully registered (a map was full): everything it
/// sends is denied (`fail-closed`).
pub const FLAG_FAIL_CLOSED: u8 = 8;

pub const VERDICT_ALLOW: u8 = 0;
pub const VERDICT_DROP: u8 = 1;
pub const VERDICT_AUDIT: u8 = 2;

pub const REASON_NONE: u8 = 0;
pub const REASON_GATEWAY: u8 = 1;
pub const REASON_DNS: u8 = 2;
pub const REASON_NETWORK_POLICY: u8 = 3;
pub const REASON_CLUSTER_INTERNAL: u8 = 4;
pub const REASON_MESH_EGRESS_POLICY: u8 = 5;
pub const REASON_NOT_ENFORCED: u8 = 6;
pub const REASON_GATEWAY_POD: u8 = 7;
pub const REASON_NO_RULE: u8 = 8;
pub const REASON_REPLY: u8 = 9;
pub const REASON_LOOPBACK: u8 = 10;
pub const REASON_MESH_INTERNAL: u8 = 11;
/// A packet the program could not parse (truncated header, unknown
/// family): denied, never guessed.
pub const REASON_MALFORMED: u8 = 12;
/// The socket's cgroup is under the kubepods tree but no pod the agent
/// knows owns it yet: denied.
pub const REASON_UNCLASSIFIED: u8 = 13;
/// The pod's state could not be written (a map was full): denied.
pub const REASON_FAIL_CLOSED: u8 = 14;
/// The packet's source is not one of the pod's own addresses: denied.
pub const REASON_SPOOFED: u8 = 15;

/// The short reason codes of the contract, indexed by `REASON_*`.
pub const REASON_CODES: [&str; 16] = [
    "none",
    "gateway",
    "dns",
    "network-policy",
    "cluster-internal",
    "mesh-egress-policy",
    "not-enforced",
    "gateway-pod",
    "no-rule",
    "reply",
    "loopback",
    "mesh-internal",
    "malformed",
    "unclassified",
    "fail-closed",
    "spoofed",
];

pub fn reason_code(reason: u8) -> &'static str {
    REASON_CODES.get(reason as usize).copied().unwrap_or("unknown")
}

/// `proto` value in a [`PortRule`] that matches every protocol (and ICMP,
/// which has no ports).
pub const PROTO_ANY: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// Policy id of the node-wide rules (gateways, cluster DNS) that apply to
/// every enforced workload. Workload policies use ids >= 1.
pub const POLICY_GLOBAL: u32 = 0;

/// Deepest cgroup level the kernel program walks up when a socket's own
/// cgroup is not registered (a container the agent has not seen yet, or a
/// sub-cgroup made inside a container).
pub const MAX_CGROUP_LEVEL: i32 = 12;

/// Entry of `TG_CGROUPS`, keyed by cgroup id (`u64`): the pod that owns the
/// cgroup, its mode and the policy that applies to it.
///
/// Invariant kept across layouts: an all-zero entry means "not enforced"
/// (`MODE_OFF`, no flags). A new agent allows its own cgroup in the map of
/// an older layout with zeros before an upgrade swaps the maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CgroupEntry {
    pub workload: u32,
    pub policy: u32,
    pub mode: u8,
    pub flags: u8,
    pub _pad: [u8; 6],
}

/// One allowed protocol + destination port range.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct PortRule {
    /// `PROTO_ANY` or an IP protocol number.
    pub proto: u8,
    /// `REASON_*` reported when this rule allows a packet.
    pub reason: u8,
    pub port_lo: u16,
    pub port_hi: u16,
}

impl PortRule {
    pub const fn any(reason: u8) -> Self {
        Self { proto: PROTO_ANY, reason, port_lo: 0, port_hi: u16::MAX }
    }

    /// Does the rule allow `proto`/`port`? `port` is 0 for protocols
    /// without ports and for non-first fragments, which only rules that
    /// cover every port allow.
    #[inline(always)]
    pub fn matches(&self, proto: u8, port: u16) -> bool {
        (self.proto == PROTO_ANY || self.proto == proto)
            && self.port_lo <= port
            && port <= self.port_hi
    }
}

/// Port rules one prefix of one policy can carry (after merging adjacent
/// ranges). More is reported and the extra rules are dropped (fail closed).
pub const MAX_PORT_RULES: usize = 32;

/// Value of the rule tries: the port rules of the longest matching prefix.
/// The compiler merges into every prefix the rules of the prefixes that
/// contain it, so the longest match alone decides.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub struct RuleSet {
    pub count: u8,
    pub _pad: u8,
    pub rules: [PortRule; MAX_PORT_RULES],
}


/// Workload ids below this are counted (`TG_COUNTS` is a per-CPU array:
/// 512 × 32 slots × 16 bytes = 256 KiB per CPU, as much as the per-CPU
/// hash it replaced). Workloads above are enforced but not counted.
pub const COUNTED_WORKLOADS: u32 = 512;
/// Counter slots per workload: `reason` for allowed and dropped packets
/// (every reason code belongs to one of them), `16 + reason` for audited.
pub const COUNTER_SLOTS: u32 = 32;

/// Index of (workload, verdict, reason) in `TG_COUNTS`; `None` for a
/// workload that is not counted or a reason out of range.
#[inline(always)]
pub fn counter_index(workload: u32, verdict: u8, reason: u8) -> Option<u32> {
    if workload >= COUNTED_WORKLOADS || reason >= 16 {
        return None;
    }
    let slot = if verdict == VERDICT_AUDIT { 16 + reason as u32 } else { reason as u32 };
    Some(workload * COUNTER_SLOTS + slot)
}

/// (verdict, reason) of a counter slot, the inverse of [`counter_index`].
pub fn counter_slot_meaning(slot: u32) -> (u8, u8) {
    let reason = (slot % 16) as u8;
    if slot >= 16 {
        return (VERDICT_AUDIT, reason);
    }
    let allowed = !matches!(reason, REASON_NO_RULE | REASON_MALFORMED | REASON_UNCLASSIFIED | REASON_FAIL_CLOSED | REASON_SPOOFED);
    (if allowed { VERDICT_ALLOW } else { VERDICT_DROP }, reason)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub workload: u32,
    pub verdict: u8,
    pub reason: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CounterValue {
    pub packets: u64,
    pub bytes: u64,
}

pub const NAMESPACE_MAX: usize = 64;
pub const POD_NAME_MAX: usize = 256;
pub const UID_MAX: usize = 48;

/// Value of `TG_WORKLOADS`, keyed by workload id (`u32`): who the id is,
/// so that `counters`, `flows` and `verify` can name pods while the agent
/// is down, and a restarted agent keeps the ids (and so the counters).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadInfo {
    /// Cgroup id of the pod's own cgroup (0 if not found on this node).
    pub pod_cgroup: u64,
    pub mode: u8,
    pub flags: u8,
    pub namespace_len: u8,
    pub uid_len: u8,
    pub name_len: u16,
    pub _pad: [u8; 2],
    pub namespace: [u8; NAMESPACE_MAX],
    pub name: [u8; POD_NAME_MAX],
    pub uid: [u8; UID_MAX],
}

impl Default for WorkloadInfo {
    fn default() -> Self {
        Self {
            pod_cgroup: 0,
            mode: 0,
            flags: 0,
            namespace_len: 0,
            uid_len: 0,
            name_len: 0,
            _pad: [0; 2],
            namespace: [0; NAMESPACE_MAX],
            name: [0; POD_NAME_MAX],
            uid: [0; UID_MAX],
        }
    }
}

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Where a verdict was taken (`FlowEvent::layer`).
pub const LAYER_CGROUP_EGRESS: u8 = 1;
pub const LAYER_CONNECT: u8 = 2;
pub const LAYER_SENDMSG: u8 = 3;
pub const LAYER_TC: u8 = 4;

pub fn layer_name(layer: u8) -> &'static str {
    match layer {
        LAYER_CGROUP_EGRESS => "cgroup-egress",
        LAYER_CONNECT => "connect",
        LAYER_SENDMSG => "sendmsg",
        LAYER_TC => "tc",
        _ => "unknown",
    }
}

/// One dropped or audited packet (or refused call), sent through the ring
/// buffer `TG_EVENTS`. IPv4 addresses sit in the first 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEvent {
    /// `CLOCK_BOOTTIME` nanoseconds.
    pub time_ns: u64,
    pub workload: u32,
    pub bytes: u32,
    pub layer: u8,
    pub verdict: u8,
    pub reason: u8,
    pub family: u8,
    pub proto: u8,
    pub _pad: u8,
    pub sport: u16,
    pub dport: u16,
    pub _pad2: [u8; 6],
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// Token bucket of one workload's events (`TG_EVENT_LIMITS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EventBucket {
    /// Tokens, in thousandths of an event.
    pub milli_tokens: u64,
    pub last_ns: u64,
}

/// Events per second and burst of each workload (the kernel's defaults
/// when `TG_META` holds 0).
pub const EVENTS_PER_SECOND: u64 = 100;
pub const EVENTS_BURST: u64 = 200;

/// `SockState::flags`: the socket is a TCP connection the pod accepted
/// from a real peer (its SYN arrived on a device other than `lo`, from an
/// address that is not the pod's own): it may answer that peer.
pub const SOCK_INBOUND: u32 = 1;

/// `SockState::flags`: the cached verdict below is valid for
/// `generation`.
pub const SOCK_CACHED: u32 = 2;
/// `SockState::flags` (with `SOCK_CACHED`): the socket belongs to no
/// registered cgroup (a host process): it passes untouched.
pub const SOCK_NOT_A_POD: u32 = 4;

/// Value of the socket storage `TG_SOCKS`: lives and dies with its socket.
/// Besides the reply mark, it caches the last verdict of the socket: who
/// the socket belongs to and what was decided for one (protocol, source,
/// destination, port), valid while the policy generation (`TG_META`) has
/// not moved. 56 bytes plus the kernel's per-socket storage overhead.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SockState {
    /// `SOCK_*` bits.
    pub flags: u32,
    pub workload: u32,
    pub generation: u64,
    pub policy: u32,
    pub mode: u8,
    pub wflags: u8,
    pub allow: u8,
    pub reason: u8,
    pub family: u8,
    pub proto: u8,
    pub dport: u16,
    pub _pad: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// Key of `TG_SYN_SEEN` (an LRU of inbound TCP handshakes): the
/// connection seen from the pod. IPv4 addresses sit in the first 4 bytes
/// (IPv4-mapped IPv6 sockets are keyed as IPv4).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct ConnKey {
    pub family: u8,
    pub _pad: u8,
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad2: u16,
    pub local: [u8; 16],
    pub remote: [u8; 16],
}

/// Key of `TG_UDP_PEERS`: a peer that sent to a socket (by cookie, which
/// the kernel never reuses), so that the socket may answer it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct PeerKey {
    pub cookie: u64,
    pub family: u8,
    pub proto: u8,
    pub port: u16,
    pub _pad: u32,
    pub addr: [u8; 16],
}

/// Value of `TG_ADDRS` (keyed by workload id): the pod's own addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PodAddrs {
    pub has_v4: u8,
    pub has_v6: u8,
    pub _pad: [u8; 2],
    pub v4: [u8; 4],
    pub v6: [u8; 16],
}

/// Cgroup ids at and above this never name a real cgroup (the kernel
/// numbers cgroups from 1 upwards): the agent registers
/// `WORKLOAD_CGROUP_BASE | workload` in `TG_CGROUPS` for every workload, so
/// that the verify and TC programs find a workload's entry by its id.
pub const WORKLOAD_CGROUP_BASE: u64 = 0xffff_0000_0000_0000;

/// `TcPod::flags`: the pod's processes are not in its network namespace
/// (a sandboxed runtime): the TC layer is its only enforcement, so it
/// counts what it allows too.
pub const TC_POD_ALONE: u32 = 1;

/// Value of `TG_TC_PODS`, keyed by the ifindex of the pod's host-side veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcPod {
    pub workload: u32,
    /// `TC_POD_*` bits.
    pub flags: u32,
}

/// Key of `TG_TC_SYN` and `TG_TC_FLOWS`: a flow seen from the pod behind
/// the veth `ifindex`. IPv4 addresses sit in the first 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct TcFlowKey {
    pub ifindex: u32,
    pub family: u8,
    pub proto: u8,
    pub local_port: u16,
    pub remote_port: u16,
    pub _pad: u16,
    pub local: [u8; 16],
    pub remote: [u8; 16],
}

/// `TG_TC_SYN` values: the peer's SYN was seen; the pod answered it with a
/// SYN-ACK (only then does the peer's ACK establish the flow).
pub const TC_SYN_SEEN: u64 = 1;
pub const TC_SYN_ANSWERED: u64 = 2;

/// Index of `TG_META` (an array of `u64`).
pub const META_OBJECT_HASH: u32 = 0;
/// The policy generation: the agent bumps it after every apply that
/// changed rules, cgroups or workloads; verdicts cached with a socket are
/// valid only for the generation they were decided under.
pub const META_GENERATION: u32 = 2;
/// Events per second per workload (0: `EVENTS_PER_SECOND`).
pub const META_EVENT_RATE: u32 = 3;
pub const META_ENTRIES: u32 = 4;

/// `__sk_buff.cb` layout of the verify program (never attached; run with
/// BPF_PROG_TEST_RUN): cb[0..2] carry the cgroup id in, cb[3] is non-zero
/// when the packet would leave on the loopback device (to the pod's own
/// address), cb[2] carries verdict | reason << 8 | mode << 16 | 1 << 24 out.
pub const VERIFY_CB_CGROUP_LO: usize = 0;
pub const VERIFY_CB_CGROUP_HI: usize = 1;
pub const VERIFY_CB_RESULT: usize = 2;
pub const VERIFY_CB_ON_LOOPBACK: usize = 3;
pub const VERIFY_RESULT_VALID: u32 = 1 << 24;

#[cfg(feature = "user")]
mod pod_impls {
    use super::*;
    unsafe impl aya::Pod for CgroupEntry {}
    unsafe impl aya::Pod for PortRule {}
    unsafe impl aya::Pod for RuleSet {}
    unsafe impl aya::Pod for CounterKey {}
    unsafe impl aya::Pod for CounterValue {}
    unsafe impl aya::Pod for WorkloadInfo {}
    unsafe impl aya::Pod for FlowEvent {}
    unsafe impl aya::Pod for EventBucket {}
    unsafe impl aya::Pod for SockState {}
    unsafe impl aya::Pod for ConnKey {}
    unsafe impl aya::Pod for PeerKey {}
    unsafe impl aya::Pod for PodAddrs {}
    unsafe impl aya::Pod for TcPod {}
    unsafe impl aya::Pod for TcFlowKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_slots_round_trip() {
        for reason in 0..16u8 {
            let (verdict, r) = counter_slot_meaning(counter_index(3, VERDICT_AUDIT, reason).unwrap() % COUNTER_SLOTS);
            assert_eq!((verdict, r), (VERDICT_AUDIT, reason));
        }
        let drop = counter_index(7, VERDICT_DROP, REASON_NO_RULE).unwrap();
        assert_eq!(drop / COUNTER_SLOTS, 7);
        assert_eq!(counter_slot_meaning(drop % COUNTER_SLOTS), (VERDICT_DROP, REASON_NO_RULE));
        let allow = counter_index(7, VERDICT_ALLOW, REASON_GATEWAY).unwrap();
        assert_eq!(counter_slot_meaning(allow % COUNTER_SLOTS), (VERDICT_ALLOW, REASON_GATEWAY));
        assert_eq!(counter_index(COUNTED_WORKLOADS, VERDICT_ALLOW, 1), None);
        assert_eq!(counter_index(1, VERDICT_ALLOW, 16), None);
        assert_eq!(map_sizes::COUNTERS, COUNTED_WORKLOADS * COUNTER_SLOTS);
    }
}
