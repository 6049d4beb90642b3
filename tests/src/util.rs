//! Small helpers: unique names, running commands, polling, temp dirs, preflight checks.

use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `tg<pid % 100000>x<counter>`: unique per process and call, short enough for
/// interface names (at most 15 characters with a short suffix).
pub fn unique_prefix() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("tg{}x{}", std::process::id() % 100_000, n)
}

/// Runs a command, failing with its stderr if it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("spawning {program}"))?;
    if !out.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            program,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip` with arguments.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

/// `ip -n NS ...`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut v = vec!["-n", ns];
    v.extend_from_slice(args);
    run("ip", &v)
}

/// Polls `f` until it returns `Ok(Some(v))` or the deadline passes; the last
/// error (or "condition not met") is reported on timeout.
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        let last = match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// A directory removed (recursively) on drop unless `keep` is set.
pub struct TempDir {
    pub path: PathBuf,
    pub keep: bool,
}

impl TempDir {
    pub fn new(name: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path, keep: false })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        } else if std::thread::panicking() {
            eprintln!("[e2e] keeping {} for inspection", self.path.display());
        }
    }
}

fn fs_magic(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    (rc == 0).then_some(st.f_type as i64)
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The cgroup v2 mount: the first of /sys/fs/cgroup and /sys/fs/cgroup/unified that is cgroup2.
pub fn cgroup2_mount() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(PathBuf::from)
        .find(|p| fs_magic(p) == Some(CGROUP2_SUPER_MAGIC))
}

pub fn is_bpffs(path: &Path) -> bool {
    fs_magic(path) == Some(BPF_FS_MAGIC)
}

/// Checks root, bpffs, cgroup2 and iproute2. Returns a list of problems (empty if ready).
pub fn preflight_problems() -> Vec<String> {
    let mut p = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        p.push("not running as root (the e2e harness creates netns, cgroups and loads eBPF)".into());
    }
    if !is_bpffs(Path::new("/sys/fs/bpf")) {
        p.push("/sys/fs/bpf is not a bpffs mount (run: mount -t bpf bpf /sys/fs/bpf)".into());
    }
    if cgroup2_mount().is_none() {
        p.push("no cgroup v2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified".into());
    }
    if Command::new("ip").arg("-V").output().map(|o| !o.status.success()).unwrap_or(true) {
        p.push("iproute2 `ip` not found on PATH".into());
    }
    p
}

/// Panics with a clear message if the environment cannot run the e2e tests.
/// Never passes silently: a missing prerequisite is a failure, in CI or not.
pub fn require_environment() {
    let problems = preflight_problems();
    if !problems.is_empty() {
        let ci = std::env::var_os("CI").is_some();
        panic!(
            "tollgate e2e prerequisites missing{}:\n  - {}\nThese tests need root, a bpffs at /sys/fs/bpf, cgroup v2 and iproute2.",
            if ci { " (CI is set: this environment must provide them)" } else { "" },
            problems.join("\n  - ")
        );
    }
}
