//! Processes started by the harness: always inside a netns we created, and for
//! pods inside the pod's container cgroup (entered before exec, via `exec-in`).

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `exec-in`: join the cgroup, then the netns, then exec. Never returns on success.
pub fn exec_in(netns: Option<&str>, cgroup: Option<&Path>, argv: &[String]) -> Result<()> {
    let Some((prog, args)) = argv.split_first() else { bail!("exec-in: no command given") };
    if let Some(cg) = cgroup {
        let procs = cg.join("cgroup.procs");
        std::fs::write(&procs, format!("{}\n", std::process::id()))
            .with_context(|| format!("joining cgroup {}", procs.display()))?;
    }
    if let Some(ns) = netns {
        let path = format!("/run/netns/{ns}");
        let f = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: f is an open netns fd for the duration of the call.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns({path}): {}", std::io::Error::last_os_error());
        }
    }
    let err = Command::new(prog).args(args).exec();
    bail!("exec {prog}: {err}")
}

/// Builds `BIN exec-in [--netns NS] [--cgroup DIR] -- PROG ARGS...`.
pub fn exec_in_command(bin: &Path, netns: Option<&str>, cgroup: Option<&Path>, prog: &Path, args: &[String]) -> Command {
    let mut c = Command::new(bin);
    c.arg("exec-in");
    if let Some(ns) = netns {
        c.args(["--netns", ns]);
    }
    if let Some(cg) = cgroup {
        c.arg("--cgroup").arg(cg);
    }
    c.arg("--").arg(prog).args(args);
    c
}

/// A child process we started; killed (by PID) on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
    pub keep: bool,
}

impl Proc {
    /// Spawns `cmd` with stderr (and stdout after the first line) going to `log`,
    /// and waits until it prints `ready` on stdout, if `wait_ready`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf, wait_ready: Option<Duration>) -> Result<Proc> {
        let logf = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stderr(logf.try_clone()?).stdin(Stdio::null());
        if wait_ready.is_some() {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(logf);
        }
        let child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        let mut p = Proc { name: name.to_string(), child, log, keep: false };
        if let Some(timeout) = wait_ready {
            let out = p.child.stdout.take().expect("piped");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                let _ = tx.send(line);
                // Keep draining so the child never sees EPIPE.
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            });
            match rx.recv_timeout(timeout) {
                Ok(l) if l.trim() == "ready" => {}
                Ok(l) => bail!("{name} did not start (said {l:?}); log:\n{}", p.log_text()),
                Err(_) => bail!("{name} not ready after {timeout:?}; log:\n{}", p.log_text()),
            }
        }
        Ok(p)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL by PID, then reap.
    pub fn kill(&mut self) {
        if self.try_exited().is_none() {
            // SAFETY: plain kill(2) on the PID of our own unreaped child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.keep {
            self.kill();
        }
    }
}

/// Runs a short-lived command to completion with a deadline; returns its stdout.
pub fn run_capture(mut cmd: Command, timeout: Duration) -> Result<String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| format!("spawning {cmd:?}"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = child.wait();
            bail!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if !status.success() {
        bail!("{cmd:?} failed ({status}): {}{}", stderr.trim(), stdout.trim());
    }
    Ok(stdout)
}
