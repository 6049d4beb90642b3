//! The plugin's command line: its own flags (where to run) are taken out
//! wherever they stand; the rest is the `tollgate` subcommand to run in the
//! agent pod, passed through unchanged.
use std::path::PathBuf;

use crate::cli::CliError;

/// The subcommands that run in the agent pod.
pub const SUBCOMMANDS: [&str; 5] = ["status", "verify", "counters", "flows", "analyze"];

/// The namespace and label of the agent pods (deploy/).
pub const AGENT_NAMESPACE: &str = "tollgate-system";
pub const AGENT_SELECTOR: &str = "app.kubernetes.io/name=tollgate";

pub const USAGE: &str = "\
Run a tollgate command in the Tollgate agent of a node, as if it ran there.

Usage:
  kubectl tollgate (status|verify|counters|flows|analyze) (--node NAME | --pod NS/NAME) [ARGS...]

Where:
  --node NAME               the node whose agent answers
  --pod NS/NAME             the node of this pod; `verify --pod` also means --from-pod NS/NAME,
                            `flows --pod` only that pod's flows
  --kubeconfig FILE         (default: $KUBECONFIG, else ~/.kube/config, else in-cluster)
  --context NAME            a context of the kubeconfig
  --agent-namespace NS      where the agent pods run (default tollgate-system; label
                            app.kubernetes.io/name=tollgate)

ARGS are the subcommand's own flags (see `tollgate SUBCOMMAND --help`). The agent pod's
--bpffs and --state-dir are passed along. The exit code is the remote command's.

Examples:
  kubectl tollgate status --node worker-1
  kubectl tollgate verify --pod shop/web-0 --to-ip 203.0.113.10 --to-port 443
  kubectl tollgate flows --pod shop/web-0 -o json
