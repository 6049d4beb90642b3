//! A private, real kube-apiserver (with embedded etcd) for one test:
//! `tests/apiserver/`'s `tollgate-apiserver` on 127.0.0.1, free ports, its
//! state in a unique folder under /tmp, and the kubectl of the same version.
//!
//! No controller-manager, scheduler or kubelet run (see tests/apiserver/README.md):
//! tests create Pods with `spec.nodeName`, patch `status.podIPs` through the
//! status subresource and write EndpointSlices themselves.

use crate::procs::run_capture;
use crate::util::{unique_prefix, TempDir};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What the server prints on stdout once /readyz answers 200.
const READY_MARK: &str = "tollgate-apiserver: ready ";
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(120);

/// `$TOLLGATE_APISERVER_BIN`, else `<workspace>/target/apiserver/tollgate-apiserver`
/// (as `cargo xtask cluster build` leaves it).
pub fn default_apiserver_bin() -> PathBuf {
    bin_from_env("TOLLGATE_APISERVER_BIN", "tollgate-apiserver")
}

/// `$TOLLGATE_KUBECTL_BIN`, else `<workspace>/target/apiserver/kubectl`.
pub fn default_kubectl_bin() -> PathBuf {
    bin_from_env("TOLLGATE_KUBECTL_BIN", "kubectl")
}

fn bin_from_env(var: &str, name: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/apiserver").join(name))
}

/// The CustomResourceDefinitions of the Istio and OSM kinds Tollgate reads.
pub fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("apiserver/crds")
}

/// A running (or stopped) private API server. Killed by PID on drop; its
/// folder is removed then, unless the test panicked or `keep` is set.
pub struct ApiServer {
    bin: PathBuf,
    kubectl: PathBuf,
    url: String,
    token: String,
    child: Option<Child>,
    /// kube-apiserver flags given to `start_with_args`, kept for `start_again`.
    extra_args: Vec<String>,
    /// Files written by `apply_yaml`, numbered.
    applied: u32,
    /// Dropped last: the process is gone before its folder is removed.
    dir: TempDir,
}

impl ApiServer {
    /// Starts a server with a new state folder and free ports; returns when
    /// /readyz answers 200.
    pub fn start() -> Result<ApiServer> {
        Self::start_with_args(&[])
    }

    /// As [`ApiServer::start`], with more kube-apiserver flags (they come
    /// after the built-in ones, so they may override them).
    pub fn start_with_args(kube_apiserver_args: &[&str]) -> Result<ApiServer> {
        let (bin, kubectl) = (default_apiserver_bin(), default_kubectl_bin());
        for b in [&bin, &kubectl] {
            if !b.is_file() {
                bail!(
                    "{} not found (build both with `cargo xtask cluster build`, or set \
                     TOLLGATE_APISERVER_BIN and TOLLGATE_KUBECTL_BIN)",
                    b.display()
                );
            }
        }
        let dir = TempDir::new(&format!("tollgate-apiserver-{}", unique_prefix()))?;
        let mut s = ApiServer {
            bin,
            kubectl,
            url: String::new(),
            token: String::new(),
            child: None,
            extra_args: kube_apiserver_args.iter().map(|a| a.to_string()).collect(),
            applied: 0,
            dir,
        };
        s.spawn()?;
        let token = s.dir.path.join("admin.token");
        s.token = std::fs::read_to_string(&token).with_context(|| format!("reading {}", token.display()))?;
        Ok(s)
    }

    fn spawn(&mut self) -> Result<()> {
        let out = self.dir.path.join("server.out");
        let log = self.log_path();
        let file = |p: &Path| std::fs::File::create(p).with_context(|| format!("creating {}", p.display()));
        let child = Command::new(&self.bin)
            .arg("--dir")
            .arg(&self.dir.path)
            .arg("--")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(file(&out)?)
            .stderr(file(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&out).unwrap_or_default();
            if let Some(rest) = text.lines().find_map(|l| l.strip_prefix(READY_MARK)) {
                self.url = rest.split_whitespace().next().unwrap_or_default().to_string();
                return Ok(());
            }
            if let Some(status) = self.try_exited() {
                bail!("the API server exited before it was ready ({status}); log:\n{}", self.log_tail(40));
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("the API server was not ready after {READY_TIMEOUT:?}; log:\n{}", self.log_tail(40));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server with SIGTERM (an API-server outage); fails unless it
    /// exits 0 within 30 s (then it is killed). The data stays.
    pub fn stop(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("the API server is not running");
        };
        // SAFETY: kill(2) on the PID of our own child, not yet reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if Instant::now() >= deadline {
                self.kill();
                bail!("the API server did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        if !status.success() {
            bail!("the API server exited with {status} on SIGTERM; log:\n{}", self.log_tail(40));
        }
        Ok(())
    }

    /// Starts the stopped server again on the same folder (etcd data, keys,
    /// token) and the same port.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the API server is still running");
        }
        let before = self.url.clone();
        self.spawn()?;
        if self.url != before {
            bail!("the API server came back at {} instead of {before}", self.url);
        }
        Ok(())
    }

