//! `tollgate-e2e`: servers, probes and process helpers for the Tollgate
//! end-to-end harness, plus `demo` (a readable connectivity matrix).

mod bench;
mod demo;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tollgate_e2e::{dns, probe, procs, serve, traffic};

#[derive(Parser)]
#[command(name = "tollgate-e2e", about = "Tollgate end-to-end harness helpers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Minimal HTTP/1.1 server answering `external-ok from <local addr>`.
    HttpServe {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
    /// TCP forwarder: each --listen is paired with the --to in the same position.
    TcpForward {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
        #[arg(long, required = true)]
        to: Vec<SocketAddr>,
    },
    /// DNS over UDP and TCP answering A/AAAA from --record NAME=IP.
    DnsServe {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
        #[arg(long)]
        record: Vec<String>,
        /// TTL of every answer, in seconds.
        #[arg(long, default_value_t = dns::DEFAULT_TTL)]
        ttl: u32,
    },
    /// One probe; prints one JSON line and exits 0 whatever the outcome.
    Probe {
        #[command(subcommand)]
        kind: ProbeKind,
    },
    /// Join a cgroup and a netns, then exec the command.
    ExecIn {
        #[arg(long)]
        netns: Option<String>,
        #[arg(long)]
        cgroup: Option<PathBuf>,
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Create a cgroup, join it and a netns, and send UDP as fast as possible (one JSON line).
    Burst {
        #[arg(long)]
        cgroup: PathBuf,
        #[arg(long)]
        netns: String,
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 20000)]
        count: u64,
    },
    /// connect() a UDP socket in a loop; one JSON line each time the outcome changes.
    ConnectWatch {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 500)]
        interval_us: u64,
    },
    /// Count UDP datagrams: one line per datagram after `ready`.
    UdpSink {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
    /// The `lo` poisoning attack from inside a pod (one JSON line).
    UdpPoison {
        /// The external peer to impersonate (bound with FREEBIND/TRANSPARENT).
        #[arg(long)]
        peer: SocketAddr,
        #[arg(long)]
        local_port: u16,
    },
    /// Count packets from --from addresses on every interface for --ms (prints ready, then JSON on stderr).
    Sniff {
        #[arg(long, required = true)]
        from: Vec<std::net::IpAddr>,
        #[arg(long, default_value_t = 2000)]
        ms: u64,
        /// Stop early once this file exists.
        #[arg(long)]
        stop_file: Option<PathBuf>,
    },
    /// Steady load until --stop-file exists: to each --deny address a UDP
    /// datagram, a raw UDP packet and a TCP connect, on each --allow echo
    /// server a round trip, every --interval-ms (prints ready, then one JSON line on stderr).
    Steady {
        #[arg(long)]
        deny: Vec<SocketAddr>,
        #[arg(long)]
        allow: Vec<SocketAddr>,
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
        #[arg(long)]
        stop_file: PathBuf,
        /// Stop after this long whatever happens.
        #[arg(long, default_value_t = 120_000)]
        max_ms: u64,
    },
    /// One attempt of the bypass suite from inside a pod (one JSON line).
    Attack(tollgate_e2e::attack::AttackArgs),
    /// The bypass suite's judge: one JSON line on stderr per IP packet that
    /// arrives on --ifname (prints ready first).
    AttackSniff {
        #[arg(long, default_value = "eth0")]
        ifname: String,
        #[arg(long, default_value_t = 60_000)]
        ms: u64,
    },
    /// UDP echo server.
    UdpEcho {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
    /// One datagram to an echo server, waiting for it back (one JSON line).
    UdpAsk {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// TCP echo server.
    TcpEcho {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
    },
    /// Round trips over one TCP connection to an echo server (one JSON line).
    TcpChat {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 100)]
        count: u64,
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
        /// One connected UDP socket instead of a TCP connection.
        #[arg(long)]
        udp: bool,
    },
    /// Unconnected UDP datagrams to one address, as fast as possible (one JSON line).
    UdpSpray {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 100_000)]
        count: u64,
    },
    /// AF_PACKET frames out of --ifname to the next hop --dst-mac (UDP to
    /// --dst:--dport from --src, which may be forged); prints JSON.
    RawSend {
        #[arg(long, default_value = "eth0")]
        ifname: String,
        #[arg(long)]
        dst_mac: String,
        #[arg(long)]
        src: std::net::IpAddr,
        #[arg(long)]
        dst: std::net::IpAddr,
        #[arg(long, default_value_t = 9)]
        dport: u16,
        /// SOCK_DGRAM (the kernel adds the Ethernet header) instead of SOCK_RAW.
        #[arg(long)]
        dgram: bool,
        #[arg(long)]
        qdisc_bypass: bool,
        /// A lone non-first IPv4 fragment (no ports).
        #[arg(long)]
        fragment: bool,
        #[arg(long, default_value_t = 3)]
        count: u64,
        /// Pause between frames (0: back to back).
        #[arg(long, default_value_t = 0)]
        interval_ms: u64,
    },
    /// TCP SYNs from random sources of NET/24 through a raw socket (one JSON line).
    SynFlood {
        #[arg(long)]
        to: std::net::SocketAddrV4,
        #[arg(long)]
        net: std::net::Ipv4Addr,
        #[arg(long, default_value_t = 100_000)]
        count: u64,
    },
    /// The throughput bench's server: TCP stream sink, connect-and-close,
    /// UDP counter and its control port, on one address; prints `ready`.
    LoadServe {
        #[arg(long)]
        listen: std::net::IpAddr,
    },
    /// One slice of bench traffic to a load-serve; prints one JSON line.
    LoadClient {
        #[arg(long, value_enum)]
        kind: tollgate_e2e::bench::load::Kind,
        #[arg(long)]
        to: std::net::IpAddr,
        #[arg(long, default_value_t = 1000)]
        ms: u64,
    },
    /// Benchmarks (run by `cargo xtask bench`).
    Bench {
        #[command(subcommand)]
        part: bench::Part,
    },
    /// Build the topology, run the agent, print the connectivity matrix.
    Demo {
        #[arg(long, env = "TOLLGATE_BIN")]
        tollgate: Option<PathBuf>,
        /// Manifests to copy (default: examples/istio-egress-gateway or the built-in fixture).
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// Leave everything running and print how to tear it down.
        #[arg(long)]
        keep: bool,
        /// Afterwards, send allowed and denied traffic for 15 s while scraping
        /// the agent's /metrics, and draw the dashboard's main panels to FILE (SVG).
        #[arg(long, value_name = "FILE")]
        dashboard: Option<PathBuf>,
        /// Every object in a private kube-apiserver, the agent on --source kubernetes,
        /// and enforcement switched with kubectl label.
        #[arg(long)]
        kubernetes: bool,
    },
}

