//! `cargo xtask cluster up|down|build`: a local, real kube-apiserver with an
//! embedded etcd on 127.0.0.1 (tests/apiserver/), and a kubectl of the same
//! Kubernetes version.
//!
//! stdout of `up` is exactly the two `export` lines, so that
//! `eval "$(cargo xtask cluster up)"` works; all progress goes to stderr.
use std::ffi::OsStr;
use std::hash::{DefaultHasher, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{describe, fmt_dur, Workspace};

/// The server's binary name; `down` checks a recorded PID runs it.
const SERVER_BIN: &str = "tollgate-apiserver";
const KUBECTL_BIN: &str = "kubectl";
/// What the server prints on stdout once /readyz answers 200.
const READY_MARK: &str = "tollgate-apiserver: ready ";
const READY_TIMEOUT: Duration = Duration::from_secs(180);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const PID_FILE: &str = "server.pid";
/// A file the server writes into its state directory; `down` removes only
/// directories that hold it.
const STATE_MARK: &str = "ports.json";

/// The two binaries built from tests/apiserver/.
pub struct Binaries {
    pub apiserver: PathBuf,
    pub kubectl: PathBuf,
}

impl Binaries {
    fn dir(ws: &Workspace) -> PathBuf {
        ws.root.join("target").join("apiserver")
    }
    fn at(dir: &Path) -> Binaries {
        Binaries {
            apiserver: dir.join(SERVER_BIN),
            kubectl: dir.join(KUBECTL_BIN),
        }
    }
}

pub fn default_dir(ws: &Workspace) -> PathBuf {
    ws.root.join("target").join("cluster")
}

fn source_dir(ws: &Workspace) -> PathBuf {
    ws.root.join("tests").join("apiserver")
}

/// Builds `tollgate-apiserver` and `kubectl` into target/apiserver/ unless
/// they are there and were built from the same go.mod, go.sum, *.go and Go
/// version (recorded in target/apiserver/build.key).
pub fn build_binaries(ws: &Workspace) -> Result<Binaries> {
    let src = source_dir(ws);
    let out = Binaries::dir(ws);
    let bins = Binaries::at(&out);
    let go_version = go_version()?;
    let key = source_key(&src, &go_version)?;
    let key_file = out.join("build.key");
    let built = std::fs::read_to_string(&key_file).unwrap_or_default();
    if built == key && bins.apiserver.is_file() && bins.kubectl.is_file() {
        eprintln!("    {SERVER_BIN} and {KUBECTL_BIN} are up to date in {}", out.display());
        return Ok(bins);
    }

    let k8s = kubernetes_version(&src)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let _ = std::fs::remove_file(&key_file);
    let mut cmd = Command::new("go");
    cmd.current_dir(&src)
        // Never fetch another Go toolchain; say the installed one is too old.
        .env("GOTOOLCHAIN", "local")
        .args(["build", "-trimpath", "-buildvcs=false", "-mod=readonly"])
        .arg(format!("-ldflags={}", ldflags(&k8s)))
        .arg("-o")
        .arg(&out)
        // One `go build` for both: they share the compiled packages.
        .args([".", "k8s.io/kubernetes/cmd/kubectl"])
        .stdout(std::io::stderr());
    eprintln!(
        "==> building {SERVER_BIN} and {KUBECTL_BIN} (Kubernetes {k8s}, {go_version}); \
         the first build downloads the modules and takes several minutes"
    );
    eprintln!("    $ {}", describe(&cmd));
    let t = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start `{}`", describe(&cmd)))?;
    if !status.success() {
        bail!("building the local control plane failed ({status})\n    command: {}", describe(&cmd));
    }
    for b in [&bins.apiserver, &bins.kubectl] {
        if !b.is_file() {
            bail!("`go build` finished but {} is missing", b.display());
        }
    }
    std::fs::write(&key_file, &key).with_context(|| format!("writing {}", key_file.display()))?;
    eprintln!("<== built in {}", fmt_dur(t.elapsed()));
    Ok(bins)
}

/// `go version`, which also checks that Go is installed.
fn go_version() -> Result<String> {
    let out = Command::new("go")
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .context(
            "`go` is not on PATH: the local control plane (tests/apiserver/) is built with Go; \
             install Go 1.26 or later",
        )?;
    if !out.status.success() {
        bail!("`go version` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A hash of the Go version and of go.mod, go.sum and every *.go file
/// (names and contents, in name order), in hex.
fn source_key(src: &Path, go_version: &str) -> Result<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == "go.mod" || name == "go.sum" || name.ends_with(".go")
        })
        .collect();
    names.sort();
    let mut h = DefaultHasher::new();
    h.write(go_version.as_bytes());
    for p in &names {
        let body = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        h.write(p.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
        h.write_usize(body.len());
        h.write(&body);
    }
    Ok(format!("{:016x}\n", h.finish()))
}

/// The k8s.io/kubernetes version that tests/apiserver/go.mod requires.
fn kubernetes_version(src: &Path) -> Result<String> {
    let gomod = src.join("go.mod");
    let text = std::fs::read_to_string(&gomod).with_context(|| format!("reading {}", gomod.display()))?;
    text.lines()
        .map(|l| l.trim().trim_start_matches("require").trim())
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("k8s.io/kubernetes")).then(|| f.next().map(str::to_string)).flatten()
        })
        .with_context(|| format!("{}: no `k8s.io/kubernetes` requirement", gomod.display()))
}

