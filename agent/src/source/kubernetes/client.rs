//! The API server configuration, in the contract's order: in-cluster,
//! else `--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`.
use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tracing::info;

use super::KubeSourceError;

pub async fn config(kubeconfig: Option<&Path>) -> Result<Config, KubeSourceError> {
    if let Ok(c) = Config::incluster() {
        info!(url = %c.cluster_url, "using the in-cluster configuration");
        return Ok(c);
    }
    let opts = KubeConfigOptions::default();
    if let Some(path) = kubeconfig {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| KubeSourceError::Config(format!("--kubeconfig {}: {e}", path.display())))?;
        let c = Config::from_custom_kubeconfig(kc, &opts)
            .await
            .map_err(|e| KubeSourceError::Config(format!("--kubeconfig {}: {e}", path.display())))?;
        info!(url = %c.cluster_url, kubeconfig = %path.display(), "using --kubeconfig");
        return Ok(c);
    }
    let c = Config::from_kubeconfig(&opts).await.map_err(|e| {
        KubeSourceError::Config(format!(
            "not in a cluster, no --kubeconfig, and KUBECONFIG / ~/.kube/config: {e}"
        ))
    })?;
    info!(url = %c.cluster_url, "using KUBECONFIG or ~/.kube/config");
    Ok(c)
}

pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, KubeSourceError> {
    let c = config(kubeconfig).await?;
    Client::try_from(c).map_err(KubeSourceError::Client)
}
