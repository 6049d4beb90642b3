//! `cargo xtask bench datapath`: `tollgate bench-datapath` (the kernel
//! times the egress program with BPF_PROG_TEST_RUN), then the attached
//! programs' run_time_ns / run_cnt during real traffic. With `--json`,
//! one document holds both: the first as its printed lines (and the rows
//! that parse as `case  number`), the second as `tollgate-e2e` wrote it.
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::{describe, exec, step, Workspace};

/// `--quick`: a tenth of `bench-datapath`'s defaults.
const QUICK_ARGS: &[&str] = &["--prefixes", "10000", "--repeat", "100000"];

pub fn run(ws: &Workspace, tollgate: &Path, quick: bool, json: Option<&Path>, args: &[String]) -> Result<()> {
    let text = step("bench datapath: BPF_PROG_TEST_RUN", || {
        let mut cmd = Command::new(tollgate);
        cmd.arg("bench-datapath");
        if quick {
            cmd.args(QUICK_ARGS);
        }
        cmd.args(args);
        println!("    $ {}", describe(&cmd));
        let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("starting {}", describe(&cmd)))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("{text}");
        if !out.status.success() {
            bail!("`{}` failed ({})", describe(&cmd), out.status);
        }
        Ok(text)
    })?;
    let stats_json = json.map(|j| j.with_extension("prog-stats.json"));
    step("bench datapath: attached programs under real traffic", || {
        let mut cmd = super::e2e_bench(ws, tollgate, "prog-stats", quick, stats_json.as_deref(), &[]);
        exec(&mut cmd, "the attached-programs bench (tollgate-e2e bench prog-stats)")
    })?;
    if let (Some(path), Some(stats)) = (json, stats_json) {
        let attached: Value = serde_json::from_str(&std::fs::read_to_string(&stats)?)
            .with_context(|| format!("parsing {}", stats.display()))?;
        let _ = std::fs::remove_file(&stats);
        let doc = json!({
            "part": "datapath",
            "bench_datapath": {"output": text, "rows": rows(&text)},
            "attached_programs": attached,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
        println!("(JSON written to {})", path.display());
    }
    Ok(())
}

/// Lines of `bench-datapath`'s tables: a label, two or more spaces, a
/// number, anything after it.
fn rows(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| {
            let (label, rest) = l.split_once("  ")?;
            let rest = rest.trim_start();
            let num = rest.split_whitespace().next()?.parse::<f64>().ok()?;
            let tail = rest.split_once(char::is_whitespace).map(|(_, t)| t.trim()).unwrap_or("");
            Some(json!({"case": label.trim(), "value": num, "rest": tail}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_bench_datapath_rows() {
        let text = "bench-datapath: 10 rule prefixes loaded\ncase (tg_egress, kernel-timed)     ns/packet\nhost process (not a pod)                 84.2\nno rule (drop)                          399.0   (dropped)\n";
        let r = super::rows(text);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0]["case"], "host process (not a pod)");
        assert_eq!(r[1]["value"], 399.0);
        assert_eq!(r[1]["rest"], "(dropped)");
    }
}