/// Linker flags: stripped, and the version stamps Kubernetes' own build sets
/// (hack/lib/version.sh), so that `kubectl version` and /version tell it.
fn ldflags(version: &str) -> String {
    let mut flags = vec!["-s".to_string(), "-w".to_string()];
    let mut parts = version.trim_start_matches('v').split('.');
    let (major, minor) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    for pkg in ["k8s.io/client-go/pkg/version", "k8s.io/component-base/version"] {
        for (k, v) in [
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        ] {
            flags.push(format!("-X={pkg}.{k}={v}"));
        }
    }
    flags.join(" ")
}

/// `cargo xtask cluster build`: prints the two binaries' paths.
pub fn build(ws: &Workspace) -> Result<()> {
    let b = build_binaries(ws)?;
    println!("{}", b.apiserver.display());
    println!("{}", b.kubectl.display());
    Ok(())
}

/// `cargo xtask cluster up`.
pub fn up(ws: &Workspace, dir: Option<PathBuf>) -> Result<()> {
    let dir = absolute(dir.unwrap_or_else(|| default_dir(ws)))?;
    let bins = build_binaries(ws)?;
    if let Some(pid) = running_server(&dir)? {
        eprintln!("    a server is already running for {} (PID {pid})", dir.display());
        wait_ready(&dir, None)?;
    } else {
        start_detached(&bins, &dir)?;
    }
    let kubeconfig = dir.join("kubeconfig");
    let bin_dir = bins.kubectl.parent().unwrap_or(Path::new("."));
    println!("export KUBECONFIG={}", crate::shell_quote(kubeconfig.as_os_str()));
    println!("export PATH={}:$PATH", crate::shell_quote(bin_dir.as_os_str()));
    Ok(())
}

fn start_detached(bins: &Binaries, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = dir.join("server.out");
    let log = dir.join("server.log");
    let file = |p: &Path| std::fs::File::create(p).with_context(|| format!("creating {}", p.display()));
    let mut cmd = Command::new(&bins.apiserver);
    cmd.arg("--dir").arg(dir);
    eprintln!("==> starting the API server (log: {})", log.display());
    eprintln!("    $ {}", describe(&cmd));
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file(&out)?)
        .stderr(file(&log)?)
        // Its own process group: a Ctrl-C in this terminal does not reach it.
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", bins.apiserver.display()))?;
    let pid = child.id();
    let pid_file = dir.join(PID_FILE);
    std::fs::write(&pid_file, format!("{pid}\n")).with_context(|| format!("writing {}", pid_file.display()))?;
    let t = Instant::now();
    if let Err(e) = wait_ready(dir, Some(&mut child)) {
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&pid_file);
        return Err(e.context(format!("log: {}\n{}", log.display(), tail(&log, 30))));
    }
    eprintln!("<== API server ready in {} (PID {pid})", fmt_dur(t.elapsed()));
    Ok(())
}

