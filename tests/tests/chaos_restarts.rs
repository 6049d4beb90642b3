//! Chaos around the agent process, against the real kernel:
//! - restarted 50 times in a row (SIGTERM and SIGKILL in turn), the agent
//!   leaks no BPF program, link or map: those of this run (the programs
//!   that use this run's pinned maps, their links) are as many after the
//!   last restart as after the first start, and they go once the agent and
//!   its pins are gone;
//! - killed with SIGKILL six times while test-egress/sleep sends denied
//!   traffic (UDP, raw UDP, TCP connects, both families) every 10 ms and
//!   keeps two allowed TCP connections to the gateway busy: a sniffer on
//!   the external host sees not one of its packets (a second sniffer sees
//!   the same load from the unenforced default/sleep, so it would), the
//!   allowed connections never break, and the counters only grow, also
//!   while the agent is down.
//!
//! The two tests run one after the other (a lock): the first counts BPF
//! objects system-wide.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tollgate_e2e::agent::{default_tollgate_bin, Agent, WorkloadCounters};
use tollgate_e2e::chaos::{pinned_map_ids, BpfInventory};
use tollgate_e2e::pods::{self, PodSpec};
use tollgate_e2e::helpers::{args, spawn};
use tollgate_e2e::procs::Proc;
use tollgate_e2e::story::{v4, v6, Story};
use tollgate_e2e::util::poll;

static SERIAL: Mutex<()> = Mutex::new(());

const RESTARTS: usize = 50;
const KILLS: usize = 6;
const APPLY: Duration = Duration::from_secs(20);
const T: Duration = Duration::from_secs(3);

fn te() -> PodSpec {
    pods::TEST_EGRESS_SLEEP
}

fn e2e_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"))
}

fn setup() -> Story {
    tollgate_e2e::util::require_environment();
    let mut story = Story::build(e2e_bin()).expect("building the sandbox");
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");
    story
}

/// This run's programs, links and maps: the programs that use one of the
/// maps pinned in the agent's bpffs folder, their links, and the maps
/// they use.
#[derive(Debug)]
struct Ours {
    programs: Vec<u32>,
    links: Vec<u32>,
    maps: Vec<u32>,
}

fn ours(agent: &Agent) -> Ours {
    let pinned = pinned_map_ids(&agent.cfg.bpffs).unwrap_or_else(|e| panic!("{e:#}"));
    let inv = BpfInventory::take();
    let programs = inv.programs_using(&pinned);
    let links = inv.links_of(&programs);
    let mut maps = pinned;
    for p in &programs {
        maps.extend(inv.programs[p].1.iter().copied());
    }
    Ours { programs: programs.into_iter().collect(), links: links.into_iter().collect(), maps: maps.into_iter().collect() }
}

/// SIGTERM by PID, then wait for the agent to exit.
fn terminate(agent: &mut Agent) {
    let pid = agent.pid().expect("agent pid");
    // SAFETY: kill(2) on the PID of the agent this test started and has not reaped.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    poll("the agent to exit on SIGTERM", Duration::from_secs(10), || Ok(agent.check_alive().is_err().then_some(())))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", agent.logs_text()));
}

