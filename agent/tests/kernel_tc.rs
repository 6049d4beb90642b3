//! The TC layer's programs against the real kernel: a private, unattached
//! load, filled by the reconciler (with the pods' addresses), run through
//! BPF_PROG_TEST_RUN on made-up Ethernet frames. Test runs happen on `lo`
//! (ifindex 1), so the test registers `lo` as the pod's veth in
//! `TG_TC_PODS`. Needs root and a bpffs at /sys/fs/bpf.
mod support;
use std::{collections::BTreeMap, net::IpAddr};

use agent_common::{map_names, TcPod};
use aya::maps::HashMap;
use tollgate::{
    cgroups::CgroupIndex,
    datapath::{
        load::load_object,
        packet::{self, Protocol},
        pinned::Maps,
        reconcile::{self, ApplyInputs},
        tc::{FROM_POD_PROGRAM, TO_POD_PROGRAM},
        test_run::{self, TC_DROP, TC_PASS},
    },
};

const TE_UID: &str = "6f1c2a3e-0000-4000-8000-000000000010";
const LO: u32 = 1;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP frame with the given flags byte (packet::build makes a SYN).
fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut f = packet::build(ip(src), ip(dst), Protocol::Tcp, sport, dport);
    let l4 = if ip(dst).is_ipv4() { 14 + 20 } else { 14 + 40 };
    f[l4 + 13] = flags;
    f
}

/// An Ethernet/IPv4 ARP request with sender IP `spa`.
fn arp(spa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&[10, 244, 0, 1]);
    f
}

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;

