//! Watching a running agent from outside: its status generation (by the
//! status file's identity, parsed only when it changed), its memory
//! (/proc/PID/status), and the compile times it logs at debug level.
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The env filter that makes the agent log each compile's duration
/// (`compiled ms=…` at debug level).
pub const RUST_LOG: &str = "info,tollgate::runtime=debug";

pub struct StatusWatch {
    path: PathBuf,
    seen: Option<(u64, i64, i64)>,
    pub last: Value,
}

impl StatusWatch {
    pub fn new(state_dir: &Path) -> StatusWatch {
        StatusWatch { path: state_dir.join("status.json"), seen: None, last: Value::Null }
    }

    pub fn generation(&self) -> u64 {
        self.last["generation"].as_u64().unwrap_or(0)
    }

    /// Re-reads the file if it was replaced; true when it was.
    pub fn refresh(&mut self) -> bool {
        let Ok(m) = std::fs::metadata(&self.path) else { return false };
        let id = (m.ino(), m.mtime(), m.mtime_nsec());
        if self.seen == Some(id) {
            return false;
        }
        let Ok(text) = std::fs::read_to_string(&self.path) else { return false };
        let Ok(v) = serde_json::from_str::<Value>(&text) else { return false };
        self.seen = Some(id);
        self.last = v;
        true
    }

    /// Waits until the generation is above `after`; returns when it saw it.
    /// `alive` is asked between looks and stops the wait with its error.
    pub fn wait_above(&mut self, after: u64, timeout: Duration, mut alive: impl FnMut() -> Result<()>) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            self.refresh();
            if self.generation() > after {
                return Ok(Instant::now());
            }
            if Instant::now() >= deadline {
                bail!("the agent's status generation stayed at {} for {timeout:?} (waiting for > {after})", self.generation());
            }
            alive()?;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// VmHWM and VmRSS of a process, in bytes.
pub fn memory(pid: u32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
            .unwrap_or(0)
            * 1024
    };
    Ok((kib("VmHWM:"), kib("VmRSS:")))
}

/// The `ms=` of every `compiled` line of the agent's log after byte
/// `from`; returns them and the log's length.
pub fn compile_times(log: &Path, from: usize) -> (Vec<f64>, usize) {
    let Ok(bytes) = std::fs::read(log) else { return (Vec::new(), from) };
    let text = String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).into_owned();
    let clean = strip_ansi(&text);
    let times = clean
        .lines()
        .filter(|l| l.contains("compiled"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("ms=")).and_then(|v| v.parse::<f64>().ok()))
        .collect();
    (times, bytes.len())
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_times_from_a_colored_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("a.log");
        std::fs::write(
            &log,
            "2026 \u{1b}[34mDEBUG\u{1b}[0m tollgate::runtime::agent: compiled \u{1b}[3mms\u{1b}[0m\u{1b}[2m=\u{1b}[0m12.5 \u{1b}[3mobjects\u{1b}[0m\u{1b}[2m=\u{1b}[0m9\nother ms=3\n2026 DEBUG x: compiled ms=7 objects=1\n",
        )
        .expect("write");
        let (t, len) = compile_times(&log, 0);
        assert_eq!(t, vec![12.5, 7.0]);
        let (t2, _) = compile_times(&log, len);
        assert!(t2.is_empty());
    }
}
