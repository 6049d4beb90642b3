//! What the cluster's objects make of this node: enforced namespaces, bad
//! labels, gateways, objects set aside by the trust rules, mesh switches.
use std::collections::BTreeMap;

use agent_common::POLICY_GLOBAL;

use super::check::{first, Check, Outcome};
use super::observed::Observed;
use crate::analyze::{codes, FindingSeverity, Report};
use crate::compiler::mode::EGRESS_LABEL;
use crate::desired::Mode;
use crate::runtime::state::StatusFile;

/// Pods of this node that are enforced or audited (gateways are never).
fn policed(s: &StatusFile) -> impl Iterator<Item = &crate::runtime::state::WorkloadStatus> {
    s.workloads.iter().filter(|w| w.mode != Mode::Off && !w.gateway)
}

pub fn namespaces(s: &StatusFile) -> Check {
    let mut by_mode: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for w in policed(s) {
        *by_mode.entry(w.mode.as_str()).or_default().entry(w.namespace.as_str()).or_default() += 1;
    }
    let list = |mode: &str| -> String {
        by_mode
            .get(mode)
            .map(|m| m.iter().map(|(ns, n)| format!("{ns} ({n} pod{})", if *n == 1 { "" } else { "s" })).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let (enforce, audit) = (list("enforce"), list("audit"));
    if enforce.is_empty() && audit.is_empty() {
        return Check::warn(
            "namespaces",
            format!("no pod on this node is enforced or audited ({} pods known here)", s.workloads.len()),
            format!("label the namespaces to protect: `kubectl label namespace NS {EGRESS_LABEL}=audit` to see what would be dropped, then `{EGRESS_LABEL}=enforce`"),
        );
    }
    let mut parts = Vec::new();
    if !enforce.is_empty() {
        parts.push(format!("enforce: {enforce}"));
    }
    if !audit.is_empty() {
        parts.push(format!("audit (counted, not dropped): {audit}"));
    }
    Check::pass("namespaces", parts.join("; "))
}

pub fn namespace_labels(s: &StatusFile) -> Check {
    let field = format!("metadata.labels[\"{EGRESS_LABEL}\"]");
    let bad: Vec<String> = s.diagnostics.iter().filter(|d| d.field == field).map(|d| format!("{}: {}", d.object, d.message)).collect();
    if bad.is_empty() {
        return Check::pass("namespace-labels", format!("every {EGRESS_LABEL} value is enforce or audit"));
    }
    Check::warn(
        "namespace-labels",
        format!("{} namespace{} with a bad {EGRESS_LABEL} value (enforced meanwhile: fail closed)", bad.len(), if bad.len() == 1 { "" } else { "s" }),
        format!("set the label to enforce or audit: `kubectl label namespace NS {EGRESS_LABEL}=enforce --overwrite`"),
    )
    .with_items(first(bad, 10))
}

pub fn gateways(o: &Observed, s: &StatusFile) -> Check {
    // The addresses the kernel lets every enforced pod reach on all ports.
    let mut addresses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(rules) = o.explain.as_ref().and_then(|e| e.policies.get(&POLICY_GLOBAL)) {
        for r in rules.iter().filter(|r| r.reason == "gateway") {
            let who = r.origin.strip_prefix("egress gateway ").unwrap_or(&r.origin).to_owned();
            addresses.entry(who).or_default().push(r.net.addr().to_string());
        }
    }
    let mut items: Vec<String> = s.gateways.clone();
    items.extend(addresses.iter().map(|(who, ips)| format!("{who}: {}", ips.join(", "))));
    let idle: Vec<&String> = s.gateways.iter().filter(|g| g.ends_with("(selects no running pod)")).collect();
    let enforced = policed(s).any(|w| w.mode == Mode::Enforce);
    let count: usize = addresses.values().map(Vec::len).sum();
    const HINT: &str = "deploy the egress gateway in a trusted namespace (an Istio Gateway selecting its pods, or pods labelled tollgate.dev/egress-gateway=true) and give its pods addresses; `tollgate analyze` names what is missing";
    if count == 0 {
        let detail = if s.gateways.is_empty() { "no egress gateway found".to_owned() } else { format!("{} gateway(s) found, but none has an address", s.gateways.len()) };
        return if enforced {
            Check::warn("gateways", format!("{detail}: enforced pods leave the cluster only where their NetworkPolicies or mesh policies allow"), HINT).with_items(items)
        } else {
            Check::pass("gateways", format!("{detail} (no pod is enforced here)")).with_items(items)
        };
    }
    if !idle.is_empty() {
        return Check::warn(
            "gateways",
            format!("{count} gateway addresses allowed; {} Gateway(s) select no running pod", idle.len()),
            "check the Gateway's spec.selector against the gateway pods' labels (pods count only in trusted namespaces)",
        )
        .with_items(items);
    }
    Check::pass("gateways", format!("{} gateway(s), {count} addresses every enforced pod may reach on all ports", s.gateways.len())).with_items(items)
}

pub fn ignored(analysis: Option<&Report>) -> Check {
    let Some(report) = analysis else {
        return Check::pass("ignored-objects", "no analysis written by the agent yet");
    };
    let ignored: Vec<_> = report.findings.iter().filter(|f| f.code.starts_with("ignored-")).collect();
    let items = first(ignored.iter().map(|f| format!("{} ({}): {}", f.object, f.code, f.message)), 10);
    if ignored.iter().any(|f| f.severity <= FindingSeverity::Warning) {
        return Check::warn(
            "ignored-objects",
            format!("{} object(s) have no effect under the trust rules", ignored.len()),
            "only trusted namespaces (--trusted-namespace, or the label tollgate.dev/trusted=true that cluster admins set) may widen other namespaces' egress: move the object there, or scope it to its own namespace; `tollgate analyze` lists them",
        )
        .with_items(items);
    }
    if ignored.is_empty() {
        Check::pass("ignored-objects", "no object is set aside by the trust rules")
    } else {
        Check::pass("ignored-objects", format!("{} object(s) set aside by the trust rules (informational)", ignored.len())).with_items(items)
    }
}

pub fn mesh(s: &StatusFile, analysis: Option<&Report>) -> Check {
    let mut parts = Vec::new();
    match &s.osm {
        Some(osm) => parts.push(format!(
            "OSM MeshConfig {}: enableEgressPolicy={}, enableEgress={}",
            osm.mesh_config, osm.enable_egress_policy, osm.enable_egress
        )),
        None => parts.push("no OSM MeshConfig".to_owned()),
    }
    let mut sidecars: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &s.workloads {
        if let Some(sc) = &w.sources.registry_only {
            *sidecars.entry(sc.as_str()).or_default() += 1;
        }
    }
    if sidecars.is_empty() {
        parts.push("no Istio Sidecar with REGISTRY_ONLY".to_owned());
    } else {
        let list: Vec<String> = sidecars.iter().map(|(sc, n)| format!("{sc} ({n} pods)")).collect();
        parts.push(format!("Istio REGISTRY_ONLY: {}", list.join(", ")));
    }
    if !s.external_hosts.is_empty() {
        parts.push(format!("{} external ServiceEntry hosts (through the gateway only)", s.external_hosts.len()));
    }
    let osm_codes = [codes::OSM_EGRESS_PASSTHROUGH, codes::OSM_EGRESS_POLICY_DISABLED];
    let findings: Vec<_> = analysis.into_iter().flat_map(|r| r.findings.iter()).filter(|f| osm_codes.contains(&f.code.as_str())).collect();
    let detail = parts.join("; ");
    if findings.is_empty() {
        return Check::pass("mesh", detail);
    }
    let hint = findings.iter().map(|f| f.message.as_str()).collect::<Vec<_>>().join(" ");
    let mut c = Check::warn("mesh", detail, hint).with_items(first(findings.iter().map(|f| format!("{} ({}): {}", f.object, f.code, f.message)), 10));
    if findings.iter().all(|f| f.severity == FindingSeverity::Info) {
        c.result = Outcome::Pass;
    }
    c
}
