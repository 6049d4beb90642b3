//! `cargo xtask fuzz [--runs N] [--target T]... [--max-time S]`: builds the
//! cargo-fuzz targets of `fuzz/` (nightly, libFuzzer) and runs each one for
//! N inputs, then prints a table: inputs run, executions a second, wall
//! time, and the crash file when a target failed.
//!
//! The targets are built without a sanitizer (`-s none`): the code under
//! test is safe Rust, so what is looked for is a panic (overflow checks and
//! debug assertions are on) or a failed check in the target, and the
//! executions a second are several times those under ASan. Each target's
//! corpus grows in `fuzz/corpus/<target>/` (not committed), seeded from
//! `fuzz/seeds/<target>/`; crashes are written to `fuzz/artifacts/<target>/`
//! and reproduce with `fuzz/target/<triple>/release/<target> FILE`.
//!
//! `cargo xtask test` does not run the fuzzers: they need nightly.
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{describe, exec, fmt_dur, step, Workspace};

const TOOLCHAIN: &str = "nightly";
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

pub struct Options {
    pub runs: u64,
    pub targets: Vec<String>,
    pub max_time: Duration,
}

/// What one libFuzzer run reported.
struct Outcome {
    target: String,
    runs: Option<u64>,
    exec_per_sec: Option<u64>,
    time: Duration,
    corpus: Option<u64>,
    failure: Option<String>,
}

