//! The sandbox itself, without the agent: pods reach the external host and
//! the gateway, DNS answers, cleanup leaves nothing behind.

use std::path::Path;
use std::time::Duration;
use tollgate_e2e::pods;
use tollgate_e2e::story::{v4, v6, Story};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"))
}

#[test]
fn topology_smoke() {
    tollgate_e2e::util::require_environment();
    let story = Story::build(bin()).expect("build story");
    let t = Duration::from_secs(3);
    let d = pods::DEFAULT_SLEEP;

    for to in [v4(pods::EXTERNAL_V4, 80), v6(pods::EXTERNAL_V6, 80)] {
        let r = story.probe_tcp(&d, to, true, t).unwrap();
        assert!(r.ok, "default/sleep -> {to}: {r:?}");
        assert_eq!(r.body, format!("external-ok from {to}"));
    }
    // Through the gateway pod's forwarder, both families.
    let gw = pods::EGRESS_GATEWAY;
    for (to, ext) in [
        (v4(gw.ipv4, pods::GATEWAY_PORT), v4(pods::EXTERNAL_V4, 80)),
        (v6(gw.ipv6, pods::GATEWAY_PORT), v6(pods::EXTERNAL_V6, 80)),
    ] {
        let r = story.probe_tcp(&pods::TEST_EGRESS_SLEEP, to, true, t).unwrap();
        assert!(r.ok, "test-egress/sleep -> gateway {to}: {r:?}");
        assert_eq!(r.body, format!("external-ok from {ext}"));
    }
    // Nothing listens here: a quick refusal, not EPERM.
    let r = story.probe_tcp(&d, v4(pods::EXTERNAL_V4, 81), false, t).unwrap();
    assert_eq!(r.errno, Some(libc::ECONNREFUSED), "{r:?}");

    for server in [v4(pods::COREDNS.ipv4, 53), v6(pods::COREDNS.ipv6, 53)] {
        for tcp in [false, true] {
            let r = story.probe_dns(&d, server, "A", tcp).unwrap();
            assert!(r.ok, "dns {server} tcp={tcp}: {r:?}");
            assert_eq!(r.answers, vec!["203.0.113.10"]);
            let r = story.probe_dns(&d, server, "AAAA", tcp).unwrap();
            assert_eq!(r.answers, vec!["2001:db8:113::10"], "{r:?}");
        }
    }
    let r = story.probe_udp(&d, v4(pods::EXTERNAL_V4, 9)).unwrap();
    assert!(r.ok, "{r:?}");

    // Probes run inside the pod's cgroup.
    let cg = story.cgroups.container(&d).to_path_buf();
    assert!(cg.to_string_lossy().contains(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod6f1c2a3e_0000_4000_8000_000000000011.slice/cri-containerd-"
    ));
    let servers_cg = std::fs::read_to_string(story.cgroups.container(&pods::COREDNS).join("cgroup.procs")).unwrap();
    assert_eq!(servers_cg.lines().count(), 1, "dns server should be in the coredns cgroup");

    let (nss, root) = (story.topo.namespaces().to_vec(), story.cgroups.root.clone());
    drop(story);
    let list = tollgate_e2e::util::ip(&["netns", "list"]).unwrap();
    for ns in nss {
        assert!(!list.lines().any(|l| l.split_whitespace().next() == Some(ns.as_str())), "netns {ns} left behind");
    }
    assert!(!root.exists(), "cgroup root {} left behind", root.display());
}
