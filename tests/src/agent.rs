//! Starting the tollgate agent for one run and reading its CLI views.

use crate::procs::{run_capture, Proc};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `$TOLLGATE_BIN`, else `<workspace>/target/release/tollgate`.
pub fn default_tollgate_bin() -> PathBuf {
    std::env::var_os("TOLLGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/tollgate"))
}

#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub bin: PathBuf,
    pub bpffs: PathBuf,
    pub state_dir: PathBuf,
    pub manifests: PathBuf,
    pub cgroup_root: PathBuf,
    pub log_dir: PathBuf,
    /// `--metrics-addr` of the agent (loopback, a free port).
    pub metrics_addr: String,
    /// `--resolv-conf` (the agent's default, /etc/resolv.conf, when None).
    pub resolv_conf: Option<PathBuf>,
    /// Run the agent inside this network namespace (the node's, so that it
    /// reaches cluster DNS like a hostNetwork DaemonSet), entered with
    /// `exec_in_bin exec-in --netns` (a plain setns: unlike `ip netns exec`,
    /// it keeps /sys/fs/bpf and the cgroup mount). None: the caller's netns.
    pub netns: Option<String>,
    /// The `tollgate-e2e` binary (for `exec-in`).
    pub exec_in_bin: PathBuf,
    /// `--source kubernetes --kubeconfig FILE` (cluster ranges learned from
    /// the API server) instead of `--source files --manifests`.
    pub kubeconfig: Option<PathBuf>,
    /// With the files source, pass the harness's `--cluster-cidr` ranges
    /// (false: the agent learns them from Node and ServiceCIDR objects).
    pub cluster_cidr_flags: bool,
    /// More flags for the agent (e.g. `--log-format json`).
    pub extra_args: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadCounters {
    pub allowed_packets: u64,
    pub allowed_bytes: u64,
    pub dropped_packets: u64,
    pub dropped_bytes: u64,
    pub audited_packets: u64,
}

/// The agent process plus its bpffs folder; on drop: SIGKILL, then remove the pins.
pub struct Agent {
    pub cfg: AgentConfig,
    proc: Option<Proc>,
    logs: Vec<PathBuf>,
    pub keep: bool,
}

impl Agent {
    pub fn start(cfg: AgentConfig) -> Result<Agent> {
        if !cfg.bin.is_file() {
            bail!(
                "tollgate binary not found at {} (build it with `cargo xtask build`, or set TOLLGATE_BIN)",
                cfg.bin.display()
            );
        }
        std::fs::create_dir_all(&cfg.state_dir)?;
        let mut a = Agent { cfg, proc: None, logs: Vec::new(), keep: false };
        a.spawn()?;
        Ok(a)
    }

    fn base(&self) -> Command {
        let mut c = Command::new(&self.cfg.bin);
        c.arg("--bpffs").arg(&self.cfg.bpffs).arg("--state-dir").arg(&self.cfg.state_dir);
        c
    }

    /// The agent command line, as documented for operators.
    pub fn command(&self) -> Command {
        let mut c = self.base();
        match &self.cfg.kubeconfig {
            None => {
                c.args(["agent", "--source", "files", "--manifests"]).arg(&self.cfg.manifests);
                if self.cfg.cluster_cidr_flags {
                    for cidr in crate::pods::CLUSTER_CIDRS {
                        c.args(["--cluster-cidr", cidr]);
                    }
                }
            }
            Some(kc) => {
                c.args(["agent", "--source", "kubernetes", "--kubeconfig"]).arg(kc);
            }
        }
        c.args(["--node-name", "node-1", "--cgroup-root"]).arg(&self.cfg.cgroup_root);
        c.args(["--metrics-addr", &self.cfg.metrics_addr]);
        if let Some(r) = &self.cfg.resolv_conf {
            c.arg("--resolv-conf").arg(r);
        }
        c.args(&self.cfg.extra_args);
        c
    }

