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
    /// `field` is relative to the selector, e.g. `matchLabels["a b"]` or
    /// `matchExpressions[0].key`.
    #[error("{key:?} is not a valid label key ({reason})")]
    InvalidKey {
        field: String,
        key: String,
        reason: &'static str,
    },
    #[error("{value:?} is not a valid label value ({reason})")]
    InvalidValue {
        field: String,
        value: String,
        reason: &'static str,
    },
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
            SelectorError::InvalidKey { field, .. } | SelectorError::InvalidValue { field, .. } => {
                field.clone()
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
/// everything. A selector the API server would refuse (see
/// [`check_label_selector`]) is an error whatever the labels.
pub fn label_selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Result<bool, SelectorError> {
    Ok(CheckedSelector::new(selector)?.matches(labels))
}

/// A `LabelSelector` that passed [`check_label_selector`]: matching it
/// against many label sets checks it only once.
#[derive(Clone, Copy, Debug)]
pub struct CheckedSelector<'s>(&'s LabelSelector);

impl<'s> CheckedSelector<'s> {
    pub fn new(selector: &'s LabelSelector) -> Result<Self, SelectorError> {
        check_label_selector(selector)?;
        Ok(Self(selector))
    }

    /// Kubernetes `LabelSelector` semantics (see [`label_selector_matches`]).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let selector = self.0;
        selector.match_labels.as_ref().is_none_or(|m| map_selects(m, labels))
            && selector.match_expressions.iter().flatten().all(|expr| {
                let values = expr.values.as_deref().unwrap_or_default();
                let value = labels.get(&expr.key);
                match expr.operator.as_str() {
                    "In" => value.is_some_and(|v| values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    // Refused by the check.
                    _ => false,
                }
            })
    }
}

/// The checks the API server makes on a `LabelSelector`: label keys and
/// values well formed, known operators, values exactly when the operator
/// takes them. The first problem is returned (its field path does not
/// depend on the labels being matched).
pub fn check_label_selector(selector: &LabelSelector) -> Result<(), SelectorError> {
    for (key, value) in selector.match_labels.iter().flatten() {
        let field = || format!("matchLabels[{key:?}]");
        check_label_key(key).map_err(|reason| SelectorError::InvalidKey {
            field: field(),
            key: key.clone(),
            reason,
        })?;
        check_label_value(value).map_err(|reason| SelectorError::InvalidValue {
            field: field(),
            value: value.clone(),
            reason,
        })?;
    }
    for (index, expr) in selector.match_expressions.iter().flatten().enumerate() {
        check_label_key(&expr.key).map_err(|reason| SelectorError::InvalidKey {
            field: format!("matchExpressions[{index}].key"),
            key: expr.key.clone(),
            reason,
        })?;
        let values = expr.values.as_deref().unwrap_or_default();
        let operator = expr.operator.clone();
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(SelectorError::MissingValues { index, operator })
            }
            "In" | "NotIn" => {}
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(SelectorError::UnexpectedValues { index, operator })
            }
            "Exists" | "DoesNotExist" => {}
            _ => return Err(SelectorError::UnknownOperator { index, operator }),
        }
        for (j, value) in values.iter().enumerate() {
            check_label_value(value).map_err(|reason| SelectorError::InvalidValue {
                field: format!("matchExpressions[{index}].values[{j}]"),
                value: value.clone(),
                reason,
            })?;
        }
    }
    Ok(())
}

/// A label key: an optional DNS subdomain prefix (at most 253 characters)
/// and `/`, then a name of 1 to 63 characters (`[A-Za-z0-9]`, with `-`,
/// `_` and `.` inside).
pub fn check_label_key(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() || prefix.len() > 253 {
            return Err("the prefix before '/' must be 1 to 253 characters");
        }
        let subdomain_ok = prefix.split('.').all(|label| {
            // The API server checks the subdomain's total length only,
            // not 63 per label.
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if !subdomain_ok {
            return Err("the prefix before '/' must be a lower-case DNS subdomain");
        }
    }
    if name.is_empty() {
        return Err("the name must not be empty");
    }
    check_label_name(name)
}

/// A label value: empty, or 1 to 63 characters (`[A-Za-z0-9]`, with `-`,
/// `_` and `.` inside).
pub fn check_label_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Ok(());
    }
    check_label_name(value)
}

fn check_label_name(name: &str) -> Result<(), &'static str> {
    if name.len() > 63 {
        return Err("at most 63 characters");
    }
    let bytes = name.as_bytes();
    let alnum_ends = bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric);
    let chars_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if alnum_ends && chars_ok {
        Ok(())
    } else {
        Err("alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character")
    }
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

    #[test]
    fn label_keys_and_values_are_checked() {
        for key in ["app", "a", "app.kubernetes.io/name", "kubernetes.io/metadata.name", "A_b.c-D", "x/y"] {
            assert_eq!(check_label_key(key), Ok(()), "{key}");
        }
        for key in ["", "-a", "a-", "a b", "/a", "a/", "A.io/a", "a..b/c", "a/b/c", &"a".repeat(64), &format!("{}/a", "a".repeat(254))] {
            assert!(check_label_key(key).is_err(), "{key}");
        }
        for value in ["", "x", "my_app.v-1", &"v".repeat(63)] {
            assert_eq!(check_label_value(value), Ok(()), "{value}");
        }
        for value in ["-x", "x-", "x y", "é", &"v".repeat(64)] {
            assert!(check_label_value(value).is_err(), "{value}");
        }
        let bad = sel(&[("ok", "x y")], vec![]);
        let err = label_selector_matches(&bad, &labels(&[])).unwrap_err();
        assert_eq!(err.field(), "matchLabels[\"ok\"]");
        let bad = sel(&[], vec![expr("a b", "Exists", &[])]);
        assert_eq!(check_label_selector(&bad).unwrap_err().field(), "matchExpressions[0].key");
        let bad = sel(&[], vec![expr("a", "In", &["ok", "no way"])]);
        assert_eq!(check_label_selector(&bad).unwrap_err().field(), "matchExpressions[0].values[1]");
    }
}
