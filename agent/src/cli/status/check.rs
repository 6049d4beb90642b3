//! One line of the `status` checklist.
use serde::Serialize;

/// How a check came out. Ordered: the worst wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
        }
    }
}

/// A named check: its outcome, one sentence on what was found, what to do
/// about it (empty when there is nothing to do), and the lines behind it.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub result: Outcome,
    pub detail: String,
    pub hint: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
}

impl Check {
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, result: Outcome::Pass, detail: detail.into(), hint: String::new(), items: Vec::new() }
    }

    pub fn warn(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { name, result: Outcome::Warn, detail: detail.into(), hint: hint.into(), items: Vec::new() }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { name, result: Outcome::Fail, detail: detail.into(), hint: hint.into(), items: Vec::new() }
    }

    pub fn with_items(mut self, items: Vec<String>) -> Self {
        self.items = items;
        self
    }
}

/// The worst outcome of `checks` (pass when there are none).
pub fn overall(checks: &[Check]) -> Outcome {
    checks.iter().map(|c| c.result).max().unwrap_or(Outcome::Pass)
}

/// At most `n` items, then "… and K more".
pub fn first(items: impl IntoIterator<Item = String>, n: usize) -> Vec<String> {
    let all: Vec<String> = items.into_iter().collect();
    let total = all.len();
    let mut out: Vec<String> = all.into_iter().take(n).collect();
    if total > n {
        out.push(format!("… and {} more", total - n));
    }
    out
}
