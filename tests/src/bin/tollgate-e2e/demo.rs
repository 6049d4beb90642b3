//! `tollgate-e2e demo`: the egress-gateway story as a connectivity matrix.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Duration;
use tollgate_e2e::pods::{self, PodSpec};
use tollgate_e2e::probe::ProbeResult;
use tollgate_e2e::kube_story::KubeStory;
use tollgate_e2e::story::{v4, v6, Story, StoryOpts};

/// The demo on a private, real API server: the objects of
/// examples/istio-egress-gateway in kube-apiserver, the agent on `--source
/// kubernetes`, and enforcement switched with `kubectl label namespace`.
pub fn run_kubernetes(tollgate: Option<PathBuf>, keep: bool) -> Result<()> {
    let (me, tollgate) = preflight(tollgate)?;
    println!("starting a private kube-apiserver and building the topology ...");
    let mut ks = KubeStory::build(&me, StoryOpts::default())?;
    println!("run {}: API server {} (kubeconfig {})", ks.story.prefix, ks.api.url(), ks.api.kubeconfig().display());
    println!("starting agent {} --source kubernetes ...", tollgate.display());
    if let Err(e) = ks.start_agent(&tollgate) {
        if let Some(a) = &ks.story.agent {
            eprintln!("agent log:\n{}", a.logs_text());
        }
        return Err(e);
    }
    println!("agent synced and applied (pid {:?})\n", ks.story.agent().pid());
    matrix(&mut ks.story, &[pods::TEST_EGRESS_SLEEP, pods::DEFAULT_SLEEP, pods::EGRESS_GATEWAY])?;
    for value in [Some("audit"), None, Some("enforce")] {
        let arg = match value {
            Some(v) => format!("tollgate.dev/egress={v}"),
            None => "tollgate.dev/egress-".to_string(),
        };
        println!("\n$ kubectl label namespace test-egress {arg} --overwrite");
        let gen = ks.story.agent().generation()?;
        ks.label_namespace("test-egress", "tollgate.dev/egress", value)?;
        let mode = value.unwrap_or("off");
        ks.story.agent().wait_applied("test-egress", "sleep", mode, Some(gen), Duration::from_secs(15))?;
        matrix(&mut ks.story, &[pods::TEST_EGRESS_SLEEP])?;
    }
    println!("\ntollgate counters:\n{}", ks.story.agent().counters_text().unwrap_or_else(|e| format!("{e:#}")));
    println!("\ntollgate flows:\n{}", ks.story.agent().cli(&["flows"]).unwrap_or_else(|e| format!("{e:#}")));
    if keep {
        let hint = ks.story.teardown_hint();
        ks.story.keep();
        ks.api.keep();
        println!("kept running. export KUBECONFIG={}", ks.api.kubeconfig().display());
        println!("API server pid {:?} (kill it to stop); netns: {}", ks.api.pid(), ks.story.topo.namespaces().join(" "));
        println!("cgroup root: {}\nto tear down:\n{hint}", ks.story.cgroups.root.display());
    } else {
        drop(ks);
        println!("torn down.");
    }
    Ok(())
}

/// Checks the environment; returns this binary and the agent binary.
fn preflight(tollgate: Option<PathBuf>) -> Result<(PathBuf, PathBuf)> {
    let problems = tollgate_e2e::util::preflight_problems();
    if !problems.is_empty() {
        anyhow::bail!("environment not ready:\n  - {}", problems.join("\n  - "));
    }
    let me = std::env::current_exe().context("locating own binary")?;
    Ok((me, tollgate.unwrap_or_else(tollgate_e2e::agent::default_tollgate_bin)))
}

pub fn run(tollgate: Option<PathBuf>, manifests: Option<PathBuf>, keep: bool, dashboard: Option<PathBuf>) -> Result<()> {
    let (me, tollgate) = preflight(tollgate)?;
    println!("building topology ...");
    let mut story = Story::build(&me)?;
    if let Some(src) = manifests {
        for e in std::fs::read_dir(&story.manifests)?.flatten() {
            std::fs::remove_file(e.path())?;
        }
        for e in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))?.flatten() {
            let p = e.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
                std::fs::copy(&p, story.manifests.join(e.file_name()))?;
            }
        }
        story.manifests_source = src.display().to_string();
    }
    println!("run {}: manifests from {}", story.prefix, story.manifests_source);
    println!("starting agent {} ...", tollgate.display());
    if let Err(e) = story.start_agent(&tollgate) {
        if let Some(a) = &story.agent {
            eprintln!("agent log:\n{}", a.logs_text());
        }
        return Err(e);
    }
    println!("agent applied (pid {:?})\n", story.agent().pid());

    matrix(&mut story, &[pods::TEST_EGRESS_SLEEP, pods::DEFAULT_SLEEP, pods::EGRESS_GATEWAY])?;
    println!("\ntollgate counters:\n{}", story.agent().counters_text().unwrap_or_else(|e| format!("{e:#}")));
    println!("\ntollgate flows:\n{}", story.agent().cli(&["flows"]).unwrap_or_else(|e| format!("{e:#}")));
    if let Some(out) = dashboard {
        record_dashboard(&mut story, &out)?;
    }
    if keep {
        let hint = story.teardown_hint();
        story.keep();
        println!("kept running. Netns: {}", story.topo.namespaces().join(" "));
        println!("cgroup root: {}\nto tear down:\n{hint}", story.cgroups.root.display());
    } else {
        drop(story);
        println!("torn down.");
    }
    Ok(())
}