/// Waits for the server's ready line in DIR/server.out; fails early if
/// `child` (when we started it) exits.
fn wait_ready(dir: &Path, mut child: Option<&mut std::process::Child>) -> Result<()> {
    let out = dir.join("server.out");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().any(|l| l.starts_with(READY_MARK)) {
            return Ok(());
        }
        if let Some(c) = child.as_deref_mut() {
            if let Some(status) = c.try_wait()? {
                bail!("the API server exited before it was ready ({status})");
            }
        }
        if Instant::now() >= deadline {
            bail!("the API server was not ready after {}", fmt_dur(READY_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `cargo xtask cluster down`: stops the server recorded in DIR and removes
/// DIR. Idempotent.
pub fn down(ws: &Workspace, dir: Option<PathBuf>) -> Result<()> {
    let dir = absolute(dir.unwrap_or_else(|| default_dir(ws)))?;
    if !dir.exists() {
        eprintln!("    {} does not exist: nothing to stop", dir.display());
        return Ok(());
    }
    if let Some(pid) = running_server(&dir)? {
        stop(pid)?;
    } else {
        eprintln!("    no server is running for {}", dir.display());
    }
    if !dir.join(STATE_MARK).exists() && !dir.join(PID_FILE).exists() {
        bail!(
            "{} holds no {STATE_MARK} or {PID_FILE}: not a cluster directory, left in place",
            dir.display()
        );
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    eprintln!("    removed {}", dir.display());
    Ok(())
}

/// The PID recorded in DIR/server.pid when that process is alive and is a
/// `tollgate-apiserver --dir DIR`.
fn running_server(dir: &Path) -> Result<Option<u32>> {
    let pid_file = dir.join(PID_FILE);
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        return Ok(None);
    };
    let pid: u32 = text
        .trim()
        .parse()
        .with_context(|| format!("{}: {:?} is not a PID", pid_file.display(), text.trim()))?;
    if !alive(pid) {
        return Ok(None);
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Ok(None);
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_server = args
        .first()
        .is_some_and(|a0| Path::new(OsStr::from_bytes(a0)).ends_with(SERVER_BIN));
    let same_dir = args
        .windows(2)
        .any(|w| w[0] == b"--dir" && Path::new(OsStr::from_bytes(w[1])) == dir);
    if is_server && same_dir {
        Ok(Some(pid))
    } else {
        eprintln!(
            "    PID {pid} from {} is not `{SERVER_BIN} --dir {}` (a stale PID file): not touched",
            pid_file.display(),
            dir.display()
        );
        Ok(None)
    }
}

/// True while /proc/PID exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// SIGTERM, wait, then SIGKILL if it is still there.
fn stop(pid: u32) -> Result<()> {
    eprintln!("==> stopping the API server (PID {pid})");
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .with_context(|| format!("running `kill {sig} {pid}`"))
    };
    signal("-TERM")?;
    let deadline = Instant::now() + STOP_TIMEOUT;
    while alive(pid) {
        if Instant::now() >= deadline {
            eprintln!("    still running after {}: SIGKILL", fmt_dur(STOP_TIMEOUT));
            signal("-KILL")?;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("<== stopped");
    Ok(())
}

fn absolute(dir: PathBuf) -> Result<PathBuf> {
    std::path::absolute(&dir).with_context(|| format!("resolving {}", dir.display()))
}

/// The last `n` lines of a file, indented.
fn tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
