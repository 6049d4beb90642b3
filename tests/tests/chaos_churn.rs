//! The manifests churned at 100 changes a second for 30 seconds, against
//! the real agent (files source): namespace labels flipped (five churn
//! namespaces and test-egress itself), pods added and removed, an egress
//! NetworkPolicy per churn namespace rewritten with other ports.
//!
//! The files source reads a change once the folder has been stable for one
//! poll interval (250 ms): a folder changed every 10 ms without a pause is
//! not read until it stops. The churn is therefore written as 100 changes
//! in the first 450 ms of each second and a quiet 550 ms, and the agent
//! must apply at least every other second.
//!
//! After the churn the agent's status matches the final objects (every pod
//! of the input, each churn pod in its namespace's final mode,
//! test-egress/sleep enforced and refused by the kernel), and its resident
//! memory, sampled every 2 seconds, grows by no more than a bound after a
//! 10-second warm-up. The series is printed.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use tollgate_e2e::agent::{default_tollgate_bin, find_workload};
use tollgate_e2e::chaos::vm_rss_kib;
use tollgate_e2e::manifests::{set_namespace_label, write_atomic};
use tollgate_e2e::pods;
use tollgate_e2e::story::{v4, Story};
use tollgate_e2e::util::poll;

const LABEL: &str = "tollgate.dev/egress";
const CHURN: Duration = Duration::from_secs(30);
/// Changes a second, written in the burst at the start of each second.
const PER_SECOND: u32 = 100;
const BURST_TICK: Duration = Duration::from_micros(4500);
const WARM_UP: Duration = Duration::from_secs(10);
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
const NAMESPACES: u32 = 5;
const PODS: u32 = 40;
/// Allowed VmRSS growth after the warm-up: 8 MiB plus a quarter.
const GROWTH_KIB: u64 = 8 * 1024;

fn ns_name(j: u32) -> String {
    format!("churn-{j}")
}

fn namespace_yaml(j: u32, mode: Option<&str>) -> String {
    let label = mode.map(|m| format!("  labels:\n    {LABEL}: {m}\n")).unwrap_or_default();
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n{label}", ns_name(j))
}

fn pod_name(m: u32) -> String {
    format!("p{m}")
}

fn pod_yaml(m: u32) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\n  uid: 7a000000-0000-4000-8000-{m:012}\n  labels:\n    app: churn\n\
         spec:\n  nodeName: node-1\n  containers:\n  - name: c\n    image: busybox\n\
         status:\n  phase: Running\n  qosClass: BestEffort\n  podIP: 10.244.1.{a}\n  podIPs:\n  - ip: 10.244.1.{a}\n  - ip: fd00:10:244::1:{a}\n",
        name = pod_name(m),
        ns = ns_name(m % NAMESPACES),
        a = m + 10,
    )
}

fn policy_yaml(j: u32, port: u16) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: churn\n  namespace: {}\n\
         spec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 203.0.113.0/24\n    ports:\n    - protocol: TCP\n      port: {port}\n",
        ns_name(j)
    )
}

/// xorshift: the churn differs from run to run but needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const MODES: [Option<&str>; 3] = [Some("enforce"), Some("audit"), None];

