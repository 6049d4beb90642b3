//! `tollgate verify`: asks the kernel program itself (BPF_PROG_TEST_RUN of
//! `tg_verify`, which runs the same decision as `tg_egress`) what it would
//! do with a packet from a pod to a destination.
use std::{
    collections::BTreeMap,
    io::BufRead,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs},
    path::{Path, PathBuf},
};

use agent_common::{reason_code, MODE_AUDIT, MODE_ENFORCE, VERDICT_ALLOW};
use aya::Ebpf;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::analyze::Trust;
use super::verify_detail::{self, Asked};
use super::{CliError, OutputFormat};
use crate::{
    cgroups::CgroupIndex,
    compiler::{self, CompilerConfig},
    explain::Explain,
    datapath::{
        bpffs::PinDir,
        ids::{self, verify_cgroup},
        load::load_object,
        object::VERIFY_PROGRAM,
        packet::{self, Protocol},
        pinned::Maps,
        reconcile, test_run,
    },
    runtime::{self, hosts, state::{self, StatusFile}},
    source::files,
};

/// One question, as given on the command line or as a `--batch` line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Query {
    pub from_pod: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_host: Option<String>,
    #[serde(default)]
    pub to_port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: String,
}

fn default_protocol() -> String {
    "tcp".into()
}

#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    #[serde(flatten)]
    pub query: Query,
    pub verdict: &'static str,
    pub mode: &'static str,
    pub reason: &'static str,
    pub detail: String,
    pub destination: String,
    /// The rules (objects) that allowed the packet, as compiled.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matched: Vec<String>,
    /// ServiceEntries naming `to_host` as an external host: reach it
    /// through the egress gateway.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_entries: Vec<String>,
}

/// Where the maps come from.
pub enum Source {
    /// The running agent's pinned maps.
    Pinned { bpffs: PathBuf, state_dir: PathBuf },
    /// A private load filled from a manifests folder; host names in mesh
    /// objects are resolved through the nameservers of `resolv_conf`.
    Manifests { dir: PathBuf, cluster_cidrs: Vec<IpNet>, resolv_conf: PathBuf, trust: Trust },
}

/// The loaded program and what is needed to phrase questions to it.
pub struct Verifier {
    ebpf: Ebpf,
    /// `namespace/name` → workload id.
    workloads: BTreeMap<String, u32>,
    pods: BTreeMap<String, Vec<String>>,
    /// Provenance of the rules, to name what decided.
    explain: Explain,
    /// The program's map relocations point at these file descriptors:
    /// they must stay open while the program is loaded and run.
    _maps: Maps,
}

/// A private pin folder, removed when dropped: as soon as the maps are
/// filled (they live on through the open file descriptors), or on an
/// error before that. Nothing is left behind if verify is killed later.
struct PrivatePins(PathBuf);

