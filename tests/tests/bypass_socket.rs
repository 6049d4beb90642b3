//! The bypass suite, socket layer (issue 8 §7): every way out of an
//! enforced pod through a socket — TCP, UDP, ICMP, SCTP, IPv4, IPv6 and
//! IPv4-mapped IPv6; raw IP with the pod's own source, a spoofed source and
//! IP options; fragments, a lone non-first fragment among them; DNS to an
//! outside resolver; sendmsg/sendmmsg with an address; connect then sendto;
//! the `lo` poisoning — from test-egress/sleep (enforced) as uid 1000 with
//! CAP_NET_RAW only and as root. Judged by a sniffer on the external host.
//! Each attempt also runs from default/sleep (not enforced): the sniffer must
//! see it there, so a broken attack or sniffer fails the suite. The gateway
//! is a control from the enforced pod itself (it must arrive, forwarded).
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use tollgate_e2e::agent::default_tollgate_bin;
use tollgate_e2e::attack_suite::{assert_rows, spawn_in, Expect, Spec, Suite, MODES};
use tollgate_e2e::pods::{self, COREDNS, DEFAULT_SLEEP, EGRESS_GATEWAY, TEST_EGRESS_SLEEP};
use tollgate_e2e::story::{v4, v6, Story};
use tollgate_e2e::topology::sysctl;

