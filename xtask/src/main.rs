//! `cargo xtask <command>`: setup, build, test, demo and bench for Tollgate.
//!
//! Every command is a thin, printed sequence of ordinary processes
//! (`apt-get`, `cargo`, the built binaries), so that what it does can be
//! repeated by hand.
mod bench;
mod build;
mod cluster;
mod demo;
mod fuzz;
mod helm;
mod image;
mod setup;
mod test;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Tollgate developer tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build needs (Debian packages, bpf-linker) and mount bpffs. Idempotent.
    Setup,
    /// Setup, then build the kernel programs and `target/release/tollgate` with them embedded.
    Build {
        /// Build the user-space crates with the dev profile (target/debug/); the
        /// kernel object is always optimised, as the verifier needs.
        #[arg(long)]
        debug: bool,
    },
    /// Build, then run clippy (workspace and kernel crate) and every test, end-to-end ones included.
    Test,
    /// Build, then run the Istio egress-gateway demo in network namespaces.
    Demo {
        /// Leave the namespaces, cgroups and the agent in place afterwards.
        #[arg(long)]
        keep: bool,
        /// Play the story on a private, real kube-apiserver (built with Go on first use):
        /// the agent on --source kubernetes, enforcement switched with kubectl label.
        #[arg(long)]
        kubernetes: bool,
    },
    /// Build, then run a benchmark: datapath, throughput or control-plane.
    Bench {
        #[arg(value_enum)]
        part: bench::Part,
        /// Also write the figures as JSON to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// A short smoke run.
        #[arg(long)]
        quick: bool,
        /// Further arguments for the part's command, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the cargo-fuzz targets of fuzz/ (nightly) and run each for N inputs; print the figures.
    Fuzz {
        /// Inputs per target (libFuzzer -runs).
        #[arg(long, default_value_t = 10_000_000)]
        runs: u64,
        /// Only this target (repeatable); default: every target in fuzz/Cargo.toml.
        #[arg(long = "target", value_name = "TARGET")]
        targets: Vec<String>,
        /// Stop a target after this many seconds even before --runs inputs (libFuzzer -max_total_time).
        #[arg(long, value_name = "SECS", default_value_t = 7200)]
        max_time: u64,
    },
    /// Build, then write the tollgate-agent OCI image archive (target/tollgate-agent.oci.tar).
    Image,
    /// Build the pinned Helm (target/tools/bin/helm) when missing; with arguments after `--`, run it.
    Helm {
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// A local, real kube-apiserver (embedded etcd) on 127.0.0.1, and kubectl.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Build (when missing or changed) and start it; print `export KUBECONFIG=…` and `export PATH=…`.
    Up {
        /// State directory (etcd data, keys, kubeconfig, log) [default: target/cluster].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Stop the server started for DIR and remove DIR. Idempotent.
    Down {
        /// State directory [default: target/cluster].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Only build `tollgate-apiserver` and `kubectl` (target/apiserver/); print their paths.
    Build,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ws = Workspace::locate();
    let res = match cli.cmd {
        Cmd::Setup => setup::run(&ws, setup::Need::All),
        Cmd::Build { debug } => build::run(&ws, debug, setup::Need::BuildOnly).map(|_| ()),
        Cmd::Test => test::run(&ws),
        Cmd::Demo { keep, kubernetes } => demo::run(&ws, keep, kubernetes),
        Cmd::Bench { part, json, quick, args } => bench::run(&ws, bench::Options { part, json, quick, args }),
        Cmd::Fuzz { runs, targets, max_time } => {
            fuzz::run(&ws, fuzz::Options { runs, targets, max_time: Duration::from_secs(max_time) })
        }
        Cmd::Image => image::run(&ws),
        Cmd::Helm { args } => helm::run(&ws, &args),
        Cmd::Cluster { cmd } => match cmd {
            ClusterCmd::Up { dir } => cluster::up(&ws, dir),
            ClusterCmd::Down { dir } => cluster::down(&ws, dir),
            ClusterCmd::Build => cluster::build(&ws),
        },
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Paths of the workspace this xtask belongs to.
pub struct Workspace {
    pub root: PathBuf,
}

impl Workspace {
    fn locate() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives inside the workspace")
            .to_path_buf();
        Workspace { root }
    }
    pub fn tools(&self) -> PathBuf {
        self.root.join(".tools")
    }
    pub fn bpf_linker(&self) -> PathBuf {
        self.tools().join("bin").join("bpf-linker")
    }
    pub fn ebpf_crate(&self) -> PathBuf {
        self.root.join("agent-ebpf")
    }
    pub fn ebpf_target_dir(&self) -> PathBuf {
        self.root.join("target").join("ebpf-build")
    }
    /// The object agent/build.rs embeds.
    pub fn ebpf_obj(&self) -> PathBuf {
        self.root.join("target").join("ebpf").join("tollgate.bpf.o")
    }
    pub fn bin_dir(&self, debug: bool) -> PathBuf {
        self.root
            .join("target")
            .join(if debug { "debug" } else { "release" })
    }
    pub fn tollgate(&self) -> PathBuf {
        self.bin_dir(false).join("tollgate")
    }
    pub fn e2e(&self) -> PathBuf {
        self.bin_dir(false).join("tollgate-e2e")
    }
}

/// Prints `==> name` and, when done, how long the step took.
pub fn step<T>(name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("==> {name}");
    let t = Instant::now();
    let r = f();
    let d = t.elapsed();
    match &r {
        Ok(_) => println!("<== {name}: done in {}", fmt_dur(d)),
        Err(_) => println!("<== {name}: FAILED after {}", fmt_dur(d)),
    }
    r
}

pub fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s as u64) / 60, (s as u64) % 60)
    }
}

/// The command line as a shell would show it, with the env vars that were set.
pub fn describe(cmd: &Command) -> String {
    let mut out = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            out.push_str(&format!("{}={} ", k.to_string_lossy(), shell_quote(v)));
        }
    }
    out.push_str(&shell_quote(cmd.get_program()));
    for a in cmd.get_args() {
        out.push(' ');
        out.push_str(&shell_quote(a));
    }
    if let Some(dir) = cmd.get_current_dir() {
        out = format!("(cd {} && {out})", dir.display());
    }
    out
}

pub fn shell_quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''").replace('\x1f', "'$'\\x1f''"))
    }
}

/// Runs `cmd`, inheriting stdio; fails with `what` and the command line.
pub fn exec(cmd: &mut Command, what: &str) -> Result<()> {
    println!("    $ {}", describe(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start `{}`", describe(cmd)))?;
    if !status.success() {
        bail!("{what} failed ({status})\n    command: {}", describe(cmd));
    }
    Ok(())
}

/// True when the effective user is root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `cargo` as the driver: the one that runs this xtask, else the one on PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}
