//! The agent's Prometheus metrics, with the `prometheus-client` crate:
//! exactly the families of the agreed list (README, "Metrics"), served by
//! `runtime::http` on `/metrics`.
//!
//! - Read at scrape time from the datapath through [`CounterSource`] and
//!   [`MapFillSource`] (handles the agent holds, see [`maps_source`]):
//!   traffic per pod of this node and per node, suppressed drop events,
//!   map entries and capacity.
//! - Recorded by the runtime through [`Metrics`]: event-to-map latency,
//!   applies and their failures by cause, watch errors, map insert
//!   failures (counters and histograms), and set as a whole: objects
//!   rejected and ignored, sync state, pods by mode.
//! - Readiness comes from [`Health`] (what `/readyz` answers); build info
//!   from the crate version and the kernel object's hash.
//!
//! Every label value comes from a bounded set: kinds, causes and map names
//! from the runtime's code, pods from the workloads registered on this
//! node (their series go with them).
mod datapath_collector;
mod encode;
pub mod health;
pub mod labels;
pub mod maps_source;
pub mod sources;
mod state_collector;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

pub use health::Health;
pub use labels::{MetricLabel, APPLY_FAILURE_CAUSES};
pub use maps_source::MapsSource;
pub use sources::{CounterSource, DatapathCounters, FillCache, MapFill, MapFillSource, SourceError};
pub use state_collector::PodModes;

use datapath_collector::DatapathCollector;
use labels::{bounded_cause, CauseLabel, KindLabel, MapLabel};
use state_collector::{RuntimeState, StateCollector};

/// The formats `/metrics` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text, when the scraper asks for it.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Where the metrics read what they do not record themselves.
pub struct Sources {
    pub counters: Arc<dyn CounterSource>,
    pub map_fill: Arc<dyn MapFillSource>,
    pub health: Arc<Health>,
    /// The hash of the kernel object (`datapath::object::hash()`).
    pub object_hash: u64,
}

type Histograms = Family<KindLabel, Histogram, fn() -> Histogram>;

/// 1 ms to about 33 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The registry and the handles the runtime records through. Shared as an
/// `Arc`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    health: Arc<Health>,
    state: Arc<Mutex<RuntimeState>>,
    event_to_map: Histograms,
    apply_duration: Histogram,
    applies: Counter,
    apply_failures: Family<CauseLabel, Counter>,
    watch_errors: Family<KindLabel, Counter>,
    map_insert_failures: Family<MapLabel, Counter>,
}

