//! Tests of the stub resolver (hickory underneath) against the test DNS
//! server on 127.0.0.1: real UDP and TCP exchanges.
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::error::{RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_SERVFAIL};
use super::test_server::{
    a, aaaa, build, closed_port, cname, respond, Data, Reply, Rr, Seen, TestServer, Transport, TYPE_A, TYPE_AAAA,
};
use super::{Lookup, ResolvConf, ResolveError, SystemResolver, LITERAL_TTL};

fn ok(q: &Seen, answers: &[Rr]) -> Reply {
    Reply::Send(vec![respond(q, RCODE_NOERROR, false, answers)])
}

fn rcode(q: &Seen, rcode: u16) -> Reply {
    Reply::Send(vec![respond(q, rcode, false, &[])])
}

/// The zone of the test server.
fn zone(q: &Seen, _raw: &[u8]) -> Reply {
    let chain = || {
        vec![
            cname("www.example.test", 300, "edge.example.net"),
            cname("edge.example.net", 60, "a.cdn.test"),
        ]
    };
    match (q.name.as_str(), q.qtype, q.transport) {
        ("www.example.test", TYPE_A, _) => {
            let mut rrs = chain();
            rrs.extend([
                a("a.cdn.test", 120, "192.0.2.1"),
                a("a.cdn.test", 30, "192.0.2.2"),
                a("other.test", 5, "198.51.100.9"),
            ]);
            ok(q, &rrs)
        }
        ("www.example.test", TYPE_AAAA, _) => {
            let mut rrs = chain();
            rrs.push(aaaa("a.cdn.test", 600, "2001:db8::1"));
            ok(q, &rrs)
        }
        ("nx.example.test", _, _) => rcode(q, RCODE_NXDOMAIN),
        ("v4.example.test", TYPE_A, _) => ok(q, &[a("v4.example.test", 45, "192.0.2.10")]),
        ("v4.example.test", _, _) => ok(q, &[]),
        ("big.example.test", _, Transport::Udp) => Reply::Send(vec![respond(q, RCODE_NOERROR, true, &[])]),
        ("big.example.test", TYPE_A, Transport::Tcp) => {
            let ips: Vec<String> = (0..40).map(|i| format!("192.0.2.{}", 100 + i)).collect();
            ok(
                q,
                &ips.iter().map(|ip| a("big.example.test", 90, ip)).collect::<Vec<_>>(),
            )
        }
        ("big.example.test", _, Transport::Tcp) => ok(q, &[]),
        ("fail.example.test", _, _) => rcode(q, RCODE_SERVFAIL),
        ("silent.example.test", _, _) => Reply::Silent,
        ("spoof.example.test", TYPE_A, _) => {
            let good = [a("spoof.example.test", 50, "192.0.2.20")];
            let evil = [a("spoof.example.test", 50, "203.0.113.66")];
            Reply::Send(vec![
                build(q.id.wrapping_add(1), &q.name, q.qtype, RCODE_NOERROR, false, &evil),
                build(
                    q.id,
                    "evil.test",
                    q.qtype,
                    RCODE_NOERROR,
                    false,
                    &[a("evil.test", 50, "203.0.113.67")],
                ),
                build(q.id, &q.name, TYPE_AAAA, RCODE_NOERROR, false, &[]),
                // A short datagram (with another id: one with the query's id
                // would end the try, see the forged non-response below).
                (q.id ^ 0x5555).to_be_bytes().to_vec(),
                respond(q, RCODE_NOERROR, false, &good),
                respond(q, RCODE_NOERROR, false, &evil),
            ])
        }
        ("spoof.example.test", _, _) => ok(q, &[]),
        ("half.example.test", TYPE_A, _) => ok(q, &[a("half.example.test", 40, "192.0.2.30")]),
        ("half.example.test", _, _) => rcode(q, RCODE_SERVFAIL),
        ("halfempty.example.test", TYPE_A, _) => ok(q, &[]),
        ("halfempty.example.test", _, _) => rcode(q, RCODE_SERVFAIL),
        ("loop.example.test", _, _) => ok(
            q,
            &[
                cname("loop.example.test", 60, "loop2.example.test"),
                cname("loop2.example.test", 60, "loop.example.test"),
            ],
        ),
        ("short.example.test", TYPE_A, _) => ok(
            q,
            &[Rr {
                name: "short.example.test",
                ttl: 60,
                data: Data::Raw(TYPE_A, vec![192, 0, 2]),
            }],
        ),
        ("short.example.test", _, _) => ok(q, &[]),
        _ => rcode(q, RCODE_REFUSED),
    }
}

