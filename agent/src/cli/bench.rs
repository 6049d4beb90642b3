//! `tollgate bench-datapath` (hidden; run by `cargo xtask bench`): the
//! per-packet cost of the real egress program, measured by the kernel with
//! BPF_PROG_TEST_RUN on a private, unattached load filled with a large
//! synthetic state; then the TC layer's program on the same packets as
//! Ethernet frames.
use std::{net::IpAddr, path::Path, time::Instant};

use agent_common::{
    map_names, CgroupEntry, PortRule, RuleSet, TcPod, MODE_ENFORCE, REASON_CLUSTER_INTERNAL, REASON_GATEWAY,
    WORKLOAD_CGROUP_BASE,
};
use ipnet::IpNet;

use super::CliError;
use crate::datapath::{
    bpffs::PinDir,
    load::load_object,
    packet::{self, Protocol},
    pinned::{map_err, Maps},
    reconcile::{bump_generation, pod_addrs},
    rule_keys::{self, RuleKey},
    tc::FROM_POD_PROGRAM,
    test_run,
};

/// Test runs of one packet each: every run has a fresh socket, so this is
/// the cost of a socket's first packet (cgroup walk, rules, and filling
/// the socket's verdict cache).
const FIRST_PACKET_RUNS: u32 = 2_000;

/// (ns/packet on a socket whose verdict is cached, ns for a socket's
/// first packet, return value).
fn time_both(prog: &aya::programs::CgroupSkb, frame: &[u8], ifindex: u32, repeat: u32) -> Result<(f64, f64, u32), CliError> {
    let (cached, ret) = test_run::time(prog, frame, ifindex, repeat)?;
    let mut total = 0.0;
    for _ in 0..FIRST_PACKET_RUNS {
        total += test_run::time(prog, frame, ifindex, 1)?.0;
    }
    Ok((cached, total / FIRST_PACKET_RUNS as f64, ret))
}

fn own_cgroup_id() -> Result<u64, CliError> {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| CliError::Environment(e.to_string()))?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| CliError::Environment("no cgroup v2 entry in /proc/self/cgroup".into()))?;
    let root = crate::cgroups::default_cgroup_root();
    let path = root.join(rel.trim_start_matches('/'));
    std::fs::metadata(&path).map(|m| m.ino()).map_err(|e| CliError::Environment(format!("{}: {e}", path.display())))
}

/// A real interface of this network namespace for the made-up packet to
/// "leave" through (nothing is sent: test runs never transmit).
fn first_non_loopback_ifindex() -> Result<u32, CliError> {
    let dir = std::fs::read_dir("/sys/class/net").map_err(|e| CliError::Environment(format!("/sys/class/net: {e}")))?;
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("ifindex")).ok())
        .filter_map(|s| s.trim().parse::<u32>().ok())
        .find(|i| *i != 1)
        .ok_or_else(|| CliError::Environment("no network interface besides lo to run the benchmark on".into()))
}

