//! `bench throughput`: real traffic from a pod to the gateway (the allowed
//! path) through no filter, Tollgate, iptables and nftables, interleaved.
//!
//! Every round runs one slice per (kind, setup), the setups in a new
//! shuffled order for each kind and round, so that drift of this shared
//! machine spreads over every setup alike. Each slice is divided by the
//! no-filter slice of the same round and kind; the table shows the median
//! of those ratios over the rounds. The whole is done `runs` times, and the
//! runs are compared: they should agree within 5 %.
use crate::bench::load::{Kind, Slice};
use crate::bench::report::{median, si, Report, Table};
use crate::bench::world::{self, Filter, Setup, World};
use anyhow::Result;
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct Options {
    pub sizes: Vec<usize>,
    pub rounds: usize,
    pub slice: Duration,
    pub runs: usize,
    pub kinds: Vec<Kind>,
    /// The filters compared with no filter.
    pub filters: Vec<Filter>,
}

impl Options {
    pub fn full() -> Options {
        Options { sizes: world::SIZES.to_vec(), rounds: 5, slice: Duration::from_millis(1000), runs: 2, kinds: Kind::ALL.to_vec(), filters: FILTERS.to_vec() }
    }

    pub fn quick() -> Options {
        Options { sizes: vec![10], rounds: 2, slice: Duration::from_millis(200), runs: 1, kinds: Kind::ALL.to_vec(), filters: FILTERS.to_vec() }
    }
}

pub const FILTERS: [Filter; 3] = [Filter::Tollgate, Filter::Iptables, Filter::Nftables];

/// One slice, recorded.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub run: usize,
    pub round: usize,
    pub setup: String,
    pub slice: Slice,
    /// rate / the same round's no-filter rate.
    pub ratio: f64,
}

/// A setup's summary for one kind in one run.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    pub setup: String,
    pub filter: Filter,
    pub n: usize,
    pub kind: Kind,
    pub median_rate: f64,
    pub median_ratio: f64,
    pub min_ratio: f64,
    pub max_ratio: f64,
}

