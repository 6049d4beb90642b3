//! The metric names a Grafana dashboard and Prometheus alert rules query,
//! and the names a scrape exports, so that a test can check the first are
//! all among the second.
//!
//! A small PromQL lexer rather than a full parser: it skips strings, label
//! matchers (`{...}`), ranges (`[5m]`), label lists of `by`, `without`,
//! `on`, `ignoring`, `group_left` and `group_right`, function and
//! aggregation names (an identifier followed by `(`), keywords, numbers and
//! Grafana variables; every identifier left is a metric name.
use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use serde_json::Value;

const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "atan2", "inf", "nan",
];
/// Aggregation operators: `sum by (x) (...)` puts `by` between the name and `(`.
const AGGREGATIONS: &[&str] = &[
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio",
];
const LABEL_LIST_KEYWORDS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// Every metric name of one PromQL expression (Grafana variables allowed).
pub fn names_in_expr(expr: &str) -> Result<BTreeSet<String>> {
    // Grafana's `label_values(QUERY, LABEL)` (template variables): the
    // query's names; the label is not a metric.
    if let Some(inner) = expr.trim().strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')) {
        let query = match inner.rsplit_once(',') {
            Some((q, label)) if is_ident(label.trim()) => q,
            _ => inner,
        };
        return names_in_expr(query);
    }
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut expect_label_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i).with_context(|| format!("in {expr:?}"))?,
            '{' => i = skip_until(&chars, i, '}').with_context(|| format!("in {expr:?}"))?,
            '[' => i = skip_until(&chars, i, ']').with_context(|| format!("in {expr:?}"))?,
            '(' if expect_label_list => {
                i = skip_until(&chars, i, ')').with_context(|| format!("in {expr:?}"))?;
                expect_label_list = false;
            }
            '$' => {
                // $var, ${var}, $__rate_interval
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_until(&chars, i, '}')?;
                } else {
                    while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) => {
                // Numbers, durations (5m), hex, exponents.
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                let lower = word.to_ascii_lowercase();
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    expect_label_list = true;
                } else if KEYWORDS.contains(&lower.as_str()) || AGGREGATIONS.contains(&lower.as_str()) || next == Some(&'(') {
                    // keyword, or a function / aggregation name
                } else {
                    names.insert(word);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(names)
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Index of the closing quote of the string opening at `i`.
fn skip_string(chars: &[char], i: usize) -> Result<usize> {
    let q = chars[i];
    let mut j = i + 1;
    while j < chars.len() {
        if chars[j] == '\\' && q != '`' {
            j += 2;
            continue;
        }
        if chars[j] == q {
            return Ok(j);
        }
        j += 1;
    }
    bail!("unterminated string at {i}")
}

/// Index of `close` matching the bracket at `i`, skipping strings inside.
fn skip_until(chars: &[char], i: usize, close: char) -> Result<usize> {
    let open = chars[i];
    let mut depth = 0;
    let mut j = i;
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => j = skip_string(chars, j)?,
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(j);
                }
            }
            _ => {}
        }
        j += 1;
    }
    bail!("no `{close}` for the `{open}` at {i}")
}

/// Every PromQL expression of a Grafana dashboard: panel targets (rows'
/// nested panels too) and query variables.
pub fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn panels(v: &Value, out: &mut Vec<String>) {
        for p in v.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_string());
                }
            }
            panels(&p["panels"], out);
        }
    }
    panels(&dashboard["panels"], &mut out);
    for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            if let Some(q) = v["query"]["query"].as_str().or(v["query"].as_str()) {
                out.push(q.to_string());
            }
        }
    }
    out
}

/// Every `expr` of a PrometheusRule object (or of its `spec`, or of a plain
/// Prometheus rules file: anything with `groups[].rules[]`).
pub fn rule_exprs(rules: &Value) -> Vec<String> {
    let groups = if rules["spec"]["groups"].is_array() { &rules["spec"]["groups"] } else { &rules["groups"] };
    groups
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["expr"].as_str().map(str::to_string))
        .collect()
}

/// The metric names that `dashboard` (Grafana JSON) and `rules` (a
/// PrometheusRule) query: sample names as written (`X_bucket` of a
/// histogram, `X_total` of a counter).
pub fn metric_names_used(dashboard: &Value, rules: &Value) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    for e in dashboard_exprs(dashboard).iter().chain(rule_exprs(rules).iter()) {
        names.extend(names_in_expr(e).with_context(|| format!("reading the PromQL {e:?}"))?);
    }
    Ok(names)
}

/// Sample names a Prometheus/OpenMetrics text exposition has (`# TYPE`
/// lines and samples), for comparing against a real scrape of the agent.
pub fn names_in_exposition(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
        names.insert(line[..end].to_string());
    }
    names
}

/// Sample names a scrape declares, with or without samples: each `# TYPE
/// name kind` family expanded to its sample names (a counter `X` or
/// `X_total` gives `X_total`), plus the samples present.
pub fn declared_in_exposition(text: &str) -> BTreeSet<String> {
    let mut names = names_in_exposition(text);
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) = (parts.next(), parts.next(), parts.next(), parts.next()) {
            let name = if kind == "counter" { name.trim_end_matches("_total") } else { name };
            names.extend(sample_names(name, kind));
        }
    }
    names
}

/// The sample names of a metric family: a histogram's `_bucket`, `_sum`,
/// `_count`; anything else its own name.
pub fn sample_names(name: &str, kind: &str) -> Vec<String> {
    match kind {
        "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{name}{s}")).collect(),
        _ => vec![name.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_functions_ranges_and_variables_are_not_metrics() {
        let e = r#"histogram_quantile(0.99, sum by (le, kind) (rate(tollgate_event_to_map_seconds_bucket{node=~"$node", kind!="x{y}"}[$__rate_interval])))"#;
        assert_eq!(names_in_expr(e).unwrap(), set(&["tollgate_event_to_map_seconds_bucket"]));
        let e = r#"sum by (namespace) (increase(a_total{verdict="dropped"}[1h] offset 15m)) > 0 unless on (namespace) b > 0.9"#;
        assert_eq!(names_in_expr(e).unwrap(), set(&["a_total", "b"]));
        let e = "x / (y > 0) > 1e3 or max without (map) (z) * on (instance) group_left (version) w";
        assert_eq!(names_in_expr(e).unwrap(), set(&["w", "x", "y", "z"]));
        assert_eq!(names_in_expr("up == 0").unwrap(), set(&["up"]));
        assert_eq!(names_in_expr("count by (version) (b) + sum without (x) (c)").unwrap(), set(&["b", "c"]));
        assert_eq!(names_in_expr(r#"label_values(tollgate_packets_total{node=~"$node"}, namespace)"#).unwrap(), set(&["tollgate_packets_total"]));
        assert!(names_in_expr(r#"x{a="unterminated}"#).is_err());
    }

    #[test]
    fn exposition_names() {
        let text = "# HELP tollgate_ready ready\n# TYPE tollgate_ready gauge\ntollgate_ready 1\n\
                    tollgate_apply_duration_seconds_bucket{le=\"0.1\"} 3\ntollgate_apply_duration_seconds_sum 0.2\n# EOF\n";
        assert_eq!(
            names_in_exposition(text),
            set(&["tollgate_apply_duration_seconds_bucket", "tollgate_apply_duration_seconds_sum", "tollgate_ready"])
        );
    }
}