fn restart(agent: &mut Agent) {
    agent.restart().expect("restarting the agent");
    agent
        .wait_applied(te().namespace, te().name, "enforce", None, APPLY)
        .unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn fifty_restarts_leak_no_programs_links_or_maps() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = BpfInventory::take();
    let mut story = setup();
    let first = ours(story.agent());
    // The seven programs attached at the cgroup root, each with its link.
    assert!(first.programs.len() >= 7 && first.links.len() >= 7, "this run's BPF objects not found: {first:?}");

    let t = Instant::now();
    let mut times = Vec::new();
    for i in 0..RESTARTS {
        let r = Instant::now();
        if i % 2 == 0 {
            terminate(story.agent());
        } else {
            story.agent().kill9();
        }
        restart(story.agent());
        times.push(r.elapsed());
    }
    let total = t.elapsed();
    let last = ours(story.agent());
    let after = BpfInventory::take();
    let tg = |inv: &BpfInventory| inv.named("tg_").len();
    times.sort();
    eprintln!(
        "[chaos] {RESTARTS} restarts (SIGTERM/SIGKILL in turn) in {:.1}s: per restart median {:?}, max {:?}",
        total.as_secs_f64(),
        times[times.len() / 2],
        times[times.len() - 1]
    );
    eprintln!(
        "[chaos] this run: programs {} -> {}, links {} -> {}, maps {} -> {}; system-wide: programs {} -> {} (tg_* {} -> {}), links {} -> {}, maps {} -> {}",
        first.programs.len(),
        last.programs.len(),
        first.links.len(),
        last.links.len(),
        first.maps.len(),
        last.maps.len(),
        before.programs.len(),
        after.programs.len(),
        tg(&before),
        tg(&after),
        before.links.len(),
        after.links.len(),
        before.maps.len(),
        after.maps.len()
    );
    assert_eq!(last.programs.len(), first.programs.len(), "programs leaked across restarts: {first:?} -> {last:?}");
    assert_eq!(last.links.len(), first.links.len(), "links leaked across restarts: {first:?} -> {last:?}");
    assert_eq!(last.maps.len(), first.maps.len(), "maps leaked across restarts: {first:?} -> {last:?}");

    // Still enforcing after all that.
    let r = story.probe_tcp(&te(), v4(pods::EXTERNAL_V4, 80), false, T).unwrap();
    assert_eq!(r.errno, Some(libc::EPERM), "after {RESTARTS} restarts: {r:?}");

    // The agent gone and its pins removed, nothing of this run stays loaded.
    story.agent = None;
    let left = poll("this run's programs and links to be freed", Duration::from_secs(10), || {
        let inv = BpfInventory::take();
        let p: Vec<u32> = last.programs.iter().copied().filter(|id| inv.programs.contains_key(id)).collect();
        let l: Vec<u32> = last.links.iter().copied().filter(|id| inv.links.contains_key(id)).collect();
        Ok((p.is_empty() && l.is_empty()).then_some(()))
    });
    left.unwrap_or_else(|e| panic!("{e:#}"));
}

fn in_pod(story: &Story, pod: &PodSpec, name: &str, args: &[String]) -> Proc {
    spawn(story, name, story.topo.pod_ns(pod), Some(story.cgroups.container(pod)), args)
}

/// The JSON line a finished helper wrote to its log.
fn result_of(p: &mut Proc, first_key: &str) -> Value {
    let text = poll(&format!("{} to finish", p.name), Duration::from_secs(15), || Ok(p.try_exited().map(|_| p.log_text())))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let prefix = format!("{{\"{first_key}\"");
    let line = text.lines().rev().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{} said {text}", p.name));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{} said {line}: {e}", p.name))
}

