//! Reply state that a pod cannot forge, against the real agent and kernel:
//! the `lo` poisoning attack (IPv6 with IPV6_FREEBIND, IPv4 with
//! IP_TRANSPARENT) opens nothing, judged by a sniffer on the external host;
//! inbound TCP and UDP from a peer the policy does not allow get their
//! replies; a SYN flood of 100,000 SYNs from random sources does not
//! disturb an established inbound connection; a process in a pod cgroup
//! the agent has not classified yet cannot send until its pod is known,
//! while a new container of a known pod is enforced as its pod.
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::agent::{default_tollgate_bin, find_workload};
use tollgate_e2e::pods::{self, PodSpec};
use tollgate_e2e::helpers::{args, run_json, spawn};
use tollgate_e2e::procs::{exec_in_command, run_capture, Proc};
use tollgate_e2e::story::{v4, v6, Story};
use tollgate_e2e::util::poll;

const T: Duration = Duration::from_secs(3);

fn setup() -> Story {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");
    story
}

fn te() -> PodSpec {
    pods::TEST_EGRESS_SLEEP
}

fn in_pod(story: &Story, pod: &PodSpec, args: &[String], timeout: Duration) -> Value {
    run_json(story, story.topo.pod_ns(pod), Some(story.cgroups.container(pod)), args, timeout)
}

/// Starts echo servers (TCP and UDP) inside `pod` on `port` (both families).
fn echo_servers(story: &Story, pod: &PodSpec, port: u16) -> Vec<Proc> {
    let ns = story.topo.pod_ns(pod).to_string();
    let cg = story.cgroups.container(pod).to_path_buf();
    let listen = |kind: &str| {
        args(&[kind, "--listen", &v4(pod.ipv4, port).to_string(), "--listen", &v6(pod.ipv6, port).to_string()])
    };
    vec![
        spawn(story, &format!("tcp-echo-{port}"), &ns, Some(&cg), &listen("tcp-echo")),
        spawn(story, &format!("udp-echo-{port}"), &ns, Some(&cg), &listen("udp-echo")),
    ]
}

