//! Liveness and readiness as the runtime reports them, for `/healthz`,
//! `/readyz` and `tollgate_ready`.
//!
//! - Liveness: the runtime's loop calls [`Health::beat`] whenever it runs
//!   (at least every few seconds, also when idle); `/healthz` fails once the
//!   last beat is older than `stale_after`.
//! - Readiness: the runtime calls [`Health::set_ready`] once the source has
//!   done its first full sync and the first apply succeeded; `/readyz` (and
//!   `tollgate_ready`) are ready while that holds and the loop is alive.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long without a beat before `/healthz` fails, by default.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Health {
    origin: Instant,
    /// Milliseconds from `origin` to the last beat.
    last_beat_ms: AtomicU64,
    ready: AtomicBool,
    stale_after: Duration,
}

impl Health {
    /// Alive from now, not ready.
    pub fn new(stale_after: Duration) -> Self {
        Health { origin: Instant::now(), last_beat_ms: AtomicU64::new(0), ready: AtomicBool::new(false), stale_after }
    }

    /// The loop is alive.
    pub fn beat(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_beat_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// First sync and first apply done (or, `false`, no longer ready).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn since_beat(&self) -> Duration {
        let last = Duration::from_millis(self.last_beat_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// What `/healthz` answers.
    pub fn is_alive(&self) -> bool {
        self.since_beat() <= self.stale_after
    }

    /// What `/readyz` and `tollgate_ready` answer.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.is_alive()
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new(DEFAULT_STALE_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_beating_is_dead_and_not_ready() {
        let h = Health::new(Duration::from_millis(200));
        assert!(h.is_alive() && !h.is_ready(), "alive from the start, ready only when told");
        h.set_ready(true);
        assert!(h.is_ready());
        std::thread::sleep(Duration::from_millis(300));
        assert!(!h.is_alive() && !h.is_ready());
        h.beat();
        assert!(h.is_alive() && h.is_ready());
        h.set_ready(false);
        assert!(!h.is_ready());
    }
}
