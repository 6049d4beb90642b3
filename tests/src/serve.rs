//! The HTTP server (the external host) and the TCP forwarder (the egress gateway).

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Binds every address, prints `ready`, then serves forever.
pub fn http_serve(listen: &[SocketAddr]) -> Result<()> {
    let mut listeners = Vec::new();
    for a in listen {
        listeners.push(TcpListener::bind(a).with_context(|| format!("binding {a}"))?);
    }
    ready();
    let handles: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            std::thread::spawn(move || {
                for conn in l.incoming().flatten() {
                    std::thread::spawn(move || {
                        if let Err(e) = http_answer(conn) {
                            eprintln!("http-serve: {e:#}");
                        }
                    });
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn http_answer(mut s: TcpStream) -> Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let local = s.local_addr()?;
    let peer = s.peer_addr()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let first = String::from_utf8_lossy(&buf).lines().next().unwrap_or("").to_string();
    eprintln!("http-serve: {peer} -> {local}: {first}");
    let body = format!("external-ok from {local}");
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes())?;
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}

/// Forwards each `(listen, to)` pair; thread per connection, both directions.
pub fn tcp_forward(pairs: &[(SocketAddr, SocketAddr)]) -> Result<()> {
    let mut listeners = Vec::new();
    for (l, to) in pairs {
        listeners.push((TcpListener::bind(l).with_context(|| format!("binding {l}"))?, *to));
    }
    ready();
    let handles: Vec<_> = listeners
        .into_iter()
        .map(|(l, to)| {
            std::thread::spawn(move || {
                for conn in l.incoming().flatten() {
                    std::thread::spawn(move || {
                        if let Err(e) = forward_one(conn, to) {
                            eprintln!("tcp-forward: {e:#}");
                        }
                    });
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn forward_one(client: TcpStream, to: SocketAddr) -> Result<()> {
    let peer = client.peer_addr()?;
    let upstream = TcpStream::connect_timeout(&to, Duration::from_secs(5)).with_context(|| format!("connecting {to}"))?;
    eprintln!("tcp-forward: {peer} -> {to} via {}", upstream.local_addr()?);
    let (mut c2, mut u2) = (client.try_clone()?, upstream.try_clone()?);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let (mut c, mut u) = (client, upstream);
    let _ = std::io::copy(&mut u, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    let _ = t.join();
    Ok(())
}

/// Tells the harness the listeners are bound.
pub fn ready() {
    println!("ready");
    let _ = std::io::stdout().flush();
}
