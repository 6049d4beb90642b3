//! Times the compiler on a synthetic cluster: `compile` (objects to
//! policy), `bind` (policy plus host answers to desired state) and
//! `analyze`, for the pod counts given (default 1000 10000 50000).
//! With `--every-node`, every pod is a workload (as for
//! `tollgate analyze --manifests`, which has no node name). With
//! `--dump DIR`, the bound state and the analysis of each size are
//! written to `DIR/<pods>.txt` (Debug form), to compare two builds.
//!
//! With `--big-policy N`, each cluster also holds one NetworkPolicy of N
//! /32 ipBlocks (rules of at most 1,000 peers) selecting every pod of the
//! first namespace, which is enforced and has pods on this node (the
//! control-plane bench's "10,000-ipBlock policy").
//!
//! `cargo run --release -p agent --example compile_bench -- 50000`
use std::time::Instant;

use tollgate::compiler::synthetic::{synthetic_cluster, SyntheticSpec, CLUSTER_CIDRS, LOCAL_NODE, SYNTHETIC_HOST};
use tollgate::compiler::{bind, compile, CompilerConfig};
use tollgate::model::ObjectKind;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Sizes: the numbers that are not an option's value.
    let sizes: Vec<usize> = args
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| !matches!(args[i - 1].as_str(), "--dump" | "--big-policy"))
        .filter_map(|(_, a)| a.parse().ok())
        .collect();
    let every_node = args.iter().any(|a| a == "--every-node");
    let dump = args.iter().position(|a| a == "--dump").and_then(|i| args.get(i + 1)).map(std::path::PathBuf::from);
    let big = args.iter().position(|a| a == "--big-policy").and_then(|i| args.get(i + 1)).and_then(|n| n.parse::<u32>().ok());
    let sizes = if sizes.is_empty() { vec![1_000, 10_000, 50_000] } else { sizes };
    println!("| pods | objects | compile | bind (DNS answer) | analyze | groups (with hosts) | rule entries |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for pods in sizes {
        let mut snap = synthetic_cluster(&SyntheticSpec::new(pods));
        if let Some(n) = big {
            snap.network_policies.push(big_policy(n));
        }
        let config = CompilerConfig {
            node_name: (!every_node).then(|| LOCAL_NODE.into()),
            cluster_cidrs: CLUSTER_CIDRS.iter().filter_map(|c| c.parse().ok()).collect(),
            ..Default::default()
        };
        let t = Instant::now();
        let policy = compile(&snap, &config);
        let compiled = t.elapsed();
        // A DNS answer: bind again (only groups naming the host are redone).
        let resolved = [(SYNTHETIC_HOST.to_owned(), vec!["192.0.2.80".parse().expect("ip")])].into();
        let t = Instant::now();
        let state = bind(&policy, &resolved);
        let bound = t.elapsed();
        let t = Instant::now();
        let report = tollgate::analyze::analyze(&snap, &policy, &config);
        let analyzed = t.elapsed();
        let entries: usize = state.policies.values().map(Vec::len).sum();
        println!(
            "| {pods} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {} ({}) | {entries} |",
            ObjectKind::ALL.iter().map(|k| snap.count(*k)).sum::<usize>(),
            compiled.as_secs_f64() * 1e3,
            bound.as_secs_f64() * 1e3,
            analyzed.as_secs_f64() * 1e3,
            policy.groups.len(),
            policy.groups.iter().filter(|g| !g.hosts.is_empty()).count(),
        );
        if let Some(dir) = &dump {
            let path = dir.join(format!("{pods}.txt"));
            if let Err(e) = std::fs::write(&path, format!("{state:#?}\n{report:#?}\n")) {
                eprintln!("cannot write {}: {e}", path.display());
            }
        }
    }
}

/// A NetworkPolicy in `ns-0` (enforced, with local pods) allowing `n` /32
/// ipBlocks on port 443, in rules of at most 1,000 peers.
fn big_policy(n: u32) -> k8s_openapi::api::networking::v1::NetworkPolicy {
    let rules: Vec<serde_json::Value> = (0..n)
        .collect::<Vec<u32>>()
        .chunks(1_000)
        .map(|chunk| {
            let to: Vec<serde_json::Value> = chunk
                .iter()
                .map(|i| serde_json::json!({"ipBlock": {"cidr": format!("100.64.{}.{}/32", i / 256, i % 256)}}))
                .collect();
            serde_json::json!({"to": to, "ports": [{"port": 443}]})
        })
        .collect();
    let v = serde_json::json!({
        "metadata": {"name": "big", "namespace": "ns-0"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules},
    });
    serde_json::from_value(v).expect("the big policy decodes")
}
