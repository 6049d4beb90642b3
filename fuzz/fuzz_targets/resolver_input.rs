//! What the resolver takes from outside: the text of `resolv.conf`, host
//! names from mesh objects (normalised and checked before they are sent),
//! and DNS answers with their TTLs, applied to the host table the
//! datapath follows (hickory parses the wire format; the table decides
//! how long an address is allowed).
//!
//! The table is checked against a model of the contract: an address is
//! allowed only while an answer (or a remembered answer) for its host
//! that listed it is younger than its lifetime (the TTL, at most one
//! hour); and while the per-host limit is not reached, no such address
//! is ever missing (no gap).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tollgate::resolver::name::{literal, normalize, validate, MAX_LABEL_LEN, MAX_NAME_LEN};
use tollgate::resolver::table::{MAX_ADDRESSES_PER_HOST, ONE_HOUR};
use tollgate::resolver::{HostTable, ResolvConf, ResolveError, TtlPolicy};

#[derive(Arbitrary, Debug)]
enum Op {
    /// The hosts wanted, as indexes into the input's names.
    SetHosts(Vec<u8>),
    /// An answer for a host: (address, TTL in seconds).
    Answer { host: u8, records: Vec<(Addr, u32)> },
    /// A failed lookup.
    Fail { host: u8 },
    /// Addresses remembered from a previous agent: (address, seconds left).
    Seed { host: u8, remembered: Vec<(Addr, u32)> },
    /// Time passes (seconds), then expired addresses are dropped or not.
    Wait { secs: u16, expire: bool },
}

/// Few distinct addresses, so that answers overlap.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    V4(u8),
    V6(u8),
    Wide(u16),
}

impl Addr {
    fn ip(self) -> IpAddr {
        match self {
            Addr::V4(x) => IpAddr::from([192, 0, 2, x]),
            Addr::V6(x) => IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(x)]),
            Addr::Wide(x) => IpAddr::from([198, 51, (x >> 8) as u8, x as u8]),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    resolv_conf: String,
    names: Vec<String>,
    ops: Vec<Op>,
}

