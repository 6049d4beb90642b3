//! Event-to-map latency: how long a change waited between reaching the
//! agent (a watch event, a cgroup created, a DNS answer) and its map
//! writes. The last samples are kept for `status` (last, p50, p99); the
//! metrics histogram gets every one.
use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Samples kept for the percentiles.
const KEPT: usize = 1024;

#[derive(Debug, Default)]
pub struct LatencyStats {
    samples: VecDeque<Duration>,
    count: u64,
}

/// What `status` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Changes measured since the agent started.
    pub count: u64,
    pub last_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    pub fn observe(&mut self, d: Duration) {
        if self.samples.len() == KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(d);
        self.count += 1;
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort();
        let pick = |q: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
            ms(sorted[i])
        };
        LatencySummary {
            count: self.count,
            last_ms: self.samples.back().copied().map(ms).unwrap_or(0.0),
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
            max_ms: sorted.last().copied().map(ms).unwrap_or(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_the_kept_samples() {
        let mut s = LatencyStats::default();
        assert_eq!(s.summary(), LatencySummary::default());
        for i in 1..=100u64 {
            s.observe(Duration::from_millis(i));
        }
        let sum = s.summary();
        assert_eq!(sum.count, 100);
        assert_eq!(sum.p50_ms, 50.0);
        assert_eq!(sum.p99_ms, 99.0);
        assert_eq!(sum.max_ms, 100.0);
        assert_eq!(sum.last_ms, 100.0);
        for _ in 0..KEPT {
            s.observe(Duration::from_millis(1));
        }
        assert_eq!(s.summary().max_ms, 1.0, "old samples age out");
        assert_eq!(s.summary().count, 100 + KEPT as u64);
    }
}
