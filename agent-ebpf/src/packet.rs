//! The socket buffer as seen by the shared parser
//! (`agent_common::parse`): cgroup_skb buffers start at the IP header.
use agent_common::parse::{self, Flow, PacketBytes};
use aya_ebpf::programs::SkBuffContext;

pub struct Skb<'a>(pub &'a SkBuffContext);

impl PacketBytes for Skb<'_> {
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        self.0.load::<T>(offset).ok()
    }
}

/// Parses a cgroup_skb packet (L3 at offset 0) into `flow`; false when it
/// is malformed. A function of its own (a BPF-to-BPF call): its header
/// copies live in its own stack frame, not in every caller's.
#[inline(never)]
pub fn parse(ctx: &SkBuffContext, flow: &mut Flow) -> bool {
    parse::parse_ip(&Skb(ctx), 0, flow).is_ok()
}
