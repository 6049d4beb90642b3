//! Tests of the resolver task: scripted lookups for its scheduling, and
//! the real client against the test DNS server on loopback end to end.
use super::*;
use crate::resolver::error::RCODE_NOERROR;
use crate::resolver::test_server::{a, respond, Reply, TestServer, TYPE_A};
use crate::resolver::{LookupFuture, ResolvConf};

/// Answers each name after its own delay.
struct Scripted(BTreeMap<&'static str, (Duration, &'static str)>);

impl Lookup for Scripted {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        Box::pin(async move {
            let (delay, ip) = self.0.get(host).copied().ok_or_else(|| ResolveError::Setup(format!("{host}: unknown")))?;
            tokio::time::sleep(delay).await;
            Ok(vec![(ip.parse().expect("ip"), Duration::from_secs(30))])
        })
    }
}

fn scripted(script: Scripted) -> Lookups {
    let lookup: Arc<dyn Lookup> = Arc::new(script);
    Arc::new(move || Ok(Arc::clone(&lookup)))
}

/// A resolver task answering `name` with `ip` after `delay_ms`.
fn answering(script: &[(&'static str, u64, &'static str)]) -> HostResolver {
    let script = script.iter().map(|(name, delay_ms, ip)| (*name, (Duration::from_millis(*delay_ms), *ip)));
    HostResolver::spawn_with(scripted(Scripted(script.collect())), Remembered::new())
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip literal")
}

fn names(hosts: &[&str]) -> BTreeSet<String> {
    hosts.iter().map(|h| h.to_string()).collect()
}

/// Waits (10 s at most) until the published state satisfies `what`.
async fn wait_for(resolver: &HostResolver, what: impl Fn(&Published) -> bool) -> Published {
    let mut rx = resolver.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|p| what(p))).await;
    resolver.published()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_name_server_delays_only_its_own_names() {
    let resolver = answering(&[("fast.test", 0, "192.0.2.1"), ("slow.test", 1500, "192.0.2.2")]);
    let started = std::time::Instant::now();
    resolver.want(&names(&["fast.test", "slow.test"]));
    let p = wait_for(&resolver, |p| p.addresses.get("fast.test").is_some_and(|a| !a.is_empty())).await;
    assert!(started.elapsed() < Duration::from_millis(1000), "fast.test waited for slow.test: {:?}", started.elapsed());
    assert_eq!(p.addresses["fast.test"], [ip("192.0.2.1")]);
    assert!(!p.settled, "slow.test is still being looked up");
    assert!(resolver.settled(Duration::from_secs(10)).await);
    let p = resolver.published();
    assert_eq!(p.addresses["slow.test"], [ip("192.0.2.2")]);
    // The slow answer counts from when its query was sent, not from a
    // round that started before it.
    let slow = p.status.iter().find(|s| s.host == "slow.test").expect("status of slow.test");
    assert!(slow.expires_in_s.is_some_and(|s| s >= 28), "{slow:?}");
}

#[tokio::test]
async fn subscribers_are_woken_by_new_addresses_and_a_new_want_unsettles() {
    let resolver = answering(&[("a.test", 0, "192.0.2.1"), ("b.test", 300, "192.0.2.2")]);
    let mut rx = resolver.subscribe();
    rx.borrow_and_update();
    resolver.want(&names(&["a.test"]));
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("woken within 10 s")
        .expect("task alive");
    assert!(resolver.settled(Duration::from_secs(10)).await);
    assert_eq!(resolver.published().addresses["a.test"], [ip("192.0.2.1")]);
    // A new set is not settled before the task has asked about it, even
    // though the last state it published was.
    resolver.want(&names(&["a.test", "b.test"]));
    assert!(!resolver.published().settled);
    assert!(resolver.settled(Duration::from_secs(10)).await);
    let p = resolver.published();
    assert_eq!((p.wanted_version, p.addresses["b.test"].clone()), (2, vec![ip("192.0.2.2")]));
    // Names no longer wanted are forgotten.
    resolver.want(&names(&["b.test"]));
    let p = wait_for(&resolver, |p| !p.addresses.contains_key("a.test")).await;
    assert_eq!(p.addresses.keys().collect::<Vec<_>>(), ["b.test"]);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_task() {
    let resolver = answering(&[]);
    let mut rx = resolver.subscribe();
    drop(resolver);
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while rx.changed().await.is_ok() {}
    })
    .await;
    assert!(closed.is_ok(), "the task still publishes after its handle was dropped");
}

