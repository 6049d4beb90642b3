//! The control-plane bench's events, common to both sources: what changes
//! (a [`Change`]), who makes it (a [`Driver`]: files or API server), and
//! the measuring loop: make one change, wait for the agent's next status
//! generation, read what the agent recorded.
use crate::bench::observe::{self, StatusWatch};
use crate::bench::synth::{self, Cluster};
use crate::agent::Agent;
use anyhow::{Context, Result};
use serde::Serialize;
use std::time::{Duration, Instant};

/// One change of the cluster.
#[derive(Clone, Debug)]
pub enum Change {
    /// Pod `index` (a number no pod has; on another node) appears with
    /// its address in namespace `ns`, which exists.
    PodAdded { index: usize, ns: usize },
    /// Namespace `ns` gets team label `t<team>` (namespaceSelectors see it).
    NamespaceLabel { ns: usize, team: usize },
    /// `allow-same-ns-and-dns` of namespace `ns` now allows `port`.
    PolicyEdited { ns: usize, port: u16 },
    /// The NetworkPolicy `big` of 10,000 ipBlocks in namespace `ns`,
    /// addresses shifted by `shift` (created the first time).
    BigPolicy { ns: usize, shift: usize },
    BigPolicyDeleted { ns: usize },
}

impl Change {
    pub fn kind(&self) -> &'static str {
        match self {
            Change::PodAdded { .. } => "pod added",
            Change::NamespaceLabel { .. } => "namespace label changed",
            Change::PolicyEdited { .. } => "policy edited",
            Change::BigPolicy { shift: 0, .. } => "10,000-ipBlock policy created",
            Change::BigPolicy { .. } => "10,000-ipBlock policy edited (all entries)",
            Change::BigPolicyDeleted { .. } => "10,000-ipBlock policy deleted",
        }
    }
}

/// Entries in the big policy.
pub const BIG_ENTRIES: usize = 10_000;

/// Makes changes happen in a source.
pub trait Driver {
    /// Work before the timed part (the API server: create the pod that
    /// the change then gives an address). True when it changed something
    /// the agent will react to.
    fn prepare(&mut self, _change: &Change) -> Result<bool> {
        Ok(false)
    }
    /// Applies the change; returns when the source has it (file renamed
    /// into place, API request answered).
    fn apply(&mut self, change: &Change) -> Result<()>;
}

/// What one change cost.
#[derive(Clone, Debug, Serialize)]
pub struct EventSample {
    pub kind: &'static str,
    /// From just before the change was made to the agent's next status
    /// generation (includes the source: for files, the poll and re-read).
    pub outside_ms: f64,
    /// The agent's own `event_to_map.last_ms`: from the change reaching the
    /// agent to its map writes.
    pub agent_ms: f64,
    /// Compiles the agent logged for it (ms each).
    pub compile_ms: Vec<f64>,
    pub apply_ms: f64,
    pub rule_entries: u64,
    /// No new generation within the timeout: the run stopped there.
    pub timed_out: bool,
}

/// The namespaces that hold enforced pods of `node-1` (by index), so that
/// changes there touch the node.
pub fn local_enforced_namespaces(c: &Cluster) -> Vec<usize> {
    let mut out: Vec<usize> = c
        .local
        .iter()
        .filter_map(|p| p.namespace.strip_prefix("ns-").and_then(|n| n.parse::<usize>().ok()))
        .filter(|n| synth::mode(*n) == Some("enforce"))
        .collect();
    out.dedup();
    out
}

/// The usual mix: `per_kind` of each small change, round robin, on
/// namespaces with enforced local pods.
pub fn small_changes(c: &Cluster, per_kind: usize) -> Vec<Change> {
    let nss = local_enforced_namespaces(c);
    let mut out = Vec::new();
    for k in 0..per_kind {
        let ns = nss[k % nss.len().max(1)];
        out.push(Change::PodAdded { index: c.pods + k, ns });
        // Values no earlier change used: each one is a real change.
        out.push(Change::NamespaceLabel { ns, team: 10 + k });
        out.push(Change::PolicyEdited { ns, port: 9000 + k as u16 });
    }
    out
}

/// Create the big policy, edit all its entries `edits` times, delete it
/// (nothing when `edits` is 0).
pub fn big_changes(c: &Cluster, edits: usize) -> Vec<Change> {
    if edits == 0 {
        return Vec::new();
    }
    let ns = local_enforced_namespaces(c).first().copied().unwrap_or(0);
    let mut out = vec![Change::BigPolicy { ns, shift: 0 }];
    for e in 1..=edits {
        out.push(Change::BigPolicy { ns, shift: e * BIG_ENTRIES });
    }
    out.push(Change::BigPolicyDeleted { ns });
    out
}

/// Makes each change and measures it.
pub fn measure(agent: &mut Agent, watch: &mut StatusWatch, driver: &mut dyn Driver, changes: &[Change], timeout: Duration) -> Result<Vec<EventSample>> {
    let log = agent.log_path().map(|p| p.to_path_buf()).context("the agent has no log")?;
    let mut out = Vec::new();
    for ch in changes {
        watch.wait_above(0, timeout, || agent.check_alive())?;
        if driver.prepare(ch)? {
            let before = watch.generation();
            // Its own generation, if any, before the timed change.
            let _ = watch.wait_above(before, Duration::from_secs(5), || agent.check_alive());
        }
        // Quiet first: nothing of the previous change still pending.
        std::thread::sleep(Duration::from_millis(50));
        let (_, log_at) = observe::compile_times(&log, 0);
        watch.refresh();
        let gen = watch.generation();
        let t0 = Instant::now();
        driver.apply(ch).with_context(|| format!("making the change: {}", ch.kind()))?;
        let seen = match watch.wait_above(gen, timeout, || agent.check_alive()) {
            Ok(t) => t,
            Err(e) => {
                agent.check_alive()?;
                eprintln!("[bench] {}: no map writes within {timeout:?}; the run stops here ({e:#})", ch.kind());
                out.push(EventSample {
                    kind: ch.kind(),
                    outside_ms: timeout.as_secs_f64() * 1e3,
                    agent_ms: f64::NAN,
                    compile_ms: Vec::new(),
                    apply_ms: f64::NAN,
                    rule_entries: 0,
                    timed_out: true,
                });
                break;
            }
        };
        let st = &watch.last;
        let (compile_ms, _) = observe::compile_times(&log, log_at);
        out.push(EventSample {
            kind: ch.kind(),
            outside_ms: seen.duration_since(t0).as_secs_f64() * 1e3,
            agent_ms: st["event_to_map"]["last_ms"].as_f64().unwrap_or(f64::NAN),
            compile_ms,
            apply_ms: st["last_apply_ms"].as_f64().unwrap_or(f64::NAN),
            rule_entries: st["rule_entries"].as_u64().unwrap_or(0),
            timed_out: false,
        });
    }
    Ok(out)
}
