//! Tests of the metrics through a real `/metrics` served by
//! `runtime::http`: `promtool check metrics` accepts the scrape, every
//! agreed family is there, and the series follow the sources.
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::sources::{PodSuppressed, PodTraffic, Traffic, Verdict};
use super::*;
use crate::runtime::http::test_client::{get, get_with};
use crate::runtime::http::{serve, HttpState};

/// The agreed families (coordination list, README "Metrics") and their
/// type, named as the Prometheus text format shows them.
const AGREED: [(&str, &str); 19] = [
    ("tollgate_packets_total", "counter"),
    ("tollgate_bytes_total", "counter"),
    ("tollgate_node_packets_total", "counter"),
    ("tollgate_node_bytes_total", "counter"),
    ("tollgate_flow_events_suppressed_total", "counter"),
    ("tollgate_map_entries", "gauge"),
    ("tollgate_map_capacity", "gauge"),
    ("tollgate_map_insert_failures_total", "counter"),
    ("tollgate_event_to_map_seconds", "histogram"),
    ("tollgate_apply_duration_seconds", "histogram"),
    ("tollgate_applies_total", "counter"),
    ("tollgate_apply_failures_total", "counter"),
    ("tollgate_objects_rejected", "gauge"),
    ("tollgate_objects_ignored", "gauge"),
    ("tollgate_source_synced", "gauge"),
    ("tollgate_source_watch_errors_total", "counter"),
    ("tollgate_ready", "gauge"),
    ("tollgate_enforced_pods", "gauge"),
    ("tollgate_build_info", "gauge"),
];

type Shared<T> = Arc<Mutex<T>>;

/// Sources the test changes between scrapes.
struct Fake {
    counters: Shared<Result<DatapathCounters, String>>,
    fill: Shared<Vec<MapFill>>,
}

fn pod(ns: &str, name: &str, verdict: Verdict, reason: &str, packets: u64) -> PodTraffic {
    PodTraffic {
        namespace: ns.into(),
        pod: name.into(),
        verdict,
        reason: reason.into(),
        traffic: Traffic { packets, bytes: packets * 100 },
    }
}

fn some_counters() -> DatapathCounters {
    DatapathCounters {
        node: Verdict::ALL.iter().map(|v| (*v, Traffic { packets: 10, bytes: 1000 })).collect(),
        pods: vec![
            pod("test-egress", "sleep", Verdict::Dropped, "no-rule", 3),
            pod("test-egress", "sleep", Verdict::Allowed, "gateway", 7),
            pod("shop", "web \"1\"\\", Verdict::Audited, "no-rule", 2),
        ],
        suppressed: vec![PodSuppressed { namespace: "test-egress".into(), pod: "sleep".into(), events: 5 }],
    }
}

fn fill(map: &str, entries: u64, capacity: u64) -> MapFill {
    MapFill { map: map.into(), entries: Some(entries), capacity }
}

