//! The checklist's logic on made-up observations: each check passes,
//! warns or fails as documented, and the exit code follows.
use std::path::PathBuf;

use serde_json::json;

use super::check::{overall, Check, Outcome};
use super::checks::evaluate;
use super::observed::{Found, LinkInfo, LinkState, LinkTarget, MapInfo, MapState, Observed};
use super::{kernel, verdict};
use crate::analyze::{Finding, FindingSeverity, Report};
use crate::cli::CliError;
use crate::explain::{Explain, ExplainRule};
use crate::runtime::state::StatusFile;
use crate::runtime::time::rfc3339;

const NOW: f64 = 1_795_000_000.0;
const ROOT_ID: u64 = 4242;

fn at(secs_ago: f64) -> String {
    rfc3339((NOW - secs_ago) as i64, 0)
}

fn workload(ns: &str, pod: &str, mode: &str, cgroups: u32, since: Option<String>) -> serde_json::Value {
    json!({"namespace": ns, "pod": pod, "uid": format!("uid-{pod}"), "mode": mode, "gateway": false,
           "sidecar_redirect": false, "policy": 1, "workload_id": 1, "cgroups": cgroups, "since": since,
           "network_policies": [], "service_account": "default", "mesh_egress": []})
}

/// A healthy agent's status: one enforced pod, one gateway, every kind synced.
fn status() -> StatusFile {
    let v = json!({
        "generation": 7, "pid": 1234, "updated_at": at(60.0), "started_at": at(3600.0), "heartbeat_at": at(2.0),
        "source": "kubernetes", "manifests": "", "node": "node-1", "bpffs": "/sys/fs/bpf/tollgate",
        "cgroup_root": "/sys/fs/cgroup", "cluster_cidrs": ["10.244.0.0/16"], "adopted": false,
        "last_apply": {"rules_written": 0, "rules_removed": 0, "cgroups_written": 0, "cgroups_removed": 0, "workloads_written": 0, "workloads_retired": 0},
        "rule_entries": 12, "pods": {},
        "workloads": [workload("shop", "web-0", "enforce", 2, Some(at(600.0))), workload("default", "sleep", "off", 1, None)],
        "diagnostics": [],
        "gateways": ["Gateway istio-system/egress (pods istio-system/egress-0)"],
        "sync": {"Pod": {"synced": true, "served": true}, "Gateway": {"synced": true, "served": true}, "Egress": {"synced": true, "served": false}},
        "last_apply_ms": 1.5
    });
    serde_json::from_value(v).expect("a valid status file")
}

fn link(program: &str, attach_type: u32, cgroup: u64) -> LinkState {
    LinkState {
        program: program.into(),
        expected: true,
        found: Found::Present(LinkInfo { id: 1, prog_id: 2, link_type: kernel::LINK_TYPE_CGROUP, attach_type: Some(attach_type), target: LinkTarget::Cgroup(cgroup) }),
    }
}

fn map(name: &str, map_type: u32, capacity: u32, entries: Option<u64>) -> MapState {
    MapState { name: name.into(), found: Found::Present(MapInfo { map_type, capacity, entries }) }
}

fn gateway_rules() -> Explain {
    let mut e = Explain::default();
    e.policies.insert(
        agent_common::POLICY_GLOBAL,
        vec![ExplainRule {
            net: "10.244.0.20/32".parse().expect("net"),
            reason: "gateway".into(),
            origin: "egress gateway pod istio-system/egress-0".into(),
            ..Default::default()
        }],
    );
    e
}

