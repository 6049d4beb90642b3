//! Running the command in the agent pod through pods/exec (WebSocket, as
//! kubectl does), passing stdout and stderr through and returning the
//! remote exit code.
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::{api::AttachParams, Api, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::errors::exec_error;
use crate::cli::CliError;

/// The exit code a finished exec reports: 0 on success (or no status at
/// all: the v4 protocol sends none for success), the code of a
/// `NonZeroExitCode` failure, else an error with the server's message.
pub fn exit_code(status: Option<&Status>) -> Result<i32, CliError> {
    let Some(s) = status else { return Ok(0) };
    if s.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if s.reason.as_deref() == Some("NonZeroExitCode") {
        let code = s
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.trim().parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(code);
        }
    }
    Err(CliError::Environment(format!(
        "the command did not run in the agent pod: {}",
        s.message.as_deref().unwrap_or("no reason given")
    )))
}

pub struct Remote<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    pub node: &'a str,
    pub command: Vec<String>,
    pub stdin: bool,
}

/// Runs `r.command`; its stdout and stderr go to ours as they come.
pub async fn run(client: &Client, r: Remote<'_>) -> Result<i32, CliError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), r.namespace);
    let ap = AttachParams::default().container(r.container).stdin(r.stdin).stdout(true).stderr(true);
    let mut proc = pods.exec(r.pod, r.command, &ap).await.map_err(|e| exec_error(e, r.pod, r.namespace, r.node))?;
    if let Some(remote_in) = proc.stdin() {
        forward_stdin(remote_in);
    }
    let out = proc.stdout().map(|o| tokio::spawn(pass_through(o, std::io::stdout)));
    let err = proc.stderr().map(|e| tokio::spawn(pass_through(e, std::io::stderr)));
    let status = match proc.take_status() {
        Some(s) => s.await,
        None => None,
    };
    for task in [out, err].into_iter().flatten() {
        let _ = task.await;
    }
    proc.join().await.map_err(|e| CliError::Environment(format!("exec in agent pod {}/{}: {e}", r.namespace, r.pod)))?;
    exit_code(status.as_ref())
}

/// Copies a remote stream to a local one as it comes (plain blocking
/// writes: the output is small and the terminal is ours).
async fn pass_through<R, W>(mut from: R, to: fn() -> W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: std::io::Write,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut w = to();
                if w.write_all(&buf[..n]).and_then(|_| w.flush()).is_err() {
                    break;
                }
            }
        }
    }
}

/// Our stdin to the remote command, then EOF. A thread reads it (it may
/// never end: not awaited), a task writes it.
fn forward_stdin(mut remote_in: tokio::io::WriteHalf<tokio::io::SimplexStream>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if remote_in.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = remote_in.shutdown().await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: &str) -> Status {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
    }

    #[test]
    fn exit_codes_from_the_status() {
        assert_eq!(exit_code(None).ok(), Some(0));
        assert_eq!(exit_code(Some(&status(r#"{"status":"Success"}"#))).ok(), Some(0));
        let failed = status(
            r#"{"status":"Failure","reason":"NonZeroExitCode","message":"command terminated with non-zero exit code","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}"#,
        );
        assert_eq!(exit_code(Some(&failed)).ok(), Some(2));
        let internal = status(r#"{"status":"Failure","reason":"InternalError","message":"\"sh\" is not allowed"}"#);
        let e = exit_code(Some(&internal)).expect_err("not run");
        assert!(e.exit_code() == 2 && e.to_string().contains("\"sh\" is not allowed"), "{e}");
    }
}