fn sa(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

/// The attempts; destinations with port 0 get a port of their own per run.
fn specs() -> Vec<Spec> {
    let e4 = sa(pods::EXTERNAL_V4, 0);
    let e6 = sa(pods::EXTERNAL_V6, 0);
    let mapped = sa(pods::EXTERNAL_V4.to_ipv6_mapped(), 0);
    let dns4 = v4(COREDNS.ipv4, 53);
    let dns6 = v6(COREDNS.ipv6, 53);
    let gw_v4: IpAddr = EGRESS_GATEWAY.ipv4.into();
    let gw_v6: IpAddr = EGRESS_GATEWAY.ipv6.into();
    vec![
        Spec::new("tcp4", "tcp-connect", e4),
        Spec::new("tcp6", "tcp-connect", e6),
        Spec::new("tcp-v4-mapped-v6", "tcp-connect", mapped),
        Spec::new("udp4-sendto", "udp-sendto", e4),
        Spec::new("udp6-sendto", "udp-sendto", e6),
        Spec::new("udp-v4-mapped-v6", "udp-sendto", mapped),
        Spec::new("udp4-connect", "udp-connect", e4),
        Spec::new("udp6-connect", "udp-connect", e6),
        Spec::new("udp4-sendmsg", "udp-sendmsg", e4),
        Spec::new("udp6-sendmsg", "udp-sendmsg", e6),
        Spec::new("udp4-sendmmsg", "udp-sendmmsg", e4).arg("--allowed", dns4),
        Spec::new("udp6-sendmmsg", "udp-sendmmsg", e6).arg("--allowed", dns6),
        Spec::new("udp4-connect-then-sendto", "udp-connect-then-sendto", e4).arg("--allowed", dns4),
        Spec::new("udp6-connect-then-sendto", "udp-connect-then-sendto", e6).arg("--allowed", dns6),
        Spec::new("udp4-kernel-fragments", "udp-fragmented", e4),
        Spec::new("udp6-kernel-fragments", "udp-fragmented", e6),
        Spec::new("icmp4-echo-raw", "icmp-raw", e4),
        Spec::new("icmp6-echo-raw", "icmp-raw", e6),
        Spec::new("icmp4-echo-ping-socket", "icmp-dgram", e4),
        Spec::new("icmp6-echo-ping-socket", "icmp-dgram", e6),
        Spec::new("sctp4", "sctp", e4),
        Spec::new("sctp6", "sctp", e6),
        Spec::new("raw4-ipproto-udp", "raw-proto", e4).own_source(),
        Spec::new("raw6-ipproto-udp", "raw-proto", e6).own_source(),
        Spec::new("raw4-hdrincl-own-source", "raw-hdrincl", e4).own_source(),
        Spec::new("raw6-hdrincl-own-source", "raw-hdrincl", e6).own_source(),
        Spec::new("raw4-hdrincl-spoofed-gw", "raw-spoofed", e4).arg("--spoof", gw_v4),
        Spec::new("raw6-hdrincl-spoofed-gw", "raw-spoofed", e6).arg("--spoof", gw_v6),
        Spec::new("raw4-hdrincl-spoofed-out", "raw-spoofed", e4).arg("--spoof", Ipv4Addr::new(198, 51, 100, 7)),
        Spec::new("raw4-ip-options", "raw-options", e4).own_source(),
        Spec::new("raw6-dest-options", "raw-options", e6).own_source(),
        Spec::new("frag4-pair", "frag-pair", e4).own_source(),
        Spec::new("frag4-lone-non-first", "frag-lone", e4).own_source(),
        Spec::new("frag6-pair", "frag-pair", e6).own_source(),
        Spec::new("frag6-lone-non-first", "frag-lone", e6).own_source(),
        Spec::new("dns4-outside-udp", "dns-udp", v4(pods::EXTERNAL_V4, 53)),
        Spec::new("dns6-outside-udp", "dns-udp", v6(pods::EXTERNAL_V6, 53)),
        Spec::new("dns4-outside-tcp", "dns-tcp", v4(pods::EXTERNAL_V4, 53)),
        Spec::new("dns6-outside-tcp", "dns-tcp", v6(pods::EXTERNAL_V6, 53)),
        Spec::new("lo-poison6-freebind", "lo-poison", e6).arg("--local-port", 7777),
        Spec::new("lo-poison4-transparent", "lo-poison", e4).arg("--local-port", 7778),
    ]
}

#[test]
fn no_socket_gets_a_packet_out_of_an_enforced_pod() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    // Ping sockets for everyone, as container runtimes set it.
    for pod in [TEST_EGRESS_SLEEP, DEFAULT_SLEEP] {
        sysctl(story.topo.pod_ns(&pod), "net/ipv4/ping_group_range", "0 2147483647").unwrap();
    }
    // An outside resolver on the external host.
    let ext = story.topo.external_ns.clone();
    let dns_args: Vec<String> = ["dns-serve", "--listen", "203.0.113.10:53", "--listen", "[2001:db8:113::10]:53", "--record", "edition.cnn.com=203.0.113.10"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    spawn_in(&mut story, "outside-dns", &ext, None, &dns_args).unwrap();
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");

    // Cluster DNS answers the enforced pod (a control on the sender's side).
    for server in [v4(COREDNS.ipv4, 53), v6(COREDNS.ipv6, 53)] {
        let r = story.probe_dns(&TEST_EGRESS_SLEEP, server, "A", false).unwrap();
        assert!(r.ok, "cluster DNS {server} did not answer the enforced pod: {r:?}");
    }

    let mut suite = Suite::start(&story).unwrap();
    // The gateway: allowed, and what it forwards reaches the external host.
    for gw in [v4(EGRESS_GATEWAY.ipv4, pods::GATEWAY_PORT), v6(EGRESS_GATEWAY.ipv6, pods::GATEWAY_PORT)] {
        let spec = Spec::new(if gw.is_ipv4() { "gateway4-control" } else { "gateway6-control" }, "tcp-connect", gw);
        for mode in MODES {
            suite.attempt(&spec, &TEST_EGRESS_SLEEP, mode, Expect::Arrives).unwrap();
        }
    }
    for spec in specs() {
        suite.attempt_all(&spec, &TEST_EGRESS_SLEEP, &DEFAULT_SLEEP).unwrap();
    }
    let rows = suite.finish().unwrap();
    assert_rows("bypass suite, sockets", &rows);
}
