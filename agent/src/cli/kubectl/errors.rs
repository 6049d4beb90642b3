//! API errors in the on-call engineer's words: a refusal by RBAC names the
//! permission the plugin needs.
use kube::client::UpgradeConnectionError;

use crate::cli::CliError;

/// The permission a call needed.
pub enum Needs<'a> {
    /// `get` on pods in the namespace of `--pod`.
    GetPod(&'a str),
    /// `list` on pods in the agent namespace.
    ListAgents(&'a str),
    /// `get` and `create` on pods/exec in the agent namespace (the
    /// WebSocket upgrade is a GET; Kubernetes 1.35+ also checks create).
    Exec(&'a str),
}

impl Needs<'_> {
    fn describe(&self) -> String {
        match self {
            Needs::GetPod(ns) => format!("`get` on pods in namespace {ns}"),
            Needs::ListAgents(ns) => format!("`list` on pods in namespace {ns}"),
            Needs::Exec(ns) => format!("`get` and `create` on pods/exec in namespace {ns}"),
        }
    }
}

/// Everything the plugin may ask for, for the RBAC messages and the README.
pub const ALL_NEEDS: &str = "get on pods in the namespaces of the pods named with --pod, list on pods and get and create on pods/exec in tollgate-system (get on nodes is optional: it tells a misspelt --node apart)";

fn refused(what: &str, detail: &str, needs: &Needs<'_>) -> CliError {
    CliError::Environment(format!(
        "{what}: refused by RBAC ({detail}): kubectl tollgate needs {} (in all: {ALL_NEEDS}); check with `kubectl auth can-i`",
        needs.describe()
    ))
}

/// An error of a plain API call.
pub fn api_error(e: kube::Error, what: &str, needs: Needs<'_>) -> CliError {
    match &e {
        kube::Error::Api(s) if s.code == 403 => refused(what, &s.message, &needs),
        kube::Error::Api(s) if s.code == 401 => CliError::Environment(format!(
            "{what}: not authenticated ({}): check the credentials of your kubeconfig (--kubeconfig, --context)",
            s.message
        )),
        _ => CliError::Environment(format!("{what}: {e}")),
    }
}

/// An error of the pods/exec upgrade (the body of a refusal is not read by
/// the client, only its status code).
pub fn exec_error(e: kube::Error, pod: &str, agent_namespace: &str, node: &str) -> CliError {
    let what = format!("exec in agent pod {agent_namespace}/{pod}");
    match &e {
        kube::Error::UpgradeConnection(UpgradeConnectionError::ProtocolSwitch(code)) => match code.as_u16() {
            403 => refused(&what, "403 Forbidden", &Needs::Exec(agent_namespace)),
            401 => CliError::Environment(format!("{what}: not authenticated: check the credentials of your kubeconfig")),
            404 => CliError::Environment(format!("{what}: the pod or its container is gone (404); run the command again")),
            c if c >= 500 => CliError::Environment(format!(
                "{what}: the API server could not reach the kubelet of node {node} ({code}); is the node Ready?"
            )),
            _ => CliError::Environment(format!("{what}: {e}")),
        },
        kube::Error::Api(s) if s.code == 403 => refused(&what, &s.message, &Needs::Exec(agent_namespace)),
        _ => CliError::Environment(format!("{what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_exec_names_the_permission() {
        let e = exec_error(
            kube::Error::UpgradeConnection(UpgradeConnectionError::ProtocolSwitch(http::StatusCode::FORBIDDEN)),
            "agent-x",
            "tollgate-system",
            "n1",
        );
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(text.contains("refused by RBAC") && text.contains("`get` and `create` on pods/exec in namespace tollgate-system"), "{text}");
    }
}