fn healthy() -> Observed {
    Observed {
        now: NOW,
        bpffs: PathBuf::from("/sys/fs/bpf/tollgate"),
        bpffs_mounted: true,
        links: vec![link("tg_egress", 1, ROOT_ID), link("tg_connect4", 10, ROOT_ID)],
        cgroup_root: Some(("/sys/fs/cgroup".into(), ROOT_ID)),
        maps: vec![
            map("TG_CGROUPS", kernel::MAP_TYPE_HASH, 100, Some(3)),
            map("TG_RULES_V4", kernel::MAP_TYPE_LPM_TRIE, 1000, Some(12)),
            map("TG_FLOWS", kernel::MAP_TYPE_LRU_HASH, 100, None),
        ],
        status: Some(status()),
        status_problem: None,
        state_dir: PathBuf::from("/run/tollgate/x"),
        pid_alive: true,
        explain: Some(gateway_rules()),
        analysis: Some(Report::default()),
    }
}

fn get<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name} in {checks:#?}"))
}

fn only(o: &Observed, name: &str) -> Check {
    get(&evaluate(o), name).clone()
}

#[test]
fn a_healthy_node_passes_every_check() {
    let checks = evaluate(&healthy());
    for c in &checks {
        assert_eq!(c.result, Outcome::Pass, "{c:#?}");
    }
    let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["bpffs", "programs", "maps", "agent", "source-sync", "last-apply", "namespaces", "namespace-labels", "gateways", "ignored-objects", "mesh", "pod-cgroups", "layers", "errors"]
    );
    let programs = get(&checks, "programs");
    assert!(programs.detail.contains("2/2 programs attached to cgroup /sys/fs/cgroup"), "{programs:?}");
    assert!(programs.items.iter().any(|i| i.starts_with("tg_egress: cgroup_skb/egress on cgroup /sys/fs/cgroup")), "{programs:?}");
    assert!(get(&checks, "gateways").items.iter().any(|i| i == "pod istio-system/egress-0: 10.244.0.20"), "{checks:#?}");
    assert!(get(&checks, "source-sync").detail.contains("Egress"), "a CRD not served is named");
    assert!(verdict(&healthy(), &checks).is_ok());
}

#[test]
fn detached_programs_fail_with_a_hint_to_restart() {
    let mut o = healthy();
    for l in &mut o.links {
        l.found = Found::Missing;
    }
    let checks = evaluate(&o);
    let c = get(&checks, "programs");
    assert_eq!(c.result, Outcome::Fail);
    assert!(c.detail.contains("NOT enforced"), "{c:?}");
    assert!(c.hint.contains("restart the agent"), "{c:?}");
    assert_eq!(overall(&checks), Outcome::Fail);
    let err = verdict(&o, &checks).expect_err("a failed check fails the command");
    assert!(matches!(err, CliError::Input(_)) && err.exit_code() == 1, "{err:?}");
    assert!(err.to_string().contains("programs"), "{err}");

    let mut o = healthy();
    o.links[1].found = Found::Missing;
    let c = only(&o, "programs");
    assert_eq!(c.result, Outcome::Fail);
    assert!(c.detail.contains("1 of 2") && c.detail.contains("tg_connect4"), "{c:?}");
}

#[test]
fn programs_on_another_cgroup_or_a_removed_one_fail() {
    let mut o = healthy();
    o.links[0] = link("tg_egress", 1, 99);
    let c = only(&o, "programs");
    assert_eq!(c.result, Outcome::Fail);
    assert!(c.detail.contains("cgroup id 99"), "{c:?}");
    o.links[0] = link("tg_egress", 1, 0);
    let c = only(&o, "programs");
    assert_eq!(c.result, Outcome::Fail);
    assert!(c.detail.contains("no longer exists"), "{c:?}");
}

#[test]
fn map_fill_warns_at_90_percent_and_fails_when_full() {
    let mut o = healthy();
    o.maps[0] = map("TG_CGROUPS", kernel::MAP_TYPE_HASH, 100, Some(89));
    assert_eq!(only(&o, "maps").result, Outcome::Pass);
    o.maps[0] = map("TG_CGROUPS", kernel::MAP_TYPE_HASH, 100, Some(90));
    let c = only(&o, "maps");
    assert_eq!(c.result, Outcome::Warn, "{c:?}");
    assert!(c.detail.contains("TG_CGROUPS (90%)"), "{c:?}");
    o.maps[0] = map("TG_CGROUPS", kernel::MAP_TYPE_HASH, 100, Some(100));
    let c = only(&o, "maps");
    assert_eq!(c.result, Outcome::Fail, "{c:?}");
    assert!(c.detail.contains("TG_CGROUPS (100/100)") && c.detail.contains("fail closed"), "{c:?}");
    // An LRU table is full by design: no alarm.
    let mut o = healthy();
    o.maps[2] = map("TG_FLOWS", kernel::MAP_TYPE_LRU_HASH, 100, None);
    assert_eq!(only(&o, "maps").result, Outcome::Pass);
}