#[test]
fn churn_at_100_changes_a_second_stays_in_sync_with_flat_memory() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    let dir = story.manifests.join("churn");
    std::fs::create_dir_all(&dir).unwrap();
    let mut ns_mode: BTreeMap<u32, Option<&str>> = BTreeMap::new();
    for j in 0..NAMESPACES {
        write_atomic(&dir.join(format!("ns-{j}.yaml")), &namespace_yaml(j, None)).unwrap();
        ns_mode.insert(j, None);
    }
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");
    let pid = story.agent().pid().expect("agent pid");
    let gen_before = story.agent().generation().unwrap();

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let mut present: BTreeSet<u32> = BTreeSet::new();
    let mut te_mode = "enforce";
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let mut next_sample = Instant::now();
    let start = Instant::now();
    let mut changes = 0u64;
    let mut i = 0u64;
    while start.elapsed() < CHURN {
        if Instant::now() >= next_sample {
            rss.push((start.elapsed().as_secs_f64(), vm_rss_kib(pid).unwrap()));
            next_sample += SAMPLE_EVERY;
        }
        let x = rng.next();
        match i % 4 {
            0 => {
                let j = (x % u64::from(NAMESPACES)) as u32;
                let mode = MODES[((x >> 8) % 3) as usize];
                write_atomic(&dir.join(format!("ns-{j}.yaml")), &namespace_yaml(j, mode)).unwrap();
                ns_mode.insert(j, mode);
            }
            1 => {
                let m = (x % u64::from(PODS)) as u32;
                let path = dir.join(format!("pod-{m}.yaml"));
                if present.remove(&m) {
                    std::fs::remove_file(&path).unwrap();
                } else {
                    write_atomic(&path, &pod_yaml(m)).unwrap();
                    present.insert(m);
                }
            }
            2 => {
                let j = (x % u64::from(NAMESPACES)) as u32;
                let port = 1000 + (x >> 16) as u16 % 1000;
                write_atomic(&dir.join(format!("np-{j}.yaml")), &policy_yaml(j, port)).unwrap();
            }
            _ => {
                te_mode = if te_mode == "enforce" { "audit" } else { "enforce" };
                set_namespace_label(&story.manifests, "test-egress", LABEL, Some(te_mode)).unwrap();
            }
        }
        changes += 1;
        i += 1;
        let (second, k) = (i as u32 / PER_SECOND, i as u32 % PER_SECOND);
        let due = start + Duration::from_secs(u64::from(second)) + BURST_TICK * k;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let churn_time = start.elapsed();
    if te_mode != "enforce" {
        set_namespace_label(&story.manifests, "test-egress", LABEL, Some("enforce")).unwrap();
        changes += 1;
    }
    story.agent().check_alive().unwrap_or_else(|e| panic!("{e:#}"));

    // In sync: every pod of the input, churn pods in their namespace's final mode.
    let mut expected_pods: BTreeSet<String> =
        pods::ALL_PODS.iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
    expected_pods.extend(present.iter().map(|m| format!("{}/{}", ns_name(m % NAMESPACES), pod_name(*m))));
    let settle = Instant::now();
    let status = poll("the agent to match the final objects", Duration::from_secs(20), || {
        let st = story.agent().status()?;
        let listed: BTreeSet<String> = st["pods"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        if listed != expected_pods {
            anyhow::bail!("pods {listed:?}, expected {expected_pods:?}");
        }
        for m in &present {
            let ns = ns_name(m % NAMESPACES);
            let want = ns_mode[&(m % NAMESPACES)].unwrap_or("off");
            let got = find_workload(&st, &ns, &pod_name(*m)).and_then(|w| w["mode"].as_str()).unwrap_or("off");
            if got != want {
                anyhow::bail!("{ns}/{}: mode {got}, expected {want}", pod_name(*m));
            }
        }
        let te = find_workload(&st, "test-egress", "sleep").and_then(|w| w["mode"].as_str());
        if te != Some("enforce") {
            anyhow::bail!("test-egress/sleep: mode {te:?}");
        }
        Ok(Some(st))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let settle_time = settle.elapsed();
    let r = story.probe_tcp(&pods::TEST_EGRESS_SLEEP, v4(pods::EXTERNAL_V4, 80), false, Duration::from_secs(3)).unwrap();
    assert_eq!(r.errno, Some(libc::EPERM), "test-egress/sleep after the churn: {r:?}");
    rss.push((start.elapsed().as_secs_f64(), vm_rss_kib(pid).unwrap()));

    let generations = status["generation"].as_u64().unwrap_or(0) - gen_before;
    eprintln!(
        "[churn] {changes} changes in {:.1}s ({:.0}/s), {generations} applies, in sync {:.2}s after the last change; {} churn pods, {} status pods",
        churn_time.as_secs_f64(),
        changes as f64 / churn_time.as_secs_f64(),
        settle_time.as_secs_f64(),
        present.len(),
        expected_pods.len()
    );
    let series: Vec<String> = rss.iter().map(|(t, kib)| format!("{t:.0}s {:.1}", *kib as f64 / 1024.0)).collect();
    eprintln!("[churn] VmRSS MiB: {}", series.join(", "));

    assert!(changes as f64 / churn_time.as_secs_f64() >= 90.0, "the churn ran slow: {changes} in {churn_time:?}");
    // One apply a second at most (one per quiet gap); at least half of them.
    assert!(generations >= CHURN.as_secs() / 2, "the agent applied only {generations} times during the churn");
    let warm = rss.iter().find(|(t, _)| *t >= WARM_UP.as_secs_f64()).map(|(_, k)| *k).expect("a sample after warm-up");
    let peak = rss.iter().filter(|(t, _)| *t >= WARM_UP.as_secs_f64()).map(|(_, k)| *k).max().unwrap_or(warm);
    assert!(
        peak <= warm + GROWTH_KIB + warm / 4,
        "VmRSS grew after warm-up: {warm} KiB -> peak {peak} KiB ({})",
        series.join(", ")
    );
}