    /// GET `path` from the agent's metrics endpoint (in the agent's netns);
    /// (status line, body).
    pub fn http_get(&self, path: &str) -> Result<(String, String)> {
        use std::io::{Read, Write};
        let addr = self.cfg.metrics_addr.clone();
        let mut s = match &self.cfg.netns {
            None => std::net::TcpStream::connect(&addr),
            // setns(2) moves only the calling thread: connect from a
            // short-lived thread inside the netns; the socket stays there.
            Some(ns) => {
                let ns = ns.clone();
                std::thread::spawn(move || -> std::io::Result<std::net::TcpStream> {
                    use std::os::fd::AsRawFd;
                    let f = std::fs::File::open(format!("/run/netns/{ns}"))?;
                    // SAFETY: f is an open netns fd for the duration of the call.
                    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    std::net::TcpStream::connect(&addr)
                })
                .join()
                .map_err(|_| anyhow::anyhow!("connect thread panicked"))?
            }
        }
        .with_context(|| format!("connecting to {} (netns {:?})", self.cfg.metrics_addr, self.cfg.netns))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        Ok((head.lines().next().unwrap_or_default().to_string(), body.to_string()))
    }

    fn spawn(&mut self) -> Result<()> {
        let log = self.cfg.log_dir.join(format!("agent-{}.log", self.logs.len() + 1));
        self.logs.push(log.clone());
        let cmd = match &self.cfg.netns {
            None => self.command(),
            Some(ns) => {
                let inner = self.command();
                let args: Vec<String> = inner.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
                crate::procs::exec_in_command(&self.cfg.exec_in_bin, Some(ns), None, Path::new(inner.get_program()), &args)
            }
        };
        let p = Proc::spawn("tollgate agent", cmd, log, None)?;
        self.proc = Some(p);
        Ok(())
    }