/// Metrics over fake sources, served on a free loopback port.
async fn serve_fake() -> (SocketAddr, Arc<Metrics>, Fake) {
    let fake = Fake {
        counters: Arc::new(Mutex::new(Ok(some_counters()))),
        fill: Arc::new(Mutex::new(vec![fill("TG_CGROUPS", 12, 65536), fill("TG_RULES_V4", 40, 1 << 20)])),
    };
    let (c, f) = (Arc::clone(&fake.counters), Arc::clone(&fake.fill));
    let counters: Arc<dyn CounterSource> = Arc::new(move || {
        c.lock().expect("lock").clone().map_err(|e| SourceError::new("the datapath counters", e))
    });
    let map_fill: Arc<dyn MapFillSource> = Arc::new(move || Ok(f.lock().expect("lock").clone()));
    let metrics = Arc::new(Metrics::new(Sources {
        counters,
        map_fill,
        health: Arc::new(Health::default()),
        object_hash: 0xfeed_beef,
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(serve(listener, HttpState::new(Arc::clone(&metrics))));
    (addr, metrics, fake)
}

/// Everything the runtime records, once.
fn record_everything(m: &Metrics) {
    m.observe_event_to_map("Pod", Duration::from_millis(3));
    m.observe_event_to_map("dns", Duration::from_millis(40));
    m.observe_apply(Duration::from_millis(12), Ok(()));
    m.observe_apply(Duration::from_millis(20), Err(&"map_full"));
    m.observe_apply(Duration::from_millis(20), Err(&"not-a-cause"));
    m.watch_error("NetworkPolicy");
    m.map_insert_failed("TG_CGROUPS", 2);
    m.set_synced("Pod", true);
    m.set_synced("Egress", false);
    m.set_rejected(BTreeMap::from([(("NetworkPolicy".into(), "bad-cidr".into()), 2)]));
    m.set_ignored(BTreeMap::from([(("ServiceEntry".into(), "untrusted-namespace".into()), 1)]));
    m.set_enforced_pods(PodModes { enforce: 4, audit: 1, off: 9 });
    m.set_ready(true);
}

/// `promtool check metrics` on `text`: its complaints, or a clear failure
/// when promtool is missing.
fn promtool_check(text: &str) -> String {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is missing: install Debian's `prometheus` package (`cargo xtask setup` does) to run this test"
        ),
        Err(e) => panic!("running promtool: {e}"),
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.trim().is_empty() {
        String::new()
    } else {
        format!("promtool exited with {}: {said}", out.status)
    }
}

/// Sample lines (not comments) of `family` (a histogram's `_bucket`,
/// `_sum` and `_count` included).
fn samples<'a>(text: &'a str, family: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let name = l.split(['{', ' ']).next().unwrap_or_default();
            name == family || ["_bucket", "_sum", "_count"].iter().any(|s| name == format!("{family}{s}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_a_real_scrape_with_every_agreed_family() {
    let (addr, metrics, _fake) = serve_fake().await;
    record_everything(&metrics);
    let scrape = get(addr, "/metrics").await;
    assert_eq!(scrape.status, 200, "{scrape:?}");
    assert!(scrape.head.contains("content-type: text/plain; version=0.0.4"), "{}", scrape.head);
    let text = scrape.body;
    assert_eq!(promtool_check(&text), "", "scrape:\n{text}");
    for (name, kind) in AGREED {
        assert!(text.contains(&format!("# TYPE {name} {kind}\n")), "no {kind} {name} in:\n{text}");
        assert!(!samples(&text, name).is_empty(), "{name} has no sample in:\n{text}");
    }
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix} in:\n{text}"))
    };
    line(r#"tollgate_packets_total{namespace="test-egress",pod="sleep",verdict="dropped",reason="no-rule"} 3"#);
    line(r#"tollgate_bytes_total{namespace="test-egress",pod="sleep",verdict="allowed",reason="gateway"} 700"#);
    line(r#"tollgate_packets_total{namespace="shop",pod="web \"1\"\\",verdict="audited",reason="no-rule"} 2"#);
    line(r#"tollgate_node_packets_total{verdict="dropped"} 10"#);
    line(r#"tollgate_flow_events_suppressed_total{namespace="test-egress",pod="sleep"} 5"#);
    line(r#"tollgate_map_entries{map="TG_CGROUPS"} 12"#);
    line(r#"tollgate_map_capacity{map="TG_RULES_V4"} 1048576"#);
    line(r#"tollgate_map_insert_failures_total{map="TG_CGROUPS"} 2"#);
    line(r#"tollgate_event_to_map_seconds_count{kind="dns"} 1"#);
    line("tollgate_applies_total 3");
    line("tollgate_apply_duration_seconds_count 3");
    line(r#"tollgate_apply_failures_total{cause="map_full"} 1"#);
    line(r#"tollgate_apply_failures_total{cause="other"} 1"#);
    line(r#"tollgate_objects_rejected{kind="NetworkPolicy",reason="bad-cidr"} 2"#);
    line(r#"tollgate_objects_ignored{kind="ServiceEntry",rule="untrusted-namespace"} 1"#);
    line(r#"tollgate_source_synced{kind="Egress"} 0"#);
    line(r#"tollgate_source_watch_errors_total{kind="NetworkPolicy"} 1"#);
    line("tollgate_ready 1");
    line(r#"tollgate_enforced_pods{mode="off"} 9"#);
    line(&format!(r#"tollgate_build_info{{version="{}",object_hash="00000000feedbeef"}} 1"#, env!("CARGO_PKG_VERSION")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_is_served_when_asked_for() {
    let (addr, metrics, _fake) = serve_fake().await;
    record_everything(&metrics);
    let scrape = get_with(addr, "/metrics", "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n").await;
    assert_eq!(scrape.status, 200);
    assert!(scrape.head.contains("content-type: application/openmetrics-text; version=1.0.0"), "{}", scrape.head);
    assert!(scrape.body.ends_with("# EOF\n"), "{}", scrape.body);
    assert!(scrape.body.contains("# TYPE tollgate_packets counter\n"), "{}", scrape.body);
    assert!(scrape.body.contains("# UNIT tollgate_event_to_map_seconds seconds\n"), "{}", scrape.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_follow_the_pods_of_the_node() {
    let (addr, _metrics, fake) = serve_fake().await;
    let body = get(addr, "/metrics").await.body;
    assert_eq!(samples(&body, "tollgate_packets_total").len(), 3);
    // shop/web left the node; test-egress/sleep was re-created under the
    // same name (a second workload id): its counters are summed.
    let mut next = some_counters();
    next.pods.retain(|p| p.namespace != "shop");
    next.pods.push(pod("test-egress", "sleep", Verdict::Dropped, "no-rule", 1));
    *fake.counters.lock().expect("lock") = Ok(next);
    let body = get(addr, "/metrics").await.body;
    assert!(!body.contains(r#"namespace="shop""#), "{body}");
    let dropped = samples(&body, "tollgate_packets_total")
        .into_iter()
        .filter(|l| l.contains(r#"verdict="dropped""#))
        .collect::<Vec<_>>();
    assert_eq!(dropped, [r#"tollgate_packets_total{namespace="test-egress",pod="sleep",verdict="dropped",reason="no-rule"} 4"#]);
    assert_eq!(promtool_check(&body), "", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_fails_leaves_only_its_own_families_empty() {
    let (addr, metrics, fake) = serve_fake().await;
    metrics.set_ready(true);
    *fake.counters.lock().expect("lock") = Err("TG_COUNTERS: permission denied".into());
    let scrape = get(addr, "/metrics").await;
    assert_eq!(scrape.status, 200);
    assert!(samples(&scrape.body, "tollgate_packets_total").is_empty());
    assert!(scrape.body.contains("# TYPE tollgate_packets_total counter"), "{}", scrape.body);
    assert!(scrape.body.contains(r#"tollgate_map_entries{map="TG_CGROUPS"} 12"#), "{}", scrape.body);
    assert!(scrape.body.contains("tollgate_ready 1"), "{}", scrape.body);
    assert_eq!(promtool_check(&scrape.body), "", "{}", scrape.body);
}

#[test]
fn pod_modes_are_counted() {
    use crate::desired::Mode;
    let m = PodModes::count([Mode::Enforce, Mode::Audit, Mode::Enforce, Mode::Off]);
    assert_eq!(m, PodModes { enforce: 2, audit: 1, off: 1 });
}
