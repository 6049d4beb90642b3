//! The kernel object embedded at build time (see `agent/build.rs`).
use super::DatapathError;

#[cfg(tollgate_ebpf)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("TOLLGATE_EBPF_OBJ"));
#[cfg(not(tollgate_ebpf))]
static OBJECT: &[u8] = &[];

/// The ELF object with every Tollgate program and map.
pub fn bytes() -> Result<&'static [u8], DatapathError> {
    if OBJECT.is_empty() {
        return Err(DatapathError::NoKernelObject);
    }
    Ok(OBJECT)
}

/// A hash of the object, stored in `TG_META` so that a restarted agent
/// knows whether the attached programs are its own (adopt) or older
/// (replace).
pub fn hash() -> u64 {
    // FNV-1a, 64 bit.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in OBJECT {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Direction of a cgroup_skb program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkbDirection {
    Ingress,
    Egress,
}

/// Direction of a TC program on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcDirection {
    Ingress,
    Egress,
}

/// How a program attaches. The loader reads this, never the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attach {
    /// cgroup_skb at the cgroup root.
    CgroupSkb(SkbDirection),
    /// cgroup/sock_addr at the cgroup root (the hook, connect4 or
    /// sendmsg6 for example, is the program's ELF section).
    CgroupSockAddr,
    /// sock_ops at the cgroup root.
    SockOps,
    /// TC on an interface (per pod veth), not at the cgroup root.
    Tc(TcDirection),
    /// Never attached: loaded for BPF_PROG_TEST_RUN only.
    Never,
}

impl Attach {
    /// Attached once, at the cgroup root, by the agent.
    pub fn at_cgroup_root(self) -> bool {
        matches!(self, Attach::CgroupSkb(_) | Attach::CgroupSockAddr | Attach::SockOps)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ProgramSpec {
    pub name: &'static str,
    pub attach: Attach,
}

pub const VERIFY_PROGRAM: &str = "tg_verify";

/// Every program of the object and how it attaches.
pub const PROGRAMS: &[ProgramSpec] = &[
    ProgramSpec { name: "tg_egress", attach: Attach::CgroupSkb(SkbDirection::Egress) },
    ProgramSpec { name: "tg_ingress", attach: Attach::CgroupSkb(SkbDirection::Ingress) },
    ProgramSpec { name: "tg_connect4", attach: Attach::CgroupSockAddr },
    ProgramSpec { name: "tg_connect6", attach: Attach::CgroupSockAddr },
    ProgramSpec { name: "tg_sendmsg4", attach: Attach::CgroupSockAddr },
    ProgramSpec { name: "tg_sendmsg6", attach: Attach::CgroupSockAddr },
    ProgramSpec { name: "tg_sockops", attach: Attach::SockOps },
    ProgramSpec { name: "tg_tc_from_pod", attach: Attach::Tc(TcDirection::Ingress) },
    ProgramSpec { name: "tg_tc_to_pod", attach: Attach::Tc(TcDirection::Egress) },
    ProgramSpec { name: VERIFY_PROGRAM, attach: Attach::Never },
];

/// The programs the agent attaches at the cgroup root.
pub fn root_programs() -> impl Iterator<Item = &'static ProgramSpec> {
    PROGRAMS.iter().filter(|p| p.attach.at_cgroup_root())
}
