//! A `connect-watch` running inside a pod (its netns and cgroup), read by
//! the test: every change of the connect() outcome with its time.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::burst::{monotonic_ns, Outcome};
use crate::procs::exec_in_command;

pub struct ConnectWatch {
    child: Child,
    rx: mpsc::Receiver<Outcome>,
    /// The last outcome seen.
    pub last: Option<Outcome>,
}

impl ConnectWatch {
    pub fn start(e2e: &Path, netns: &str, cgroup: &Path, to: SocketAddr) -> Result<ConnectWatch> {
        let mut cmd = exec_in_command(e2e, Some(netns), Some(cgroup), e2e, &["connect-watch".into(), "--to".into(), to.to_string()]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::null()).stdin(Stdio::null());
        let mut child = cmd.spawn().context("starting connect-watch")?;
        let out = child.stdout.take().context("connect-watch stdout")?;
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = ready_tx.send(());
                } else if let Ok(o) = serde_json::from_str::<Outcome>(&line) {
                    if tx.send(o).is_err() {
                        return;
                    }
                }
            }
        });
        let mut w = ConnectWatch { child, rx, last: None };
        if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
            bail!("connect-watch did not start");
        }
        w.wait_for(|_| true, Duration::from_secs(10)).context("first connect-watch outcome")?;
        Ok(w)
    }

    /// Waits for an outcome satisfying `pred` (the current one counts).
    pub fn wait_for(&mut self, pred: impl Fn(&Outcome) -> bool, timeout: Duration) -> Result<Outcome> {
        if let Some(o) = self.last.clone().filter(|o| pred(o)) {
            return Ok(o);
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(o) => {
                    self.last = Some(o.clone());
                    if pred(&o) {
                        return Ok(o);
                    }
                }
                Err(_) => bail!("no matching connect outcome within {timeout:?} (last: {:?})", self.last),
            }
        }
    }

    /// Waits until connect() is allowed (or refused) and returns how long
    /// after `since_ns` (a [`monotonic_ns`] instant) the change was seen.
    pub fn wait_allowed(&mut self, allowed: bool, since_ns: u64, timeout: Duration) -> Result<Duration> {
        let o = self.wait_for(|o| o.allowed == allowed, timeout)?;
        Ok(Duration::from_nanos(o.t_ns.saturating_sub(since_ns)))
    }

    pub fn now_ns() -> u64 {
        monotonic_ns()
    }
}

impl Drop for ConnectWatch {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
