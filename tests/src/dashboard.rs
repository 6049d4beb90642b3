//! A picture of the shipped Grafana dashboard's main panels, drawn from
//! real scrapes of an agent's `/metrics` (`tollgate-e2e demo --dashboard
//! FILE`): what an operator sees, without a Grafana here. Pure: scrapes in,
//! an SVG document out.
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One sample of a scrape: the metric name, its labels, the value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a Prometheus text exposition (comments skipped; a line
/// that does not parse is skipped too).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line[open..].find('}')? + open;
            (&line[..open], parse_labels(&line[open + 1..close]), &line[close + 1..])
        }
        None => {
            let sp = line.find(char::is_whitespace)?;
            (&line[..sp], BTreeMap::new(), &line[sp..])
        }
    };
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample { name: name.to_owned(), labels, value })
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else { break };
        let mut value = String::new();
        let mut end = None;
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let Some(end) = end else { break };
        out.insert(key, value);
        rest = &body[end + 1..];
    }
    out
}

/// A scrape at a time (seconds from the start of the recording).
#[derive(Clone, Debug)]
pub struct Scrape {
    pub t: f64,
    pub samples: Vec<Sample>,
}

/// One line of a panel.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// One panel: a title, a unit and its lines.
#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub unit: String,
    pub series: Vec<Series>,
}

fn sum_by(s: &Scrape, name: &str, filter: &dyn Fn(&Sample) -> bool, key: &dyn Fn(&Sample) -> String) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for x in s.samples.iter().filter(|x| x.name == name && filter(x)) {
        *out.entry(key(x)).or_insert(0.0) += x.value;
    }
    out
}

/// Per-second rates of a counter, summed by `key`, between scrapes.
fn rates(scrapes: &[Scrape], name: &str, filter: &dyn Fn(&Sample) -> bool, key: &dyn Fn(&Sample) -> String) -> Vec<Series> {
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for w in scrapes.windows(2) {
        let (a, b) = (sum_by(&w[0], name, filter, key), sum_by(&w[1], name, filter, key));
        let dt = (w[1].t - w[0].t).max(1e-3);
        for (k, vb) in &b {
            let va = a.get(k).copied().unwrap_or(0.0);
            lines.entry(k.clone()).or_default().push((w[1].t, ((vb - va) / dt).max(0.0)));
        }
    }
    lines.into_iter().map(|(label, points)| Series { label, points }).collect()
}

fn label(x: &Sample, k: &str) -> String {
    x.labels.get(k).cloned().unwrap_or_default()
}

/// The 0.99 quantile of a cumulative histogram (`<name>_bucket` samples
/// with `le`), by linear interpolation inside the bucket, as
/// `histogram_quantile` does; None without observations.
pub fn quantile(samples: &[Sample], name: &str, q: f64) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for x in samples.iter().filter(|x| x.name == bucket) {
        let le = x.labels.get("le")?;
        let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
        let e = buckets.entry(bound.to_bits()).or_insert((bound, 0.0));
        e.1 += x.value;
    }
    let mut v: Vec<(f64, f64)> = buckets.into_values().collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = v.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (bound, count) in v {
        if count >= rank {
            if bound.is_infinite() {
                return Some(prev.0);
            }
            let span = (count - prev.1).max(1e-9);
            return Some(prev.0 + (bound - prev.0) * (rank - prev.1) / span);
        }
        prev = (bound, count);
    }
    None
}

