//! Tollgate kernel programs.
//!
//! - `tg_egress` (cgroup_skb/egress): the enforcement point. Every IPv4/IPv6
//!   packet sent by a socket of a registered pod is checked against the
//!   pod's allow-list and dropped (enforce) or counted (audit).
//! - `tg_ingress` (cgroup_skb/ingress) and `tg_sockops` (sock_ops): reply
//!   state that a pod cannot forge (see `reply`).
//! - `tg_connect4/6`, `tg_sendmsg4/6` (cgroup/sock_addr): the same verdict at
//!   `connect()`/`sendmsg()`, so applications get EPERM at once.
//! - `tg_tc_from_pod` / `tg_tc_to_pod` (TC on each pod's host-side veth):
//!   the same decision below the socket layer, for frames no socket hook
//!   sees (AF_PACKET, raw IP), with anti-spoofing (see `tc_programs`).
//! - `tg_verify` (cgroup_skb, never attached): the same decision run by
//!   `tollgate verify` through BPF_PROG_TEST_RUN.
#![no_std]
#![no_main]

mod cgroup;
mod decide;
mod maps;
mod packet;
mod record;
mod reply;
mod skb_programs;
mod sock_addr_programs;
mod sock_ops_program;
mod sock_storage;
mod tc_programs;
mod tc_reply;
mod verdict_cache;

#[unsafe(no_mangle)]
#[unsafe(link_section = "license")]
pub static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