/// A small xorshift generator: shuffles need no crate.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
        Rng(t | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

pub fn run(e2e_bin: &Path, tollgate_bin: &Path, opts: &Options, json: Option<&Path>) -> Result<()> {
    let setups = world::setups(&opts.sizes, &opts.filters)?;
    eprintln!("[bench] building {} setups (netns, cgroups, firewalls, agent)", setups.len());
    let t = Instant::now();
    let w = World::build(e2e_bin, tollgate_bin, setups)?;
    eprintln!("[bench] ready in {:.1}s", t.elapsed().as_secs_f64());
    // Warm-up: one short slice of each kind from each setup (ARP, caches,
    // and a failing setup fails here rather than mid-run).
    for s in &w.setups {
        for &k in &opts.kinds {
            w.slice(s, k, Duration::from_millis(100))?;
        }
    }
    let mut rng = Rng::seeded();
    let mut samples = Vec::new();
    for run in 1..=opts.runs {
        for round in 1..=opts.rounds {
            eprintln!("[bench] run {run}/{}, round {round}/{}", opts.runs, opts.rounds);
            for &kind in &opts.kinds {
                // The baseline twice (its mean is the reference), so that
                // one unlucky baseline slice does not skew a whole round.
                let mut order: Vec<usize> = (0..w.setups.len()).chain([0]).collect();
                rng.shuffle(&mut order);
                let mut got: Vec<(usize, Slice)> = Vec::new();
                for i in order {
                    got.push((i, w.slice(&w.setups[i], kind, opts.slice)?));
                }
                let base_rates: Vec<f64> = got.iter().filter(|(i, _)| w.setups[*i].filter == Filter::None).map(|(_, s)| s.rate).collect();
                let base = base_rates.iter().sum::<f64>() / base_rates.len().max(1) as f64;
                for (i, slice) in got {
                    let ratio = slice.rate / base;
                    samples.push(Sample { run, round, setup: w.setups[i].name(), slice, ratio });
                }
            }
        }
    }
    let cells: Vec<Vec<Cell>> = (1..=opts.runs).map(|r| summarize(&w.setups, &opts.kinds, &samples, r)).collect();
    let mut tables = Vec::new();
    for (i, run_cells) in cells.iter().enumerate() {
        tables.push(ratio_table(&format!("Throughput, run {}: median ratio to no filter (median rate)", i + 1), &w.setups, &opts.kinds, run_cells));
    }
    let mut notes = vec![format!(
        "{} rounds of {} ms slices per run; per round and kind the setups (the no-filter one twice) run in a new shuffled order; ratio = slice rate / mean of the same round's two no-filter slices; cells: median ratio over rounds (median absolute rate in brackets; stream in bytes/s).",
        opts.rounds,
        opts.slice.as_millis()
    )];
    let mut agreement = serde_json::Value::Null;
    if cells.len() >= 2 {
        let (t, worst) = agreement_table(&w.setups, &opts.kinds, &cells[0], &cells[1]);
        notes.push(format!(
            "runs 1 and 2 differ by at most {:.1} % on the ratios ({}).",
            worst * 100.0,
            if worst <= 0.05 { "within 5 %" } else { "NOT within 5 %" }
        ));
        agreement = json!({"max_relative_difference": worst, "within_5_percent": worst <= 0.05});
        tables.push(t);
    }
    notes.push(
        "no filter: the client in a cgroup outside the agent's cgroup root (no Tollgate program runs). Tollgate N: the pod enforced, a NetworkPolicy with N /32 ipBlocks (198.18.0.0/15) selects it, the gateway allowed by rule 1. iptables N (iptables-restore, Debian's iptables with its default nf_tables backend): OUTPUT policy DROP, N rules `-d 198.18.x.y/32 -j ACCEPT` that never match, then `-d <gateway>/32 -j ACCEPT`; no conntrack shortcut, so every packet walks the chain. nftables N: table inet, hash set of N + 1 elements (the N entries and the gateway), one rule `ip daddr @allow accept`, policy drop.".into(),
    );
    notes.push(
        "Load: tollgate-e2e load-client / load-serve (our own, std-only): exact slice lengths, JSON per slice, and the client runs inside the pod's netns and cgroup (exec-in) without a daemon. stream: one TCP connection, 128 KiB writes, bytes delivered (up to the server's close) per second; crr: connect, server accepts and closes, client reads EOF and closes; udp: 64-byte sendto on an unconnected socket (Tollgate's sendmsg hook runs per datagram), datagrams the server received per second.".into(),
    );
    let report = Report {
        part: "throughput",
        tables,
        notes,
        data: json!({
            "options": {"sizes": opts.sizes, "rounds": opts.rounds, "slice_ms": opts.slice.as_millis() as u64, "runs": opts.runs},
            "runs": cells,
            "agreement": agreement,
            "samples": samples,
        }),
    };
    report.emit(json)
}

fn summarize(setups: &[Setup], kinds: &[Kind], samples: &[Sample], run: usize) -> Vec<Cell> {
    let mut out = Vec::new();
    for s in setups {
        for &k in kinds {
            let mine: Vec<&Sample> = samples.iter().filter(|x| x.run == run && x.setup == s.name() && x.slice.kind == k).collect();
            let ratios: Vec<f64> = mine.iter().map(|x| x.ratio).collect();
            let rates: Vec<f64> = mine.iter().map(|x| x.slice.rate).collect();
            out.push(Cell {
                setup: s.name(),
                filter: s.filter,
                n: s.n,
                kind: k,
                median_rate: median(&rates),
                median_ratio: median(&ratios),
                min_ratio: ratios.iter().copied().fold(f64::INFINITY, f64::min),
                max_ratio: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            });
        }
    }
    out
}

fn cell<'a>(cells: &'a [Cell], setup: &Setup, kind: Kind) -> Option<&'a Cell> {
    cells.iter().find(|c| c.setup == setup.name() && c.kind == kind)
}

fn ratio_table(title: &str, setups: &[Setup], kinds: &[Kind], cells: &[Cell]) -> Table {
    let mut cols = vec!["setup"];
    cols.extend(kinds.iter().map(|k| k.heading()));
    let mut t = Table::new(title, &cols);
    for s in setups {
        let mut row = vec![s.name()];
        for &k in kinds {
            row.push(match cell(cells, s, k) {
                Some(c) => format!("{:.3} ({})", c.median_ratio, si(c.median_rate)),
                None => "n/a".into(),
            });
        }
        t.row(row);
    }
    t
}

/// Relative difference of the two runs' median ratios, per cell, and the
/// largest one.
fn agreement_table(setups: &[Setup], kinds: &[Kind], a: &[Cell], b: &[Cell]) -> (Table, f64) {
    let mut cols = vec!["setup"];
    cols.extend(kinds.iter().map(|k| k.heading()));
    let mut t = Table::new("Run 1 vs run 2: median ratios and their relative difference", &cols);
    let mut worst: f64 = 0.0;
    for s in setups.iter().filter(|s| s.filter != Filter::None) {
        let mut row = vec![s.name()];
        for &k in kinds {
            match (cell(a, s, k), cell(b, s, k)) {
                (Some(x), Some(y)) => {
                    let d = (x.median_ratio - y.median_ratio).abs() / y.median_ratio.max(f64::MIN_POSITIVE);
                    worst = worst.max(d);
                    row.push(format!("{:.3} / {:.3} ({:.1} %)", x.median_ratio, y.median_ratio, d * 100.0));
                }
                _ => row.push("n/a".into()),
            }
        }
        t.row(row);
    }
    (t, worst)
}
