//! The `tollgate.dev/egress` label of namespaces:
//! - `bad-namespace-label` (warning): a value other than `enforce` or
//!   `audit` (the namespace is enforced, fail closed);
//! - `audit-mode` (info): namespaces in audit mode, where nothing is dropped.
use crate::compiler::mode::{mode_from_label, EGRESS_LABEL};
use crate::compiler::objects::{labels, object_ref};
use crate::desired::Mode;
use crate::model::ObjectKind;

use super::codes::{AUDIT_MODE, BAD_NAMESPACE_LABEL};
use super::{Finding, FindingSeverity, Input};

/// The label's field path, as the compiler names it.
pub fn label_field() -> String {
    format!("metadata.labels[\"{EGRESS_LABEL}\"]")
}

pub(crate) fn check(input: &Input<'_>, out: &mut Vec<Finding>) {
    let field = label_field();
    for ns in &input.snapshot.namespaces {
        let Some(value) = labels(&ns.metadata).get(EGRESS_LABEL) else {
            continue;
        };
        let object = object_ref(ObjectKind::Namespace, &ns.metadata).to_string();
        match mode_from_label(Some(value)) {
            Err(_) => out.push(Finding::new(
                FindingSeverity::Warning,
                BAD_NAMESPACE_LABEL,
                object,
                Some(&field),
                format!(
                    "label {EGRESS_LABEL} has the unknown value {value:?}, so Tollgate enforces the namespace (fail closed); set it to \"enforce\" or \"audit\""
                ),
            )),
            Ok(Mode::Audit) => out.push(Finding::new(
                FindingSeverity::Info,
                AUDIT_MODE,
                object,
                Some(&field),
                format!(
                    "the namespace is in audit mode, so nothing is dropped there (what enforce would drop is only counted, see `tollgate flows`); set {EGRESS_LABEL}=enforce once the flows are clean"
                ),
            )),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::codes::*;

    fn ns(value: &str) -> String {
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: shop, labels: {{tollgate.dev/egress: {value:?}}}}}\n")
    }

    #[test]
    fn bad_label_value_is_named() {
        let report = run(&ns("yes"), &[]);
        let f = the(&report, BAD_NAMESPACE_LABEL, "Namespace shop");
        assert!(f.message.contains("\"yes\""), "{}", f.message);
        assert_eq!(f.field.as_deref(), Some("metadata.labels[\"tollgate.dev/egress\"]"));
        assert!(with_code(&report, INVALID_OBJECT).is_empty(), "the compiler's warning is not repeated");
        assert!(with_code(&run(&ns("enforce"), &[]), BAD_NAMESPACE_LABEL).is_empty());
        assert!(!with_code(&run(&ns(""), &[]), BAD_NAMESPACE_LABEL).is_empty(), "empty value");
    }

    #[test]
    fn audit_namespaces_are_reported() {
        let report = run(&ns("audit"), &[]);
        let f = the(&report, AUDIT_MODE, "Namespace shop");
        assert_eq!(f.severity, super::FindingSeverity::Info);
        assert!(with_code(&run(&ns("enforce"), &[]), AUDIT_MODE).is_empty());
    }
}
