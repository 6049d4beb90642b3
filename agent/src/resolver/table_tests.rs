//! Tests of the host table, and of rounds of lookups over it (with a
//! scripted lookup).
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::table::{HostTable, TtlPolicy, MAX_ADDRESSES_PER_HOST, MIN_INTERVAL};
use super::ResolveError;

/// One serial round of due lookups, each counted as made at `now`, then
/// expiry (the agent runs the lookups in parallel: `runtime::hosts`).
fn refresh(table: &mut HostTable, lookup: &Scripted, now: Instant) -> bool {
    let mut changed = false;
    for host in table.due(now) {
        let result = lookup.lookup(&host);
        changed |= table.record(&host, now, result);
    }
    table.expire(now) | changed
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip literal")
}

fn v4(i: u32) -> IpAddr {
    IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i))
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn answer(records: &[(&str, u64)]) -> Result<Vec<(IpAddr, Duration)>, ResolveError> {
    Ok(records.iter().map(|(a, ttl)| (ip(a), secs(*ttl))).collect())
}

fn failure() -> Result<Vec<(IpAddr, Duration)>, ResolveError> {
    Err(ResolveError::Timeout {
        host: "h.test".into(),
        server: "192.0.2.53:53".parse().expect("addr"),
    })
}

fn table(hosts: &[&str]) -> HostTable {
    let mut t = HostTable::new(TtlPolicy::default());
    t.set_hosts(hosts.iter().map(|h| h.to_string()));
    t
}

fn addrs(t: &HostTable, host: &str, at: Instant) -> Vec<IpAddr> {
    t.addresses(at).remove(host).expect("host is wanted")
}

#[test]
fn first_resolution() {
    let t0 = Instant::now();
    let mut t = HostTable::new(TtlPolicy::default());
    assert!(t.set_hosts([
        "HttpBin.org.".to_string(),
        "example.com".to_string(),
        "httpbin.org".to_string()
    ]));
    assert_eq!(t.due(t0), ["example.com", "httpbin.org"]);
    assert_eq!(
        t.addresses(t0),
        BTreeMap::from([("example.com".to_string(), vec![]), ("httpbin.org".to_string(), vec![])])
    );
    assert!(t.record(
        "httpbin.org",
        t0,
        answer(&[("203.0.113.2", 60), ("2001:db8::1", 60), ("203.0.113.1", 60)])
    ));
    assert_eq!(
        addrs(&t, "httpbin.org", t0),
        [ip("203.0.113.1"), ip("203.0.113.2"), ip("2001:db8::1")]
    );
    assert_eq!(t.due(t0), ["example.com"]);
    // The same answer again changes nothing.
    assert!(!t.record(
        "HTTPBIN.org.",
        t0 + secs(1),
        answer(&[("203.0.113.1", 60), ("203.0.113.2", 60)])
    ));
    // Asking for the same hosts again is no change.
    assert!(!t.set_hosts(["example.com".to_string(), "httpbin.org.".to_string()]));
}

