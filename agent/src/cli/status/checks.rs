//! The checklist: every check, in the order an on-call engineer asks.
use super::check::Check;
use super::observed::Observed;
use super::{agent_checks, datapath_checks, policy_checks, workload_checks};

/// Judges what was observed. The datapath checks always run; the others
/// need the agent's status file (without it, `agent` fails and says why).
pub fn evaluate(o: &Observed) -> Vec<Check> {
    let mut out = vec![datapath_checks::bpffs(o), datapath_checks::programs(o), datapath_checks::maps(o), agent_checks::agent(o)];
    let Some(s) = &o.status else { return out };
    let analysis = o.analysis.as_ref();
    out.extend([
        agent_checks::source_sync(s),
        agent_checks::last_apply(s, o.now),
        policy_checks::namespaces(s),
        policy_checks::namespace_labels(s),
        policy_checks::gateways(o, s),
        policy_checks::ignored(analysis),
        policy_checks::mesh(s, analysis),
        workload_checks::pod_cgroups(s, o.now),
        workload_checks::pod_layers(s, o.now),
        workload_checks::errors(s),
    ]);
    out
}