/// The panels of `deploy/monitoring/grafana-dashboard.json` that matter
/// when egress "does not work": drops by namespace, pod and reason,
/// allowed traffic, map fill, and the event-to-map latency.
pub fn panels(scrapes: &[Scrape]) -> Vec<Panel> {
    let dropped = |x: &Sample| label(x, "verdict") == "dropped";
    let passed = |x: &Sample| matches!(label(x, "verdict").as_str(), "allowed" | "audited");
    let by_pod_reason = |x: &Sample| format!("{}/{} {}", label(x, "namespace"), label(x, "pod"), label(x, "reason"));
    let by_pod_verdict = |x: &Sample| format!("{}/{} {}", label(x, "namespace"), label(x, "pod"), label(x, "verdict"));
    let mut fill: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut latency = Vec::new();
    for s in scrapes {
        let entries = sum_by(s, "tollgate_map_entries", &|_| true, &|x| label(x, "map"));
        let capacity = sum_by(s, "tollgate_map_capacity", &|_| true, &|x| label(x, "map"));
        for (map, e) in entries {
            if let Some(c) = capacity.get(&map).filter(|c| **c > 0.0) {
                fill.entry(map).or_default().push((s.t, 100.0 * e / c));
            }
        }
        if let Some(p) = quantile(&s.samples, "tollgate_event_to_map_seconds", 0.99) {
            latency.push((s.t, p * 1000.0));
        }
    }
    // The fullest maps only: the others are flat at zero.
    let mut fill: Vec<Series> = fill.into_iter().map(|(label, points)| Series { label, points }).collect();
    fill.sort_by(|a, b| peak(b).total_cmp(&peak(a)));
    fill.truncate(4);
    vec![
        Panel { title: "Dropped packets/s by namespace, pod and reason".into(), unit: "pkt/s".into(), series: rates(scrapes, "tollgate_packets_total", &dropped, &by_pod_reason) },
        Panel { title: "Allowed and audited packets/s by pod".into(), unit: "pkt/s".into(), series: rates(scrapes, "tollgate_packets_total", &passed, &by_pod_verdict) },
        Panel { title: "Map fill (the 4 fullest maps)".into(), unit: "%".into(), series: fill },
        Panel { title: "Event to map write, p99 (since start)".into(), unit: "ms".into(), series: vec![Series { label: "p99".into(), points: latency }] },
    ]
}

fn peak(s: &Series) -> f64 {
    s.points.iter().map(|p| p.1).fold(0.0, f64::max)
}