#[test]
fn round_robin_keeps_an_old_address_until_its_own_expiry() {
    let t0 = Instant::now();
    let mut t = table(&["rr.test"]);
    t.record("rr.test", t0, answer(&[("192.0.2.1", 30), ("192.0.2.2", 30)]));
    // The next answer no longer lists .1 but brings .3.
    assert!(t.record(
        "rr.test",
        t0 + secs(27),
        answer(&[("192.0.2.2", 30), ("192.0.2.3", 30)])
    ));
    let all = [ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")];
    assert_eq!(addrs(&t, "rr.test", t0 + secs(29)), all);
    assert!(!t.expire(t0 + secs(29)));
    // .1 goes exactly when its own TTL runs out, the others stay.
    assert_eq!(addrs(&t, "rr.test", t0 + secs(30)), all[1..]);
    assert!(t.expire(t0 + secs(30)));
    assert_eq!(addrs(&t, "rr.test", t0 + secs(30)), all[1..]);
    assert!(!t.expire(t0 + secs(31)));
}

#[test]
fn an_address_keeps_the_later_expiry() {
    let t0 = Instant::now();
    let mut t = table(&["h.test"]);
    t.record("h.test", t0, answer(&[("192.0.2.1", 100)]));
    // A later answer with a shorter TTL does not shorten it...
    assert!(!t.record("h.test", t0 + secs(10), answer(&[("192.0.2.1", 20)])));
    assert_eq!(addrs(&t, "h.test", t0 + secs(99)), [ip("192.0.2.1")]);
    assert!(addrs(&t, "h.test", t0 + secs(100)).is_empty());
    // ...and one with a longer TTL extends it.
    t.record("h.test", t0 + secs(90), answer(&[("192.0.2.1", 60)]));
    assert_eq!(addrs(&t, "h.test", t0 + secs(149)), [ip("192.0.2.1")]);
    // An address listed twice in one answer takes the longer TTL.
    let mut t = table(&["h.test"]);
    t.record("h.test", t0, answer(&[("192.0.2.9", 10), ("192.0.2.9", 50)]));
    assert_eq!(addrs(&t, "h.test", t0 + secs(49)), [ip("192.0.2.9")]);
}

#[test]
fn failure_keeps_addresses_until_they_expire_then_fails_closed() {
    let t0 = Instant::now();
    let mut t = table(&["h.test"]);
    t.record("h.test", t0, answer(&[("192.0.2.1", 10)]));
    assert_eq!(t.due(t0 + secs(9)), ["h.test"]);
    assert!(!t.record("h.test", t0 + secs(9), failure()));
    let status = t.status(t0 + secs(9));
    assert_eq!(status[0].addresses, ["192.0.2.1"]);
    assert!(
        status[0].error.as_deref().is_some_and(|e| e.contains("timed out")),
        "{status:?}"
    );
    // Retried after `retry` (5 s), not before.
    assert!(t.due(t0 + secs(13)).is_empty());
    assert_eq!(t.due(t0 + secs(14)), ["h.test"]);
    // Meanwhile the address runs out and is dropped.
    assert_eq!(addrs(&t, "h.test", t0 + secs(9)), [ip("192.0.2.1")]);
    assert!(t.expire(t0 + secs(10)));
    assert!(addrs(&t, "h.test", t0 + secs(10)).is_empty());
    assert!(!t.record("h.test", t0 + secs(14), failure()));
    assert!(addrs(&t, "h.test", t0 + secs(14)).is_empty());
    // A later success clears the error.
    assert!(t.record("h.test", t0 + secs(19), answer(&[("192.0.2.1", 10)])));
    assert_eq!(t.status(t0 + secs(19))[0].error, None);
}

#[test]
fn ttls_are_clamped_to_at_least_5_s_and_at_most_one_hour() {
    let t0 = Instant::now();
    let mut t = table(&["h.test"]);
    t.record("h.test", t0, answer(&[("192.0.2.1", 0), ("192.0.2.2", 2 * 86_400)]));
    assert_eq!(
        addrs(&t, "h.test", t0 + Duration::from_millis(4_999)),
        [ip("192.0.2.1"), ip("192.0.2.2")]
    );
    assert_eq!(addrs(&t, "h.test", t0 + secs(5)), [ip("192.0.2.2")]);
    // A TTL of two days lives one hour, and is asked again before.
    assert_eq!(addrs(&t, "h.test", t0 + secs(3599)), [ip("192.0.2.2")]);
    assert!(addrs(&t, "h.test", t0 + secs(3600)).is_empty());
    assert!(t.next_deadline().expect("scheduled") <= t0 + secs(3600));

    let p = TtlPolicy::default();
    assert_eq!(
        (p.lifetime(secs(0)), p.lifetime(secs(30)), p.lifetime(Duration::MAX)),
        (secs(5), secs(30), secs(3600))
    );
    let crossed = TtlPolicy {
        min: secs(100),
        max: secs(10),
        retry: secs(1),
    };
    assert_eq!(crossed.lifetime(secs(50)), secs(10), "max wins when min and max cross");
    let unbounded = TtlPolicy {
        min: secs(0),
        max: Duration::MAX,
        retry: secs(0),
    };
    assert_eq!(unbounded.lifetime(Duration::MAX), secs(i32::MAX as u64));
    // Literal addresses come with the largest TTL and must not overflow.
    let mut t = HostTable::new(unbounded);
    t.set_hosts(["192.0.2.7".to_string()]);
    assert!(t.record("192.0.2.7", t0, Ok(vec![(ip("192.0.2.7"), super::LITERAL_TTL)])));
}

#[test]
fn a_changed_answer_drops_old_addresses_within_one_hour() {
    let t0 = Instant::now();
    let mut t = table(&["moved.test"]);
    // A day-long TTL, then the name moves to another address; the server
    // keeps answering the new one with the same long TTL.
    t.record("moved.test", t0, answer(&[("192.0.2.1", 86_400)]));
    let mut now = t0;
    let mut last_seen_old = t0;
    while now < t0 + secs(3 * 3600) {
        now = t.next_deadline().expect("scheduled").max(now + MIN_INTERVAL);
        t.record("moved.test", now, answer(&[("192.0.2.2", 86_400)]));
        t.expire(now);
        if addrs(&t, "moved.test", now).contains(&ip("192.0.2.1")) {
            last_seen_old = now;
        }
    }
    assert!(last_seen_old < t0 + secs(3600), "the old address lived until {:?}", last_seen_old - t0);
    assert_eq!(addrs(&t, "moved.test", now), [ip("192.0.2.2")]);
    // Asked again at 90% of the hour, never later.
    assert!(t.next_deadline().expect("scheduled") <= now + secs(3240));
}

#[test]
fn hosts_are_resolved_again_before_their_answer_expires() {
    let t0 = Instant::now();
    let p = TtlPolicy::default();
    // 90% of the TTL, at least 1 s before expiry, not before half of it.
    assert_eq!(p.refresh_after(secs(300)), secs(270));
    assert_eq!(p.refresh_after(secs(5)), secs(4));
    assert_eq!(p.refresh_after(secs(3600)), secs(3240));
    assert_eq!(p.refresh_after(Duration::from_millis(1500)), MIN_INTERVAL);
    assert_eq!(p.refresh_after(secs(0)), MIN_INTERVAL);

    let mut t = table(&["h.test"]);
    // The shortest TTL of the answer decides.
    t.record("h.test", t0, answer(&[("192.0.2.1", 300), ("192.0.2.2", 60)]));
    assert!(t.due(t0 + Duration::from_millis(53_999)).is_empty());
    assert_eq!(t.due(t0 + secs(54)), ["h.test"]);
    // An answer without addresses (NXDOMAIN) is asked again after `retry`.
    let mut t = table(&["gone.test"]);
    assert!(!t.record("gone.test", t0, Ok(vec![])));
    assert!(t.due(t0 + secs(4)).is_empty());
    assert_eq!(t.due(t0 + secs(5)), ["gone.test"]);
    assert_eq!(t.status(t0)[0].error, None);
    // A zero retry does not spin.
    let mut t = HostTable::new(TtlPolicy {
        retry: Duration::ZERO,
        ..TtlPolicy::default()
    });
    t.set_hosts(["h.test".to_string()]);
    t.record("h.test", t0, failure());
    assert!(t.due(t0).is_empty());
    assert_eq!(t.next_deadline(), Some(t0 + MIN_INTERVAL));
}

#[test]
fn set_hosts_forgets_removed_hosts() {
    let t0 = Instant::now();
    let mut t = table(&["a.test", "b.test"]);
    t.record("a.test", t0, answer(&[("192.0.2.1", 60)]));
    t.record("b.test", t0, answer(&[("192.0.2.2", 60)]));
    assert!(t.set_hosts(["b.test".to_string()]));
    assert_eq!(
        t.addresses(t0),
        BTreeMap::from([("b.test".to_string(), vec![ip("192.0.2.2")])])
    );
    // A late result for the removed host is ignored.
    assert!(!t.record("a.test", t0, answer(&[("192.0.2.1", 60)])));
    assert!(!t.addresses(t0).contains_key("a.test"));
    // Wanted again: it starts from scratch.
    assert!(t.set_hosts(["a.test".to_string(), "b.test".to_string()]));
    assert_eq!(t.due(t0), ["a.test"]);
    assert!(t.set_hosts(Vec::<String>::new()));
    assert!(t.addresses(t0).is_empty());
}

#[test]
fn next_deadline_is_the_earliest_refresh_or_expiry() {
    let t0 = Instant::now();
    let mut t = HostTable::new(TtlPolicy::default());
    assert_eq!(t.next_deadline(), None);
    t.set_hosts(["a.test".to_string(), "b.test".to_string()]);
    assert_eq!(
        t.next_deadline(),
        None,
        "unresolved hosts are due at once, not scheduled"
    );
    t.record("a.test", t0, answer(&[("192.0.2.1", 100)]));
    assert_eq!(t.next_deadline(), Some(t0 + secs(90)));
    t.record("b.test", t0, answer(&[("192.0.2.2", 20)]));
    assert_eq!(t.next_deadline(), Some(t0 + secs(18)));
    // A failure schedules the retry; a lingering address's expiry counts too.
    t.record("b.test", t0 + secs(18), failure());
    assert_eq!(t.next_deadline(), Some(t0 + secs(20)));
    t.expire(t0 + secs(20));
    assert_eq!(t.next_deadline(), Some(t0 + secs(23)));
}

#[test]
fn status_reports_addresses_expiry_and_error() {
    let t0 = Instant::now();
    let mut t = table(&["a.test", "b.test", "c.test"]);
    t.record("a.test", t0, answer(&[("192.0.2.1", 30), ("2001:db8::1", 60)]));
    t.record("b.test", t0, failure());
    let status = t.status(t0 + Duration::from_millis(500));
    assert_eq!(status.len(), 3);
    assert_eq!(
        (status[0].host.as_str(), status[0].addresses.clone()),
        ("a.test", vec!["192.0.2.1".into(), "2001:db8::1".into()])
    );
    assert_eq!(status[0].expires_in_s, Some(30));
    assert_eq!((status[1].addresses.len(), status[1].expires_in_s), (0, None));
    assert!(status[1].error.is_some());
    assert_eq!((status[2].error.clone(), status[2].expires_in_s), (None, None));
    let json = serde_json::to_value(&status[0]).expect("serializes");
    assert_eq!(
        json,
        serde_json::json!({"host": "a.test", "addresses": ["192.0.2.1", "2001:db8::1"], "expires_in_s": 30, "error": null})
    );
}

#[test]
fn addresses_per_host_are_bounded() {
    let t0 = Instant::now();
    let many =
        |from: u32, n: u32| -> Vec<(IpAddr, Duration)> { (from..from + n).map(|i| (v4(i), secs(600))).collect() };
    let mut t = table(&["cdn.test"]);
    t.record("cdn.test", t0, Ok(many(0, 300)));
    assert_eq!(addrs(&t, "cdn.test", t0).len(), MAX_ADDRESSES_PER_HOST);
    // A newer answer keeps all its addresses; the soonest-expiring older ones go.
    t.record("cdn.test", t0 + secs(1), Ok(many(1000, 10)));
    let now = addrs(&t, "cdn.test", t0 + secs(1));
    assert_eq!(now.len(), MAX_ADDRESSES_PER_HOST);
    assert!((1000..1010).all(|i| now.contains(&v4(i))));
}

/// A lookup answering from a script and counting calls.
struct Scripted {
    answers: BTreeMap<&'static str, Vec<(&'static str, u64)>>,
    calls: RefCell<Vec<String>>,
}

