//! A fake kubelet for one Node of a private API server
//! (`tollgate-apiserver kubelet`, tests/apiserver/kubelet.go): pods/exec on
//! that Node's pods runs the allowed commands on this machine, through the
//! kubelet's own streaming code. It registers the Node's InternalIP
//! (127.0.0.1) and kubelet port itself. Killed by PID on drop.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::apiserver::{default_apiserver_bin, ApiServer};

const READY_MARK: &str = "tollgate-apiserver kubelet: ready ";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct FakeKubelet {
    child: Option<Child>,
    pub url: String,
    pub log: PathBuf,
}

impl FakeKubelet {
    /// Serves exec for the pods of `node`; `allow` maps a command name (the
    /// first word of an exec) to the program it runs here.
    pub fn start(api: &ApiServer, node: &str, allow: &[(&str, &Path)]) -> Result<FakeKubelet> {
        let out = api.dir().join(format!("kubelet-{node}.out"));
        let log = api.dir().join(format!("kubelet-{node}.log"));
        let file = |p: &Path| std::fs::File::create(p).with_context(|| format!("creating {}", p.display()));
        let mut cmd = Command::new(default_apiserver_bin());
        cmd.arg("kubelet").arg("--dir").arg(api.dir()).args(["--node", node]);
        for (name, path) in allow {
            cmd.arg("--allow").arg(format!("{name}={}", path.display()));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file(&out)?)
            .stderr(file(&log)?)
            .spawn()
            .context("starting tollgate-apiserver kubelet")?;
        let mut k = FakeKubelet { child: Some(child), url: String::new(), log };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(rest) = text.lines().find_map(|l| l.strip_prefix(READY_MARK)) {
                k.url = rest.split_whitespace().next().unwrap_or_default().to_owned();
                return Ok(k);
            }
            if let Some(st) = k.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("the fake kubelet exited ({st}): {}", std::fs::read_to_string(&k.log).unwrap_or_default());
            }
            if Instant::now() >= deadline {
                bail!("the fake kubelet was not ready after {READY_TIMEOUT:?}: {}", std::fs::read_to_string(&k.log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the PID of our own child, not yet reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}