fn check_name(host: &str) {
    let name = normalize(host);
    let _ = literal(host);
    match validate(host, &name) {
        Ok(()) => {
            assert!(!name.is_empty() && name.len() <= MAX_NAME_LEN, "{name:?} accepted");
            for label in name.split('.') {
                assert!(!label.is_empty() && label.len() <= MAX_LABEL_LEN, "{name:?} accepted");
                assert!(label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{name:?} accepted");
            }
            assert_eq!(normalize(&name), name, "a valid normalised name changes when normalised again");
        }
        Err(ResolveError::InvalidName { host: h, .. }) => assert_eq!(h, host, "the error names another host"),
        Err(e) => panic!("validate gave {e}"),
    }
}

fn check_resolv_conf(text: &str) {
    let conf = ResolvConf::parse(text);
    assert!((1..=3).contains(&conf.nameservers.len()), "{} name servers", conf.nameservers.len());
    assert!(conf.nameservers.iter().all(|s| s.port() == 53));
    assert!((1..=30).contains(&conf.timeout.as_secs()), "timeout {:?}", conf.timeout);
    assert!((1..=5).contains(&conf.attempts), "attempts {}", conf.attempts);
}

/// The contract: host → address → until when it may be allowed.
#[derive(Default)]
struct Model {
    until: BTreeMap<String, BTreeMap<IpAddr, Instant>>,
    /// Hosts that were given more addresses than the table keeps: the
    /// table may drop some early (the limit), never keep one late.
    over_limit: BTreeSet<String>,
}

impl Model {
    fn give(&mut self, host: &str, now: Instant, ips: impl Iterator<Item = (IpAddr, Duration)>) {
        let m = self.until.entry(host.to_owned()).or_default();
        for (ip, life) in ips {
            let until = now + life;
            let e = m.entry(ip).or_insert(until);
            *e = (*e).max(until);
        }
        if m.len() > MAX_ADDRESSES_PER_HOST {
            self.over_limit.insert(host.to_owned());
        }
    }
}

fn check_table(names: &[String], ops: &[Op]) {
    let policy = TtlPolicy::default();
    let mut table = HostTable::new(policy);
    let mut model = Model::default();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let start = Instant::now();
    let mut now = start;
    let name = |i: u8| names.get(usize::from(i) % names.len().max(1)).cloned().unwrap_or_default();
    for op in ops.iter().take(64) {
        match op {
            Op::SetHosts(which) => {
                let hosts: Vec<String> = which.iter().map(|i| name(*i)).collect();
                table.set_hosts(hosts.clone());
                let new: BTreeSet<String> = hosts.iter().map(|h| normalize(h)).collect();
                for gone in wanted.difference(&new) {
                    model.until.remove(gone);
                    model.over_limit.remove(gone);
                }
                wanted = new;
            }
            Op::Answer { host, records } => {
                let host = name(*host);
                let answer: Vec<(IpAddr, Duration)> =
                    records.iter().map(|(a, ttl)| (a.ip(), Duration::from_secs(u64::from(*ttl)))).collect();
                table.record(&host, now, Ok(answer.clone()));
                if wanted.contains(&normalize(&host)) {
                    let distinct: BTreeSet<IpAddr> = answer.iter().map(|(ip, _)| *ip).collect();
                    if distinct.len() > MAX_ADDRESSES_PER_HOST {
                        model.over_limit.insert(normalize(&host));
                    }
                    model.give(&normalize(&host), now, answer.into_iter().map(|(ip, ttl)| (ip, policy.lifetime(ttl))));
                }
            }
            Op::Fail { host } => {
                let host = name(*host);
                table.record(&host, now, Err(ResolveError::Setup("no answer".into())));
            }
            Op::Seed { host, remembered } => {
                let host = name(*host);
                let seeds: Vec<(IpAddr, Duration)> =
                    remembered.iter().map(|(a, s)| (a.ip(), Duration::from_secs(u64::from(*s)))).collect();
                table.seed(&host, now, &seeds);
                if wanted.contains(&normalize(&host)) {
                    let kept = seeds.iter().take(MAX_ADDRESSES_PER_HOST).map(|(ip, left)| (*ip, (*left).min(policy.max)));
                    model.give(&normalize(&host), now, kept);
                }
            }
            Op::Wait { secs, expire } => {
                now += Duration::from_secs(u64::from(*secs));
                if *expire {
                    let before = table.addresses(now);
                    table.expire(now);
                    assert_eq!(table.addresses(now), before, "expire changed what is valid now");
                }
            }
        }
        check_against_model(&table, &model, &wanted, now);
    }
}

fn check_against_model(table: &HostTable, model: &Model, wanted: &BTreeSet<String>, now: Instant) {
    let addresses = table.addresses(now);
    let hosts: BTreeSet<&String> = addresses.keys().collect();
    assert_eq!(hosts, wanted.iter().collect(), "the table's hosts are not the wanted ones");
    let empty = BTreeMap::new();
    for (host, ips) in &addresses {
        let allowed = model.until.get(host).unwrap_or(&empty);
        assert!(ips.len() <= MAX_ADDRESSES_PER_HOST, "{host}: {} addresses", ips.len());
        for ip in ips {
            let until = allowed.get(ip).unwrap_or_else(|| panic!("{host}: {ip} was never answered"));
            assert!(now < *until, "{host}: {ip} still allowed {:?} after its lifetime", now - *until);
        }
        if !model.over_limit.contains(host) {
            for (ip, until) in allowed {
                assert!(now >= *until || ips.contains(ip), "{host}: {ip} missing while still valid (a gap)");
            }
        }
    }
    for (host, lives) in table.lifetimes(now) {
        for (ip, left) in lives {
            assert!(left <= ONE_HOUR, "{host}: {ip} has {left:?} left, more than one hour");
        }
    }
}

fuzz_target!(|input: Input| {
    check_resolv_conf(&input.resolv_conf);
    for n in &input.names {
        check_name(n);
    }
    check_table(&input.names, &input.ops);
});