fn resolver(servers: &[SocketAddr], timeout: Duration, attempts: u32) -> SystemResolver {
    SystemResolver::new(ResolvConf {
        nameservers: servers.to_vec(),
        timeout,
        attempts,
    })
    .expect("resolver")
}

fn one(server: &TestServer) -> SystemResolver {
    resolver(&[server.addr], Duration::from_secs(2), 1)
}

fn found(result: Result<Vec<(IpAddr, Duration)>, ResolveError>) -> BTreeSet<(IpAddr, u64)> {
    result
        .expect("lookup succeeds")
        .into_iter()
        .map(|(ip, ttl)| (ip, ttl.as_secs()))
        .collect()
}

fn set(items: &[(&str, u64)]) -> BTreeSet<(IpAddr, u64)> {
    items
        .iter()
        .map(|(ip, ttl)| (ip.parse().expect("ip literal"), *ttl))
        .collect()
}

#[tokio::test]
async fn follows_the_cname_chain_with_the_smallest_ttl() {
    let server = TestServer::start(zone);
    let got = found(one(&server).lookup("www.example.test").await);
    assert_eq!(got, set(&[("192.0.2.1", 60), ("192.0.2.2", 30), ("2001:db8::1", 60)]));
}

#[tokio::test]
async fn queries_the_absolute_name_with_recursion_and_random_ids() {
    let server = TestServer::start(zone);
    let got = found(one(&server).lookup("WWW.Example.TEST.").await);
    assert_eq!(got.len(), 3);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen
        .iter()
        .all(|s| s.name == "www.example.test" && s.recursion_desired && s.transport == Transport::Udp));
    assert_eq!(
        seen.iter().map(|s| s.qtype).collect::<BTreeSet<_>>(),
        BTreeSet::from([TYPE_A, TYPE_AAAA])
    );
    assert_ne!(seen[0].id, seen[1].id);

    // `search` and `ndots` are not applied: "www" is asked as "www.".
    let mut conf =
        ResolvConf::parse("search example.test\noptions ndots:5 timeout:2 attempts:1\nnameserver 127.0.0.1\n");
    conf.nameservers = vec![server.addr];
    let err = SystemResolver::new(conf).expect("resolver").lookup("www").await.expect_err("REFUSED");
    assert!(
        matches!(
            err,
            ResolveError::ServerFailure {
                rcode: RCODE_REFUSED,
                ..
            }
        ),
        "{err}"
    );
    let names: Vec<String> = server.seen()[2..].iter().map(|s| s.name.clone()).collect();
    assert_eq!(names, ["www", "www"]);
}

#[tokio::test]
async fn asks_ipv6_name_servers() {
    let Some(server) = TestServer::start_on(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), zone) else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    assert_eq!(
        found(one(&server).lookup("big.example.test").await).len(),
        40,
        "over UDP, then TCP"
    );
}

#[tokio::test]
async fn nxdomain_and_missing_records_are_empty_answers() {
    let server = TestServer::start(zone);
    let r = one(&server);
    assert!(found(r.lookup("nx.example.test").await).is_empty());
    assert_eq!(found(r.lookup("v4.example.test").await), set(&[("192.0.2.10", 45)]));
    assert!(
        found(r.lookup("loop.example.test").await).is_empty(),
        "a CNAME loop ends without addresses"
    );
}

