//! Minimal DNS: wire format, a UDP+TCP server for A/AAAA, and a client.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;

pub type Records = HashMap<String, Vec<IpAddr>>;

/// Parses `NAME=IP` records.
pub fn parse_records(specs: &[String]) -> Result<Records> {
    let mut r = Records::new();
    for s in specs {
        let (n, ip) = s.split_once('=').with_context(|| format!("record {s:?}: expected NAME=IP"))?;
        let ip: IpAddr = ip.parse().with_context(|| format!("record {s:?}: bad IP"))?;
        r.entry(n.trim_end_matches('.').to_ascii_lowercase()).or_default().push(ip);
    }
    Ok(r)
}

pub fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, 1 question
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// Reads a (possibly compressed) name at `pos`; returns it and the offset after it.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *msg.get(pos).context("truncated name")? as usize;
        if len & 0xc0 == 0xc0 {
            let ptr = ((len & 0x3f) << 8) | *msg.get(pos + 1).context("truncated pointer")? as usize;
            end.get_or_insert(pos + 2);
            pos = ptr;
            continue;
        }
        if len == 0 {
            return Ok((labels.join("."), end.unwrap_or(pos + 1)));
        }
        let l = msg.get(pos + 1..pos + 1 + len).context("truncated label")?;
        labels.push(String::from_utf8_lossy(l).to_ascii_lowercase());
        pos += 1 + len;
    }
    bail!("name too long or looping")
}

/// TTL of the answers unless `dns-serve --ttl` says otherwise.
pub const DEFAULT_TTL: u32 = 30;

/// Builds the answer to a query from the records (NXDOMAIN for unknown
/// names), each answer with `ttl` seconds.
pub fn answer(query: &[u8], records: &Records, ttl: u32) -> Result<Vec<u8>> {
    if query.len() < 12 {
        bail!("short query");
    }
    let (name, after) = read_name(query, 12)?;
    let qtype = u16::from_be_bytes([query[after], *query.get(after + 1).context("no qtype")?]);
    let question = &query[12..after + 4];
    let ips = records.get(&name);
    let ans: Vec<IpAddr> = ips
        .map(|v| {
            v.iter()
                .copied()
                .filter(|ip| (qtype == TYPE_A && ip.is_ipv4()) || (qtype == TYPE_AAAA && ip.is_ipv6()))
                .collect()
        })
        .unwrap_or_default();
    let rcode = if ips.is_none() { 3 } else { 0 };
    let mut r = Vec::new();
    r.extend_from_slice(&query[0..2]);
    r.push(0x84 | (query[2] & 0x01)); // QR, AA, RD copied
    r.push(rcode);
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(ans.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(question);
    for ip in ans {
        r.extend_from_slice(&[0xc0, 0x0c]);
        r.extend_from_slice(&qtype.to_be_bytes());
        r.extend_from_slice(&1u16.to_be_bytes());
        r.extend_from_slice(&ttl.to_be_bytes());
        match ip {
            IpAddr::V4(a) => {
                r.extend_from_slice(&4u16.to_be_bytes());
                r.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                r.extend_from_slice(&16u16.to_be_bytes());
                r.extend_from_slice(&a.octets());
            }
        }
    }
    Ok(r)
}

/// Parses a response: (rcode, A/AAAA answers).
pub fn parse_response(msg: &[u8], id: u16) -> Result<(u8, Vec<IpAddr>)> {
    if msg.len() < 12 {
        bail!("short response");
    }
    if u16::from_be_bytes([msg[0], msg[1]]) != id {
        bail!("response id mismatch");
    }
    let rcode = msg[3] & 0x0f;
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        pos = read_name(msg, pos)?.1;
        let hdr = msg.get(pos..pos + 10).context("truncated RR")?;
        let t = u16::from_be_bytes([hdr[0], hdr[1]]);
        let len = u16::from_be_bytes([hdr[8], hdr[9]]) as usize;
        let data = msg.get(pos + 10..pos + 10 + len).context("truncated rdata")?;
        match (t, len) {
            (TYPE_A, 4) => out.push(IpAddr::from(<[u8; 4]>::try_from(data)?)),
            (TYPE_AAAA, 16) => out.push(IpAddr::from(<[u8; 16]>::try_from(data)?)),
            _ => {}
        }
        pos += 10 + len;
    }
    Ok((rcode, out))
}

/// Serves UDP and TCP on every address; prints `ready` once all are bound.
pub fn dns_serve(listen: &[SocketAddr], records: Records, ttl: u32) -> Result<()> {
    let records = Arc::new(records);
    let mut handles = Vec::new();
    let mut sockets = Vec::new();
    for a in listen {
        let u = UdpSocket::bind(a).with_context(|| format!("binding udp {a}"))?;
        let t = TcpListener::bind(a).with_context(|| format!("binding tcp {a}"))?;
        sockets.push((u, t));
    }
    crate::serve::ready();
    for (u, t) in sockets {
        let r = records.clone();
        handles.push(std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = u.recv_from(&mut buf) {
                match answer(&buf[..n], &r, ttl) {
                    Ok(resp) => {
                        eprintln!("dns-serve: udp query from {from}: {}", query_name(&buf[..n]));
                        let _ = u.send_to(&resp, from);
                    }
                    Err(e) => eprintln!("dns-serve: bad udp query from {from}: {e:#}"),
                }
            }
        }));
        let r = records.clone();
        handles.push(std::thread::spawn(move || {
            for conn in t.incoming().flatten() {
                let r = r.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve_tcp_conn(conn, &r, ttl) {
                        eprintln!("dns-serve: tcp: {e:#}");
                    }
                });
            }
        }));
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// `name/TYPE` of a query, for the log.
fn query_name(q: &[u8]) -> String {
    match read_name(q, 12) {
        Ok((name, after)) => match q.get(after..after + 2) {
            Some(&[a, b]) => format!("{name}/{}", u16::from_be_bytes([a, b])),
            _ => name,
        },
        Err(e) => format!("<{e}>"),
    }
}

fn serve_tcp_conn(mut s: TcpStream, r: &Records, ttl: u32) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    eprintln!("dns-serve: tcp query from {}", s.peer_addr()?);
    loop {
        let mut len = [0u8; 2];
        if s.read_exact(&mut len).is_err() {
            return Ok(());
        }
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut q)?;
        let resp = answer(&q, r, ttl)?;
        s.write_all(&(resp.len() as u16).to_be_bytes())?;
        s.write_all(&resp)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let recs = parse_records(&["edition.cnn.com=203.0.113.10".into(), "edition.cnn.com=2001:db8:113::10".into()]).unwrap();
        let q = encode_query(7, "edition.cnn.com", TYPE_AAAA);
        let resp = answer(&q, &recs, 5).unwrap();
        let (rc, a) = parse_response(&resp, 7).unwrap();
        assert_eq!((rc, a), (0, vec!["2001:db8:113::10".parse::<IpAddr>().unwrap()]));
        // The answer's TTL follows the query (echoed) and name pointer, type, class.
        let at = q.len() + 6;
        assert_eq!(resp[at..at + 4], 5u32.to_be_bytes());
        let q = encode_query(8, "nope.example", TYPE_A);
        let (rc, a) = parse_response(&answer(&q, &recs, DEFAULT_TTL).unwrap(), 8).unwrap();
        assert_eq!((rc, a.len()), (3, 0));
    }
}
