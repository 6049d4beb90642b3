//! Drop events through the kernel's ring buffer: a refused connection
//! shows up in `tollgate flows` with the pod, its own address as the
//! source, the destination, the reason and the layer, also while the agent
//! is down; a flood of 100,000 denied packets from one pod is held to the
//! per-workload rate limit, what it held back is counted, and the packet
//! counters still count every packet.
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tollgate_e2e::agent::{default_tollgate_bin, find_workload, Agent};
use tollgate_e2e::deploy::{self, promql};
use tollgate_e2e::pods;
use tollgate_e2e::procs::{exec_in_command, run_capture};
use tollgate_e2e::story::{v4, Story};
use tollgate_e2e::util::poll;

/// Events per second and burst of the kernel's limit (agent_common).
const RATE: u64 = 100;
const BURST: u64 = 200;

fn flows(agent: &Agent, extra: &[&str]) -> Vec<Value> {
    let mut a = vec!["flows", "-o", "json"];
    a.extend_from_slice(extra);
    agent.cli(&a).unwrap().lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn suppressed(agent: &Agent) -> u64 {
    let c = agent.counters().unwrap();
    find_workload(&c, "test-egress", "sleep").and_then(|w| w["events_suppressed"].as_u64()).unwrap_or(0)
}

#[test]
fn refused_flows_are_reported_and_a_flood_is_rate_limited() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");
    let te = pods::TEST_EGRESS_SLEEP;
    let ext = v4(pods::EXTERNAL_V4, 80);

    // A refusal at connect(): the pod's own address, not 0.0.0.0:0.
    let r = story.probe_tcp(&te, ext, false, Duration::from_secs(2)).unwrap();
    assert_eq!(r.errno, Some(libc::EPERM));
    let agent = story.agent.as_ref().unwrap();
    let line = poll("the refused connection in `flows`", Duration::from_secs(5), || {
        Ok(flows(agent, &["--namespace", "test-egress", "--pod", "sleep"]).into_iter().find(|f| f["dst"] == "203.0.113.10:80"))
    })
    .unwrap();
    assert!(line["src"].as_str().unwrap_or("").starts_with("10.244.0.10:"), "{line}");
    assert_eq!((line["verdict"].as_str(), line["reason"].as_str(), line["layer"].as_str(), line["protocol"].as_str()), (Some("dropped"), Some("no-rule"), Some("connect"), Some("tcp")), "{line}");
    assert!(flows(agent, &["--namespace", "default"]).iter().all(|f| f["namespace"] == "default"));

    // A real scrape of this agent declares every metric that the shipped
    // dashboard and alert rules query.
    let (status_line, scrape) = agent.http_get("/metrics").unwrap();
    assert!(status_line.contains("200"), "{status_line}");
    let exported = promql::declared_in_exposition(&scrape);
    let read = |name: &str| {
        let p = deploy::deploy_dir().join("monitoring").join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let dashboard: Value = serde_json::from_str(&read("grafana-dashboard.json")).unwrap();
    let rules: Value = serde_yaml::from_str(&read("prometheusrule.yaml")).unwrap();
    let used = promql::metric_names_used(&dashboard, &rules).unwrap();
    assert!(used.len() >= 8, "the dashboard and rules query {used:?}");
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "queried by the dashboard or alerts but not in the agent's scrape: {missing:?}\n{scrape}");

    // The flood.
    let before = story.agent().workload_counters("test-egress", "sleep").unwrap();
    let sup_before = suppressed(story.agent());
    let target = v4(pods::EXTERNAL_V4, 9);
    let cmd = exec_in_command(
        &story.e2e_bin,
        Some(story.topo.pod_ns(&te)),
        Some(story.cgroups.container(&te)),
        &story.e2e_bin,
        &["udp-spray".into(), "--to".into(), target.to_string(), "--count".into(), "100000".into()],
    );
    let spray: Value = serde_json::from_str(run_capture(cmd, Duration::from_secs(120)).unwrap().lines().last().unwrap()).unwrap();
    let elapsed_s = spray["elapsed_ms"].as_u64().unwrap() / 1000 + 1;
    assert_eq!(spray["refused"], 100_000, "{spray}");
    let agent = story.agent.as_ref().unwrap();
    let after = poll("the counters to count every refused packet", Duration::from_secs(5), || {
        let c = agent.workload_counters("test-egress", "sleep")?;
        Ok((c.dropped_packets >= before.dropped_packets + 100_000).then_some(c))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    std::thread::sleep(Duration::from_secs(1));
    let events = flows(agent, &["--namespace", "test-egress"]).into_iter().filter(|f| f["dst"] == target.to_string()).count() as u64;
    let held = suppressed(agent) - sup_before;
    eprintln!("[e2e] spray {spray}: {events} events, {held} suppressed, dropped {} -> {}", before.dropped_packets, after.dropped_packets);
    let limit = BURST + RATE * (elapsed_s + 1);
    assert!(events >= RATE.min(100), "too few events: {events}");
    assert!(events <= limit, "{events} events for a flood of {elapsed_s} s: the limit ({limit}) did not hold");
    assert!(held + events >= 100_000, "suppressed {held} + sent {events} < 100,000");

    // With the agent down, `flows` drains the ring itself.
    story.agent().kill9();
    let r = story.probe_tcp(&te, v4(pods::EXTERNAL_V4, 443), false, Duration::from_secs(2)).unwrap();
    assert_eq!(r.errno, Some(libc::EPERM));
    let agent = story.agent.as_ref().unwrap();
    poll("a refusal while the agent is down in `flows`", Duration::from_secs(5), || {
        Ok(flows(agent, &[]).into_iter().find(|f| f["dst"] == "203.0.113.10:443").map(|_| ()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
}