#[tokio::test]
async fn truncated_udp_answer_is_asked_again_over_tcp() {
    let server = TestServer::start(zone);
    let got = found(one(&server).lookup("big.example.test").await);
    assert_eq!(got.len(), 40);
    assert!(got.iter().all(|(_, ttl)| *ttl == 90));
    let tcp: BTreeSet<u16> = server
        .seen()
        .iter()
        .filter(|s| s.transport == Transport::Tcp)
        .map(|s| s.qtype)
        .collect();
    assert_eq!(tcp, BTreeSet::from([TYPE_A, TYPE_AAAA]));
}

#[tokio::test]
async fn servfail_is_an_error_naming_host_and_server() {
    let server = TestServer::start(zone);
    let err = one(&server).lookup("Fail.Example.Test").await.expect_err("SERVFAIL");
    assert!(matches!(err, ResolveError::ServerFailure { rcode: RCODE_SERVFAIL, server: s, .. } if s == server.addr));
    let msg = err.to_string();
    assert!(
        msg.contains("fail.example.test") && msg.contains(&server.addr.to_string()) && msg.contains("SERVFAIL"),
        "{msg}"
    );
}

#[tokio::test]
async fn timeout_on_every_try_is_an_error() {
    let server = TestServer::start(zone);
    let start = Instant::now();
    let err = resolver(&[server.addr], Duration::from_millis(200), 2)
        .lookup("silent.example.test").await
        .expect_err("no answer");
    let took = start.elapsed();
    assert!(
        matches!(&err, ResolveError::Timeout { server: s, .. } if *s == server.addr),
        "{err}"
    );
    assert!(err.to_string().contains("silent.example.test"), "{err}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(server.seen().len(), 4, "two attempts of A and AAAA");
}

#[tokio::test]
async fn failing_and_dead_servers_are_skipped() {
    let failing = TestServer::start(|q, _| rcode(q, RCODE_SERVFAIL));
    let refusing = TestServer::start(|q, _| rcode(q, RCODE_REFUSED));
    let dead = TestServer::start(|_, _| Reply::Silent);
    let good = TestServer::start(zone);
    // Nothing listens on the first port: hickory's unconnected UDP socket
    // does not see the ICMP error, so it waits for the timeout, then goes on.
    let r = resolver(
        &[closed_port(), dead.addr, failing.addr, refusing.addr, good.addr],
        Duration::from_millis(500),
        1,
    );
    assert_eq!(found(r.lookup("v4.example.test").await), set(&[("192.0.2.10", 45)]));
    let asked = |s: &TestServer| s.seen().len();
    assert_eq!((asked(&failing), asked(&refusing), asked(&good)), (2, 2, 2));
    // hickory may send a UDP query again within one try to a silent server.
    let dead_types: BTreeSet<u16> = dead.seen().iter().map(|s| s.qtype).collect();
    assert_eq!(dead_types, BTreeSet::from([TYPE_A, TYPE_AAAA]));

    // All failing: the error names the last server tried, after every round.
    let r = resolver(&[closed_port(), failing.addr], Duration::from_millis(500), 2);
    let err = r.lookup("v4.example.test").await.expect_err("all fail");
    assert!(
        matches!(err, ResolveError::ServerFailure { rcode: RCODE_SERVFAIL, server, .. } if server == failing.addr),
        "{err}"
    );
    assert!(err.to_string().contains(&failing.addr.to_string()), "{err}");
    assert_eq!(asked(&failing), 6);
    let closed = closed_port();
    let r = resolver(&[failing.addr, closed], Duration::from_millis(500), 1);
    let err = r.lookup("v4.example.test").await.expect_err("all fail");
    assert!(matches!(err, ResolveError::Timeout { server, .. } if server == closed), "{err}");
}

#[tokio::test]
async fn stray_and_spoofed_replies_are_ignored() {
    let server = TestServer::start(zone);
    assert_eq!(
        found(one(&server).lookup("spoof.example.test").await),
        set(&[("192.0.2.20", 50)])
    );
}

/// A datagram with the query's id and port that is not a response (QR
/// clear) ends hickory's wait with an error instead of being skipped (the
/// hand-written client skipped it). Forging it takes the same 32 bits of
/// id and port as forging an answer; the lookup fails closed (the host
/// table keeps what is still valid and asks again), and the next server or
/// round is asked.
#[tokio::test]
async fn a_forged_non_response_fails_the_try_and_grants_nothing() {
    let forging = TestServer::start(|q, _| {
        let mut not_a_response = respond(q, RCODE_NOERROR, false, &[a("forged.example.test", 50, "203.0.113.66")]);
        not_a_response[2] &= !0x80;
        Reply::Send(vec![not_a_response])
    });
    let err = one(&forging).lookup("forged.example.test").await.expect_err("not an answer");
    assert!(matches!(err, ResolveError::Malformed { .. }), "{err}");
    let good = TestServer::start(|q, _| match q.qtype {
        TYPE_A => ok(q, &[a("forged.example.test", 50, "192.0.2.50")]),
        _ => ok(q, &[]),
    });
    let r = resolver(&[forging.addr, good.addr], Duration::from_secs(2), 1);
    assert_eq!(found(r.lookup("forged.example.test").await), set(&[("192.0.2.50", 50)]));
}

#[tokio::test]
async fn every_lookup_asks_the_server_and_reports_the_ttl_as_given() {
    let server = TestServer::start(|q, _| match q.qtype {
        TYPE_A => ok(q, &[a("day.example.test", 86_400, "192.0.2.40")]),
        _ => ok(q, &[]),
    });
    let r = one(&server);
    for round in 1..=3 {
        assert_eq!(found(r.lookup("day.example.test").await), set(&[("192.0.2.40", 86_400)]));
        assert_eq!(server.seen().len(), 2 * round, "no answer comes from a cache");
    }
}

#[tokio::test]
async fn one_failing_family_keeps_the_other() {
    let server = TestServer::start(zone);
    let r = one(&server);
    assert_eq!(found(r.lookup("half.example.test").await), set(&[("192.0.2.30", 40)]));
    let err = r
        .lookup("halfempty.example.test").await
        .expect_err("no address and a failure");
    assert!(
        matches!(
            err,
            ResolveError::ServerFailure {
                rcode: RCODE_SERVFAIL,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn malformed_answers_are_errors() {
    let server = TestServer::start(zone);
    let err = one(&server).lookup("short.example.test").await.expect_err("bad A record");
    assert!(matches!(err, ResolveError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("short.example.test"), "{err}");
}

#[tokio::test]
async fn literal_addresses_need_no_query() {
    let server = TestServer::start(zone);
    let r = one(&server);
    for literal in ["192.0.2.7", "2001:db8::7", "2001:DB8::8"] {
        let got = r.lookup(literal).await.expect("literal");
        assert_eq!(got, [(literal.parse::<IpAddr>().expect("ip"), LITERAL_TTL)]);
    }
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn invalid_names_are_refused_without_a_query() {
    let server = TestServer::start(zone);
    let r = one(&server);
    let long_label = format!("{}.test", "a".repeat(64));
    let long_name = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(63)].join(".");
    for bad in [
        "*.example.test",
        "a..example.test",
        "",
        "bad!name.test",
        long_label.as_str(),
        long_name.as_str(),
    ] {
        let err = r.lookup(bad).await.expect_err("invalid");
        assert!(
            matches!(err, ResolveError::InvalidName { ref host, .. } if host == bad),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
    assert!(server.seen().is_empty());
}