";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Node(String),
    Pod { namespace: String, name: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginArgs {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub agent_namespace: String,
    pub target: Target,
    pub subcommand: String,
    /// The subcommand's own arguments, in order.
    pub args: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(PluginArgs),
    Help,
    Version,
}

fn input(msg: impl Into<String>) -> CliError {
    CliError::Input(format!("kubectl tollgate: {}", msg.into()))
}

/// Parses the arguments after the program name.
pub fn parse(argv: &[String]) -> Result<Parsed, CliError> {
    const OURS: [&str; 5] = ["--kubeconfig", "--context", "--node", "--pod", "--agent-namespace"];
    let mut values: Vec<(&str, String)> = Vec::new();
    let mut rest: Vec<String> = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if OURS.contains(&f) => (f, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        if OURS.contains(&flag) {
            let value = match inline {
                Some(v) => v,
                None => it.next().cloned().ok_or_else(|| input(format!("flag {flag}: needs a value")))?,
            };
            if value.is_empty() {
                return Err(input(format!("flag {flag}: empty value")));
            }
            if values.iter().any(|(f, _)| *f == flag) {
                return Err(input(format!("flag {flag}: given twice")));
            }
            values.push((flag, value));
        } else {
            rest.push(a.clone());
        }
    }
    let get = |flag: &str| values.iter().find(|(f, _)| *f == flag).map(|(_, v)| v.clone());
    let target = match (get("--node"), get("--pod")) {
        (Some(_), Some(_)) => return Err(input("flags --node and --pod: give one of them")),
        (Some(node), None) => Some(Target::Node(node)),
        (None, Some(pod)) => {
            let Some((namespace, name)) = pod.split_once('/').filter(|(ns, n)| !ns.is_empty() && !n.is_empty() && !n.contains('/')) else {
                return Err(input(format!("flag --pod: {pod:?} is not NAMESPACE/NAME")));
            };
            Some(Target::Pod { namespace: namespace.to_owned(), name: name.to_owned() })
        }
        (None, None) => None,
    };
    let first = rest.first().map(String::as_str);
    match first {
        None | Some("-h" | "--help" | "help") => return Ok(Parsed::Help),
        Some("-V" | "--version") => return Ok(Parsed::Version),
        _ => {}
    }
    let subcommand = rest.remove(0);
    if !SUBCOMMANDS.contains(&subcommand.as_str()) {
        return Err(input(format!("unknown subcommand {subcommand:?}: one of {}", SUBCOMMANDS.join(", "))));
    }
    let Some(target) = target else {
        if rest.iter().any(|a| a == "-h" || a == "--help") {
            return Ok(Parsed::Help);
        }
        return Err(input("flag --node NAME or --pod NS/NAME: required (which node's agent should answer?)"));
    };
    Ok(Parsed::Run(PluginArgs {
        kubeconfig: get("--kubeconfig").map(PathBuf::from),
        context: get("--context"),
        agent_namespace: get("--agent-namespace").unwrap_or_else(|| AGENT_NAMESPACE.to_owned()),
        target,
        subcommand,
        args: rest,
    }))
}

fn has_flag(args: &[String], flag: &str) -> bool {
    args.iter().any(|a| a == flag || a.strip_prefix(flag).is_some_and(|r| r.starts_with('=')))
}

/// The command line to run in the agent container: `tollgate`, the
/// agent's `global` flags the user did not give, the subcommand, what
/// `--pod` implies for it, then the user's arguments.
pub fn remote_command(p: &PluginArgs, global: &[(String, String)]) -> Vec<String> {
    let mut cmd = vec!["tollgate".to_owned()];
    for (flag, value) in global {
        if !has_flag(&p.args, flag) {
            cmd.push(flag.clone());
            cmd.push(value.clone());
        }
    }
    cmd.push(p.subcommand.clone());
    if let Target::Pod { namespace, name } = &p.target {
        match p.subcommand.as_str() {
            "verify" if !has_flag(&p.args, "--from-pod") && !has_flag(&p.args, "--batch") => {
                cmd.extend(["--from-pod".to_owned(), format!("{namespace}/{name}")]);
            }
            "flows" if !has_flag(&p.args, "--namespace") && !has_flag(&p.args, "--pod") => {
                cmd.extend(["--namespace".to_owned(), namespace.clone(), "--pod".to_owned(), name.clone()]);
            }
            _ => {}
        }
    }
    cmd.extend(p.args.iter().cloned());
    cmd
}

/// The remote command reads stdin only for `verify --batch -`.
pub fn wants_stdin(p: &PluginArgs) -> bool {
    p.subcommand == "verify" && (p.args.windows(2).any(|w| w[0] == "--batch" && w[1] == "-") || p.args.iter().any(|a| a == "--batch=-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> PluginArgs {
        match parse(&args(s)) {
            Ok(Parsed::Run(p)) => p,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn our_flags_anywhere_the_rest_in_order() {
        let p = run("--context prod status --node=worker-1 -o json --kubeconfig /k");
        assert_eq!(p.target, Target::Node("worker-1".into()));
        assert_eq!((p.context.as_deref(), p.kubeconfig.clone()), (Some("prod"), Some(PathBuf::from("/k"))));
        assert_eq!((p.subcommand.as_str(), p.args.clone()), ("status", args("-o json")));
        assert_eq!(p.agent_namespace, "tollgate-system");
        assert_eq!(remote_command(&p, &[]), args("tollgate status -o json"));
    }

    #[test]
    fn pod_implies_from_pod_for_verify_and_a_filter_for_flows() {
        let p = run("verify --pod shop/web-0 --to-ip 203.0.113.10 --to-port 443");
        assert_eq!(p.target, Target::Pod { namespace: "shop".into(), name: "web-0".into() });
        let global = [("--bpffs".to_owned(), "/sys/fs/bpf/tg".to_owned())];
        assert_eq!(
            remote_command(&p, &global),
            args("tollgate --bpffs /sys/fs/bpf/tg verify --from-pod shop/web-0 --to-ip 203.0.113.10 --to-port 443")
        );
        let p = run("verify --pod shop/web-0 --from-pod shop/other --to-ip 1.2.3.4 --to-port 1");
        assert_eq!(remote_command(&p, &[]), args("tollgate verify --from-pod shop/other --to-ip 1.2.3.4 --to-port 1"));
        let p = run("flows --pod shop/web-0 -o json");
        assert_eq!(remote_command(&p, &[]), args("tollgate flows --namespace shop --pod web-0 -o json"));
        let p = run("counters --pod shop/web-0");
        assert_eq!(remote_command(&p, &[]), args("tollgate counters"));
    }

    #[test]
    fn the_users_global_flags_win() {
        let p = run("status --node n --bpffs=/mine");
        let global = [("--bpffs".to_owned(), "/theirs".to_owned()), ("--state-dir".to_owned(), "/s".to_owned())];
        assert_eq!(remote_command(&p, &global), args("tollgate --state-dir /s status --bpffs=/mine"));
    }

    #[test]
    fn bad_input_names_the_flag() {
        for (line, want) in [
            ("status", "--node NAME or --pod NS/NAME: required"),
            ("status --node a --pod b/c", "give one of them"),
            ("verify --pod web-0", "flag --pod: \"web-0\" is not NAMESPACE/NAME"),
            ("verify --pod /web-0", "not NAMESPACE/NAME"),
            ("status --node", "flag --node: needs a value"),
            ("status --node a --node b", "given twice"),
            ("agent --node a", "unknown subcommand \"agent\""),
        ] {
            let e = parse(&args(line)).expect_err(line);
            assert_eq!(e.exit_code(), 1, "{line}");
            assert!(e.to_string().contains(want), "{line}: {e}");
        }
        assert_eq!(parse(&args("")).ok(), Some(Parsed::Help));
        assert_eq!(parse(&args("--help")).ok(), Some(Parsed::Help));
        assert_eq!(parse(&args("status --help")).ok(), Some(Parsed::Help));
        assert_eq!(parse(&args("--version")).ok(), Some(Parsed::Version));
    }

    #[test]
    fn stdin_only_for_a_batch_from_stdin() {
        assert!(wants_stdin(&run("verify --node n --batch -")));
        assert!(wants_stdin(&run("verify --node n --batch=-")));
        assert!(!wants_stdin(&run("verify --node n --batch /f")));
        assert!(!wants_stdin(&run("status --node n")));
    }
}