impl Metrics {
    pub fn new(sources: Sources) -> Metrics {
        let mut registry = Registry::default();
        let state = Arc::new(Mutex::new(RuntimeState::default()));
        registry.register_collector(Box::new(DatapathCollector {
            counters: sources.counters,
            maps: sources.map_fill,
        }));
        registry.register_collector(Box::new(StateCollector {
            state: Arc::clone(&state),
            health: Arc::clone(&sources.health),
            version: env!("CARGO_PKG_VERSION").to_string(),
            object_hash: format!("{:016x}", sources.object_hash),
        }));
        let map_insert_failures = Family::<MapLabel, Counter>::default();
        registry.register(
            "tollgate_map_insert_failures",
            "Map inserts refused because the map is full (the affected pods fail closed)",
            map_insert_failures.clone(),
        );
        let event_to_map = Histograms::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "tollgate_event_to_map",
            "Time from a watch or source event to its map writes, by kind",
            Unit::Seconds,
            event_to_map.clone(),
        );
        let apply_duration = latency_histogram();
        registry.register_with_unit(
            "tollgate_apply_duration",
            "Compile, bind and map writes of one apply",
            Unit::Seconds,
            apply_duration.clone(),
        );
        let applies = Counter::default();
        registry.register("tollgate_applies", "Applies done, failed ones included", applies.clone());
        let apply_failures = Family::<CauseLabel, Counter>::default();
        registry.register("tollgate_apply_failures", "Failed applies by cause", apply_failures.clone());
        let watch_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "tollgate_source_watch_errors",
            "Watch errors (relists, outages) by kind",
            watch_errors.clone(),
        );
        // Every known label value starts at zero, so that a series exists
        // before its first event: the dashboard shows 0 rather than "no
        // data", and increase()/rate() alerts fire on the first failure.
        for cause in labels::APPLY_FAILURE_CAUSES {
            let _ = apply_failures.get_or_create(&CauseLabel { cause });
        }
        for map in agent_common::map_names::ALL {
            let _ = map_insert_failures.get_or_create(&MapLabel { map: (*map).to_string() });
        }
        for kind in crate::model::ObjectKind::ALL {
            let _ = watch_errors.get_or_create(&KindLabel { kind: kind.as_str().to_string() });
            let _ = event_to_map.get_or_create(&KindLabel { kind: kind.as_str().to_string() });
        }
        for kind in ["cgroup", "dns"] {
            let _ = event_to_map.get_or_create(&KindLabel { kind: kind.to_string() });
        }
        Metrics {
            registry,
            health: sources.health,
            state,
            event_to_map,
            apply_duration,
            applies,
            apply_failures,
            watch_errors,
            map_insert_failures,
        }
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The exposition in `format`. Reads the datapath: call it from a
    /// blocking thread.
    pub fn encode(&self, format: Format) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        match format {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?,
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &self.registry)?,
        }
        Ok(out)
    }

    /// A watch or source event of `kind` (`Pod`, `NetworkPolicy`, ...,
    /// `cgroup`, `dns`) reached the maps `elapsed` after it was seen.
    pub fn observe_event_to_map(&self, kind: &str, elapsed: Duration) {
        self.event_to_map.get_or_create(&KindLabel { kind: kind.to_string() }).observe(elapsed.as_secs_f64());
    }

    /// One apply (compile, bind, map writes) took `elapsed` and succeeded
    /// or failed for `cause` (e.g. `Err(&datapath_error)` or
    /// `Err(&"cgroup")`).
    pub fn observe_apply(&self, elapsed: Duration, outcome: Result<(), &dyn MetricLabel>) {
        self.applies.inc();
        self.apply_duration.observe(elapsed.as_secs_f64());
        if let Err(cause) = outcome {
            self.apply_failures.get_or_create(&CauseLabel { cause: bounded_cause(cause.metric_label()) }).inc();
        }
    }

    /// The watch of `kind` failed (relist, outage).
    pub fn watch_error(&self, kind: &str) {
        self.watch_errors.get_or_create(&KindLabel { kind: kind.to_string() }).inc();
    }

    /// `n` inserts into `map` were refused because it is full.
    pub fn map_insert_failed(&self, map: &str, n: u64) {
        self.map_insert_failures.get_or_create(&MapLabel { map: map.to_string() }).inc_by(n);
    }

    /// Whether the watch of `kind` has done its initial list.
    pub fn set_synced(&self, kind: &str, synced: bool) {
        self.with_state(|s| {
            s.synced.insert(kind.to_string(), synced);
        });
    }

    /// Objects that cannot be read now: (kind, short reason) → count.
    /// Replaces the previous set.
    pub fn set_rejected(&self, counts: BTreeMap<(String, String), u64>) {
        self.with_state(|s| s.rejected = counts);
    }

    /// Objects ignored under the trust rules: (kind, rule) → count.
    /// Replaces the previous set.
    pub fn set_ignored(&self, counts: BTreeMap<(String, String), u64>) {
        self.with_state(|s| s.ignored = counts);
    }

    /// Pods of this node by mode.
    pub fn set_enforced_pods(&self, modes: PodModes) {
        self.with_state(|s| s.modes = modes);
    }

    /// Ready (first full sync and first apply done), as `/readyz` says.
    pub fn set_ready(&self, ready: bool) {
        self.health.set_ready(ready);
    }

    fn with_state(&self, f: impl FnOnce(&mut RuntimeState)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }
}