    /// An abrupt outage: SIGKILL by PID (etcd's data is in the page cache
    /// and survives); `start_again` brings it back.
    pub fn crash(&mut self) {
        self.kill();
    }

    /// SIGKILL by PID and reap; nothing if it is not running.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                // SAFETY: kill(2) on the PID of our own child, not yet reaped.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
    }

    fn try_exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin's bearer token (group system:masters).
    pub fn token(&self) -> &str {
        self.token.trim()
    }

    /// A kubeconfig for the admin.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path.join("kubeconfig")
    }

    /// The CA that signed the serving certificate (PEM).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path.join("pki/ca.crt")
    }

    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl
    }

    /// The state folder (etcd data, keys, logs).
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// Keep the folder after drop (the process is killed all the same).
    pub fn keep(&mut self) {
        self.dir.keep = true;
    }

    /// The server's stderr: kube-apiserver's log (etcd's is `etcd.log`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path.join("server.log")
    }

    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `kubectl --kubeconfig <admin> ARGS`; its stdout, or an error with
    /// the command, its stderr and stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        self.kubectl_as(&self.kubeconfig(), args)
    }

    /// kubectl with another kubeconfig (see [`ApiServer::kubeconfig_for_token`]).
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
        run_capture(cmd, KUBECTL_TIMEOUT)
    }

    /// `kubectl apply -f` of YAML text (one or more documents), kept in the
    /// server's folder as `applied-N.yaml`.
    pub fn apply_yaml(&mut self, yaml: &str) -> Result<String> {
        self.applied += 1;
        let file = self.dir.path.join(format!("applied-{}.yaml", self.applied));
        std::fs::write(&file, yaml).with_context(|| format!("writing {}", file.display()))?;
        self.kubectl(&["apply", "-f", path_str(&file)?])
    }

    /// Installs the Istio and OSM CRDs of `tests/apiserver/crds/` and waits
    /// until they are Established (their kinds are served).
    pub fn install_crds(&self) -> Result<()> {
        let dir = crds_dir();
        let dir = path_str(&dir)?;
        self.kubectl(&["apply", "-f", dir])?;
        self.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "-f", dir])?;
        Ok(())
    }

    /// A token for ServiceAccount NS/NAME from the TokenRequest API
    /// (`kubectl create token`); the ServiceAccount must exist.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Result<String> {
        let out = self.kubectl(&["create", "token", name, "-n", namespace, "--duration=1h"])?;
        Ok(out.trim().to_string())
    }

    /// Writes a kubeconfig that authenticates with `token` (e.g. a
    /// ServiceAccount's) to `<dir>/kubeconfig-<name>` and returns its path.
    pub fn kubeconfig_for_token(&self, name: &str, token: &str) -> Result<PathBuf> {
        let file = self.dir.path.join(format!("kubeconfig-{name}"));
        let ca = self.ca_cert();
        let (f, ca) = (path_str(&file)?, path_str(&ca)?);
        let config = |args: &[&str]| {
            let mut cmd = Command::new(&self.kubectl);
            cmd.args(["config", "--kubeconfig", f]).args(args);
            run_capture(cmd, KUBECTL_TIMEOUT)
        };
        config(&["set-cluster", "local", "--server", &self.url, "--certificate-authority", ca, "--embed-certs"])?;
        config(&["set-credentials", name, "--token", token])?;
        config(&["set-context", "local", "--cluster", "local", "--user", name])?;
        config(&["use-context", "local"])?;
        Ok(file)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str().with_context(|| format!("{} is not UTF-8", p.display()))
}
