//! Assertions shared by the stories: what a probe result must look like, and
//! waiting for the agent's counters, flows and reloads.

use crate::agent::{Agent, WorkloadCounters};
use crate::pods::PodSpec;
use crate::probe::ProbeResult;
use crate::story::Story;
use crate::util::poll;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Refused by the kernel: EPERM at connect, within a second (no timeout).
#[track_caller]
pub fn assert_eperm(r: &ProbeResult, what: &str) {
    assert!(!r.ok, "{what}: expected EPERM, the connection succeeded: {r:?}");
    assert_eq!(r.errno, Some(libc::EPERM), "{what}: expected EPERM (errno 1): {r:?}");
    assert!(r.elapsed_ms < 1000, "{what}: refusal took {} ms (want < 1 s): {r:?}", r.elapsed_ms);
}

/// HTTP 200 from the http-serve bound to `server` (its body names the address).
#[track_caller]
pub fn assert_http_ok(r: &ProbeResult, what: &str, server: SocketAddr) {
    assert!(r.ok && r.status == Some(200), "{what}: expected HTTP 200 from {server}: {r:?}");
    assert_eq!(r.body, format!("external-ok from {server}"), "{what}: {r:?}");
}

/// Let through, but nothing listens: the peer's RST (ECONNREFUSED), not EPERM.
#[track_caller]
pub fn assert_conn_refused(r: &ProbeResult, what: &str) {
    assert_eq!(r.errno, Some(libc::ECONNREFUSED), "{what}: expected ECONNREFUSED from the peer (allowed, no listener): {r:?}");
}

/// A workload's counters (panics with the CLI error).
pub fn counters(agent: &Agent, pod: &PodSpec) -> WorkloadCounters {
    agent.workload_counters(pod.namespace, pod.name).expect("tollgate counters -o json")
}

/// Polls the counters of `pod` until `pred(now)` holds.
#[track_caller]
pub fn wait_counters(agent: &Agent, pod: &PodSpec, what: &str, pred: impl Fn(&WorkloadCounters) -> bool) -> WorkloadCounters {
    poll(what, Duration::from_secs(5), || {
        let c = agent.workload_counters(pod.namespace, pod.name)?;
        Ok(pred(&c).then_some(c))
    })
    .unwrap_or_else(|e| panic!("{e:#}\ncounters now: {:?}", agent.counters()))
}

/// Runs `probe` and asserts EPERM, and that the pod's dropped counter rose.
#[track_caller]
pub fn assert_dropped(story: &Story, pod: &PodSpec, to: SocketAddr, what: &str) {
    let agent = story.agent.as_ref().expect("agent runs");
    let before = counters(agent, pod);
    let r = story.probe_tcp(pod, to, false, Duration::from_secs(3)).expect("probe");
    assert_eperm(&r, what);
    wait_counters(agent, pod, &format!("dropped_packets of {} to rise after {what}", pod.key()), |c| {
        c.dropped_packets > before.dropped_packets
    });
}

/// Polls until `tollgate flows` lists a dropped flow of `pod` to `dst`; returns it.
#[track_caller]
pub fn wait_dropped_flow(agent: &Agent, pod: &PodSpec, dst: SocketAddr) -> Value {
    poll(&format!("a dropped flow {} -> {dst}", pod.key()), Duration::from_secs(5), || {
        Ok(agent.flows()?.into_iter().find(|f| {
            f["namespace"].as_str() == Some(pod.namespace)
                && f["pod"].as_str() == Some(pod.name)
                && f["dst"].as_str() == Some(&dst.to_string())
                && f["verdict"].as_str() == Some("dropped")
        }))
    })
    .unwrap_or_else(|e| panic!("{e:#}\nflows now: {:?}", agent.flows()))
}

/// Probes `pod` -> `to` until `done(result)` (a reload taking effect);
/// returns the last result and how long it took. Panics after `timeout`.
#[track_caller]
pub fn wait_probe(
    story: &Story,
    pod: &PodSpec,
    to: SocketAddr,
    http_get: bool,
    what: &str,
    timeout: Duration,
    done: impl Fn(&ProbeResult) -> bool,
) -> (ProbeResult, Duration) {
    let start = Instant::now();
    let mut last = None;
    let r = poll(what, timeout, || {
        let r = story.probe_tcp(pod, to, http_get, Duration::from_secs(2))?;
        let ok = done(&r);
        last = Some(r.clone());
        Ok(ok.then_some(r))
    });
    match r {
        Ok(r) => (r, start.elapsed()),
        Err(e) => panic!("{e:#}\nlast probe: {last:?}"),
    }
}

/// Asserts verdict, mode and reason of a `verify -o json` answer; returns it.
#[track_caller]
pub fn assert_verdict<'a>(v: &'a Value, verdict: &str, reason: &str, what: &str) -> &'a Value {
    assert_eq!(v["verdict"].as_str(), Some(verdict), "{what}: verdict: {v}");
    assert_eq!(v["reason"].as_str(), Some(reason), "{what}: reason: {v}");
    assert_eq!(v["mode"].as_str(), Some("enforce"), "{what}: mode: {v}");
    v
}

/// The `matched` list of a verify answer (empty when absent).
pub fn matched(v: &Value) -> Vec<String> {
    v["matched"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_str().map(String::from)).collect())
        .unwrap_or_default()
}
