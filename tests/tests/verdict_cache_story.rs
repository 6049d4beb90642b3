//! Verdicts cached with a socket never outlive the policy that produced
//! them: a long-lived TCP connection and a connected UDP socket of an
//! enforced pod talk to another pod (allowed: inside the cluster) while a
//! NetworkPolicy that denies it is applied; the next packets after the
//! apply are dropped, and the drops are counted.
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_e2e::agent::default_tollgate_bin;
use tollgate_e2e::pods;
use tollgate_e2e::procs::{exec_in_command, run_capture, Proc};
use tollgate_e2e::story::{v4, Story};

const DENY_ALL: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all-egress, namespace: test-egress}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n";

#[test]
fn a_policy_change_applies_to_the_next_packet_of_open_sockets() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");
    let (te, peer) = (pods::TEST_EGRESS_SLEEP, pods::DEFAULT_SLEEP);
    let to = v4(peer.ipv4, 7000).to_string();
    let mut servers = Vec::new();
    for kind in ["tcp-echo", "udp-echo"] {
        let cmd = exec_in_command(
            &story.e2e_bin,
            Some(story.topo.pod_ns(&peer)),
            Some(story.cgroups.container(&peer)),
            &story.e2e_bin,
            &[kind.to_string(), "--listen".into(), to.clone()],
        );
        let log = story.dir.path.join(format!("{kind}.log"));
        servers.push(Proc::spawn(kind, cmd, log, Some(Duration::from_secs(10))).expect(kind));
    }
    // 400 round trips 25 ms apart on each socket (10 s); the policy lands
    // in the middle.
    let chats: Vec<_> = [false, true]
        .into_iter()
        .map(|udp| {
            let mut a = vec!["tcp-chat", "--to", &to, "--count", "400", "--interval-ms", "25", "--timeout-ms", "1500"];
            if udp {
                a.push("--udp");
            }
            let args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
            let cmd = exec_in_command(&story.e2e_bin, Some(story.topo.pod_ns(&te)), Some(story.cgroups.container(&te)), &story.e2e_bin, &args);
            std::thread::spawn(move || run_capture(cmd, Duration::from_secs(60)))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let before = story.agent().workload_counters(te.namespace, te.name).unwrap();
    let gen = story.agent().generation().unwrap();
    std::fs::write(story.manifests.join("deny-all-egress.yaml"), DENY_ALL).unwrap();
    let applied_at = Instant::now();
    story.agent().wait_applied(te.namespace, te.name, "enforce", Some(gen), Duration::from_secs(15)).unwrap();
    let applied_after = applied_at.elapsed();
    let started = Instant::now();
    for (chat, kind) in chats.into_iter().zip(["TCP", "UDP"]) {
        let out = chat.join().unwrap().unwrap_or_else(|e| panic!("{kind} chat: {e:#}"));
        let r: Value = serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
        eprintln!("[e2e] {kind}: {r} (policy applied {applied_after:?} after it was written)");
        let done = r["done"].as_u64().unwrap_or(0);
        assert!(done >= 20, "{kind}: the socket did not work before the change: {r}");
        assert_eq!(r["ok"], false, "{kind}: the socket kept talking after the policy denied it: {r}");
        assert!(done < 400, "{kind}: {r}");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let after = story.agent().workload_counters(te.namespace, te.name).unwrap();
    assert!(after.dropped_packets > before.dropped_packets, "the drops are not counted: {before:?} -> {after:?}");
    // The pod's other sockets obey too: the peer is refused at connect().
    let r = story.probe_tcp(&te, v4(peer.ipv4, 7000), false, Duration::from_secs(2)).unwrap();
    assert_eq!(r.errno, Some(libc::EPERM), "{r:?}");
    drop(servers);
}