/// Probes from each of `rows` and prints one line per pod.
fn matrix(story: &mut Story, rows: &[PodSpec]) -> Result<()> {
    let t = Duration::from_millis(1500);
    let gw = pods::EGRESS_GATEWAY;
    let cols = ["external v4", "external v6", "via gateway v4", "via gateway v6", "DNS (udp)"];
    let mut table: Vec<(PodSpec, Vec<ProbeResult>)> = Vec::new();
    for pod in rows {
        let cells = vec![
            story.probe_tcp(pod, v4(pods::EXTERNAL_V4, 80), true, t)?,
            story.probe_tcp(pod, v6(pods::EXTERNAL_V6, 80), true, t)?,
            story.probe_tcp(pod, v4(gw.ipv4, pods::GATEWAY_PORT), true, t)?,
            story.probe_tcp(pod, v6(gw.ipv6, pods::GATEWAY_PORT), true, t)?,
            story.probe_dns(pod, v4(pods::COREDNS.ipv4, 53), "A", false)?,
        ];
        table.push((*pod, cells));
    }
    let w0 = 34;
    let w = 24;
    print!("{:w0$}", "from \\ to");
    for c in cols {
        print!("{c:w$}");
    }
    println!();
    for (pod, cells) in &table {
        print!("{:w0$}", pod.key());
        for c in cells {
            print!("{:w$}", format!("{} {}ms", c.verdict(), c.elapsed_ms));
        }
        println!();
    }
    Ok(())
}

/// Traffic for 15 s (every 0.5 s a refused and an allowed connection and a
/// DNS query from the enforced pod; a burst of 20,000 denied datagrams at
/// 3 s and at 11 s; test-egress switched to audit from 6 s to 9 s) while
/// /metrics is scraped; then the dashboard's main panels drawn from those
/// scrapes to `out`.
fn record_dashboard(story: &mut Story, out: &std::path::Path) -> Result<()> {
    use tollgate_e2e::dashboard::{panels, parse_exposition, svg, Scrape};
    println!("\nrecording the dashboard for 15 s ...");
    let te = pods::TEST_EGRESS_SLEEP;
    let gw = pods::EGRESS_GATEWAY;
    let start = std::time::Instant::now();
    let mut scrapes = Vec::new();
    let mut bursts = 0;
    let mut current_mode = "enforce";
    while start.elapsed() < Duration::from_secs(15) {
        let t = start.elapsed().as_secs_f64();
        let (_, text) = story.agent().http_get("/metrics")?;
        scrapes.push(Scrape { t, samples: parse_exposition(&text) });
        story.probe_tcp(&te, v4(pods::EXTERNAL_V4, 443), false, Duration::from_millis(300))?;
        story.probe_tcp(&te, v4(gw.ipv4, pods::GATEWAY_PORT), false, Duration::from_millis(300))?;
        story.probe_dns(&te, v4(pods::COREDNS.ipv4, 53), "A", false)?;
        let mode = if (6.0..9.0).contains(&t) { "audit" } else { "enforce" };
        if mode != current_mode {
            tollgate_e2e::manifests::set_namespace_label(&story.manifests, "test-egress", "tollgate.dev/egress", Some(mode))?;
            current_mode = mode;
        }
        if (t >= 3.0 && bursts == 0) || (t >= 11.0 && bursts == 1) {
            bursts += 1;
            let cmd = tollgate_e2e::procs::exec_in_command(
                &story.e2e_bin,
                Some(story.topo.pod_ns(&te)),
                Some(story.cgroups.container(&te)),
                &story.e2e_bin,
                &["udp-spray".into(), "--to".into(), v4(pods::EXTERNAL_V4, 9).to_string(), "--count".into(), "20000".into()],
            );
            tollgate_e2e::procs::run_capture(cmd, Duration::from_secs(60))?;
        }
        let next = Duration::from_secs_f64(t) + Duration::from_millis(500);
        std::thread::sleep(next.saturating_sub(start.elapsed()));
    }
    let doc = svg(&format!("Tollgate — node node-1 (run {}), from {} scrapes of /metrics", story.prefix, scrapes.len()), &panels(&scrapes));
    std::fs::write(out, doc).with_context(|| format!("writing {}", out.display()))?;
    println!("dashboard written to {}", out.display());
    Ok(())
}
