//! Pods of a sandboxed runtime (`runtimeClassName: gvisor`, Kata) send from
//! a sandbox (gVisor's user-space network stack writes frames to the pod's
//! interface through a packet socket; Kata's VM through a tap), never from
//! sockets of the pod's cgroup: the cgroup hooks do not see their packets,
//! and the TC layer on the pod's host-side veth enforces them alone.
//! Against the real agent (in the node netns, as the DaemonSet runs) and
//! kernel, with AF_PACKET frames sent from the pod standing in for the
//! sandbox's stack:
//! - `status` says the pod is enforced by `tc` alone, with its runtime
//!   class, and the `layers` check names it;
//! - frames to the external host never arrive (a sniffer there counts
//!   them) and are reported dropped with layer `tc`; frames to the egress
//!   gateway arrive (a sniffer on the gateway) and are counted as allowed:
//!   for a sandboxed pod the TC layer counts every verdict, since no other
//!   layer sees its packets;
//! - a peer's UDP datagram gets its answer (reply state of the TC layer);
//! - once the runtime class is gone the same pod is `cgroup+tc` again and
//!   the TC layer no longer counts what it lets through (the cgroup layer
//!   does), which shows the switch is what changed the counting;
//! - once the pod is deleted its TC layer is detached: the two pins and
//!   the two kernel links go, and its frames are no longer judged there.
use std::net::IpAddr;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::agent::{default_tollgate_bin, find_workload, Agent};
use tollgate_e2e::chaos::{pinned_map_ids, BpfInventory};
use tollgate_e2e::checks::counters;
use tollgate_e2e::helpers::{args, bridge_mac, run_json, send_frames, sniffed, sniffer, sniffer_in, spawn, Frame};
use tollgate_e2e::pods::{self, PodSpec};
use tollgate_e2e::story::{v4, Story};
use tollgate_e2e::util::poll;

/// The manifest file that holds `pod`.
fn manifest_of(story: &Story, pod: &PodSpec) -> PathBuf {
    let mut stack = vec![story.manifests.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("manifests folder").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read_to_string(&p).is_ok_and(|t| t.contains(pod.uid)) {
                return p;
            }
        }
    }
    panic!("no manifest holds pod {}", pod.key())
}

/// Sets (or removes) `spec.runtimeClassName` of `pod` in its manifest,
/// written whole (temp file and rename) so the agent never reads half.
fn set_runtime_class(story: &Story, pod: &PodSpec, class: Option<&str>) {
    let path = manifest_of(story, pod);
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find(&format!("uid: {}", pod.uid)).unwrap();
    let spec = at + text[at..].find("\nspec:\n").expect("the pod's spec") + "\nspec:\n".len();
    let rest = &text[spec..];
    let rest = rest.strip_prefix("  runtimeClassName: gvisor\n").unwrap_or(rest);
    let line = class.map(|c| format!("  runtimeClassName: {c}\n")).unwrap_or_default();
    let new = format!("{}{line}{rest}", &text[..spec]);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, new).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// Removes `pod`'s document from its manifest (the pod is deleted).
fn remove_pod(story: &Story, pod: &PodSpec) {
    let path = manifest_of(story, pod);
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.split("\n---\n").filter(|doc| !doc.contains(pod.uid)).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, kept.join("\n---\n")).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// The kernel's links of the programs that use the agent's pinned maps.
fn agent_links(bpffs: &Path) -> BTreeSet<u32> {
    let maps = pinned_map_ids(bpffs).expect("pinned maps");
    let inv = BpfInventory::take();
    inv.links_of(&inv.programs_using(&maps))
}