pub fn run(ws: &Workspace, o: Options) -> Result<()> {
    let fuzz_dir = ws.root.join("fuzz");
    step("check the fuzz toolchain", || check_toolchain(ws))?;
    let all = list_targets(ws)?;
    let targets = if o.targets.is_empty() { all.clone() } else { o.targets.clone() };
    for t in &targets {
        if !all.contains(t) {
            bail!("--target {t}: no such fuzz target (fuzz/Cargo.toml has: {})", all.join(", "));
        }
    }
    step("build the fuzz targets", || {
        let mut cmd = fuzz_cargo(ws);
        cmd.args(["fuzz", "build", "--sanitizer", "none"]);
        if targets.len() == 1 {
            cmd.arg(&targets[0]);
        }
        exec(&mut cmd, "cargo fuzz build")
    })?;
    let logs = ws.root.join("target").join("fuzz-logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut outcomes = Vec::new();
    for t in &targets {
        let out = step(&format!("fuzz {t} ({} inputs)", o.runs), || run_target(&fuzz_dir, &logs, t, &o))?;
        outcomes.push(out);
    }
    print_table(&outcomes, o.runs);
    let failed: Vec<&str> = outcomes.iter().filter(|o| o.failure.is_some()).map(|o| o.target.as_str()).collect();
    if !failed.is_empty() {
        bail!("fuzz targets failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `cargo` of the nightly toolchain, through rustup's proxy (the `cargo`
/// running this xtask is the stable one and would not take `+nightly`),
/// without the variables `cargo run` set for this xtask: build scripts
/// that watch them (ring watches `CARGO_PKG_NAME`) would otherwise rebuild
/// the whole fuzz build when it is run by hand and then from here.
fn fuzz_cargo(ws: &Workspace) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ws.root).env("RUSTUP_TOOLCHAIN", TOOLCHAIN);
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        let from_cargo_run = (k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR")
            || matches!(k.as_ref(), "CARGO" | "RUSTC" | "RUSTDOC" | "RUSTC_WRAPPER");
        if from_cargo_run {
            cmd.env_remove(&key);
        }
    }
    cmd
}

fn check_toolchain(ws: &Workspace) -> Result<()> {
    let ok = |cmd: &mut Command| cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !ok(fuzz_cargo(ws).args(["--version"])) {
        println!("    the {TOOLCHAIN} toolchain is missing; installing it with rustup");
        exec(
            Command::new("rustup").args(["toolchain", "install", TOOLCHAIN, "--profile", "minimal"]),
            "rustup toolchain install nightly (cargo fuzz needs nightly for its sanitizer-coverage flags)",
        )?;
    }
    if !ok(fuzz_cargo(ws).args(["fuzz", "--version"])) {
        println!("    cargo-fuzz is missing; installing it");
        exec(crate::cargo().args(["install", "cargo-fuzz", "--locked"]), "cargo install cargo-fuzz")?;
    }
    Ok(())
}

/// The targets named in fuzz/Cargo.toml, as `cargo fuzz list` prints them.
fn list_targets(ws: &Workspace) -> Result<Vec<String>> {
    let mut cmd = fuzz_cargo(ws);
    cmd.args(["fuzz", "list"]);
    let out = cmd.output().with_context(|| format!("running `{}`", describe(&cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", describe(&cmd), String::from_utf8_lossy(&out.stderr));
    }
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        bail!("`{}` lists no targets", describe(&cmd));
    }
    Ok(names)
}

fn run_target(fuzz_dir: &Path, logs: &Path, target: &str, o: &Options) -> Result<Outcome> {
    let bin = fuzz_dir.join("target").join(TRIPLE).join("release").join(target);
    let corpus = fuzz_dir.join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    for d in [&corpus, &artifacts] {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let log = fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = Command::new(&bin);
    cmd.arg(&corpus);
    let seeds = fuzz_dir.join("seeds").join(target);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    let dict = fuzz_dir.join("dict").join(format!("{target}.dict"));
    if dict.is_file() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    cmd.arg(format!("-runs={}", o.runs))
        .arg(format!("-max_total_time={}", o.max_time.as_secs().max(1)))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-timeout=30")
        .arg("-print_final_stats=1")
        .stdout(log.try_clone()?)
        .stderr(log);
    println!("    $ {}  (output in {})", describe(&cmd), log_path.display());
    let t = Instant::now();
    let status = cmd.status().with_context(|| format!("starting {}", bin.display()))?;
    let time = t.elapsed();
    let text = fs::read_to_string(&log_path).with_context(|| format!("reading {}", log_path.display()))?;
    let mut out = Outcome {
        target: target.to_owned(),
        runs: stat(&text, "number_of_executed_units"),
        exec_per_sec: stat(&text, "average_exec_per_sec"),
        time,
        corpus: corpus_size(&corpus),
        failure: None,
    };
    if !status.success() {
        let crash = text
            .lines()
            .rev()
            .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim().to_owned()));
        let tail: Vec<&str> = text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
        println!("    {target} FAILED ({status}); last lines of {}:\n{}", log_path.display(), tail.join("\n"));
        out.failure = Some(crash.unwrap_or_else(|| format!("{status}, see {}", log_path.display())));
    } else if out.runs.is_some_and(|r| r < o.runs) {
        println!("    note: {target} stopped at --max-time before {} inputs", o.runs);
    }
    Ok(out)
}

/// `stat::NAME: VALUE` from libFuzzer's final statistics.
fn stat(text: &str, name: &str) -> Option<u64> {
    let key = format!("stat::{name}:");
    text.lines().rev().find_map(|l| l.strip_prefix(&key).and_then(|v| v.trim().parse().ok()))
}

fn corpus_size(dir: &Path) -> Option<u64> {
    fs::read_dir(dir).ok().map(|d| d.count() as u64)
}

fn print_table(outcomes: &[Outcome], asked: u64) {
    let n = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
    println!("\n======== cargo xtask fuzz: {asked} inputs asked per target");
    println!("| target | inputs run | exec/s | wall time | corpus | result |");
    println!("|---|---:|---:|---:|---:|---|");
    for o in outcomes {
        let result = match &o.failure {
            None => "no crash".to_owned(),
            Some(f) => format!("FAILED: {f}"),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            o.target,
            n(o.runs),
            n(o.exec_per_sec),
            fmt_dur(o.time),
            n(o.corpus),
            result
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_final_stats() {
        let text = "INFO: Seed: 1\n#1000 DONE cov: 3\nstat::number_of_executed_units: 10000000\n\
                    stat::average_exec_per_sec:     123456\nstat::new_units_added:          7\n";
        assert_eq!(stat(text, "number_of_executed_units"), Some(10_000_000));
        assert_eq!(stat(text, "average_exec_per_sec"), Some(123_456));
        assert_eq!(stat(text, "peak_rss_mb"), None);
    }
}