    /// Starts a new agent with the same flags (after `kill9`).
    pub fn restart(&mut self) -> Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        self.spawn()
    }

    /// The log file of the current agent process.
    pub fn log_path(&self) -> Option<&Path> {
        self.logs.last().map(PathBuf::as_path)
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid())
    }

    /// SIGKILL the agent by PID (pins stay, so enforcement must stay).
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Fails with the log if the agent process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(p) = self.proc.as_mut() {
            if let Some(st) = p.try_exited() {
                bail!("tollgate agent exited ({st}); log:\n{}", self.logs_text());
            }
        }
        Ok(())
    }

    /// Runs `tollgate --bpffs X --state-dir Y ARGS`, returning stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let mut c = self.base();
        c.args(args);
        run_capture(c, Duration::from_secs(20))
    }

    /// Runs `tollgate --bpffs X --state-dir Y ARGS` whatever its exit code:
    /// (exit code, stdout, stderr).
    pub fn cli_output(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let mut c = self.base();
        c.args(args).stdin(std::process::Stdio::null());
        let out = c.output().with_context(|| format!("running tollgate {args:?}"))?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// The agent's log files (agent-1.log, agent-2.log after a restart, ...).
    pub fn log_files(&self) -> &[PathBuf] {
        &self.logs
    }

    /// `status -o json`, whether its checks pass (exit 0) or some fail
    /// (exit 1: the JSON is printed all the same).
    pub fn status(&self) -> Result<Value> {
        let (code, out, err) = self.cli_output(&["status", "-o", "json"])?;
        if code != 0 && code != 1 {
            bail!("tollgate status exited {code}: {}", err.trim());
        }
        serde_json::from_str(&out).with_context(|| format!("parsing status JSON (exit {code}): {out}{err}"))
    }

    pub fn generation(&self) -> Result<u64> {
        Ok(self.status()?["generation"].as_u64().unwrap_or(0))
    }

    pub fn counters(&self) -> Result<Value> {
        let out = self.cli(&["counters", "-o", "json"])?;
        serde_json::from_str(&out).with_context(|| format!("parsing counters JSON: {out}"))
    }

    /// `tollgate verify ARGS -o json` against the running agent's pins.
    pub fn verify(&self, args: &[&str]) -> Result<Value> {
        let mut a = vec!["verify"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let out = self.cli(&a)?;
        serde_json::from_str(out.trim()).with_context(|| format!("parsing verify JSON of {a:?}: {out}"))
    }

    /// `tollgate flows -o json`: one object per line.
    pub fn flows(&self) -> Result<Vec<Value>> {
        let out = self.cli(&["flows", "-o", "json"])?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("parsing flows line {l}")))
            .collect()
    }

    pub fn counters_text(&self) -> Result<String> {
        self.cli(&["counters"])
    }

    /// A workload's counters (zeros when it is not listed).
    pub fn workload_counters(&self, ns: &str, pod: &str) -> Result<WorkloadCounters> {
        let v = self.counters()?;
        Ok(find_workload(&v, ns, pod)
            .map(|w| {
                let g = |k: &str| w[k].as_u64().unwrap_or(0);
                WorkloadCounters {
                    allowed_packets: g("allowed_packets"),
                    allowed_bytes: g("allowed_bytes"),
                    dropped_packets: g("dropped_packets"),
                    dropped_bytes: g("dropped_bytes"),
                    audited_packets: g("audited_packets"),
                }
            })
            .unwrap_or_default())
    }

    /// Waits until `status` (written by the current agent PID, when it says
    /// which) reports generation > `after_generation` and the
    /// workload in `mode` with at least one cgroup ("off": listed as off, or
    /// not listed). Fails early if the agent dies.
    pub fn wait_applied(&mut self, ns: &str, pod: &str, mode: &str, after_generation: Option<u64>, timeout: Duration) -> Result<Value> {
        let what = format!("agent to apply {ns}/{pod} mode={mode}");
        let r = crate::util::poll(&what, timeout, || {
            // A dead agent is final: stop polling at once.
            if let Err(e) = self.check_alive() {
                return Ok(Some(Err(e)));
            }
            let st = match self.status() {
                Ok(s) => s,
                Err(e) => return Err(e.context("status not available yet")),
            };
            // After a restart the state dir still holds the old agent's
            // status: only trust one written by the current process.
            if let (Some(pid), Some(ours)) = (st["pid"].as_u64(), self.pid()) {
                if pid != u64::from(ours) {
                    return Ok(None);
                }
            }
            let gen = st["generation"].as_u64().unwrap_or(0);
            if after_generation.is_some_and(|g| gen <= g) {
                return Ok(None);
            }
            let ok = match find_workload(&st, ns, pod) {
                Some(w) => w["mode"].as_str() == Some(mode) && (mode == "off" || w["cgroups"].as_u64().unwrap_or(0) >= 1),
                None => mode == "off",
            };
            Ok(ok.then_some(Ok(st)))
        })?;
        r.with_context(|| what.clone())
    }

    pub fn logs_text(&self) -> String {
        let mut s = String::new();
        for l in &self.logs {
            s.push_str(&format!("----- {} -----\n", l.display()));
            s.push_str(&std::fs::read_to_string(l).unwrap_or_else(|e| format!("<{e}>\n")));
        }
        s
    }
}

pub fn find_workload<'a>(v: &'a Value, ns: &str, pod: &str) -> Option<&'a Value> {
    v["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["namespace"].as_str() == Some(ns) && w["pod"].as_str() == Some(pod))
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.keep {
            if let Some(p) = self.proc.as_mut() {
                p.keep = true;
            }
            return;
        }
        if std::thread::panicking() {
            eprintln!("[e2e] agent log (test failed):\n{}", self.logs_text());
        }
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        if self.cfg.bpffs.starts_with("/sys/fs/bpf/") && self.cfg.bpffs.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.cfg.bpffs) {
                eprintln!("[e2e] cleanup: rm -rf {}: {e}", self.cfg.bpffs.display());
            }
        }
    }
}
