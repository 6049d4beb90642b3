//! `bench prog-stats` (the real-traffic half of `cargo xtask bench
//! datapath`): `run_time_ns / run_cnt` of every program the agent
//! attached, while an enforced pod (a NetworkPolicy of N ipBlocks selects
//! it) sends TCP and UDP to the gateway. `kernel.bpf_stats_enabled` is 1
//! for the run and restored after.
use crate::bench::bpf::{self, ProgStats, SysctlGuard};
use crate::bench::load::Kind;
use crate::bench::report::{si, Report, Table};
use crate::bench::world::{self, Filter, World};
use anyhow::{Context, Result};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

pub fn run(e2e_bin: &Path, tollgate_bin: &Path, n: usize, dur: Duration, json: Option<&Path>) -> Result<()> {
    let setups = world::setups(&[n], &[Filter::Tollgate])?;
    let w = World::build(e2e_bin, tollgate_bin, setups)?;
    let tg = *w.setups.iter().find(|s| s.filter == Filter::Tollgate).context("no Tollgate setup")?;
    let bpffs = w.bpffs().context("the agent is not running")?.to_path_buf();
    // Warm-up outside the measurement.
    for k in Kind::ALL {
        w.slice(&tg, k, Duration::from_millis(100))?;
    }
    let _stats = SysctlGuard::set("kernel.bpf_stats_enabled", "1")?;
    let mut t = Table::new(
        &format!("Attached programs during real traffic (enforced pod, {n} allow-list entries + gateway)"),
        &["traffic", "program", "runs", "ns/run", "runs per op", "traffic rate"],
    );
    let mut data = Vec::new();
    for kind in Kind::ALL {
        let before = bpf::prog_stats(&bpffs)?;
        let slice = w.slice(&tg, kind, dur)?;
        let after = bpf::prog_stats(&bpffs)?;
        let d = bpf::delta(&before, &after);
        for p in d.iter().filter(|p| p.run_cnt > 0) {
            t.row(vec![
                kind.heading().into(),
                p.pin.clone(),
                p.run_cnt.to_string(),
                format!("{:.1}", ns_per_run(p)),
                // Per byte for the stream is meaningless: per packet is
                // what the kernel counts; show runs per op for the others.
                if kind == Kind::Stream { "-".into() } else { format!("{:.2}", p.run_cnt as f64 / slice.ops.max(1) as f64) },
                si(slice.rate),
            ]);
        }
        data.push(json!({"kind": kind, "slice": slice, "programs": d.iter().map(|p| json!({
            "pin": p.pin, "name": p.name, "id": p.id, "run_cnt": p.run_cnt, "run_time_ns": p.run_time_ns, "ns_per_run": ns_per_run(p),
        })).collect::<Vec<_>>()}));
    }
    drop(_stats);
    let report = Report {
        part: "datapath (attached programs, real traffic)",
        tables: vec![t],
        notes: vec![format!(
            "{} ms of each kind of traffic from bench/{} (netns and cgroup of an enforced pod) to the gateway; the programs' run_time_ns and run_cnt (BPF_OBJ_GET_INFO_BY_FD on the program behind each link pinned in the agent's bpffs folder) before and after; kernel.bpf_stats_enabled=1 during the run only. The figures include the kernel's two clock reads per run that bpf_stats adds.",
            dur.as_millis(),
            tg.pod.name
        )],
        data: json!({"n": n, "duration_ms": dur.as_millis() as u64, "traffic": data}),
    };
    report.emit(json)
}

fn ns_per_run(p: &ProgStats) -> f64 {
    if p.run_cnt == 0 {
        0.0
    } else {
        p.run_time_ns as f64 / p.run_cnt as f64
    }
}