fn counters(agent: &Agent) -> WorkloadCounters {
    agent.workload_counters(te().namespace, te().name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Appends a reading; fails if a counter went backwards.
fn record(series: &mut Vec<(String, WorkloadCounters)>, what: String, c: WorkloadCounters) {
    if let Some((prev_what, prev)) = series.last() {
        assert!(
            c.dropped_packets >= prev.dropped_packets && c.allowed_packets >= prev.allowed_packets,
            "counters went backwards: {prev_what} {prev:?} -> {what} {c:?}"
        );
    }
    series.push((what, c));
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

#[test]
fn kill9_under_steady_load_lets_nothing_out_and_keeps_counting() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut story = setup();
    let gw = pods::EGRESS_GATEWAY;
    let echo_args = args(&["tcp-echo", "--listen", &v4(gw.ipv4, 7000).to_string(), "--listen", &v6(gw.ipv6, 7000).to_string()]);
    let _echo = in_pod(&story, &gw, "tcp-echo-gateway", &echo_args);
    let stop: PathBuf = story.dir.path.join("stop-steady-load");
    let stop_s = stop.to_string_lossy().into_owned();
    let ext: Vec<SocketAddr> = vec![v4(pods::EXTERNAL_V4, 80), v6(pods::EXTERNAL_V6, 80)];

    let ext_ns = story.topo.external_ns.clone();
    let sniff = |pod: &PodSpec| {
        args(&["sniff", "--from", &pod.ipv4.to_string(), "--from", &pod.ipv6.to_string(), "--ms", "120000", "--stop-file", &stop_s])
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

    let mut series: Vec<(String, WorkloadCounters)> = Vec::new();
    std::thread::sleep(Duration::from_millis(700));
    record(&mut series, "start".into(), counters(story.agent()));
    let t = Instant::now();
    let mut via_gateway = 0;
    for k in 1..=KILLS {
        std::thread::sleep(Duration::from_millis(600));
        story.agent().kill9();
        std::thread::sleep(Duration::from_millis(400));
        // The pinned maps answer while no agent runs.
        record(&mut series, format!("down {k}"), counters(story.agent()));
        let r = story.probe_tcp(&te(), v4(gw.ipv4, pods::GATEWAY_PORT), true, T).unwrap();
        assert!(r.ok && r.status == Some(200), "agent down ({k}): a new connection through the gateway failed: {r:?}");
        via_gateway += 1;
        restart(story.agent());
        record(&mut series, format!("restarted {k}"), counters(story.agent()));
    }
    std::thread::sleep(Duration::from_millis(600));
    let elapsed = t.elapsed();
    std::fs::write(&stop, "stop\n").expect("writing the stop file");
    let te_load = result_of(&mut load_te, "rounds");
    let control_load = result_of(&mut load_control, "rounds");
    let te_seen = result_of(&mut sniff_te, "packets");
    let control_seen = result_of(&mut sniff_control, "packets");
    record(&mut series, "end".into(), counters(story.agent()));

    eprintln!("[chaos] {KILLS} SIGKILLs in {:.1}s under load", elapsed.as_secs_f64());
    eprintln!("[chaos] test-egress/sleep load: {te_load}");
    eprintln!("[chaos] default/sleep load (control): {control_load}");
    eprintln!("[chaos] sniffed on the external host: from test-egress/sleep {te_seen}, from default/sleep {control_seen}");
    for (what, c) in &series {
        eprintln!("[chaos] counters {what:<12} dropped {:>7} allowed {:>7}", c.dropped_packets, c.allowed_packets);
    }

    // The sniffer sees what an unenforced pod sends; nothing from the enforced one.
    assert!(n(&control_load, "udp_passed") > 0 && n(&control_seen, "packets") > 0, "the control load was not seen: {control_load} {control_seen}");
    assert_eq!(n(&te_seen, "packets"), 0, "packets of test-egress/sleep reached the external host: {te_seen}");
    assert_eq!(n(&te_load, "tcp_connected"), 0, "TCP connections to the external host: {te_load}");
    assert!(n(&te_load, "rounds") >= 100, "the load hardly ran: {te_load}");
    assert!(n(&te_load, "udp_refused") + n(&te_load, "tcp_refused") > 0, "nothing refused: {te_load}");
    // The allowed connections lived through every kill.
    assert_eq!(n(&te_load, "allowed_failures"), 0, "an allowed connection broke: {te_load}");
    assert_eq!(n(&te_load, "allowed_connects"), 2, "allowed connections were opened again: {te_load}");
    assert!(n(&te_load, "allowed_round_trips") >= 2 * 100, "{te_load}");
    assert_eq!(via_gateway, KILLS);
    // Drops counted all along, also while the agent was down.
    for w in series.windows(2) {
        let ((a_what, a), (b_what, b)) = (&w[0], &w[1]);
        assert!(b.dropped_packets > a.dropped_packets, "no drops counted between {a_what} {a:?} and {b_what} {b:?}");
    }
}
