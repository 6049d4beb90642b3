//! An upgrade across a map-layout change, under traffic, as a DaemonSet
//! rolling update does it (the old agent is stopped, then the new one
//! starts). The agent runs in the node's network namespace, so that the
//! TC layer is on the pods' veths too.
//!
//! Agent A (`TOLLGATE_PREVIOUS_BIN`, e.g. the release before versioned
//! pins, else this build) enforces test-egress/sleep, which keeps sending
//! denied UDP, raw UDP and TCP connects (both families) every 10 ms,
//! AF_PACKET frames every 10 ms, and keeps two allowed TCP connections to
//! the gateway busy. Then:
//! 1. A is stopped; B (this build, with `TG_CGROUPS` at another
//!    `max_entries`: a layout the kernel sees) starts and migrates;
//! 2. B is killed and started again: same layout, nothing migrates;
//! 3. B is stopped; this build with the default layout starts and
//!    migrates back.
//!
//! Asserted: a sniffer on the external host sees not one packet of the
//! enforced pod across all of it (a second sniffer sees the same load
//! from default/sleep, which is not enforced); the allowed connections
//! never break and new ones through the gateway work after each step;
//! each upgrade says what it migrated and what it kept; the counters only
//! grow (the counters map keeps its layout, so it is kept, not reset); the
//! old layout's pins are gone and each map name links to the pin of the
//! layout in use; this run's BPF programs, links and maps are as many
//! after each upgrade as with agent A.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_e2e::agent::{default_tollgate_bin, Agent, WorkloadCounters};
use tollgate_e2e::chaos::{pinned_map_ids, BpfInventory};
use tollgate_e2e::helpers::{args, bridge_mac, spawn};
use tollgate_e2e::pods::{self, PodSpec};
use tollgate_e2e::procs::{exec_in_command, Proc};
use tollgate_e2e::story::{v4, v6, Story};
use tollgate_e2e::util::poll;

const CHANGED_MAP: &str = "TG_CGROUPS";
/// The build's `TG_CGROUPS` has 65,536 entries.
const OTHER_MAX_ENTRIES: &str = "32768";
const APPLY: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_secs(3);

fn te() -> PodSpec {
    pods::TEST_EGRESS_SLEEP
}

fn e2e_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"))
}

/// A sender that prints no `ready` (raw-send), in `pod`.
fn sender_in_pod(story: &Story, pod: &PodSpec, name: &str, args: &[String]) -> Proc {
    let cmd = exec_in_command(&story.e2e_bin, Some(story.topo.pod_ns(pod)), Some(story.cgroups.container(pod)), &story.e2e_bin, args);
    Proc::spawn(name, cmd, story.dir.path.join(format!("{name}.log")), None).unwrap_or_else(|e| panic!("starting {name}: {e:#}"))
}

fn in_pod(story: &Story, pod: &PodSpec, name: &str, args: &[String]) -> Proc {
    spawn(story, name, story.topo.pod_ns(pod), Some(story.cgroups.container(pod)), args)
}

/// The last JSON line starting with `{"first_key"` a finished helper wrote.
fn result_of(p: &mut Proc, first_key: &str) -> Value {
    let text = poll(&format!("{} to finish", p.name), Duration::from_secs(30), || Ok(p.try_exited().map(|_| p.log_text())))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let prefix = format!("{{\"{first_key}\"");
    let line = text.lines().rev().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{} said {text}", p.name));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{} said {line}: {e}", p.name))
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

/// This run's programs, links and maps (those using the maps pinned in
/// the agent's folder, as in chaos_restarts).
fn ours(agent: &Agent) -> (usize, usize, usize) {
    let pinned = pinned_map_ids(&agent.cfg.bpffs).unwrap_or_else(|e| panic!("{e:#}"));
    let inv = BpfInventory::take();
    let programs = inv.programs_using(&pinned);
    let links = inv.links_of(&programs);
    let mut maps = pinned;
    for p in &programs {
        maps.extend(inv.programs[p].1.iter().copied());
    }
    (programs.len(), links.len(), maps.len())
}

