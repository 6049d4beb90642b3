//! `tollgate verify --batch` lines: the JSON line parser, then what
//! `verify` does with a query before the kernel runs it: the protocol and
//! the destination address are read, the made-up packet is built, and the
//! explanation is phrased. Checked besides "no panic": the packet `verify`
//! builds parses (with the kernel programs' parser) back to the query's
//! destination, protocol and port; an accepted query written back as JSON
//! (as the batch output echoes it) reads back the same.
#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;

use agent_common::parse::{parse_ethernet, Flow};
use agent_common::{reason_code, FAMILY_V4, FAMILY_V6, REASON_CODES};
use libfuzzer_sys::fuzz_target;
use tollgate::cli::verify::parse_query;
use tollgate::cli::verify_detail::{explain, Asked};
use tollgate::datapath::packet::{build, Protocol};
use tollgate::compiler::{self, CompilerConfig};
use tollgate::explain::Explain;
use tollgate::source::files;

/// The explanations of the examples (compiled once): queries naming their
/// pods look up real rules.
fn examples() -> &'static Explain {
    static EXPLAIN: OnceLock<Explain> = OnceLock::new();
    EXPLAIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let (snapshot, _) = files::load_dir(&dir).expect("the examples folder loads");
        let config = CompilerConfig {
            cluster_cidrs: vec!["10.244.0.0/16".parse().expect("cidr"), "fd00:10:244::/56".parse().expect("cidr")],
            ..Default::default()
        };
        compiler::bind(&compiler::compile(&snapshot, &config), &BTreeMap::new()).explain
    })
}

fuzz_target!(|data: &[u8]| {
    // The batch reader hands each line over as lossy UTF-8.
    let line = String::from_utf8_lossy(data);
    let Ok(q) = parse_query(&line) else {
        return;
    };
    let echo = serde_json::to_string(&q).expect("a query serializes");
    let back = parse_query(&echo).expect("an echoed query parses again");
    assert_eq!(serde_json::to_string(&back).ok(), Some(echo), "query does not round-trip");

    let Some(proto) = Protocol::parse(&q.protocol) else {
        return;
    };
    let Some(dst) = q.to_ip.as_deref().and_then(|s| s.parse::<IpAddr>().ok()) else {
        return;
    };
    let src = if dst.is_ipv4() { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) };
    let frame = build(src, dst, proto, 40_000, q.to_port);
    let mut f = Flow::empty();
    parse_ethernet(frame.as_slice(), &mut f).expect("verify's own packet parses");
    match dst {
        IpAddr::V4(a) => {
            assert_eq!(f.family, FAMILY_V4);
            assert_eq!(&f.dst[..4], &a.octets());
        }
        IpAddr::V6(a) => {
            assert_eq!(f.family, FAMILY_V6);
            assert_eq!(f.dst, a.octets());
        }
    }
    assert_eq!(f.proto, proto.number(dst.is_ipv6()));
    if proto == Protocol::Icmp {
        assert!(!f.ports_known);
    } else {
        assert_eq!((f.sport, f.dport, f.ports_known), (40_000, q.to_port, true));
    }

    let destination = format!("{dst}:{}", q.to_port);
    let explain_for = examples();
    for reason in 0..=REASON_CODES.len() as u8 {
        let asked = Asked {
            from: &q.from_pod,
            host: q.to_host.as_deref(),
            dst,
            destination: &destination,
            proto: f.proto,
            proto_name: proto.as_str(),
            port: q.to_port,
            reason: reason_code(reason),
            mode: "enforce",
        };
        let _ = explain(explain_for, &asked);
    }
});