pub fn run(bpffs: &Path, prefixes: u32, repeat: u32) -> Result<(), CliError> {
    let parent = bpffs.parent().unwrap_or(Path::new("/sys/fs/bpf"));
    let dir = parent.join(format!("tollgate-bench-{}", std::process::id()));
    let pins = PinDir::new(&dir);
    pins.create()?;
    let result = bench(&pins, prefixes, repeat);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(pins: &PinDir, prefixes: u32, repeat: u32) -> Result<(), CliError> {
    let mut ebpf = load_object(pins)?;
    let mut maps = Maps::take(&mut ebpf)?;
    // A large policy: `prefixes` /32s spread over 10.0.0.0/8, plus the
    // cluster CIDR, in policy 7; gateway in the global policy.
    let mut rules = RuleSet { count: 1, ..Default::default() };
    rules.rules[0] = PortRule { proto: 6, reason: REASON_CLUSTER_INTERNAL, port_lo: 443, port_hi: 443 };
    let started = Instant::now();
    for i in 0..prefixes {
        let a = std::net::Ipv4Addr::from(0x0a00_0000u32 | (i * 7 % 0x00ff_ffff));
        let RuleKey::V4(k) = rule_keys::key(7, &IpNet::new(a.into(), 32).unwrap_or_default()) else { continue };
        maps.rules_v4.insert(&k, rules, 0).map_err(map_err("TG_RULES_V4"))?;
    }
    let fill = started.elapsed();
    let mut gw = RuleSet { count: 1, ..Default::default() };
    gw.rules[0] = PortRule::any(REASON_GATEWAY);
    if let RuleKey::V4(k) = rule_keys::key(0, &"10.244.0.20/32".parse().unwrap_or_default()) {
        maps.rules_v4.insert(&k, gw, 0).map_err(map_err("TG_RULES_V4"))?;
    }
    let prog = test_run::load_skb_program(&mut ebpf, "tg_egress")?;
    let src: IpAddr = "10.244.0.10".parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    let cases: [(&str, &str, u16); 3] = [
        ("gateway (allow, global trie)", "10.244.0.20", 8080),
        ("no rule (drop)", "203.0.113.10", 80),
        ("large policy (allow, /32 hit)", "10.0.0.7", 443),
    ];
    // Not enforced: this process's cgroup is not registered.
    let frame = packet::build(src, "203.0.113.10".parse().unwrap_or(src), Protocol::Tcp, 40000, 80);
    let ifindex = first_non_loopback_ifindex()?;
    let (ns, first, _) = time_both(prog, &frame, ifindex, repeat)?;
    println!("bench-datapath: {prefixes} rule prefixes loaded in {:.1} ms ({:.2} µs/prefix)", fill.as_secs_f64() * 1e3, fill.as_secs_f64() * 1e6 / prefixes.max(1) as f64);
    println!("{:<34} {:>10} {:>14}", "case (tg_egress, kernel-timed)", "ns/packet", "first packet");
    println!("{:<34} {:>10.1} {:>14.1}", "host process (not a pod)", ns, first);
    let me = own_cgroup_id()?;
    let off = CgroupEntry { workload: 2, policy: 0, mode: agent_common::MODE_OFF, flags: 0, _pad: [0; 6] };
    maps.cgroups.insert(me, off, 0).map_err(map_err("TG_CGROUPS"))?;
    bump_generation(&mut maps)?;
    let (ns, first, _) = time_both(prog, &frame, ifindex, repeat)?;
    println!("{:<34} {:>10.1} {:>14.1}", "pod not enforced (one lookup)", ns, first);
    let entry = CgroupEntry { workload: 1, policy: 7, mode: MODE_ENFORCE, flags: 0, _pad: [0; 6] };
    maps.cgroups.insert(me, entry, 0).map_err(map_err("TG_CGROUPS"))?;
    bump_generation(&mut maps)?;
    for (name, dst, port) in cases {
        let frame = packet::build(src, dst.parse().unwrap_or(src), Protocol::Tcp, 40000, port);
        let (ns, first, ret) = time_both(prog, &frame, ifindex, repeat)?;
        println!("{:<34} {:>10.1} {:>14.1}   ({})", name, ns, first, if ret == 1 { "passed" } else { "dropped" });
    }
    let _ = maps.cgroups.remove(&me);
    bench_tc(&mut ebpf, &mut maps, entry, src, &cases, repeat)
}

/// The TC layer (`tg_tc_from_pod`) on the same packets as Ethernet frames,
/// with `lo` (where test runs happen) registered as the pod's veth.
fn bench_tc(ebpf: &mut aya::Ebpf, maps: &mut Maps, entry: CgroupEntry, src: IpAddr, cases: &[(&str, &str, u16)], repeat: u32) -> Result<(), CliError> {
    const LO: u32 = 1;
    maps.cgroups.insert(WORKLOAD_CGROUP_BASE | entry.workload as u64, entry, 0).map_err(map_err("TG_CGROUPS"))?;
    maps.addrs.insert(entry.workload, pod_addrs(&[src]), 0).map_err(map_err("TG_ADDRS"))?;
    let map = ebpf
        .take_map(map_names::TC_PODS)
        .ok_or_else(|| crate::datapath::DatapathError::MissingMap { name: map_names::TC_PODS.to_string() })?;
    let mut pods: aya::maps::HashMap<_, u32, TcPod> = aya::maps::HashMap::try_from(map).map_err(map_err(map_names::TC_PODS))?;
    pods.insert(LO, TcPod { workload: entry.workload, flags: 0 }, 0).map_err(map_err(map_names::TC_PODS))?;
    let prog = test_run::load_tc_program(ebpf, FROM_POD_PROGRAM)?;
    println!("{:<34} {:>10}", "case (tg_tc_from_pod, L2 frame)", "ns/packet");
    for (name, dst, port) in cases {
        let frame = packet::build(src, dst.parse().unwrap_or(src), Protocol::Tcp, 40000, *port);
        let (ns, ret) = test_run::run_tc(prog, &frame, repeat)?;
        println!("{:<34} {:>10.1}   ({})", name, ns, if ret == test_run::TC_DROP { "dropped" } else { "passed" });
    }
    let spoofed = packet::build("10.244.0.99".parse().unwrap_or(src), "10.244.0.20".parse().unwrap_or(src), Protocol::Tcp, 40000, 8080);
    let (ns, ret) = test_run::run_tc(prog, &spoofed, repeat)?;
    println!("{:<34} {:>10.1}   ({})", "spoofed source (drop)", ns, if ret == test_run::TC_DROP { "dropped" } else { "passed" });
    Ok(())
}
