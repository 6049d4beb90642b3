//! The TC layer on the host side of each enforced pod's veth, against the
//! real agent (running in the node's network namespace, as a DaemonSet
//! with hostNetwork does) and kernel: AF_PACKET frames that no socket hook
//! sees (SOCK_RAW and SOCK_DGRAM, with PACKET_QDISC_BYPASS, IPv4 and
//! IPv6, the pod's own source and forged ones, a lone non-first fragment
//! of each family) from an enforced pod never reach the external host (a
//! sniffer there counts them), while the same frames from a pod that is not enforced do
//! (so the frames are routable and the test can fail); the gateway, DNS and
//! the replies of connections the external host opens still work; the
//! drops are reported with layer `tc`.
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_e2e::agent::default_tollgate_bin;
use tollgate_e2e::helpers::{args, bridge_mac, run_json, send_frames, sniffed, sniffer, spawn, Frame};
use tollgate_e2e::pods::{self, PodSpec};
use tollgate_e2e::story::{v4, v6, Story};
use tollgate_e2e::util::poll;

const T: Duration = Duration::from_secs(3);

fn send(story: &Story, pod: &PodSpec, mac: &str, f: &Frame) {
    send_frames(story, pod, mac, f, 9, 3);
}

/// The frames a pod sends with its own addresses (the positive control
/// sends these too).
fn own_frames(pod: &PodSpec) -> Vec<Frame> {
    let ext4 = IpAddr::V4(pods::EXTERNAL_V4);
    let ext6 = IpAddr::V6(pods::EXTERNAL_V6);
    let (own4, own6) = (IpAddr::V4(pod.ipv4), IpAddr::V6(pod.ipv6));
    vec![
        Frame { flags: &[], src: own4, dst: ext4 },
        Frame { flags: &["--dgram", "--qdisc-bypass"], src: own4, dst: ext4 },
        Frame { flags: &["--qdisc-bypass"], src: own6, dst: ext6 },
        Frame { flags: &["--dgram"], src: own6, dst: ext6 },
        Frame { flags: &["--fragment"], src: own4, dst: ext4 },
        Frame { flags: &["--fragment", "--dgram"], src: own6, dst: ext6 },
    ]
}

#[test]
fn frames_below_the_socket_layer_are_caught_and_allowed_traffic_flows() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    story.start_agent_on_node(&default_tollgate_bin()).expect("starting the agent");
    let te = pods::TEST_EGRESS_SLEEP;
    let dfs = pods::DEFAULT_SLEEP;

    // The pod gets its first processes after the agent started: servers
    // for the inbound connections below. The layer attaches within a second.
    let (ns, cg) = (story.topo.pod_ns(&te).to_string(), story.cgroups.container(&te).to_path_buf());
    let listen = |kind: &str| args(&[kind, "--listen", &v4(te.ipv4, 7000).to_string(), "--listen", &v6(te.ipv6, 7000).to_string()]);
    let started = Instant::now();
    let _servers = [spawn(&story, "tcp-echo", &ns, Some(&cg), &listen("tcp-echo")), spawn(&story, "udp-echo", &ns, Some(&cg), &listen("udp-echo"))];
    let attached = story.wait_tc_layer(&te, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{e:#}"));
    let took = started.elapsed();
    eprintln!("[e2e] TC layer attached in {took:?}: {attached:?}");
    assert!(took < Duration::from_secs(2), "attached only after {took:?}");

    let mac = bridge_mac(&story);
    let spoofed4a = IpAddr::V4("10.244.0.99".parse().unwrap());
    let spoofed4b = IpAddr::V4("198.51.100.7".parse().unwrap());
    let spoofed6 = IpAddr::V6("fd00:10:244::99".parse().unwrap());
    let ext4 = IpAddr::V4(pods::EXTERNAL_V4);
    let ext6 = IpAddr::V6(pods::EXTERNAL_V6);
    let mut enforced = own_frames(&te);
    enforced.extend([
        Frame { flags: &[], src: spoofed4a, dst: ext4 },
        Frame { flags: &["--dgram", "--qdisc-bypass"], src: spoofed4b, dst: ext4 },
        Frame { flags: &["--dgram"], src: spoofed6, dst: ext6 },
    ]);
    let control = own_frames(&dfs);
    let from_te = [IpAddr::V4(te.ipv4), IpAddr::V6(te.ipv6), spoofed4a, spoofed4b, spoofed6];
    let from_dfs = [IpAddr::V4(dfs.ipv4), IpAddr::V6(dfs.ipv6)];
    let sniff_te = sniffer(&story, "sniff-te", &from_te, 3000);
    let sniff_dfs = sniffer(&story, "sniff-dfs", &from_dfs, 3000);
    for f in &enforced {
        send(&story, &te, &mac, f);
    }
    for f in &control {
        send(&story, &dfs, &mac, f);
    }
    let (te_seen, dfs_seen) = (sniffed(sniff_te), sniffed(sniff_dfs));
    eprintln!("[e2e] external host saw from the enforced pod {te_seen}, from the pod not enforced {dfs_seen}");
    assert_eq!(dfs_seen["packets"].as_u64(), Some(3 * control.len() as u64), "the control frames must all arrive: {dfs_seen}");
    assert_eq!(te_seen["packets"], 0, "frames from the enforced pod reached the external host: {te_seen}");

    // Allowed traffic: the gateway and DNS, both families.
    let gw = pods::EGRESS_GATEWAY;
    for to in [v4(gw.ipv4, pods::GATEWAY_PORT), v6(gw.ipv6, pods::GATEWAY_PORT)] {
        let r = story.probe_tcp(&te, to, true, T).unwrap();
        assert!(r.ok, "through the gateway {to}: {r:?}");
    }
    let dns = pods::COREDNS;
    for (server, tcp) in [(v4(dns.ipv4, 53), false), (v6(dns.ipv6, 53), false), (v4(dns.ipv4, 53), true)] {
        let r = story.probe_dns(&te, server, "A", tcp).unwrap();
        assert!(r.ok, "DNS to {server} (tcp {tcp}): {r:?}");
    }
    // Replies of what the external host opens (a peer the policy does not allow).
    let ext = story.topo.external_ns.clone();
    for to in [v4(te.ipv4, 7000), v6(te.ipv6, 7000)] {
        let r = run_json(&story, &ext, None, &args(&["tcp-chat", "--to", &to.to_string(), "--count", "20", "--interval-ms", "5"]), Duration::from_secs(20));
        assert_eq!(r["ok"], true, "TCP from the external host to {to}: {r}");
        let r = run_json(&story, &ext, None, &args(&["udp-ask", "--to", &to.to_string()]), Duration::from_secs(20));
        assert_eq!(r["ok"], true, "UDP from the external host to {to}: {r}");
    }

    // The drops, reported by the layer that made them.
    let agent = story.agent();
    let flows = poll("drops with layer tc in `flows`", Duration::from_secs(5), || {
        let f: Vec<Value> = agent.flows()?.into_iter().filter(|f| f["layer"] == "tc").collect();
        let reasons: Vec<&str> = f.iter().filter_map(|f| f["reason"].as_str()).collect();
        Ok((reasons.contains(&"spoofed") && reasons.contains(&"no-rule")).then_some(f))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(flows.iter().all(|f| f["namespace"] == "test-egress" && f["verdict"] == "dropped"), "{flows:?}");
}