/// SIGTERM by PID (a rolling update), then wait for the agent to exit.
fn terminate(agent: &mut Agent) {
    let pid = agent.pid().expect("agent pid");
    // SAFETY: kill(2) on the PID of the agent this test started and has not reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    poll("the agent to exit on SIGTERM", Duration::from_secs(10), || Ok(agent.check_alive().is_err().then_some(())))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", agent.logs_text()));
}

/// Starts the agent (after a stop) with `bin` and `extra` flags; waits
/// for its first apply; the status it wrote and how long it took.
fn start(agent: &mut Agent, bin: &Path, extra: &[String]) -> (Value, Duration) {
    agent.cfg.bin = bin.to_path_buf();
    agent.cfg.extra_args = extra.to_vec();
    let t = Instant::now();
    agent.restart().expect("starting the agent");
    let st = agent
        .wait_applied(te().namespace, te().name, "enforce", None, APPLY)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", agent.logs_text()));
    (st, t.elapsed())
}

fn counters(agent: &Agent) -> WorkloadCounters {
    agent.workload_counters(te().namespace, te().name).unwrap_or_else(|e| panic!("{e:#}"))
}

fn record(series: &mut Vec<(String, WorkloadCounters)>, what: &str, c: WorkloadCounters) {
    if let Some((prev_what, prev)) = series.last() {
        assert!(
            c.dropped_packets >= prev.dropped_packets && c.allowed_packets >= prev.allowed_packets,
            "counters went backwards: {prev_what} {prev:?} -> {what} {c:?}"
        );
    }
    series.push((what.to_string(), c));
}

/// Every map name is a link to `<NAME>-<id>` of the layout `status`
/// shows, and no other versioned pin (an old layout's) is left.
fn check_pins(bpffs: &Path, status: &Value) {
    let layout = status["layout"].as_object().unwrap_or_else(|| panic!("no layout in the status: {status}"));
    assert!(layout.len() >= 16, "{layout:?}");
    let mut files: Vec<String> = std::fs::read_dir(bpffs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|f| f != "links")
        .collect();
    files.sort();
    for (name, id) in layout {
        let id = id.as_str().unwrap();
        let bare = bpffs.join(name);
        let target = std::fs::read_link(&bare).unwrap_or_else(|e| panic!("{} is not a link ({e}); pins: {files:?}", bare.display()));
        assert_eq!(target, PathBuf::from(format!("{name}-{id}")), "{name}");
    }
    for f in &files {
        let ok = layout.iter().any(|(name, id)| *f == *name || *f == format!("{name}-{}", id.as_str().unwrap()));
        assert!(ok, "a pin of no layout in use is left: {f} (pins: {files:?})");
    }
}

