//! Enforcement mode of each namespace, from its `tollgate.dev/egress`
//! label.
use std::collections::BTreeMap;

use crate::desired::{Mode, Severity};
use crate::model::ObjectKind;

use super::objects::{labels, object_ref};
use super::Ctx;

pub const EGRESS_LABEL: &str = "tollgate.dev/egress";

/// The mode a label value asks for. `Err` carries the mode applied for a
/// value Tollgate does not know: enforce (fail closed).
pub fn mode_from_label(value: Option<&str>) -> Result<Mode, Mode> {
    match value {
        None => Ok(Mode::Off),
        Some("enforce") => Ok(Mode::Enforce),
        Some("audit") => Ok(Mode::Audit),
        Some(_) => Err(Mode::Enforce),
    }
}

/// Modes of the namespaces that carry the label (others are off). Unknown
/// values enforce and are reported.
pub(crate) fn namespace_modes(ctx: &mut Ctx<'_>) -> BTreeMap<String, Mode> {
    let mut modes = BTreeMap::new();
    for ns in &ctx.snapshot.namespaces {
        let Some(name) = ns.metadata.name.as_deref() else {
            continue;
        };
        let value = labels(&ns.metadata).get(EGRESS_LABEL).map(String::as_str);
        let mode = match mode_from_label(value) {
            Ok(mode) => mode,
            Err(mode) => {
                ctx.report(
                    Severity::Warning,
                    &object_ref(ObjectKind::Namespace, &ns.metadata),
                    format!("metadata.labels[\"{EGRESS_LABEL}\"]"),
                    format!(
                        "unknown value {:?} (expected \"enforce\" or \"audit\"); the namespace is enforced (fails closed)",
                        value.unwrap_or_default()
                    ),
                );
                mode
            }
        };
        if mode != Mode::Off {
            modes.insert(name.to_owned(), mode);
        }
    }
    modes
}

pub fn mode_of(modes: &BTreeMap<String, Mode>, namespace: &str) -> Mode {
    modes.get(namespace).copied().unwrap_or(Mode::Off)
}
