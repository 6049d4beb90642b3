//! The bypass suite, below the socket layer (issue 8 §2, §7): AF_PACKET
//! frames (SOCK_RAW and SOCK_DGRAM, with PACKET_QDISC_BYPASS), IPv4 and
//! IPv6, with the pod's own source and with a spoofed one, written by
//! test-egress/sleep (enforced) to the node's bridge, as uid 1000 with
//! CAP_NET_RAW only and as root. No cgroup hook sees these frames: only a
//! TC program on the pod's host-side veth can stop them. Judged by the
//! sniffer on the external host; each attempt also runs from default/sleep
//! (not enforced), where it must arrive. The agent runs in the node's
//! network namespace, as the DaemonSet does (hostNetwork), so that it puts
//! the TC layer on the pods' veths.
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tollgate_e2e::agent::default_tollgate_bin;
use tollgate_e2e::attack_suite::{assert_rows, mac_in, Spec, Suite};
use tollgate_e2e::pods::{self, DEFAULT_SLEEP, EGRESS_GATEWAY, TEST_EGRESS_SLEEP};
use tollgate_e2e::procs::{exec_in_command, Proc};
use tollgate_e2e::story::Story;

#[test]
fn af_packet_frames_do_not_leave_an_enforced_pod() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    story.start_agent_on_node(&default_tollgate_bin()).expect("starting the agent");
    // Each pod has a process from its start on, as its sandbox (pause)
    // container gives it on a node; the agent finds the veth through it.
    let _pause: Vec<Proc> = [TEST_EGRESS_SLEEP, DEFAULT_SLEEP]
        .iter()
        .map(|p| {
            let cmd = exec_in_command(&story.e2e_bin, Some(story.topo.pod_ns(p)), Some(story.cgroups.container(p)), Path::new("/bin/sleep"), &["120".to_string()]);
            Proc::spawn("pause", cmd, story.dir.path.join(format!("pause-{}.log", p.tag)), None).expect("pause process")
        })
        .collect();
    story.wait_tc_layer(&TEST_EGRESS_SLEEP, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e:#}"));
    let mac = mac_in(&story.topo.node_ns, "br0").unwrap();
    let e4 = SocketAddr::new(pods::EXTERNAL_V4.into(), 0);
    let e6 = SocketAddr::new(pods::EXTERNAL_V6.into(), 0);
    let gw4: IpAddr = EGRESS_GATEWAY.ipv4.into();
    let gw6: IpAddr = EGRESS_GATEWAY.ipv6.into();
    let specs = [
        Spec::new("packet4-raw", "packet-raw", e4).own_source(),
        Spec::new("packet6-raw", "packet-raw", e6).own_source(),
        Spec::new("packet4-dgram", "packet-dgram", e4).own_source(),
        Spec::new("packet6-dgram", "packet-dgram", e6).own_source(),
        Spec::new("packet4-qdisc-bypass", "packet-qdisc-bypass", e4).own_source(),
        Spec::new("packet6-qdisc-bypass", "packet-qdisc-bypass", e6).own_source(),
        Spec::new("packet4-spoofed-gw", "packet-spoofed", e4).arg("--spoof", gw4),
        Spec::new("packet6-spoofed-gw", "packet-spoofed", e6).arg("--spoof", gw6),
        Spec::new("packet4-spoofed-out", "packet-spoofed", e4).arg("--spoof", "198.51.100.7"),
    ];
    let mut suite = Suite::start(&story).unwrap();
    for spec in specs {
        suite.attempt_all(&spec.arg("--dst-mac", &mac), &TEST_EGRESS_SLEEP, &DEFAULT_SLEEP).unwrap();
    }
    let rows = suite.finish().unwrap();
    assert_rows("bypass suite, AF_PACKET", &rows);
}