#[test]
fn lo_poisoning_opens_nothing() {
    let story = setup();
    let ext = story.topo.external_ns.clone();
    let sniffer_args = args(&["sniff", "--from", &te().ipv4.to_string(), "--from", &te().ipv6.to_string(), "--ms", "4000"]);
    let mut sniffer = spawn(&story, "sniff", &ext, None, &sniffer_args);
    for (peer, port) in [(v6(pods::EXTERNAL_V6, 5353), "7777"), (v4(pods::EXTERNAL_V4, 5353), "7778")] {
        let r = in_pod(&story, &te(), &args(&["udp-poison", "--peer", &peer.to_string(), "--local-port", port]), T);
        // The attack is staged for real: the forged datagram reached the pod.
        assert_eq!(r["received"], true, "the forged datagram from {peer} did not arrive over lo: {r}");
        assert_eq!(r["send_errno"], libc::EPERM, "unconnected answer to {peer}: {r}");
        assert_eq!(r["connected_send_errno"], libc::EPERM, "connected answer to {peer}: {r}");
    }
    let sniffed = poll("the sniffer to finish", Duration::from_secs(10), || {
        Ok(sniffer.try_exited().map(|_| sniffer.log_text()))
    })
    .expect("sniffer");
    let line = sniffed.lines().rev().find(|l| l.starts_with("{\"packets\"")).unwrap_or_else(|| panic!("sniffer said {sniffed}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["packets"], 0, "packets from the pod reached the external host: {v}");
}

#[test]
fn inbound_connections_from_a_peer_the_policy_does_not_allow_get_their_replies() {
    let mut story = setup();
    let _servers = echo_servers(&story, &te(), 7000);
    // The pod itself may not reach the external host...
    let r = story.probe_tcp(&te(), v4(pods::EXTERNAL_V4, 80), false, T).unwrap();
    assert_eq!(r.errno, Some(libc::EPERM), "{r:?}");
    let ext = story.topo.external_ns.clone();
    for to in [v4(te().ipv4, 7000), v6(te().ipv6, 7000)] {
        // ...but what the external host opened is answered.
        let r = run_json(&story, &ext, None, &args(&["tcp-chat", "--to", &to.to_string(), "--count", "20", "--interval-ms", "5"]), T * 5);
        assert_eq!(r["ok"], true, "TCP from the external host to {to}: {r}");
        let r = run_json(&story, &ext, None, &args(&["udp-ask", "--to", &to.to_string()]), T);
        assert_eq!(r["ok"], true, "UDP from the external host to {to}: {r}");
    }
    let agent = story.agent();
    let c = agent.counters().unwrap();
    let w = find_workload(&c, te().namespace, te().name).expect("test-egress/sleep in counters");
    assert!(w["reasons"]["reply"].as_u64().unwrap_or(0) > 0, "replies not counted as `reply`: {w}");
}

#[test]
fn syn_flood_does_not_disturb_an_established_connection() {
    let story = setup();
    let _servers = echo_servers(&story, &te(), 7000);
    let _target = echo_servers(&story, &te(), 7002);
    let ext = story.topo.external_ns.clone();
    let chat_cmd = exec_in_command(
        &story.e2e_bin,
        Some(&ext),
        None,
        &story.e2e_bin,
        &args(&["tcp-chat", "--to", &v4(te().ipv4, 7000).to_string(), "--count", "250", "--interval-ms", "20", "--timeout-ms", "2000"]),
    );
    let chat = std::thread::spawn(move || run_capture(chat_cmd, Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(300));
    let flood = run_json(
        &story,
        &ext,
        None,
        &args(&["syn-flood", "--to", &v4(te().ipv4, 7002).to_string(), "--net", "203.0.113.0", "--count", "100000"]),
        Duration::from_secs(60),
    );
    let chat = chat.join().expect("chat thread").expect("tcp-chat");
    let chat: Value = serde_json::from_str(chat.lines().last().unwrap_or_default()).unwrap();
    eprintln!("[e2e] flood {flood}, chat {chat}");
    assert!(flood["sent"].as_u64().unwrap_or(0) >= 100_000, "{flood}");
    assert!(flood["distinct_sources"].as_u64().unwrap_or(0) > 100, "{flood}");
    assert_eq!(chat["ok"], true, "the established connection failed during the flood: {chat}");
    assert_eq!(chat["failures"], 0, "{chat}");
    assert!(
        chat["elapsed_ms"].as_u64().unwrap_or(0) >= flood["elapsed_ms"].as_u64().unwrap_or(u64::MAX),
        "the chat did not last through the flood: {chat} {flood}"
    );
}

const NEW_UID: &str = "6f1c2a3e-0000-4000-8000-0000000000f1";

fn unknown_pod_manifest() -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: late\n  namespace: default\n  uid: {NEW_UID}\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    image: busybox\nstatus:\n  phase: Running\n  podIP: 10.244.0.11\n"
    )
}

#[test]
fn unclassified_pod_cgroups_are_denied_until_their_pod_is_known() {
    let mut story = setup();
    let gw = v4(pods::EGRESS_GATEWAY.ipv4, pods::GATEWAY_PORT);
    // A pod cgroup the agent has no pod for (its namespace is not enforced).
    let dir = story
        .cgroups
        .root
        .join(format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice", NEW_UID.replace('-', "_")))
        .join("cri-containerd-late.scope");
    std::fs::create_dir_all(&dir).unwrap();
    let netns = story.topo.pod_ns(&pods::DEFAULT_SLEEP).to_string();
    let probe = |story: &Story, cg: &Path, to: SocketAddr| {
        run_json(story, &netns, Some(cg), &args(&["probe", "tcp", "--to", &to.to_string(), "--timeout-ms", "2000"]), T)
    };
    let r = probe(&story, &dir, gw);
    assert_eq!(r["errno"], libc::EPERM, "an unclassified pod reached the gateway: {r}");
    // A new container of a known, enforced pod is enforced as that pod from
    // its first packet (its nearest registered ancestor is the pod).
    let te_new = story.cgroups.container(&te()).parent().unwrap().join("cri-containerd-new.scope");
    std::fs::create_dir_all(&te_new).unwrap();
    let r = run_json(&story, story.topo.pod_ns(&te()), Some(&te_new), &args(&["probe", "tcp", "--to", &gw.to_string(), "--timeout-ms", "2000"]), T);
    assert_eq!(r["ok"], true, "a new container of test-egress/sleep could not reach the gateway: {r}");
    let r = run_json(&story, story.topo.pod_ns(&te()), Some(&te_new), &args(&["probe", "tcp", "--to", &v4(pods::EXTERNAL_V4, 80).to_string(), "--timeout-ms", "2000"]), T);
    assert_eq!(r["errno"], libc::EPERM, "a new container of test-egress/sleep reached the outside: {r}");
    // Once the pod is known, it is classified (not enforced) and may send.
    std::fs::write(story.manifests.join("late-pod.yaml"), unknown_pod_manifest()).unwrap();
    let agent = story.agent();
    poll("the agent to register default/late", Duration::from_secs(15), || {
        let st = agent.status()?;
        Ok(find_workload(&st, "default", "late").filter(|w| w["cgroups"].as_u64().unwrap_or(0) >= 1).map(|_| ()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let r = probe(&story, &dir, gw);
    assert_eq!(r["ok"], true, "the registered pod cannot send: {r}");
    let _ = std::fs::remove_dir(&te_new);
    let _ = std::fs::remove_dir(&dir);
}
