//! The agent: alive, in sync with its source, and its last apply.
use super::check::{first, Check};
use super::clock::{age, human};
use super::observed::Observed;
use crate::runtime::state::{StatusFile, HEARTBEAT};

/// A status not rewritten for this long comes from a stuck or dead agent
/// (it beats every [`HEARTBEAT`]; a long compile may delay a beat).
pub fn stale_after() -> f64 {
    HEARTBEAT.as_secs_f64() * 6.0
}

/// Seconds since the agent last wrote its status (apply or heartbeat).
pub fn last_written(s: &StatusFile, now: f64) -> Option<f64> {
    [age(&s.heartbeat_at, now), age(&s.updated_at, now)].into_iter().flatten().reduce(f64::min)
}

pub fn agent(o: &Observed) -> Check {
    let Some(s) = &o.status else {
        let why = o.status_problem.as_deref().unwrap_or("no status.json");
        return Check::fail(
            "agent",
            format!("no agent status in {} ({why})", o.state_dir.display()),
            "start `tollgate agent` on this node (in a cluster: `kubectl -n tollgate-system get pods -o wide` shows the agent pod of each node); if the agent runs with another --bpffs or --state-dir, pass the same flags to `tollgate status`",
        );
    };
    let written = last_written(s, o.now);
    let written_text = written.map(|a| format!("status written {} ago", human(a))).unwrap_or_else(|| "status time unreadable".into());
    let up = age(&s.started_at, o.now).map(|a| format!(", up {}", human(a))).unwrap_or_default();
    let fresh = written.is_some_and(|a| a <= stale_after());
    match (o.pid_alive, fresh) {
        (true, true) => Check::pass("agent", format!("running: pid {}{up}, {written_text}", s.pid)),
        (true, false) => Check::fail(
            "agent",
            format!("pid {} is alive but has not written its status for {}: the agent is stuck", s.pid, written.map(human).unwrap_or_else(|| "?".into())),
            "read its log (`kubectl -n tollgate-system logs <agent pod>`) and restart it; the kernel keeps enforcing the last state meanwhile",
        ),
        (false, _) => Check::fail(
            "agent",
            format!("not running: pid {} is gone ({written_text}); the kernel keeps enforcing the last state, but nothing follows the cluster's changes", s.pid),
            "start the agent again (`kubectl -n tollgate-system describe pod <agent pod>`, `logs --previous`); it adopts the pinned programs without a gap. (If it runs in another PID namespace, run `status` inside the agent pod.)",
        ),
    }
}

pub fn source_sync(s: &StatusFile) -> Check {
    let source = if s.manifests.is_empty() { s.source.clone() } else { format!("{} ({})", s.source, s.manifests) };
    let not_synced: Vec<&str> = s.sync.iter().filter(|(_, k)| k.served && !k.synced).map(|(n, _)| n.as_str()).collect();
    let absent: Vec<&str> = s.sync.iter().filter(|(_, k)| !k.served).map(|(n, _)| n.as_str()).collect();
    let errors: Vec<String> = s
        .sync
        .iter()
        .filter(|(_, k)| k.errors > 0)
        .map(|(n, k)| format!("{n}: {} watch errors, last: {}", k.errors, k.last_error.as_deref().unwrap_or("-")))
        .collect();
    let items = first(errors.clone(), 10);
    if !not_synced.is_empty() {
        let last: Vec<String> = s
            .sync
            .iter()
            .filter(|(n, _)| not_synced.contains(&n.as_str()))
            .filter_map(|(n, k)| k.last_error.as_ref().map(|e| format!("{n}: {e}")))
            .collect();
        let refused = last.iter().any(|e| e.contains("403") || e.to_lowercase().contains("forbidden"));
        let hint = if refused {
            "the agent's ServiceAccount may not list or watch them: apply the ClusterRole of deploy/manifests/clusterrole.yaml (or the chart's) and check `kubectl auth can-i watch <resource> --as=system:serviceaccount:tollgate-system:tollgate-agent`"
        } else {
            "the agent applies nothing until every kind is listed: check that the node reaches the API server, and the agent's log"
        };
        let detail = format!(
            "{source}: not in sync: waiting for the initial list of {}{}",
            not_synced.join(", "),
            if last.is_empty() { String::new() } else { format!(" ({})", last.join("; ")) }
        );
        return Check::fail("source-sync", detail, hint).with_items(items);
    }
    if s.sync.is_empty() && s.generation == 0 {
        return Check::fail(
            "source-sync",
            format!("{source}: nothing listed yet"),
            "the agent is starting; if this lasts, check that it reaches its source and read its log",
        );
    }
    let mut detail = format!("{source}: in sync ({} kinds listed)", s.sync.len() - absent.len());
    if !absent.is_empty() {
        detail.push_str(&format!("; not served by the cluster (picked up when their CRD is installed): {}", absent.join(", ")));
    }
    if !errors.is_empty() {
        detail.push_str(&format!("; {} kinds had watch errors since start (recovered)", errors.len()));
    }
    Check::pass("source-sync", detail).with_items(items)
}

pub fn last_apply(s: &StatusFile, now: f64) -> Check {
    if s.generation == 0 {
        return Check::fail(
            "last-apply",
            format!("nothing applied yet: {}", s.last_error.as_deref().unwrap_or("the agent is starting")),
            "the agent applies once every kind is listed (see source-sync) and the host names of mesh objects are answered (at most 3 s; 12 s when it takes over from another agent)",
        );
    }
    if let Some(e) = &s.last_error {
        return Check::fail(
            "last-apply",
            format!("the last apply failed: {e}; the maps still hold generation {}", s.generation),
            "read the agent's log; it retries on the next change (a full map shows under maps)",
        );
    }
    let when = age(&s.updated_at, now).map(|a| format!("{} ago", human(a))).unwrap_or_else(|| s.updated_at.clone());
    let l = &s.event_to_map;
    let latency = if l.count > 0 {
        format!("; event to map: p50 {:.1} ms, p99 {:.1} ms over {} changes", l.p50_ms, l.p99_ms, l.count)
    } else {
        String::new()
    };
    Check::pass(
        "last-apply",
        format!(
            "generation {} applied {when}, map writes took {:.1} ms{latency}; {} rule entries, {} pods",
            s.generation,
            s.last_apply_ms,
            s.rule_entries,
            s.workloads.len()
        ),
    )
}
