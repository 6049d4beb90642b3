//! `--quick` runs of the benches (what `cargo xtask bench PART --quick`
//! runs), checked for sane figures: every setup measured, traffic flowed,
//! the agent's programs ran, changes reached the maps. Figures are not
//! judged (a bench prints them; see README "Benchmarks").
//!
//! The iptables and nftables setups are left out: their Debian packages
//! are installed for `cargo xtask bench throughput` only.
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use tollgate_e2e::util::require_environment;

fn e2e() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tollgate-e2e"))
}

/// Runs `tollgate-e2e bench ARGS --quick --json F` and returns the JSON.
fn bench(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("out.json");
    let out = Command::new(e2e())
        .arg("bench")
        .args(args)
        .arg("--quick")
        .arg("--json")
        .arg(&json)
        .output()
        .expect("running tollgate-e2e bench");
    assert!(
        out.status.success(),
        "bench {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| ---"), "no Markdown table printed:\n{stdout}");
    serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("valid JSON")
}

#[test]
fn throughput_quick_measures_every_setup_and_kind() {
    require_environment();
    let v = bench(&["throughput", "--filters", "tollgate"]);
    let cells = v["data"]["runs"][0].as_array().expect("run 1");
    // no filter and Tollgate N=10, three kinds each.
    assert_eq!(cells.len(), 6, "{cells:?}");
    for c in cells {
        let rate = c["median_rate"].as_f64().unwrap_or(0.0);
        let ratio = c["median_ratio"].as_f64().unwrap_or(0.0);
        assert!(rate > 0.0, "no traffic measured: {c}");
        assert!(ratio > 0.0 && ratio.is_finite(), "bad ratio: {c}");
        if c["filter"] == "none" {
            // Each baseline slice against the mean of the round's two.
            assert!(ratio > 0.25 && ratio < 4.0, "the baseline is (about) its own reference: {c}");
        }
    }
}

#[test]
fn prog_stats_quick_sees_the_agent_programs_run() {
    require_environment();
    let v = bench(&["prog-stats", "--n", "10"]);
    let traffic = v["data"]["traffic"].as_array().expect("traffic");
    assert_eq!(traffic.len(), 3);
    for t in traffic {
        let progs = t["programs"].as_array().expect("programs");
        let egress = progs.iter().find(|p| p["pin"] == "tg_egress").unwrap_or_else(|| panic!("no tg_egress in {t}"));
        assert!(egress["run_cnt"].as_u64().unwrap_or(0) > 0, "tg_egress never ran during {}", t["kind"]);
        assert!(egress["ns_per_run"].as_f64().unwrap_or(0.0) > 0.0, "no run time recorded: {egress}");
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").ok().as_deref().map(str::trim), Some("0"), "bpf_stats_enabled restored");
}

#[test]
fn control_plane_quick_times_changes_on_the_files_source() {
    require_environment();
    let v = bench(&["control-plane", "--apiserver-pods", "0"]);
    let run = &v["data"]["runs"][0];
    assert_eq!(run["pods"], 1000);
    assert!(run["vm_hwm"].as_u64().unwrap_or(0) > 0, "no RSS: {run}");
    assert!(run["maps_memlock"].as_u64().unwrap_or(0) > 0, "no map memory: {run}");
    assert!(!run["compile_ms"].as_array().expect("compile_ms").is_empty(), "no compile time logged");
    let events = run["events"].as_array().expect("events");
    // 3 of each small change, then the big policy created, edited once, deleted.
    assert_eq!(events.len(), 3 * 3 + 3, "{events:?}");
    for e in events {
        assert!(e["agent_ms"].as_f64().unwrap_or(0.0) > 0.0, "no event_to_map: {e}");
        assert!(e["outside_ms"].as_f64().unwrap_or(0.0) >= e["agent_ms"].as_f64().unwrap_or(0.0), "outside shorter than inside: {e}");
    }
    let big = events.iter().find(|e| e["kind"] == "10,000-ipBlock policy created").expect("big policy");
    assert!(big["rule_entries"].as_u64().unwrap_or(0) >= 10_000, "the 10,000 entries reached the maps: {big}");
}
