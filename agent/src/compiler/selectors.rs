//! Label selectors: the equality-only maps of Services and Istio Gateways,
//! and the `LabelSelector` of NetworkPolicies.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use thiserror::Error;

/// A selector the API server would have refused; it selects nothing.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("unknown operator {operator:?} (expected In, NotIn, Exists or DoesNotExist)")]
    UnknownOperator { index: usize, operator: String },
    #[error("operator {operator} needs at least one value")]
    MissingValues { index: usize, operator: String },
    #[error("operator {operator} takes no values")]
    UnexpectedValues { index: usize, operator: String },
}

impl SelectorError {
    /// Field path of the bad expression, relative to the selector.
    pub fn field(&self) -> String {
        match self {
            SelectorError::UnknownOperator { index, .. } => {
                format!("matchExpressions[{index}].operator")
            }
            SelectorError::MissingValues { index, .. }
            | SelectorError::UnexpectedValues { index, .. } => {
                format!("matchExpressions[{index}].values")
            }
        }
    }
}

/// Does every `key: value` of `selector` appear in `labels`? An empty map
/// selects everything; callers for which empty means nothing (Service,
/// Istio Gateway) use [`map_selects_some`].
pub fn map_selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Like [`map_selects`], but an empty selector selects nothing.
pub fn map_selects_some(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && map_selects(selector, labels)
}

/// Kubernetes `LabelSelector` semantics: `matchLabels` and every
/// `matchExpressions` entry must hold; an empty selector selects
/// everything.
pub fn label_selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    let mut matched = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| map_selects(m, labels));
    for (index, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let values = expr.values.as_deref().unwrap_or_default();
        let value = labels.get(&expr.key);
        let operator = expr.operator.clone();
        let holds = match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(SelectorError::MissingValues { index, operator })
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(SelectorError::UnexpectedValues { index, operator })
            }
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => return Err(SelectorError::UnknownOperator { index, operator }),
        };
        matched &= holds;
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn sel(match_labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    #[test]
    fn map_selectors() {
        let pod = labels(&[("app", "sleep"), ("tier", "x")]);
        assert!(map_selects(&labels(&[("app", "sleep")]), &pod));
        assert!(!map_selects(&labels(&[("app", "web")]), &pod));
        assert!(map_selects(&labels(&[]), &pod));
        assert!(!map_selects_some(&labels(&[]), &pod));
        assert!(map_selects_some(&labels(&[("tier", "x")]), &pod));
    }

    #[test]
    fn match_labels_and_expressions() {
        let pod = labels(&[("app", "sleep"), ("env", "prod")]);
        let ok = |s: LabelSelector| label_selector_matches(&s, &pod).expect("valid selector");
        assert!(ok(sel(&[], vec![])));
        assert!(ok(sel(&[("app", "sleep")], vec![])));
        assert!(!ok(sel(&[("app", "web")], vec![])));
        assert!(ok(sel(&[], vec![expr("env", "In", &["prod", "stage"])])));
        assert!(!ok(sel(&[], vec![expr("env", "In", &["stage"])])));
        assert!(!ok(sel(&[], vec![expr("missing", "In", &["x"])])));
        assert!(ok(sel(&[], vec![expr("env", "NotIn", &["stage"])])));
        assert!(!ok(sel(&[], vec![expr("env", "NotIn", &["prod"])])));
        assert!(ok(sel(&[], vec![expr("missing", "NotIn", &["prod"])])));
        assert!(ok(sel(&[], vec![expr("app", "Exists", &[])])));
        assert!(!ok(sel(&[], vec![expr("missing", "Exists", &[])])));
        assert!(ok(sel(&[], vec![expr("missing", "DoesNotExist", &[])])));
        assert!(!ok(sel(&[], vec![expr("app", "DoesNotExist", &[])])));
        assert!(!ok(sel(
            &[("app", "sleep")],
            vec![expr("app", "DoesNotExist", &[])]
        )));
    }

    #[test]
    fn invalid_expressions_are_errors() {
        let pod = labels(&[("app", "sleep")]);
        let err = label_selector_matches(&sel(&[], vec![expr("app", "Equals", &["x"])]), &pod)
            .unwrap_err();
        assert_eq!(err.field(), "matchExpressions[0].operator");
        let err = label_selector_matches(
            &sel(
                &[],
                vec![expr("app", "Exists", &[]), expr("app", "In", &[])],
            ),
            &pod,
        )
        .unwrap_err();
        assert_eq!(
            err,
            SelectorError::MissingValues {
                index: 1,
                operator: "In".into()
            }
        );
        assert!(
            label_selector_matches(&sel(&[], vec![expr("app", "Exists", &["v"])]), &pod).is_err()
        );
    }
}
