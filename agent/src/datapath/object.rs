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

/// The attached programs and how they attach.
pub const ATTACHED_PROGRAMS: [&str; 6] = [
    "tg_egress",
    "tg_ingress",
    "tg_connect4",
    "tg_connect6",
    "tg_sendmsg4",
    "tg_sendmsg6",
];
pub const VERIFY_PROGRAM: &str = "tg_verify";