#[test]
fn tc_layer_decides_spoofing_and_replies_in_the_kernel() {
    let (_g, pd) = support::pins("tc");
    let mut ebpf = load_object(&pd).unwrap();
    let mut maps = Maps::take(&mut ebpf).unwrap();
    let desired = support::compile(&support::snapshot(""));
    let inputs = ApplyInputs { always_allowed: Vec::new(), addresses: BTreeMap::from([(TE_UID.to_string(), vec![ip("10.244.0.10"), ip("fd00:10:244::10")])]) };
    let (_, registered) = reconcile::apply_with(&mut maps, &desired, &CgroupIndex::default(), &inputs).unwrap();
    let id = registered[TE_UID].id;
    let mut pods: HashMap<_, u32, TcPod> = HashMap::try_from(ebpf.take_map(map_names::TC_PODS).unwrap()).unwrap();
    pods.insert(LO, TcPod { workload: id, flags: 0 }, 0).unwrap();

    let from = |ebpf: &mut aya::Ebpf, frame: &[u8]| {
        let p = test_run::load_tc_program(ebpf, FROM_POD_PROGRAM).unwrap();
        test_run::run_tc(p, frame, 1).unwrap().1
    };
    let to = |ebpf: &mut aya::Ebpf, frame: &[u8]| {
        let p = test_run::load_tc_program(ebpf, TO_POD_PROGRAM).unwrap();
        test_run::run_tc(p, frame, 1).unwrap().1
    };
    let udp = |src: &str, dst: &str, sport, dport| packet::build(ip(src), ip(dst), Protocol::Udp, sport, dport);

    // The rules, with the pod's own source.
    let cases: [(&str, Vec<u8>, u32); 12] = [
        ("gateway", tcp("10.244.0.10", "10.244.0.20", 40000, 8080, SYN), TC_PASS),
        ("gateway v6", tcp("fd00:10:244::10", "fd00:10:244::20", 40000, 8080, SYN), TC_PASS),
        ("external", tcp("10.244.0.10", "203.0.113.10", 40000, 80, SYN), TC_DROP),
        ("external v6", udp("fd00:10:244::10", "2001:db8::1", 40000, 53), TC_DROP),
        // Anti-spoofing: another pod's address, an outside address.
        ("spoofed pod address", tcp("10.244.0.11", "10.244.0.20", 40000, 8080, SYN), TC_DROP),
        ("spoofed outside address", udp("203.0.113.99", "10.244.0.20", 1, 8080), TC_DROP),
        ("spoofed v6", tcp("fd00:10:244::99", "fd00:10:244::20", 40000, 8080, SYN), TC_DROP),
        ("IPv6 link-local source", tcp("fe80::1", "fd00:10:244::20", 40000, 8080, SYN), TC_PASS),
        // ARP: the pod's own sender address, a probe, a forged one.
        ("ARP", arp([10, 244, 0, 10]), TC_PASS),
        ("ARP probe", arp([0; 4]), TC_PASS),
        ("ARP forged", arp([10, 244, 0, 20]), TC_DROP),
        // A SYN-ACK to a peer that sent no SYN is no reply.
        ("unasked SYN-ACK", tcp("10.244.0.10", "203.0.113.10", 7000, 50000, SYN_ACK), TC_DROP),
    ];
    for (what, frame, want) in &cases {
        assert_eq!(from(&mut ebpf, frame), *want, "{what}");
    }
    // A lone non-first fragment has no ports: the gateway (all ports) lets
    // it through, an address no rule allows does not.
    let mut frag = udp("10.244.0.10", "203.0.113.10", 40000, 53);
    frag[14 + 6] = 0x00;
    frag[14 + 7] = 185;
    assert_eq!(from(&mut ebpf, &frag), TC_DROP, "fragment to the external host");
    let mut frag_gw = udp("10.244.0.10", "10.244.0.20", 40000, 8080);
    frag_gw[14 + 6] = 0x00;
    frag_gw[14 + 7] = 185;
    assert_eq!(from(&mut ebpf, &frag_gw), TC_PASS, "fragment to the gateway");

    // Replies to what a peer opened (the peer's packets pass toward the pod).
    let peer_syn = tcp("203.0.113.10", "10.244.0.10", 50000, 7000, SYN);
    assert_eq!(to(&mut ebpf, &peer_syn), TC_PASS);
    let data = tcp("10.244.0.10", "203.0.113.10", 7000, 50000, ACK);
    assert_eq!(from(&mut ebpf, &data), TC_DROP, "data before the handshake completes");
    assert_eq!(from(&mut ebpf, &tcp("10.244.0.10", "203.0.113.10", 7000, 50000, SYN_ACK)), TC_PASS, "SYN-ACK");
    assert_eq!(from(&mut ebpf, &tcp("10.244.0.10", "203.0.113.10", 7001, 50000, SYN_ACK)), TC_DROP, "SYN-ACK from another port");
    assert_eq!(from(&mut ebpf, &data), TC_DROP, "data before the peer's ACK");
    assert_eq!(to(&mut ebpf, &tcp("203.0.113.10", "10.244.0.10", 50000, 7000, ACK)), TC_PASS);
    assert_eq!(from(&mut ebpf, &data), TC_PASS, "data of the established connection");
    assert_eq!(from(&mut ebpf, &tcp("10.244.0.10", "203.0.113.10", 7000, 50001, ACK)), TC_DROP, "another peer port");
    // UDP: a peer's datagram may be answered; a flow the pod started is not a reply.
    assert_eq!(from(&mut ebpf, &udp("10.244.0.10", "203.0.113.10", 7000, 5353)), TC_DROP);
    assert_eq!(to(&mut ebpf, &udp("203.0.113.10", "10.244.0.10", 5353, 7000)), TC_PASS);
    assert_eq!(from(&mut ebpf, &udp("10.244.0.10", "203.0.113.10", 7000, 5353)), TC_PASS, "UDP answer");
    assert_eq!(from(&mut ebpf, &udp("10.244.0.10", "10.96.0.10", 40001, 53)), TC_PASS, "DNS query");
    assert_eq!(to(&mut ebpf, &udp("10.96.0.10", "10.244.0.10", 53, 40001)), TC_PASS);
    // A veth the layer does not watch passes untouched.
    pods.remove(&LO).unwrap();
    assert_eq!(from(&mut ebpf, &tcp("10.244.0.10", "203.0.113.10", 40000, 80, SYN)), TC_PASS, "unwatched veth");
    pods.insert(LO, TcPod { workload: id, flags: 0 }, 0).unwrap();

    // The cost per packet (kernel's own timing of 100,000 runs).
    for (what, frame) in [
        ("allowed (gateway)", tcp("10.244.0.10", "10.244.0.20", 40000, 8080, ACK)),
        ("denied (no rule)", tcp("10.244.0.10", "203.0.113.10", 40000, 80, ACK)),
        ("reply (established)", data.clone()),
    ] {
        let p = test_run::load_tc_program(&mut ebpf, FROM_POD_PROGRAM).unwrap();
        let (ns, _) = test_run::run_tc(p, &frame, 100_000).unwrap();
        eprintln!("tg_tc_from_pod {what}: {ns:.0} ns/packet");
    }
}