impl Scripted {
    fn lookup(&self, host: &str) -> Result<Vec<(IpAddr, Duration)>, ResolveError> {
        self.calls.borrow_mut().push(host.to_string());
        match self.answers.get(host) {
            Some(records) => answer(records),
            None => failure(),
        }
    }
}

#[test]
fn refresh_resolves_due_hosts_and_expires() {
    let t0 = Instant::now();
    let lookup = Scripted {
        answers: BTreeMap::from([("a.test", vec![("192.0.2.1", 60)]), ("b.test", vec![("192.0.2.2", 10)])]),
        calls: RefCell::new(Vec::new()),
    };
    let mut t = table(&["a.test", "b.test", "down.test"]);
    assert!(refresh(&mut t, &lookup, t0));
    assert_eq!(*lookup.calls.borrow(), ["a.test", "b.test", "down.test"]);
    assert_eq!(addrs(&t, "a.test", t0), [ip("192.0.2.1")]);
    assert_eq!(addrs(&t, "b.test", t0), [ip("192.0.2.2")]);
    // Nothing due: no lookups, no change.
    lookup.calls.borrow_mut().clear();
    assert!(!refresh(&mut t, &lookup, t0 + secs(1)));
    assert!(lookup.calls.borrow().is_empty());
    // At the next deadline only the due hosts are asked.
    let next = t.next_deadline().expect("scheduled");
    assert_eq!(next, t0 + secs(5));
    assert!(!refresh(&mut t, &lookup, next));
    assert_eq!(*lookup.calls.borrow(), ["down.test"]);
    // b.test stops answering; its address is dropped once it expires.
    let lookup = Scripted {
        answers: BTreeMap::from([("a.test", vec![("192.0.2.1", 60)])]),
        calls: RefCell::new(Vec::new()),
    };
    assert!(!refresh(&mut t, &lookup, t0 + secs(9)));
    assert_eq!(*lookup.calls.borrow(), ["b.test"]);
    assert!(refresh(&mut t, &lookup, t0 + secs(10)));
    assert!(addrs(&t, "b.test", t0 + secs(10)).is_empty());
    assert_eq!(addrs(&t, "a.test", t0 + secs(10)), [ip("192.0.2.1")]);
}