impl PrivatePins {
    /// A new, empty folder `tollgate-verify-<pid>-<n>` in `parent`; never
    /// one that exists already (another run's maps).
    fn create(parent: &Path) -> Result<Self, CliError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last = None;
        for attempt in 0..16u32 {
            let p = parent.join(format!("tollgate-verify-{}-{}", std::process::id(), nanos.wrapping_add(attempt)));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(Self(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(CliError::Environment(format!(
                        "creating a private pin folder in {}: {e} (needs root and bpffs there)",
                        parent.display()
                    )))
                }
            }
        }
        Err(CliError::Environment(format!(
            "creating a private pin folder in {}: {}",
            parent.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }
}

impl Drop for PrivatePins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Verifier {
    pub fn open(source: Source, bpffs: &Path) -> Result<Self, CliError> {
        match source {
            Source::Pinned { bpffs, state_dir } => {
                let pins = PinDir::new(&bpffs);
                pins.require_pinned()?;
                let mut ebpf = load_object(&pins)?;
                let maps = Maps::take(&mut ebpf)?;
                let workloads = workload_ids(&maps)?;
                let pods = StatusFile::read(&state_dir.join("status.json")).map(|s| s.pods).unwrap_or_default();
                // Older agents wrote no explanations: answers then name
                // no objects, but the verdict is unchanged.
                let explain = state::read_explain(&state_dir).unwrap_or_default();
                Ok(Self { ebpf, workloads, pods, explain, _maps: maps })
            }
            Source::Manifests { dir, cluster_cidrs, resolv_conf, trust } => {
                trust.check("verify")?;
                let (snapshot, diags) = files::load_dir(&dir)
                    .map_err(|e| CliError::Input(format!("manifests folder {}: {e}", dir.display())))?;
                for d in &diags {
                    eprintln!("warning: {d}");
                }
                let config = trust.apply(CompilerConfig { node_name: None, cluster_cidrs, ..Default::default() });
                let policy = compiler::compile(&snapshot, &config);
                let resolved = if policy.hosts.is_empty() {
                    BTreeMap::new()
                } else {
                    hosts::resolve_once(&policy.hosts, &resolv_conf)
                };
                let desired = compiler::bind(&policy, &resolved);
                for d in &desired.diagnostics {
                    eprintln!("{}: {d}", if d.severity == crate::desired::Severity::Error { "error" } else { "warning" });
                }
                for i in &desired.ignored {
                    eprintln!("note: {i}");
                }
                // Beside the agent's folder, in its nearest existing
                // ancestor, so that nothing is left behind.
                let parent = bpffs
                    .parent()
                    .and_then(|p| p.ancestors().find(|a| a.exists()))
                    .unwrap_or(Path::new("/sys/fs/bpf"));
                let guard = PrivatePins::create(parent)?;
                let pins = PinDir::new(&guard.0);
                pins.create()?;
                let mut ebpf = load_object(&pins)?;
                let mut maps = Maps::take(&mut ebpf)?;
                reconcile::apply(&mut maps, &desired, &CgroupIndex::default())?;
                let workloads = workload_ids(&maps)?;
                drop(guard);
                Ok(Self { ebpf, workloads, pods: runtime::pod_ips(&snapshot), explain: desired.explain, _maps: maps })
            }
        }
    }

    pub fn ask(&mut self, q: &Query) -> Result<Answer, CliError> {
        let proto = Protocol::parse(&q.protocol)
            .ok_or_else(|| CliError::Input(format!("query: field protocol: unknown protocol {:?} (tcp, udp, sctp, icmp)", q.protocol)))?;
        if q.to_port == 0 && proto != Protocol::Icmp {
            return Err(CliError::Input("query: field to_port: a port 1-65535 is required".into()));
        }
        let id = *self.workloads.get(&q.from_pod).ok_or_else(|| {
            CliError::Input(format!("query: field from_pod: pod {} is not known (not in the input, or not on this node)", q.from_pod))
        })?;
        let dst = self.destination(q)?;
        let own: Vec<IpAddr> = self
            .pods
            .get(&q.from_pod)
            .map(|ips| ips.iter().filter_map(|s| s.parse::<IpAddr>().ok()).collect())
            .unwrap_or_default();
        let src = own
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == dst.is_ipv4())
            .unwrap_or(if dst.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) });
        // To its own address, a pod's packet leaves on `lo`.
        let on_loopback = own.contains(&dst);
        let frame = packet::build(src, dst, proto, 40_000, q.to_port);
        let prog = test_run::load_skb_program(&mut self.ebpf, VERIFY_PROGRAM)?;
        let v = test_run::verify(prog, verify_cgroup(id), &frame, on_loopback)?;
        let verdict = if v.verdict == VERDICT_ALLOW { "allow" } else { "deny" };
        let mode = match v.mode {
            MODE_ENFORCE => "enforce",
            MODE_AUDIT => "audit",
            _ => "off",
        };
        let reason = reason_code(v.reason);
        let destination = match dst {
            IpAddr::V4(a) => format!("{a}:{}", q.to_port),
            IpAddr::V6(a) => format!("[{a}]:{}", q.to_port),
        };
        let asked = Asked {
            from: &q.from_pod,
            host: q.to_host.as_deref(),
            dst,
            destination: &destination,
            proto: proto.number(dst.is_ipv6()),
            proto_name: proto.as_str(),
            port: q.to_port,
            reason,
            mode,
        };
        let d = verify_detail::explain(&self.explain, &asked);
        Ok(Answer {
            query: q.clone(),
            verdict,
            mode,
            reason,
            detail: d.detail,
            destination,
            matched: d.matched,
            service_entries: d.service_entries,
        })
    }

    fn destination(&self, q: &Query) -> Result<IpAddr, CliError> {
        let given = [q.to_pod.is_some(), q.to_ip.is_some(), q.to_host.is_some()].iter().filter(|b| **b).count();
        if given != 1 {
            return Err(CliError::Input("query: give exactly one of to_pod, to_ip, to_host".into()));
        }
        if let Some(ip) = &q.to_ip {
            return ip.parse().map_err(|_| CliError::Input(format!("query: field to_ip: {ip:?} is not an IP address")));
        }
        if let Some(pod) = &q.to_pod {
            let ips = self.pods.get(pod).ok_or_else(|| {
                if self.pods.is_empty() {
                    CliError::Environment(format!(
                        "query: field to_pod: no pod addresses are known (the agent's status file is missing or empty; pass the agent's --state-dir, or use to_ip) so {pod} cannot be looked up"
                    ))
                } else {
                    CliError::Input(format!("query: field to_pod: pod {pod} is not known"))
                }
            })?;
            return ips
                .iter()
                .find_map(|s| s.parse().ok())
                .ok_or_else(|| CliError::Input(format!("query: field to_pod: pod {pod} has no IP (status.podIPs)")));
        }
        let host = q.to_host.as_deref().unwrap_or_default();
        // A host the rules name: ask about an address the datapath was
        // given for it (the system resolver may rotate answers).
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ip) = self.explain.resolved.get(&name).and_then(|ips| ips.first()) {
            return Ok(*ip);
        }
        (host, q.to_port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip())
            .ok_or_else(|| CliError::Input(format!("query: field to_host: cannot resolve {host:?} on this machine")))
    }
}