#[test]
fn unpinned_maps_fail_and_nothing_at_all_is_exit_2() {
    let mut o = healthy();
    o.maps[1].found = Found::Missing;
    let c = only(&o, "maps");
    assert_eq!(c.result, Outcome::Fail);
    assert!(c.detail.contains("TG_RULES_V4") && c.hint.contains("--bpffs"), "{c:?}");

    let mut o = healthy();
    o.status = None;
    o.status_problem = Some("No such file or directory".into());
    for m in &mut o.maps {
        m.found = Found::Missing;
    }
    for l in &mut o.links {
        l.found = Found::Missing;
    }
    let checks = evaluate(&o);
    assert_eq!(checks.len(), 4, "without a status only the datapath and agent checks run: {checks:#?}");
    assert_eq!(get(&checks, "agent").result, Outcome::Fail);
    let err = verdict(&o, &checks).expect_err("nothing to check");
    assert_eq!(err.exit_code(), 2, "{err}");

    let mut o = healthy();
    o.bpffs_mounted = false;
    let checks = evaluate(&o);
    assert_eq!(get(&checks, "bpffs").result, Outcome::Fail);
    assert_eq!(verdict(&o, &checks).expect_err("no bpffs").exit_code(), 2);
}

#[test]
fn a_dead_or_stuck_agent_fails() {
    let mut o = healthy();
    o.pid_alive = false;
    let c = only(&o, "agent");
    assert_eq!(c.result, Outcome::Fail);
    assert!(c.detail.contains("not running") && c.detail.contains("1234"), "{c:?}");

    let mut o = healthy();
    if let Some(s) = o.status.as_mut() {
        s.heartbeat_at = at(300.0);
        s.updated_at = at(600.0);
    }
    let c = only(&o, "agent");
    assert_eq!(c.result, Outcome::Fail);
    assert!(c.detail.contains("stuck") && c.detail.contains("5m00s"), "{c:?}");

    // An agent that predates the heartbeat: its last apply counts.
    let mut o = healthy();
    if let Some(s) = o.status.as_mut() {
        s.heartbeat_at.clear();
        s.updated_at = at(3.0);
    }
    assert_eq!(only(&o, "agent").result, Outcome::Pass);
}

#[test]
fn an_unsynced_kind_fails_and_a_refused_watch_names_rbac() {
    let mut o = healthy();
    if let Some(s) = o.status.as_mut() {
        let pod = s.sync.get_mut("Pod").expect("Pod");
        pod.synced = false;
        pod.errors = 3;
        pod.last_error = Some("ApiError: pods is forbidden: User cannot list resource \"pods\" (403)".into());
    }
    let c = only(&o, "source-sync");
    assert_eq!(c.result, Outcome::Fail);
    assert!(c.detail.contains("waiting for the initial list of Pod"), "{c:?}");
    assert!(c.hint.contains("ClusterRole"), "{c:?}");
}

#[test]
fn the_last_apply_fails_before_the_first_and_after_an_error() {
    let mut o = healthy();
    if let Some(s) = o.status.as_mut() {
        s.generation = 0;
        s.last_error = Some("waiting for the initial list of: Pod".into());
    }
    let c = only(&o, "last-apply");
    assert_eq!(c.result, Outcome::Fail);
    assert!(c.detail.contains("nothing applied yet: waiting for the initial list of: Pod"), "{c:?}");

    let mut o = healthy();
    if let Some(s) = o.status.as_mut() {
        s.last_error = Some("map TG_RULES_V4: insert failed".into());
    }
    let c = only(&o, "last-apply");
    assert_eq!(c.result, Outcome::Fail);
    assert!(c.detail.contains("TG_RULES_V4") && c.detail.contains("generation 7"), "{c:?}");

    let c = only(&healthy(), "last-apply");
    assert!(c.detail.contains("generation 7 applied 1m00s ago") && c.detail.contains("1.5 ms"), "{c:?}");
}

