//! The desired datapath state: what the pure policy compiler produces and
//! the datapath reconciler writes into the BPF maps. No I/O here.
use std::collections::BTreeMap;

use agent_common::{PortRule, RuleSet};
use ipnet::IpNet;
use serde::Serialize;

/// Enforcement mode of a namespace (label `tollgate.dev/egress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Off,
    Enforce,
    Audit,
}

impl Mode {
    pub fn as_u8(self) -> u8 {
        match self {
            Mode::Off => agent_common::MODE_OFF,
            Mode::Enforce => agent_common::MODE_ENFORCE,
            Mode::Audit => agent_common::MODE_AUDIT,
        }
    }
    pub fn from_u8(v: u8) -> Mode {
        match v {
            agent_common::MODE_ENFORCE => Mode::Enforce,
            agent_common::MODE_AUDIT => Mode::Audit,
            _ => Mode::Off,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// One pod that runs on this node, as the datapath must treat it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DesiredWorkload {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub mode: Mode,
    /// `agent_common::FLAG_*` bits.
    pub flags: u8,
    /// Key into [`DesiredState::policies`]; `0` (no rules of its own) for
    /// workloads that are not enforced.
    pub policy: u32,
    /// The pod's runtime class when it is a sandboxed runtime (gVisor,
    /// Kata): the TC layer alone enforces it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandboxed: Option<String>,
}

/// One allow rule before flattening: destinations `net` minus `except`,
/// on `rule`'s protocol and ports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct AllowRule {
    pub net: IpNet,
    pub except: Vec<IpNet>,
    #[serde(skip)]
    pub rule: PortRule,
    /// What granted the rule, in the operator's words (e.g.
    /// `NetworkPolicy x/allow-dns spec.egress[0].to[1]`): named by `verify`.
    pub origin: String,
}

/// A flattened trie entry: for every address whose longest matching
/// prefix is `net`, exactly `rules` apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrieEntry {
    pub net: IpNet,
    pub rules: RuleSet,
}

/// Problems found in the input. The object and field are named so that an
/// operator can find them; the rest of the input still applies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// e.g. `Pod test-egress/sleep` or `Namespace shop`.
    pub object: String,
    /// e.g. `metadata.labels["tollgate.dev/egress"]`.
    pub field: String,
    pub message: String,
    /// File the object came from (files source), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: field {}: {}", self.object, self.field, self.message)?;
        if let Some(src) = &self.source {
            write!(f, " (in {src})")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// An object (or part of one) that is valid but has no effect under the
/// trust rules of the contract ("Who may widen egress"), or that the
/// compiler set aside for another reason an operator should know (a
/// gateway pod with no address yet). Shown by `analyze` and `status`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub struct Ignored {
    /// Kind of the object (`Pod`, `ServiceEntry`, ...), for metrics.
    pub kind: String,
    /// e.g. `Pod tenant/fake-gw`.
    pub object: String,
    /// The rule that set it aside, a stable kebab-case code (see
    /// [`crate::compiler::ignored`]).
    pub rule: String,
    /// One sentence: what is ignored and why.
    pub message: String,
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ignored ({}): {}", self.object, self.rule, self.message)
    }
}

/// Everything the datapath needs, computed from the cluster objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    /// Pods of this node (or of every node when no node name is set),
    /// keyed by pod UID.
    pub workloads: BTreeMap<String, DesiredWorkload>,
    /// Flattened rule tries per policy id. Id
    /// [`agent_common::POLICY_GLOBAL`] holds the node-wide rules
    /// (gateways, cluster DNS); each distinct workload rule set gets its
    /// own id, derived from its content so that it is stable across agent
    /// restarts.
    pub policies: BTreeMap<u32, Vec<TrieEntry>>,
    pub diagnostics: Vec<Diagnostic>,
    /// Host names whose addresses the rules need (OSM `Egress` hosts,
    /// `MESH_INTERNAL` ServiceEntry endpoints given by name): the runtime
    /// resolves them and binds the policy again with the answers
    /// ([`crate::compiler::bind`]).
    pub hosts: std::collections::BTreeSet<String>,
    /// Where each rule came from, for `verify` and `status`.
    pub explain: crate::explain::Explain,
    /// Objects set aside under the trust rules (see [`Ignored`]).
    pub ignored: Vec<Ignored>,
}