#[derive(Subcommand)]
enum ProbeKind {
    Tcp {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
        #[arg(long)]
        http_get: bool,
    },
    Dns {
        #[arg(long)]
        server: SocketAddr,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "A")]
        r#type: String,
        #[arg(long)]
        tcp: bool,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    Udp {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value = "ping")]
        payload: String,
    },
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("tollgate-e2e: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::HttpServe { listen } => serve::http_serve(&listen),
        Cmd::TcpForward { listen, to } => {
            if listen.len() != to.len() {
                bail!("tcp-forward: give one --to per --listen");
            }
            serve::tcp_forward(&listen.into_iter().zip(to).collect::<Vec<_>>())
        }
        Cmd::DnsServe { listen, record, ttl } => dns::dns_serve(&listen, dns::parse_records(&record)?, ttl),
        Cmd::Probe { kind } => {
            let r = match kind {
                ProbeKind::Tcp { to, timeout_ms, http_get } => probe::tcp(to, Duration::from_millis(timeout_ms), http_get),
                ProbeKind::Dns { server, name, r#type, tcp, timeout_ms } => {
                    let qtype = match r#type.to_ascii_uppercase().as_str() {
                        "A" => dns::TYPE_A,
                        "AAAA" => dns::TYPE_AAAA,
                        t => bail!("unsupported --type {t} (A or AAAA)"),
                    };
                    probe::dns(server, &name, qtype, tcp, Duration::from_millis(timeout_ms))
                }
                ProbeKind::Udp { to, payload } => probe::udp(to, &payload),
            };
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Cmd::Burst { cgroup, netns, to, count } => tollgate_e2e::burst::burst(&cgroup, &netns, to, count),
        Cmd::ConnectWatch { to, interval_us } => tollgate_e2e::burst::connect_watch(to, Duration::from_micros(interval_us)),
        Cmd::UdpSink { listen } => tollgate_e2e::burst::udp_sink(&listen),
        Cmd::LoadServe { listen } => tollgate_e2e::bench::load::serve(listen),
        Cmd::LoadClient { kind, to, ms } => {
            let r = tollgate_e2e::bench::load::client(kind, to, Duration::from_millis(ms))?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Cmd::Bench { part } => bench::run(part),
        Cmd::ExecIn { netns, cgroup, command } => procs::exec_in(netns.as_deref(), cgroup.as_deref(), &command),
        Cmd::Demo { tollgate, kubernetes: true, keep, .. } => demo::run_kubernetes(tollgate, keep),
        Cmd::Demo { tollgate, manifests, keep, kubernetes: false, dashboard } => demo::run(tollgate, manifests, keep, dashboard),
        Cmd::UdpPoison { peer, local_port } => {
            println!("{}", serde_json::to_string(&traffic::udp_poison(peer, local_port)?)?);
            Ok(())
        }
        Cmd::Sniff { from, ms, stop_file } => {
            let r = serde_json::to_string(&traffic::sniff(&from, ms, stop_file.as_deref())?)?;
            eprintln!("{r}");
            Ok(())
        }
        Cmd::Attack(a) => {
            println!("{}", serde_json::to_string(&tollgate_e2e::attack::attack(&a)?)?);
            Ok(())
        }
        Cmd::AttackSniff { ifname, ms } => tollgate_e2e::attack_sniff::sniff_tagged(&ifname, ms),
        Cmd::UdpEcho { listen } => traffic::udp_echo(&listen),
        Cmd::UdpAsk { to, timeout_ms } => {
            println!("{}", serde_json::to_string(&traffic::udp_ask(to, Duration::from_millis(timeout_ms)))?);
            Ok(())
        }
        Cmd::TcpEcho { listen } => traffic::tcp_echo(&listen),
        Cmd::TcpChat { to, count, interval_ms, timeout_ms, udp } => {
            let (interval, timeout) = (Duration::from_millis(interval_ms), Duration::from_millis(timeout_ms));
            let r = if udp {
                traffic::udp_chat(to, count, interval, timeout)
            } else {
                traffic::tcp_chat(to, count, interval, timeout)
            };
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Cmd::Steady { deny, allow, interval_ms, stop_file, max_ms } => {
            let r = tollgate_e2e::chaos::steady(&deny, &allow, Duration::from_millis(interval_ms), &stop_file, Duration::from_millis(max_ms))?;
            // stdout after `ready` is drained by the harness: the result goes to the log.
            eprintln!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Cmd::UdpSpray { to, count } => {
            println!("{}", serde_json::to_string(&traffic::udp_spray(to, count)?)?);
            Ok(())
        }
        Cmd::RawSend { ifname, dst_mac, src, dst, dport, dgram, qdisc_bypass, fragment, count, interval_ms } => {
            use tollgate_e2e::raw_frames::{self, Kind};
            let kind = if dgram { Kind::Dgram } else { Kind::Raw };
            let mac = raw_frames::parse_mac(&dst_mac)?;
            let r = if interval_ms == 0 {
                raw_frames::send(&ifname, mac, kind, qdisc_bypass, src, dst, dport, fragment, count)?
            } else {
                // One frame at a time, paced (a steady load across agent restarts).
                let mut r = raw_frames::SendResult::default();
                for _ in 0..count {
                    let one = raw_frames::send(&ifname, mac, kind, qdisc_bypass, src, dst, dport, fragment, 1)?;
                    r.sent += one.sent;
                    r.errors.extend(one.errors);
                    std::thread::sleep(std::time::Duration::from_millis(interval_ms));
                }
                r
            };
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Cmd::SynFlood { to, net, count } => {
            println!("{}", serde_json::to_string(&traffic::syn_flood(to, net, count)?)?);
            Ok(())
        }
    }
}