#[test]
fn an_upgrade_across_a_map_layout_change_lets_nothing_out() {
    tollgate_e2e::util::require_environment();
    let this_build = default_tollgate_bin();
    let previous = std::env::var_os("TOLLGATE_PREVIOUS_BIN").map(PathBuf::from).unwrap_or_else(|| this_build.clone());
    eprintln!("[upgrade] agent A: {}; B: {} with {CHANGED_MAP}={OTHER_MAX_ENTRIES}", previous.display(), this_build.display());
    let mut story = Story::build(e2e_bin()).expect("building the sandbox");
    story.start_agent_on_node(&previous).expect("starting agent A");
    let bpffs = story.agent().cfg.bpffs.clone();

    let gw = pods::EGRESS_GATEWAY;
    let echo_args = args(&["tcp-echo", "--listen", &v4(gw.ipv4, 7000).to_string(), "--listen", &v6(gw.ipv6, 7000).to_string()]);
    let _echo = in_pod(&story, &gw, "tcp-echo-gateway", &echo_args);
    let stop: PathBuf = story.dir.path.join("stop-steady-load");
    let stop_s = stop.to_string_lossy().into_owned();
    let ext: Vec<SocketAddr> = vec![v4(pods::EXTERNAL_V4, 80), v6(pods::EXTERNAL_V6, 80)];
    let ext_ns = story.topo.external_ns.clone();
    let sniff = |pod: &PodSpec| {
        args(&["sniff", "--from", &pod.ipv4.to_string(), "--from", &pod.ipv6.to_string(), "--ms", "180000", "--stop-file", &stop_s])
    };
    let mut sniff_te = spawn(&story, "sniff-test-egress", &ext_ns, None, &sniff(&te()));
    let mut sniff_control = spawn(&story, "sniff-default", &ext_ns, None, &sniff(&pods::DEFAULT_SLEEP));
    let steady = |allow: &[SocketAddr]| {
        let mut a = args(&["steady", "--interval-ms", "10", "--stop-file", &stop_s]);
        for to in &ext {
            a.extend(["--deny".to_string(), to.to_string()]);
        }
        for to in allow {
            a.extend(["--allow".to_string(), to.to_string()]);
        }
        a
    };
    let mut load_te = in_pod(&story, &te(), "steady-test-egress", &steady(&[v4(gw.ipv4, 7000), v6(gw.ipv6, 7000)]));
    let mut load_control = in_pod(&story, &pods::DEFAULT_SLEEP, "steady-default", &steady(&[]));
    // The TC layer goes on the pod's veth once the pod has a process.
    let attached = story.wait_tc_layer(&te(), Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("[upgrade] TC layer on test-egress/sleep: {attached:?}");
    // AF_PACKET frames (no socket hook sees them: the TC layer's) every
    // 10 ms, for longer than the test runs, from both pods.
    let mac = bridge_mac(&story);
    let frames = |pod: &PodSpec| {
        args(&["raw-send", "--dst-mac", &mac, "--src", &pod.ipv4.to_string(), "--dst", &pods::EXTERNAL_V4.to_string(), "--count", "6000", "--interval-ms", "10"])
    };
    let mut frames_te = sender_in_pod(&story, &te(), "frames-test-egress", &frames(&te()));
    let mut frames_control = sender_in_pod(&story, &pods::DEFAULT_SLEEP, "frames-default", &frames(&pods::DEFAULT_SLEEP));

    std::thread::sleep(Duration::from_millis(800));
    let a_objects = ours(story.agent());
    let mut series: Vec<(String, WorkloadCounters)> = Vec::new();
    record(&mut series, "agent A", counters(story.agent()));
    let st_a = story.agent().status().unwrap();
    let layout_a = st_a["layout"].clone();

    // 1. A stopped, B with another layout of TG_CGROUPS.
    let flag = vec!["--test-map-max-entries".to_string(), format!("{CHANGED_MAP}={OTHER_MAX_ENTRIES}")];
    terminate(story.agent());
    std::thread::sleep(Duration::from_millis(300));
    record(&mut series, "no agent", counters(story.agent()));
    let (st_b, took_b) = start(story.agent(), &this_build, &flag);
    let up = st_b["layout_upgrade"].clone();
    eprintln!("[upgrade] A -> B: first apply after {took_b:?}; upgrade {up}");
    assert!(up.is_object(), "agent B ran no layout upgrade: {st_b}\n{}", story.agent().logs_text());
    let migrated: Vec<&str> = up["maps"].as_array().unwrap().iter().filter_map(|m| m["map"].as_str()).collect();
    assert_eq!(migrated, vec![CHANGED_MAP], "{up}");
    let m = &up["maps"][0];
    assert_eq!(m["carry"], "copy", "{up}");
    assert!(n(m, "copied") > 0 && n(m, "refused") == 0, "{up}");
    assert_ne!(m["from"], m["to"], "{up}");
    let kept: Vec<&str> = up["kept"].as_array().unwrap().iter().filter_map(|k| k.as_str()).collect();
    assert!(kept.contains(&"TG_COUNTS") && kept.contains(&"TG_SOCKS") && kept.len() == 15, "{up}");
    assert_ne!(st_b["layout"][CHANGED_MAP], layout_a[CHANGED_MAP], "A's layout {layout_a}, B's {}", st_b["layout"]);
    check_pins(&bpffs, &st_b);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ours(story.agent()), a_objects, "this run's (programs, links, maps) after the upgrade");
    record(&mut series, "agent B", counters(story.agent()));
    let r = story.probe_tcp(&te(), v4(gw.ipv4, pods::GATEWAY_PORT), true, T).unwrap();
    assert!(r.ok && r.status == Some(200), "after the upgrade: a new connection through the gateway failed: {r:?}");

    // 2. B killed and started again: same layout, nothing migrates.
    story.agent().kill9();
    std::thread::sleep(Duration::from_millis(300));
    let (st_b2, took_b2) = start(story.agent(), &this_build, &flag);
    eprintln!("[upgrade] B -> B: first apply after {took_b2:?}; adopted {}", st_b2["adopted"]);
    assert!(st_b2.get("layout_upgrade").is_none_or(Value::is_null), "a restart with the same layout migrated: {st_b2}");
    assert_eq!(st_b2["adopted"], true, "{st_b2}");
    assert_eq!(st_b2["layout"], st_b["layout"]);
    check_pins(&bpffs, &st_b2);
    record(&mut series, "agent B again", counters(story.agent()));

    // 3. Back to the build's own layout (a versioned pin to a versioned pin).
    terminate(story.agent());
    std::thread::sleep(Duration::from_millis(300));
    record(&mut series, "no agent (2)", counters(story.agent()));
    let (st_c, took_c) = start(story.agent(), &this_build, &[]);
    let up_c = st_c["layout_upgrade"].clone();
    eprintln!("[upgrade] B -> C (default layout): first apply after {took_c:?}; upgrade {up_c}");
    assert!(up_c.is_object(), "no layout upgrade back: {st_c}");
    assert_eq!(up_c["maps"][0]["map"], CHANGED_MAP, "{up_c}");
    assert_eq!(up_c["maps"][0]["from"], st_b["layout"][CHANGED_MAP], "{up_c}");
    check_pins(&bpffs, &st_c);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ours(story.agent()), a_objects, "this run's (programs, links, maps) after the second upgrade");
    let r = story.probe_tcp(&te(), v6(gw.ipv6, pods::GATEWAY_PORT), true, T).unwrap();
    assert!(r.ok && r.status == Some(200), "after the upgrade back: a new connection through the gateway failed: {r:?}");
    std::thread::sleep(Duration::from_millis(600));
    record(&mut series, "agent C", counters(story.agent()));
    std::thread::sleep(Duration::from_millis(600));
    record(&mut series, "end", counters(story.agent()));

    std::fs::write(&stop, "stop\n").expect("writing the stop file");
    frames_te.kill();
    frames_control.kill();
    let te_load = result_of(&mut load_te, "rounds");
    let control_load = result_of(&mut load_control, "rounds");
    let te_seen = result_of(&mut sniff_te, "packets");
    let control_seen = result_of(&mut sniff_control, "packets");

    let ms = |u: &Value| u["duration_ms"].as_f64().unwrap_or(-1.0);
    eprintln!("[upgrade] upgrade A -> B took {:.0} ms (agent start to old pins removed), B -> C {:.0} ms", ms(&up), ms(&up_c));
    eprintln!("[upgrade] test-egress/sleep load: {te_load}");
    eprintln!("[upgrade] default/sleep load (control): {control_load}");
    eprintln!("[upgrade] sniffed on the external host: from test-egress/sleep {te_seen}, from default/sleep {control_seen}");
    for (what, c) in &series {
        eprintln!("[upgrade] counters {what:<14} dropped {:>7} allowed {:>7}", c.dropped_packets, c.allowed_packets);
    }

    assert!(n(&control_load, "udp_passed") > 0 && n(&control_seen, "packets") > 0, "the control load was not seen: {control_load} {control_seen}");
    assert_eq!(n(&te_seen, "packets"), 0, "packets of test-egress/sleep reached the external host across the upgrades: {te_seen}");
    assert_eq!(n(&te_load, "tcp_connected"), 0, "TCP connections to the external host: {te_load}");
    assert!(n(&te_load, "rounds") >= 200, "the load hardly ran: {te_load}");
    assert_eq!(n(&te_load, "allowed_failures"), 0, "an allowed connection broke: {te_load}");
    assert_eq!(n(&te_load, "allowed_connects"), 2, "allowed connections were opened again: {te_load}");
    // Counted all along: the counters map kept its layout and its state.
    for w in series.windows(2) {
        let ((a_what, a), (b_what, b)) = (&w[0], &w[1]);
        assert!(b.dropped_packets > a.dropped_packets, "no drops counted between {a_what} {a:?} and {b_what} {b:?}");
    }
}
