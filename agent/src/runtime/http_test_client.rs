//! A raw HTTP/1.1 client for tests of the server: sends exactly the bytes
//! given on a new connection and reads until the server closes.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for an answer that must come.
pub const GENEROUS: Duration = Duration::from_secs(10);

/// Status, head (lowercase) and body of an answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends `raw` and reads the answer until the server closes (it does after
/// one answer), within `within`.
pub async fn exchange(addr: SocketAddr, raw: &[u8], within: Duration) -> std::io::Result<Reply> {
    tokio::time::timeout(within, async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(raw).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        parse(&buf)
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {within:?}")))?
}

pub fn parse(buf: &[u8]) -> std::io::Result<Reply> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("no HTTP answer: {text:?}")))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(Reply { status, head: head.to_ascii_lowercase(), body: body.to_string() })
}

/// GET `path` with extra header lines (each ending in CRLF).
pub async fn get_with(addr: SocketAddr, path: &str, headers: &str) -> Reply {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: tollgate\r\n{headers}\r\n");
    exchange(addr, raw.as_bytes(), GENEROUS).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    get_with(addr, path, "").await
}
