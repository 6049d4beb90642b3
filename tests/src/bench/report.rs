//! What every bench part prints and writes: Markdown tables on stdout, and
//! the same figures as JSON (`--json FILE`), with the machine they ran on.
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

/// One Markdown table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, columns: &[&str]) -> Table {
        Table { title: title.to_string(), columns: columns.iter().map(|c| c.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n| {} |\n|", self.title, self.columns.join(" | "));
        for i in 0..self.columns.len() {
            s.push_str(if i == 0 { " --- |" } else { " ---: |" });
        }
        s.push('\n');
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s
    }
}

/// `lscpu`'s model name, the number of CPUs and the kernel release.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
    pub memory_mib: u64,
}

impl Machine {
    pub fn current() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| "unknown".into());
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next().and_then(|k| k.parse::<u64>().ok()))
            .map(|kib| kib / 1024)
            .unwrap_or(0);
        Machine { cpu, cpus, kernel, memory_mib }
    }

    pub fn line(&self) -> String {
        format!("{}, {} CPUs, {} MiB, Linux {}", self.cpu, self.cpus, self.memory_mib, self.kernel)
    }
}

/// A part's output: its tables, notes, and the figures as JSON.
pub struct Report {
    pub part: &'static str,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
    pub data: Value,
}

impl Report {
    /// Prints the Markdown and, with `json`, writes everything there.
    pub fn emit(&self, json: Option<&Path>) -> Result<()> {
        let machine = Machine::current();
        println!("\n## cargo xtask bench {}\n\nMachine: {}\n", self.part, machine.line());
        for t in &self.tables {
            println!("{}", t.markdown());
        }
        for n in &self.notes {
            println!("- {n}");
        }
        if let Some(path) = json {
            let doc = serde_json::json!({
                "part": self.part,
                "machine": machine,
                "tables": self.tables,
                "notes": self.notes,
                "data": self.data,
            });
            std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("writing {}", path.display()))?;
            println!("\n(JSON written to {})", path.display());
        }
        Ok(())
    }
}

/// Median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// The `q` quantile (nearest rank) of `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let i = ((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

/// A rate with a unit prefix: `1.23 G`, `456 k`.
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let (d, p) = if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    format!("{:.3} {p}", v / d).trim_end().to_string()
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_quantiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn markdown_table() {
        let mut t = Table::new("T", &["a", "b"]);
        t.row(vec!["x".into(), "1".into()]);
        assert_eq!(t.markdown(), "### T\n\n| a | b |\n| --- | ---: |\n| x | 1 |\n");
        assert_eq!(si(1_234_000.0), "1.234 M");
        assert_eq!(si(12.0), "12.000");
    }
}