#[tokio::test]
async fn remembered_addresses_stay_allowed_while_the_name_server_is_down() {
    let remembered = Remembered::from([("osm.test".to_owned(), vec![(ip("192.0.2.7"), Duration::from_secs(60))])]);
    let resolver = HostResolver::spawn_with(scripted(Scripted(BTreeMap::new())), remembered);
    // As in the agent, the names come after the task has started.
    tokio::time::sleep(Duration::from_millis(200)).await;
    resolver.want(&names(&["osm.test"]));
    assert!(resolver.settled(Duration::from_secs(10)).await, "the failed lookup settles the name");
    let p = resolver.published();
    assert_eq!(p.addresses["osm.test"], [ip("192.0.2.7")], "a failed lookup keeps what is still valid");
    let status = &p.status[0];
    assert!(status.error.is_some() && status.expires_in_s.is_some_and(|s| s > 50), "{status:?}");
}

#[test]
fn saved_addresses_come_back_with_the_time_they_have_left() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("hosts.json");
    assert!(load(&path).is_empty(), "no file: nothing remembered");
    let now = SystemTime::now();
    let (live, gone) = (ip("192.0.2.1"), ip("192.0.2.2"));
    let published = Published {
        expiries: BTreeMap::from([(
            "a.test".to_owned(),
            vec![(live, now + Duration::from_secs(120)), (gone, now - Duration::from_secs(1))],
        )]),
        ..Published::default()
    };
    save(&path, &published).expect("save");
    let back = load(&path);
    let left = &back["a.test"];
    assert_eq!(left.len(), 1, "expired addresses are not remembered: {left:?}");
    assert_eq!(left[0].0, live);
    assert!(left[0].1 > Duration::from_secs(110) && left[0].1 <= Duration::from_secs(120), "{left:?}");
    std::fs::write(&path, "not json").expect("write");
    assert!(load(&path).is_empty(), "a bad file is ignored");
}

#[tokio::test]
async fn one_shot_lookups_run_together_and_give_up_at_the_deadline() {
    let script = Scripted(BTreeMap::from([
        ("a.test", (Duration::from_millis(300), "192.0.2.1")),
        ("b.test", (Duration::from_millis(300), "192.0.2.2")),
        ("hung.test", (Duration::from_secs(30), "192.0.2.3")),
    ]));
    let started = std::time::Instant::now();
    let got = resolve_all(&names(&["a.test", "b.test", "hung.test"]), Arc::new(script), Duration::from_millis(900)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2000), "waited {took:?}");
    assert_eq!(got["a.test"], [ip("192.0.2.1")]);
    assert_eq!(got["b.test"], [ip("192.0.2.2")]);
    assert!(got["hung.test"].is_empty());
}

#[test]
fn resolve_once_reads_resolv_conf_inside_and_outside_a_runtime() {
    let Some(server) = TestServer::start_on_port_53(|q, _| match (q.name.as_str(), q.qtype) {
        ("one.example.test", TYPE_A) => Reply::Send(vec![respond(q, RCODE_NOERROR, false, &[a("one.example.test", 60, "192.0.2.61")])]),
        _ => Reply::Send(vec![respond(q, RCODE_NOERROR, false, &[])]),
    }) else {
        panic!("no free address in 127.83.0.0/16 for a DNS server on port 53");
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("resolv.conf");
    std::fs::write(&conf, format!("nameserver {}\noptions timeout:2 attempts:1\n", server.addr.ip())).expect("write");
    let hosts = names(&["one.example.test", "nx.example.test"]);
    let outside = resolve_once(&hosts, &conf);
    assert_eq!(outside["one.example.test"], [ip("192.0.2.61")]);
    assert!(outside["nx.example.test"].is_empty());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let inside = rt.block_on(async { resolve_once(&hosts, &conf) });
    assert_eq!(inside, outside);
}

/// The real client and task against a server that answers with a TTL of
/// one day: the name is published with at most one hour to live.
#[tokio::test]
async fn a_day_long_ttl_from_a_real_server_lives_one_hour() {
    let server = TestServer::start(|q, _| match (q.name.as_str(), q.qtype) {
        ("long.example.test", TYPE_A) => {
            Reply::Send(vec![respond(q, RCODE_NOERROR, false, &[a("long.example.test", 86_400, "192.0.2.86")])])
        }
        _ => Reply::Send(vec![respond(q, RCODE_NOERROR, false, &[])]),
    });
    let conf = ResolvConf { nameservers: vec![server.addr], timeout: Duration::from_secs(2), attempts: 1 };
    let lookups: Lookups = Arc::new(move || Ok(Arc::new(SystemResolver::new(conf.clone())?) as Arc<dyn Lookup>));
    let resolver = HostResolver::spawn_with(lookups, Remembered::new());
    resolver.want(&names(&["long.example.test"]));
    assert!(resolver.settled(Duration::from_secs(10)).await);
    let p = resolver.published();
    assert_eq!(p.addresses["long.example.test"], [ip("192.0.2.86")]);
    let status = &p.status[0];
    assert!(status.expires_in_s.is_some_and(|s| (3590..=3600).contains(&s)), "{status:?}");
    let expiry = p.expiries["long.example.test"][0].1;
    let left = expiry.duration_since(SystemTime::now()).expect("in the future");
    assert!(left <= Duration::from_secs(3600), "saved for {left:?}");
}
