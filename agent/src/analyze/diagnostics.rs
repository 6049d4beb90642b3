//! `invalid-object` (error or warning, as diagnosed): every diagnostic of
//! the compiler (and of loading, when the caller merged those in), so that
//! `analyze` is the one place to look. A diagnostic that a more specific
//! check already reports (same object and field, e.g. a bad namespace
//! label) is not repeated.
use crate::desired::{Diagnostic, Severity};

use super::codes::INVALID_OBJECT;
use super::{Finding, FindingSeverity, Input};

/// The finding for one diagnostic; the message names the file when known.
pub fn finding(d: &Diagnostic) -> Finding {
    let severity = match d.severity {
        Severity::Error => FindingSeverity::Error,
        Severity::Warning => FindingSeverity::Warning,
    };
    let message = match &d.source {
        Some(src) => format!("{} (in {src})", d.message),
        None => d.message.clone(),
    };
    let field = Some(d.field.as_str()).filter(|f| !f.is_empty());
    Finding::new(severity, INVALID_OBJECT, d.object.clone(), field, message)
}

pub(crate) fn check(input: &Input<'_>, out: &mut Vec<Finding>) {
    let specific = out.len();
    for d in &input.policy.diagnostics {
        let covered = out[..specific]
            .iter()
            .any(|f| f.object == d.object && f.field.as_deref() == Some(d.field.as_str()));
        if !covered {
            out.push(finding(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::codes::*;
    use super::super::testutil::*;
    use super::super::FindingSeverity;

    #[test]
    fn compiler_diagnostics_become_findings() {
        let bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: nouid, namespace: shop}\nstatus: {phase: Running}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: badip, namespace: shop, uid: u1}\nstatus: {phase: Running, podIP: 10.0.0.300}\n";
        let report = run(bad, &[]);
        let f = the(&report, INVALID_OBJECT, "Pod shop/nouid");
        assert_eq!(f.severity, FindingSeverity::Error);
        assert_eq!(f.field.as_deref(), Some("metadata.uid"));
        assert!(f.message.contains("test.yaml"), "{}", f.message);
        assert_eq!(report.findings.first().map(|f| f.severity), Some(FindingSeverity::Error), "errors first");
        let fixed = "apiVersion: v1\nkind: Pod\nmetadata: {name: nouid, namespace: shop, uid: u0}\nstatus: {phase: Running}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: badip, namespace: shop, uid: u1}\nstatus: {phase: Running, podIP: 10.0.0.3}\n";
        assert!(with_code(&run(fixed, &[]), INVALID_OBJECT).is_empty());
    }
}
