//! `kubectl tollgate`: the same binary, run as `kubectl-tollgate` (a kubectl
//! plugin), runs `tollgate status|verify|counters|flows|analyze` in the
//! agent pod of a node (`--node NAME`) or of a pod's node (`--pod NS/NAME`)
//! through pods/exec, passes its stdout and stderr through and exits with
//! its exit code, as if it ran there.
//!
//! The kubeconfig is found as kubectl finds it: `--kubeconfig`, else
//! `KUBECONFIG`, else `~/.kube/config`, else in-cluster; `--context` picks a
//! context. Its own errors exit 1 (bad flags, a pod or node that does not
//! exist) or 2 (no agent pod there, RBAC refused, API server unreachable).
mod agent_pod;
mod args;
mod errors;
mod exec;

use std::path::Path;

use kube::{
    config::{KubeConfigOptions, Kubeconfig, KubeconfigError},
    Client, Config,
};

use super::CliError;
use args::{Parsed, PluginArgs, Target};
pub use errors::ALL_NEEDS;

/// Whether the binary was started as the kubectl plugin: its name
/// (argv[0]) ends with `kubectl-tollgate`.
pub fn invoked_as_plugin(argv0: &str) -> bool {
    argv0.ends_with("kubectl-tollgate")
}

/// Runs the plugin with the arguments after the program name; returns the
/// process exit code.
pub fn main(argv: &[String]) -> i32 {
    let p = match args::parse(argv) {
        Ok(Parsed::Run(p)) => p,
        Ok(Parsed::Help) => {
            print!("{}", args::USAGE);
            return 0;
        }
        Ok(Parsed::Version) => {
            // The same line as `tollgate --version`: it is the same binary.
            println!("tollgate {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return e.exit_code();
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return 2;
        }
    };
    let result = rt.block_on(run(&p));
    // A stdin copy may still wait for input: do not wait for it.
    rt.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn run(p: &PluginArgs) -> Result<i32, CliError> {
    let client = client(p.kubeconfig.as_deref(), p.context.as_deref()).await?;
    let node = match &p.target {
        Target::Node(n) => n.clone(),
        Target::Pod { namespace, name } => agent_pod::node_of_pod(&client, namespace, name).await?,
    };
    let pod = agent_pod::find(&client, &p.agent_namespace, &node).await?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let container = agent_pod::container(&pod)
        .ok_or_else(|| CliError::Environment(format!("agent pod {}/{pod_name} has no container", p.agent_namespace)))?;
    let command = args::remote_command(p, &agent_pod::global_flags(container));
    exec::run(
        &client,
        exec::Remote {
            namespace: &p.agent_namespace,
            pod: &pod_name,
            container: &container.name,
            node: &node,
            command,
            stdin: args::wants_stdin(p),
        },
    )
    .await
}

/// A client as kubectl would make it.
async fn client(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Client, CliError> {
    let opts = KubeConfigOptions { context: context.map(str::to_owned), ..Default::default() };
    let config = match (kubeconfig, context) {
        (Some(path), _) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| CliError::Input(format!("kubectl tollgate: flag --kubeconfig: {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &opts).await.map_err(kubeconfig_error)?
        }
        (None, Some(_)) => Config::from_kubeconfig(&opts).await.map_err(kubeconfig_error)?,
        (None, None) => Config::infer().await.map_err(|e| {
            CliError::Environment(format!(
                "no Kubernetes configuration (--kubeconfig, $KUBECONFIG, ~/.kube/config or in-cluster): {e}"
            ))
        })?,
    };
    Client::try_from(config).map_err(|e| CliError::Environment(format!("Kubernetes client: {e}")))
}

fn kubeconfig_error(e: KubeconfigError) -> CliError {
    match e {
        KubeconfigError::LoadContext(_) | KubeconfigError::FindPath => {
            CliError::Input(format!("kubectl tollgate: flag --context / --kubeconfig: {e}"))
        }
        other => CliError::Environment(format!("kubeconfig: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_by_its_name() {
        assert!(invoked_as_plugin("/usr/local/bin/kubectl-tollgate"));
        assert!(invoked_as_plugin("kubectl-tollgate"));
        assert!(!invoked_as_plugin("/usr/local/bin/tollgate"));
    }

    #[test]
    fn an_unknown_context_is_bad_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: here, context: {cluster: c, user: u}}]\ncurrent-context: here\n",
        )
        .expect("write");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let e = rt.block_on(client(Some(&path), Some("elsewhere"))).err().expect("no such context");
        assert_eq!(e.exit_code(), 1, "{e}");
        assert!(e.to_string().contains("elsewhere"), "{e}");
        assert!(rt.block_on(client(Some(&path), Some("here"))).is_ok());
        let e = rt.block_on(client(Some(&dir.path().join("missing")), None)).err().expect("no file");
        assert!(e.exit_code() == 1 && e.to_string().contains("flag --kubeconfig"), "{e}");
    }
}