/// One `--batch` line; errors name the field (`field to_port: invalid
/// type ...`).
pub fn parse_query(line: &str) -> Result<Query, CliError> {
    let mut de = serde_json::Deserializer::from_str(line);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            CliError::Input(format!("query: {}", e.inner()))
        } else {
            CliError::Input(format!("query: field {path}: {}", e.inner()))
        }
    })
}

fn workload_ids(maps: &Maps) -> Result<BTreeMap<String, u32>, CliError> {
    let mut out = BTreeMap::new();
    for item in maps.workloads.iter() {
        let (id, info) = item.map_err(|e| CliError::Environment(format!("reading TG_WORKLOADS: {e}")))?;
        let (ns, name, _) = ids::decode(&info);
        out.insert(format!("{ns}/{name}"), id);
    }
    Ok(out)
}

fn print(a: &Answer, format: OutputFormat) {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string(a).unwrap_or_default()),
        OutputFormat::Text => println!("{} ({}, {}): {}", a.verdict.to_uppercase(), a.mode, a.reason, a.detail),
    }
}

pub fn run_one(mut v: Verifier, q: Query, format: OutputFormat) -> Result<(), CliError> {
    let a = v.ask(&q)?;
    print(&a, format);
    Ok(())
}

/// One JSON query a line in, one JSON answer a line out, in order. A bad
/// line answers `{"error": ...}` and the command exits 1 at the end.
pub fn run_batch(mut v: Verifier, input: &str) -> Result<(), CliError> {
    let mut reader: Box<dyn BufRead> = if input == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(input).map_err(|e| CliError::Input(format!("--batch {input}: {e}")))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut failed = 0usize;
    let mut buf = Vec::new();
    for n in 0usize.. {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf).map_err(|e| CliError::Input(format!("--batch {input}: {e}")))?;
        if read == 0 {
            break;
        }
        // A line that is not UTF-8 is answered with an error like any
        // other bad line; the batch goes on.
        let line = String::from_utf8_lossy(&buf);
        if line.trim().is_empty() {
            continue;
        }
        let answer = parse_query(&line).and_then(|q| v.ask(&q));
        match answer {
            Ok(a) => print(&a, OutputFormat::Json),
            Err(CliError::Environment(e)) => return Err(CliError::Environment(e)),
            Err(CliError::Input(e)) => {
                failed += 1;
                let echo: serde_json::Value = serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
                println!("{}", serde_json::json!({"error": format!("line {}: {e}", n + 1), "query": echo}));
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Input(format!("{failed} batch line(s) could not be answered")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_batch_lines_name_the_field() {
        let err = |line: &str| match parse_query(line) {
            Err(CliError::Input(m)) => m,
            other => panic!("{line}: {:?}", other.map(|q| q.from_pod)),
        };
        assert!(err(r#"{"from_pod": "x/a", "to_ip": "192.0.2.1", "to_port": "80"}"#).starts_with("query: field to_port: invalid type"));
        assert!(err(r#"{"to_ip": "192.0.2.1", "to_port": 80}"#).contains("from_pod"));
        assert!(err("not json").starts_with("query: "));
        let q = parse_query(r#"{"from_pod": "x/a", "to_pod": "y/b", "to_port": 80}"#).expect("valid");
        assert_eq!((q.from_pod.as_str(), q.to_port, q.protocol.as_str()), ("x/a", 80, "tcp"));
    }
}