#[test]
fn seeded_addresses_last_their_remaining_time_and_the_host_stays_due() {
    let t0 = Instant::now();
    let mut t = table(&["h.test"]);
    assert!(!t.seed("other.test", t0, &[(ip("192.0.2.9"), secs(60))]), "not wanted: ignored");
    assert!(t.seed("H.test.", t0, &[(ip("192.0.2.1"), secs(20)), (ip("192.0.2.2"), secs(40))]));
    assert_eq!(t.due(t0), ["h.test"], "a remembered answer does not replace a lookup");
    assert_eq!(addrs(&t, "h.test", t0 + secs(19)), [ip("192.0.2.1"), ip("192.0.2.2")]);
    assert_eq!(addrs(&t, "h.test", t0 + secs(20)), [ip("192.0.2.2")]);
    let left = t.lifetimes(t0 + secs(10));
    assert_eq!(left["h.test"], [(ip("192.0.2.1"), secs(10)), (ip("192.0.2.2"), secs(30))]);
    // A remembered lifetime longer than the policy's maximum is capped.
    let mut capped = table(&["h.test"]);
    capped.seed("h.test", t0, &[(ip("192.0.2.9"), secs(86_400))]);
    assert_eq!(capped.lifetimes(t0)["h.test"], [(ip("192.0.2.9"), secs(3600))]);
    // A new answer without them keeps them until they run out.
    assert!(t.record("h.test", t0 + secs(1), answer(&[("192.0.2.3", 10)])));
    assert_eq!(addrs(&t, "h.test", t0 + secs(5)), [ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")]);
}
