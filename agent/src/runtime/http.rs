//! `--metrics-addr`: Prometheus metrics and health probes, served by a
//! plain thread (one request at a time is plenty for a scraper and a
//! kubelet).
use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use tracing::{info, warn};

use crate::{
    cli::counters,
    datapath::{bpffs::PinDir, pinned::Maps},
};

/// Generation of the last successful apply (0: not ready yet).
pub type Generation = Arc<AtomicU64>;

pub fn spawn(addr: &str, bpffs: PathBuf, generation: Generation) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    info!(%addr, "serving /metrics, /healthz and /readyz");
    std::thread::Builder::new().name("http".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Err(e) = serve(stream, &bpffs, &generation) {
                warn!(error = %e, "http request failed");
            }
        }
    })?;
    Ok(())
}

fn serve(mut stream: TcpStream, bpffs: &std::path::Path, generation: &Generation) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match path {
        "/healthz" => ("200 OK", "ok\n".to_string()),
        "/readyz" if generation.load(Ordering::Relaxed) > 0 => ("200 OK", "ready\n".to_string()),
        "/readyz" => ("503 Service Unavailable", "datapath not applied yet\n".to_string()),
        "/metrics" => match metrics(bpffs, generation.load(Ordering::Relaxed)) {
            Ok(m) => ("200 OK", m),
            Err(e) => ("500 Internal Server Error", format!("{e}\n")),
        },
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The Prometheus text exposition of the counters.
pub fn metrics(bpffs: &std::path::Path, generation: u64) -> Result<String, String> {
    let maps = Maps::open_pinned(&PinDir::new(bpffs)).map_err(|e| e.to_string())?;
    let c = counters::read(&maps).map_err(|e| e.to_string())?;
    let mut out = String::new();
    out.push_str("# HELP tollgate_apply_generation Number of times the agent applied a new desired state.\n");
    out.push_str("# TYPE tollgate_apply_generation counter\n");
    out.push_str(&format!("tollgate_apply_generation {generation}\n"));
    out.push_str("# HELP tollgate_node_packets_total Packets of enforced pods on this node, by verdict.\n");
    out.push_str("# TYPE tollgate_node_packets_total counter\n");
    for (verdict, n) in [("allowed", c.node.allowed_packets), ("dropped", c.node.dropped_packets), ("audited", c.node.audited_packets)] {
        out.push_str(&format!("tollgate_node_packets_total{{verdict=\"{verdict}\"}} {n}\n"));
    }
    out.push_str("# HELP tollgate_node_bytes_total Bytes of enforced pods on this node, by verdict.\n");
    out.push_str("# TYPE tollgate_node_bytes_total counter\n");
    for (verdict, n) in [("allowed", c.node.allowed_bytes), ("dropped", c.node.dropped_bytes), ("audited", c.node.audited_bytes)] {
        out.push_str(&format!("tollgate_node_bytes_total{{verdict=\"{verdict}\"}} {n}\n"));
    }
    out.push_str("# HELP tollgate_workload_packets_total Packets per pod, by verdict.\n");
    out.push_str("# TYPE tollgate_workload_packets_total counter\n");
    for w in &c.workloads {
        let (ns, pod) = (label(&w.namespace), label(&w.pod));
        for (verdict, n) in [("allowed", w.totals.allowed_packets), ("dropped", w.totals.dropped_packets), ("audited", w.totals.audited_packets)] {
            out.push_str(&format!("tollgate_workload_packets_total{{namespace=\"{ns}\",pod=\"{pod}\",verdict=\"{verdict}\"}} {n}\n"));
        }
    }
    Ok(out)
}