/// Waits until the status written by the running agent shows `layers` for the pod.
fn wait_layers(agent: &Agent, pod: &PodSpec, layers: &str) -> Value {
    poll(&format!("status to show {} enforced by {layers}", pod.key()), Duration::from_secs(10), || {
        let st = agent.status()?;
        let ours = st["pid"].as_u64() == agent.pid().map(u64::from);
        let w = find_workload(&st, pod.namespace, pod.name).cloned();
        Ok(w.filter(|w| ours && w["layers"] == layers))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nstatus: {:#}", agent.status().unwrap_or_default()))
}

#[test]
fn a_sandboxed_pod_is_enforced_by_the_tc_layer_alone() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    let te = pods::TEST_EGRESS_SLEEP;
    let gw = pods::EGRESS_GATEWAY;
    set_runtime_class(&story, &te, Some("gvisor"));

    // The sandbox: a process of the pod in the pod's netns (as runsc's
    // sandbox and Kata's VM are), here a UDP echo server for the reply check.
    let (ns, cg) = (story.topo.pod_ns(&te).to_string(), story.cgroups.container(&te).to_path_buf());
    let listen = args(&["udp-echo", "--listen", &v4(te.ipv4, 7000).to_string()]);
    let _sandbox = spawn(&story, "sandbox", &ns, Some(&cg), &listen);
    story.start_agent_on_node(&default_tollgate_bin()).expect("starting the agent");
    story.wait_tc_layer(&te, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e:#}"));

    let agent = story.agent();
    let w = wait_layers(agent, &te, "tc");
    assert_eq!(w["runtime_class"], "gvisor", "{w:#}");
    let (_, out, _) = agent.cli_output(&["status"]).expect("tollgate status");
    eprintln!("[e2e] tollgate status:\n{out}");
    let line = out.lines().find(|l| l.contains(" layers ")).unwrap_or_else(|| panic!("no layers check:\n{out}"));
    assert!(line.starts_with("PASS  layers") && line.contains("1 by tc alone"), "{line}");
    assert!(out.contains("test-egress/sleep (enforce, runtime class gvisor") && out.contains("(tc alone)"), "{out}");

    let before = counters(agent, &te);
    let mac = bridge_mac(&story);
    let (own4, own6) = (IpAddr::V4(te.ipv4), IpAddr::V6(te.ipv6));
    let (ext4, ext6) = (IpAddr::V4(pods::EXTERNAL_V4), IpAddr::V6(pods::EXTERNAL_V6));
    let (gw4, gw6) = (IpAddr::V4(gw.ipv4), IpAddr::V6(gw.ipv6));
    let denied = [
        Frame { flags: &[], src: own4, dst: ext4 },
        Frame { flags: &["--dgram", "--qdisc-bypass"], src: own6, dst: ext6 },
    ];
    let allowed = [Frame { flags: &[], src: own4, dst: gw4 }, Frame { flags: &["--dgram"], src: own6, dst: gw6 }];
    let sniff_ext = sniffer(&story, "sniff-ext", &[own4, own6], 3000);
    let gw_ns = story.topo.pod_ns(&gw).to_string();
    let sniff_gw = sniffer_in(&story, "sniff-gw", &gw_ns, &[own4, own6], 3000);
    for f in denied.iter().chain(&allowed) {
        send_frames(&story, &te, &mac, f, 5353, 3);
    }
    let (ext_seen, gw_seen) = (sniffed(sniff_ext), sniffed(sniff_gw));
    eprintln!("[e2e] from the sandboxed pod: external host saw {ext_seen}, gateway saw {gw_seen}");
    assert_eq!(ext_seen["packets"], 0, "frames of the sandboxed pod reached the external host: {ext_seen}");
    assert!(gw_seen["packets"].as_u64() >= Some(6), "frames to the gateway must arrive: {gw_seen}");

    // Counted by the TC layer, allowed and dropped alike.
    let agent = story.agent();
    let after = poll("the TC layer's counts of the sandboxed pod", Duration::from_secs(5), || {
        let c = counters(agent, &te);
        Ok((c.allowed_packets >= before.allowed_packets + 6 && c.dropped_packets >= before.dropped_packets + 6).then_some(c))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nbefore {before:?}, now {:?}", counters(agent, &te)));
    eprintln!("[e2e] counters of the sandboxed pod: before {before:?}, after {after:?}");
    let flows = poll("drops of the sandboxed pod with layer tc", Duration::from_secs(5), || {
        let f: Vec<Value> = agent.flows()?.into_iter().filter(|f| f["layer"] == "tc" && f["namespace"] == "test-egress").collect();
        Ok((f.len() >= 2).then_some(f))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(flows.iter().all(|f| f["verdict"] == "dropped" && f["reason"] == "no-rule"), "{flows:?}");

    // A peer's datagram gets its answer.
    let ext_ns = story.topo.external_ns.clone();
    let r = run_json(&story, &ext_ns, None, &args(&["udp-ask", "--to", &v4(te.ipv4, 7000).to_string()]), Duration::from_secs(20));
    assert_eq!(r["ok"], true, "UDP from the external host to the sandboxed pod: {r}");

    // Not sandboxed any more: both layers, and the TC layer counts only drops.
    set_runtime_class(&story, &te, None);
    let agent = story.agent();
    let w = wait_layers(agent, &te, "cgroup+tc");
    assert!(w.get("runtime_class").is_none_or(Value::is_null), "{w:#}");
    let before = counters(agent, &te);
    let sniff_gw = sniffer_in(&story, "sniff-gw-2", &gw_ns, &[own4], 2000);
    send_frames(&story, &te, &mac, &allowed[0], 5353, 3);
    let gw_seen = sniffed(sniff_gw);
    assert!(gw_seen["packets"].as_u64() >= Some(3), "frames to the gateway still arrive: {gw_seen}");
    let now = counters(story.agent(), &te);
    assert_eq!(now.allowed_packets, before.allowed_packets, "the TC layer counts what it allows only for a sandboxed pod: {before:?} → {now:?}");
    let r = story.probe_tcp(&te, v4(pods::EXTERNAL_V4, 80), false, Duration::from_secs(3)).expect("probe");
    assert_eq!(r.errno, Some(libc::EPERM), "the cgroup layer still refuses the direct connection: {r:?}");

    // The pod is deleted (its process lingers): the TC layer leaves its
    // veth, in the kernel too.
    let bpffs = story.agent().cfg.bpffs.clone();
    let before = agent_links(&bpffs);
    remove_pod(&story, &te);
    let pins = bpffs.join("links").join("tc");
    poll("the TC layer's pins of the deleted pod to go", Duration::from_secs(10), || {
        let left = std::fs::read_dir(&pins)?.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(te.uid)).count();
        Ok((left == 0).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let after = agent_links(&bpffs);
    assert_eq!(before.len() - after.len(), 2, "two kernel links detached: {before:?} → {after:?}");
    assert!(after.is_subset(&before), "{before:?} → {after:?}");
    let sniff_ext = sniffer(&story, "sniff-ext-2", &[own4], 2000);
    send_frames(&story, &te, &mac, &denied[0], 5353, 3);
    let ext_seen = sniffed(sniff_ext);
    assert_eq!(ext_seen["packets"].as_u64(), Some(3), "no TC layer on the veth any more: the frames go out: {ext_seen}");
}