#[test]
fn namespaces_labels_and_errors() {
    let mut o = healthy();
    if let Some(s) = o.status.as_mut() {
        s.workloads.retain(|w| w.mode == crate::desired::Mode::Off);
    }
    let c = only(&o, "namespaces");
    assert_eq!(c.result, Outcome::Warn);
    assert!(c.hint.contains("kubectl label namespace"), "{c:?}");

    let mut o = healthy();
    let diag = |severity: &str, object: &str, field: &str| {
        serde_json::from_value(json!({"severity": severity, "object": object, "field": field, "message": "bad", "source": null})).expect("diag")
    };
    if let Some(s) = o.status.as_mut() {
        s.diagnostics.push(diag("warning", "Namespace shop", "metadata.labels[\"tollgate.dev/egress\"]"));
        s.diagnostics.push(diag("error", "NetworkPolicy shop/np", "spec.egress[0].to[0].ipBlock.cidr"));
    }
    let checks = evaluate(&o);
    let labels = get(&checks, "namespace-labels");
    assert_eq!(labels.result, Outcome::Warn);
    assert_eq!(labels.items, ["Namespace shop: bad"]);
    let errors = get(&checks, "errors");
    assert_eq!(errors.result, Outcome::Warn, "a rejected object warns: the agent is fine and fails closed");
    assert!(errors.items[0].contains("NetworkPolicy shop/np: field spec.egress[0].to[0].ipBlock.cidr"), "{errors:?}");
    assert!(verdict(&o, &checks).is_ok(), "warnings do not fail the command");
}

#[test]
fn gateways_without_addresses_warn_when_pods_are_enforced() {
    let mut o = healthy();
    o.explain = Some(Explain::default());
    let c = only(&o, "gateways");
    assert_eq!(c.result, Outcome::Warn, "{c:?}");
    assert!(c.detail.contains("none has an address"), "{c:?}");
    if let Some(s) = o.status.as_mut() {
        s.workloads.retain(|w| w.mode == crate::desired::Mode::Off);
        s.gateways.clear();
    }
    assert_eq!(only(&o, "gateways").result, Outcome::Pass, "no enforced pod, nothing to reach");
}

#[test]
fn ignored_objects_and_mesh_switches_come_from_the_analysis() {
    let mut o = healthy();
    o.analysis = Some(Report {
        findings: vec![
            Finding::new(FindingSeverity::Warning, "ignored-untrusted", "Pod tenant/fake-gw", None, "not in a trusted namespace"),
            Finding::new(FindingSeverity::Warning, "osm-egress-policy-disabled", "Egress shop/e", None, "turn enableEgressPolicy on"),
        ],
    });
    let checks = evaluate(&o);
    let ignored = get(&checks, "ignored-objects");
    assert_eq!(ignored.result, Outcome::Warn);
    assert_eq!(ignored.items, ["Pod tenant/fake-gw (ignored-untrusted): not in a trusted namespace"]);
    let mesh = get(&checks, "mesh");
    assert_eq!(mesh.result, Outcome::Warn);
    assert!(mesh.hint.contains("enableEgressPolicy"), "{mesh:?}");
}

