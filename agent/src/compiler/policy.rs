//! The compiled policy: what [`super::compile`] makes of the cluster
//! objects before host names are resolved. [`super::bind`] turns it into
//! the datapath's [`crate::desired::DesiredState`] with the addresses the
//! runtime resolved; `analyze`, `status` and `verify` read it too.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use agent_common::PortRule;
use ipnet::IpNet;

use crate::desired::{AllowRule, Diagnostic, DesiredWorkload, Ignored, Mode, TrieEntry};
use crate::explain::{Explain, ExplainRule};

use super::ips::host_net;
use super::objects::PodKey;
use super::services::Frontends;

/// Where a rule lets a pod send: a network, or the addresses a host name
/// resolves to (bound later).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Destination {
    Net(IpNet),
    /// Lower-case DNS name without the trailing dot.
    Host(String),
}

/// One allow rule with a symbolic destination: `dest` minus `except`, on
/// `rule`'s protocol and ports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyRule {
    pub dest: Destination,
    pub except: Vec<IpNet>,
    pub rule: PortRule,
    /// What granted the rule, in the operator's words.
    pub origin: String,
}

impl PolicyRule {
    pub fn net(net: IpNet, rule: PortRule, origin: String) -> Self {
        Self { dest: Destination::Net(net.trunc()), except: Vec::new(), rule, origin }
    }

    pub fn host(name: String, rule: PortRule, origin: String) -> Self {
        Self { dest: Destination::Host(name), except: Vec::new(), rule, origin }
    }

    /// The rule with its host name (if any) replaced by the addresses in
    /// `resolved` (none yet: nothing).
    pub fn bind(&self, resolved: &BTreeMap<String, Vec<IpAddr>>, out: &mut Vec<AllowRule>) {
        match &self.dest {
            Destination::Net(net) => out.push(AllowRule {
                net: *net,
                except: self.except.clone(),
                rule: self.rule,
                origin: self.origin.clone(),
            }),
            Destination::Host(name) => {
                for ip in resolved.get(name).into_iter().flatten() {
                    out.push(AllowRule { net: host_net(*ip), except: Vec::new(), rule: self.rule, origin: self.origin.clone() });
                }
            }
        }
    }
}

impl From<AllowRule> for PolicyRule {
    fn from(r: AllowRule) -> Self {
        Self { dest: Destination::Net(r.net.trunc()), except: r.except, rule: r.rule, origin: r.origin }
    }
}

/// The flattened, Service-judged rules of one rule set, ready for the
/// datapath.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    pub entries: Vec<TrieEntry>,
    /// The rules (before flattening) with their origins, Service rules
    /// included.
    pub explain: Vec<ExplainRule>,
    /// Problems found while flattening (too many port rules on a prefix).
    pub diagnostics: Vec<Diagnostic>,
}

/// The workloads that share one rule set (they get one policy id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleGroup {
    /// Sorted, deduplicated.
    pub rules: Vec<PolicyRule>,
    /// UIDs of the member workloads.
    pub members: Vec<String>,
    /// Names the group in diagnostics (`Pod x/a (and 3 other pods ...)`).
    pub owner: String,
    /// The host names the rules use.
    pub hosts: BTreeSet<String>,
    /// The result when the rules use no host name (it does not depend on
    /// DNS answers, so it is computed once by `compile`).
    pub prepared: Option<Prepared>,
}

/// The compiled policy. Gateways and DNS (the global rules) never use
/// host names; each [`RuleGroup`] is independent of the others, so that
/// one group can be recomputed alone.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Pods of this node, keyed by UID; `policy` is set by `bind`.
    pub workloads: BTreeMap<String, DesiredWorkload>,
    /// Rules 1 and 2 (gateways, cluster DNS).
    pub global: Vec<AllowRule>,
    /// The global rules prepared for the datapath (flattened, Services
    /// judged).
    pub global_prepared: Prepared,
    /// Rules 3 to 5 per group of workloads with the same rules.
    pub groups: Vec<RuleGroup>,
    /// Every Service address and port with its endpoints (and what the
    /// global policy decides for them).
    pub(crate) frontends: Frontends,
    pub diagnostics: Vec<Diagnostic>,
    /// Objects set aside under the trust rules.
    pub ignored: Vec<Ignored>,
    /// Host names the rules need resolved.
    pub hosts: BTreeSet<String>,
    /// Provenance; `policies` and `resolved` are filled by `bind`.
    pub explain: Explain,
    /// Mode of each enforced or audited namespace (others are off).
    pub modes: BTreeMap<String, Mode>,
    pub trusted_namespaces: BTreeSet<String>,
    /// Gateway pods (trusted namespaces), with or without an address.
    pub gateway_pods: BTreeSet<PodKey>,
    /// Gateway pods that have a current address.
    pub gateway_pods_with_address: BTreeSet<PodKey>,
}

impl Policy {
    /// Mode of `namespace` (off when it is not labelled).
    pub fn mode(&self, namespace: &str) -> Mode {
        self.modes.get(namespace).copied().unwrap_or(Mode::Off)
    }
}
