//! `status` as text: the checklist first, then what the agent applied.
use std::fmt::Write as _;

use super::check::{overall, Check, Outcome};
use crate::runtime::state::StatusFile;

/// The checklist, one line per check, its items and hint indented below.
pub fn checklist(checks: &[Check], file: Option<&StatusFile>) -> String {
    let mut out = String::new();
    if let Some(s) = file {
        let _ = writeln!(
            out,
            "Tollgate on node {}: source {}, bpffs {}, agent pid {}\n",
            s.node.as_deref().unwrap_or("(all)"),
            s.source,
            s.bpffs,
            s.pid
        );
    }
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in checks {
        let _ = writeln!(out, "{}  {:<width$}  {}", c.result.label(), c.name, c.detail);
        for item in &c.items {
            let _ = writeln!(out, "      {:<width$}    {item}", "");
        }
        if c.result != Outcome::Pass && !c.hint.is_empty() {
            let _ = writeln!(out, "      {:<width$}  → {}", "", c.hint);
        }
    }
    let count = |o: Outcome| checks.iter().filter(|c| c.result == o).count();
    let _ = writeln!(
        out,
        "\n{}: {} passed, {} warnings, {} failed",
        match overall(checks) {
            Outcome::Pass => "OK",
            Outcome::Warn => "OK with warnings",
            Outcome::Fail => "FAILED",
        },
        count(Outcome::Pass),
        count(Outcome::Warn),
        count(Outcome::Fail)
    );
    out
}

/// What the agent applied: pods, the policies behind them, gateways,
/// external hosts, resolved names, every diagnostic.
pub fn details(file: &StatusFile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{:<16} {:<28} {:<8} {:<8} {:>7}  {:<9} RUNTIME", "NAMESPACE", "POD", "MODE", "GATEWAY", "CGROUPS", "LAYERS");
    for w in &file.workloads {
        let line = format!(
            "{:<16} {:<28} {:<8} {:<8} {:>7}  {:<9} {}",
            w.namespace,
            w.pod,
            w.mode.as_str(),
            if w.gateway { "yes" } else { "" },
            w.cgroups,
            w.layers.map(|l| l.as_str()).unwrap_or("-"),
            w.runtime_class.as_deref().unwrap_or("")
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let policies: Vec<_> = file
        .workloads
        .iter()
        .filter(|w| !w.sources.network_policies.is_empty() || !w.sources.mesh_egress.is_empty() || w.sources.registry_only.is_some())
        .collect();
    if !policies.is_empty() {
        let _ = writeln!(out, "\npolicies:");
        for w in policies {
            let mut parts = Vec::new();
            if !w.sources.network_policies.is_empty() {
                parts.push(format!("NetworkPolicy {}", w.sources.network_policies.join(", ")));
            }
            if !w.sources.mesh_egress.is_empty() {
                parts.push(format!("OSM Egress {} (ServiceAccount {})", w.sources.mesh_egress.join(", "), w.sources.service_account));
            }
            if let Some(sidecar) = &w.sources.registry_only {
                parts.push(format!("Istio {sidecar}: outboundTrafficPolicy REGISTRY_ONLY"));
            }
            let _ = writeln!(out, "  {}/{}: {}", w.namespace, w.pod, parts.join("; "));
        }
    }
    if !file.external_hosts.is_empty() {
        let _ = writeln!(out, "\nexternal ServiceEntry hosts (reachable from enforced pods only through the egress gateway):");
        for (host, entries) in &file.external_hosts {
            let _ = writeln!(out, "  {host}: {}", entries.join(", "));
        }
    }
    if !file.hosts.is_empty() {
        let _ = writeln!(out, "\nresolved hosts:");
        for h in &file.hosts {
            let state = match &h.error {
                Some(e) => format!(" (last lookup failed: {e})"),
                None => String::new(),
            };
            let addrs = if h.addresses.is_empty() { "-".to_owned() } else { h.addresses.join(", ") };
            let _ = writeln!(out, "  {}: {addrs}{state}", h.host);
        }
    }
    out.push_str(&layout(file));
    if !file.diagnostics.is_empty() {
        let _ = writeln!(out, "\nproblems in the cluster's objects:");
        for d in &file.diagnostics {
            let _ = writeln!(out, "  {} {}: field {}: {}", d.severity, d.object, d.field, d.message);
        }
    }
    out
}

/// The pinned maps' layout ids, and the layout upgrade of this agent.
fn layout(file: &StatusFile) -> String {
    let mut out = String::new();
    if !file.layout.is_empty() {
        let ids: Vec<String> = file.layout.iter().map(|(m, id)| format!("{m}={id}")).collect();
        let _ = writeln!(out, "\nmap layout: {}", ids.join(" "));
    }
    if let Some(u) = &file.layout_upgrade {
        let _ = writeln!(
            out,
            "layout upgrade at {} ({:.0} ms, old programs enforcing until the swap): {} map(s) migrated, {} kept, {} old pin(s) removed",
            u.at,
            u.duration_ms,
            u.maps.len(),
            u.kept.len(),
            u.removed_pins.len()
        );
        for m in &u.maps {
            let _ = writeln!(
                out,
                "  {} {} -> {}: {:?}, {} copied, {} caught up, {} refused",
                m.map, m.from, m.to, m.carry, m.copied, m.caught_up, m.refused
            );
        }
    }
    out
}