#[test]
fn a_pod_without_a_cgroup_fails_after_the_grace_time() {
    let with = |since: Option<String>| {
        let mut o = healthy();
        if let Some(s) = o.status.as_mut() {
            s.workloads.push(serde_json::from_value(workload("shop", "web-1", "audit", 0, since)).expect("workload"));
        }
        only(&o, "pod-cgroups")
    };
    let c = with(Some(at(2.0)));
    assert_eq!(c.result, Outcome::Pass, "{c:?}");
    assert!(c.detail.contains("1 just started"), "{c:?}");
    let c = with(Some(at(120.0)));
    assert_eq!(c.result, Outcome::Fail, "{c:?}");
    assert!(c.items[0].starts_with("shop/web-1 (audit, uid uid-web-1, known for 2m00s)"), "{c:?}");
    assert!(c.hint.contains("--cgroup-root /sys/fs/cgroup"), "{c:?}");
    assert_eq!(with(None).result, Outcome::Fail, "no time known: reported");
}

#[test]
fn layers_fail_for_a_sandboxed_pod_without_its_tc_layer_and_warn_for_cgroup_only() {
    let with = |layers: &str, runtime: Option<&str>, since: f64| {
        let mut o = healthy();
        if let Some(s) = o.status.as_mut() {
            let mut w = workload("shop", "web-1", "enforce", 2, Some(at(since)));
            w["layers"] = json!(layers);
            if let Some(r) = runtime {
                w["runtime_class"] = json!(r);
            }
            s.workloads.push(serde_json::from_value(w).expect("workload"));
        }
        only(&o, "layers")
    };
    let c = with("cgroup+tc", None, 60.0);
    assert_eq!(c.result, Outcome::Pass, "{c:?}");
    assert!(c.detail.starts_with("1 pod(s) by cgroup+tc, 0 by tc alone"), "{c:?}");
    let c = with("tc", Some("gvisor"), 60.0);
    assert_eq!(c.result, Outcome::Pass, "{c:?}");
    assert_eq!(c.items, ["shop/web-1 (enforce, runtime class gvisor, known for 1m00s) (tc alone)"], "{c:?}");
    let c = with("none", Some("kata-qemu"), 60.0);
    assert_eq!(c.result, Outcome::Fail, "{c:?}");
    assert!(c.detail.contains("NOT enforced"), "{c:?}");
    assert!(c.items[0].starts_with("shop/web-1 (enforce, runtime class kata-qemu"), "{c:?}");
    let c = with("cgroup", None, 60.0);
    assert_eq!(c.result, Outcome::Warn, "{c:?}");
    assert!(c.hint.contains("hostNetwork"), "{c:?}");
    // A pod that just started gets the grace time to have its veth found.
    assert_eq!(with("none", Some("gvisor"), 2.0).result, Outcome::Pass);
    assert_eq!(with("cgroup", None, 2.0).result, Outcome::Pass);
}

#[test]
fn details_show_the_map_layout_and_the_upgrade_this_agent_ran() {
    let mut file = status();
    // Status files of agents before versioned pins have neither.
    assert!(file.layout.is_empty() && file.layout_upgrade.is_none());
    assert!(!super::render::details(&file).contains("map layout"));
    file.layout = [("TG_CGROUPS", "bd36a676"), ("TG_COUNTS", "0a1b2c3d")].iter().map(|(m, id)| (m.to_string(), id.to_string())).collect();
    file.layout_upgrade = Some(
        serde_json::from_value(json!({
            "at": "2026-12-03T17:35:33.994Z", "duration_ms": 1317.9, "kept": ["TG_COUNTS"],
            "maps": [{"map": "TG_CGROUPS", "from": "f5892821", "to": "bd36a676", "carry": "copy", "copied": 16, "caught_up": 0, "refused": 0}],
            "removed_pins": ["/sys/fs/bpf/tollgate/TG_CGROUPS"]
        }))
        .expect("an upgrade report"),
    );
    let text = super::render::details(&file);
    assert!(text.contains("map layout: TG_CGROUPS=bd36a676 TG_COUNTS=0a1b2c3d"), "{text}");
    assert!(text.contains("1 map(s) migrated, 1 kept, 1 old pin(s) removed"), "{text}");
    assert!(text.contains("TG_CGROUPS f5892821 -> bd36a676: Copy, 16 copied"), "{text}");
}