const COLORS: [&str; 8] = ["#e45756", "#4c78a8", "#f58518", "#54a24b", "#b279a2", "#72b7b2", "#9d755d", "#bab0ac"];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The panels as one SVG document, two panels a row, in the dark style of
/// a Grafana dashboard.
pub fn svg(title: &str, panels: &[Panel]) -> String {
    let (pw, ph, gap) = (560.0, 300.0, 16.0);
    let rows = panels.len().div_ceil(2) as f64;
    let (w, h) = (2.0 * pw + 3.0 * gap, rows * (ph + gap) + gap + 36.0);
    let mut out = String::new();
    let _ = write!(out, r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="#111217"/><text x="{gap}" y="26" fill="#d8d9da" font-size="16">{}</text>"##, escape(title));
    for (i, p) in panels.iter().enumerate() {
        let x0 = gap + (i % 2) as f64 * (pw + gap);
        let y0 = 36.0 + gap + (i / 2) as f64 * (ph + gap);
        panel_svg(&mut out, p, x0, y0, pw, ph);
    }
    out.push_str("</svg>\n");
    out
}

fn panel_svg(out: &mut String, p: &Panel, x0: f64, y0: f64, pw: f64, ph: f64) {
    let _ = write!(out, r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="#181b1f" stroke="#2c3235"/><text x="{}" y="{}" fill="#d8d9da" font-size="13">{}</text>"##, x0 + 10.0, y0 + 20.0, escape(&p.title));
    let (px, py, pwid, phei) = (x0 + 56.0, y0 + 34.0, pw - 70.0, ph - 34.0 - 26.0 - 18.0 * p.series.len().min(4) as f64);
    let t_max = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0)).fold(0.0, f64::max).max(1.0);
    let t_min = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0)).fold(t_max, f64::min);
    let v_max = nice(p.series.iter().map(peak).fold(0.0, f64::max));
    for k in 0..=4 {
        let v = v_max * k as f64 / 4.0;
        let y = py + phei - phei * k as f64 / 4.0;
        let _ = write!(out, r##"<line x1="{px}" y1="{y}" x2="{}" y2="{y}" stroke="#2c3235"/><text x="{}" y="{}" fill="#8e8e8e" text-anchor="end">{}</text>"##, px + pwid, px - 6.0, y + 4.0, short(v));
    }
    let _ = write!(out, r##"<text x="{}" y="{}" fill="#8e8e8e">{}</text><text x="{}" y="{}" fill="#8e8e8e" text-anchor="end">time (s)</text>"##, x0 + 10.0, py - 4.0 + 0.0 * phei, escape(&p.unit), px + pwid, py + phei + 16.0);
    if p.series.is_empty() {
        let _ = write!(out, r##"<text x="{}" y="{}" fill="#8e8e8e" text-anchor="middle">No data</text>"##, px + pwid / 2.0, py + phei / 2.0);
    }
    for (i, s) in p.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|(t, v)| {
                let x = px + pwid * (t - t_min) / (t_max - t_min).max(1e-9);
                let y = py + phei - phei * (v / v_max);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(out, r##"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##, pts.join(" "));
        if i < 4 {
            let ly = py + phei + 26.0 + 16.0 * i as f64;
            let _ = write!(out, r##"<rect x="{px}" y="{}" width="12" height="4" fill="{color}"/><text x="{}" y="{}" fill="#d8d9da">{} (max {})</text>"##, ly - 6.0, px + 18.0, ly, escape(&s.label), short(peak(s)));
        }
    }
}

/// A round upper bound for an axis.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|c| *c >= v).unwrap_or(10.0 * mag)
}

fn short(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE_A: &str = "# TYPE tollgate_packets counter\ntollgate_packets_total{namespace=\"shop\",pod=\"web\",verdict=\"dropped\",reason=\"no-rule\"} 10\ntollgate_map_entries{map=\"TG_CGROUPS\"} 5\ntollgate_map_capacity{map=\"TG_CGROUPS\"} 100\ntollgate_event_to_map_seconds_bucket{kind=\"Pod\",le=\"0.001\"} 0\ntollgate_event_to_map_seconds_bucket{kind=\"Pod\",le=\"0.01\"} 10\ntollgate_event_to_map_seconds_bucket{kind=\"Pod\",le=\"+Inf\"} 10\n";
    const SCRAPE_B: &str = "tollgate_packets_total{namespace=\"shop\",pod=\"web\",verdict=\"dropped\",reason=\"no-rule\"} 30\ntollgate_map_entries{map=\"TG_CGROUPS\"} 50\ntollgate_map_capacity{map=\"TG_CGROUPS\"} 100\n";

    #[test]
    fn rates_fill_and_quantiles_come_from_the_samples() {
        let a = Scrape { t: 0.0, samples: parse_exposition(SCRAPE_A) };
        let b = Scrape { t: 2.0, samples: parse_exposition(SCRAPE_B) };
        assert_eq!(a.samples.len(), 6);
        assert_eq!(a.samples[0].labels["reason"], "no-rule");
        let p = panels(&[a.clone(), b]);
        assert_eq!(p[0].series, vec![Series { label: "shop/web no-rule".into(), points: vec![(2.0, 10.0)] }]);
        assert_eq!(p[2].series[0].points, vec![(0.0, 5.0), (2.0, 50.0)]);
        let q = quantile(&a.samples, "tollgate_event_to_map_seconds", 0.99).unwrap();
        assert!((q - 0.00991).abs() < 1e-6, "{q}");
        let doc = svg("t <&>", &p);
        assert!(doc.starts_with("<svg") && doc.contains("t &lt;&amp;&gt;") && doc.contains("polyline"));
    }

    #[test]
    fn labels_with_escapes_and_commas_parse() {
        let s = parse_exposition("m{a=\"x,y\",b=\"q\\\"z\"} 1.5 123\n");
        assert_eq!(s[0].labels["a"], "x,y");
        assert_eq!(s[0].labels["b"], "q\"z");
        assert_eq!(s[0].value, 1.5);
    }
}
