//! `tollgate analyze`: risky or ineffective configuration.
//!
//! - `--manifests DIR [--cluster-cidr CIDR]... [--trusted-namespace NS]...
//!   [--osm-namespace NS]`: offline, analyzes the folder (every pod, as if
//!   one node ran them all);
//! - without `--manifests`: prints the findings the running agent wrote to
//!   `<state-dir>/analysis.json`.
//!
//! Findings are not failures: the exit code is 0 whatever they are; 1 for
//! bad input (unreadable folder, bad CIDR), 2 when there is no analysis
//! file.
use std::io::Write;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use super::{CliError, OutputFormat};
use crate::{
    analyze::{self, FindingSeverity, Report},
    compiler::{self, CompilerConfig},
    runtime::state::ANALYSIS_FILE,
    source::files,
};

/// Where the findings come from.
pub enum Source {
    /// Analyze this folder of manifests with these cluster CIDRs (as typed)
    /// and trust flags.
    Manifests { dir: PathBuf, cluster_cidrs: Vec<String>, trust: Trust },
    /// Read the running agent's analysis file from its state folder.
    Agent { state_dir: PathBuf },
}

/// `--trusted-namespace NS`... and `--osm-namespace NS` as given (empty
/// and `None`: the defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    pub trusted_namespaces: Vec<String>,
    pub osm_namespace: Option<String>,
}

impl Trust {
    /// Check the names (a namespace name is a DNS label); bad ones are
    /// input errors naming the flag.
    pub fn check(&self, command: &str) -> Result<(), CliError> {
        let flags = self
            .trusted_namespaces
            .iter()
            .map(|n| ("--trusted-namespace", n))
            .chain(self.osm_namespace.iter().map(|n| ("--osm-namespace", n)));
        for (flag, name) in flags {
            let ok = !name.is_empty()
                && name.len() <= 63
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.starts_with('-')
                && !name.ends_with('-');
            if !ok {
                return Err(CliError::Input(format!(
                    "{command}: flag {flag}: {name:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
                )));
            }
        }
        Ok(())
    }

    /// `config` with these flags applied.
    pub fn apply(&self, config: CompilerConfig) -> CompilerConfig {
        config.with_trust(self.trusted_namespaces.clone(), self.osm_namespace.clone())
    }
}

/// Parse `--cluster-cidr` values (bad ones are input errors, exit 1).
pub fn parse_cidrs(values: &[String]) -> Result<Vec<IpNet>, CliError> {
    values
        .iter()
        .map(|v| {
            v.trim().parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
                CliError::Input(format!("analyze: flag --cluster-cidr: {v:?} is not a CIDR (for example 10.244.0.0/16)"))
            })
        })
        .collect()
}

/// Load `dir`, compile it for every node and analyze it. Loading problems
/// join the compiler's diagnostics (reported as `invalid-object`), as the
/// agent does.
pub fn analyze_dir(dir: &Path, cluster_cidrs: Vec<IpNet>, trust: &Trust) -> Result<Report, CliError> {
    let (snapshot, mut diags) =
        files::load_dir(dir).map_err(|e| CliError::Input(format!("analyze: flag --manifests: {e}")))?;
    let config = trust.apply(CompilerConfig { node_name: None, cluster_cidrs, ..Default::default() });
    let mut policy = compiler::compile(&snapshot, &config);
    diags.append(&mut policy.diagnostics);
    diags.sort();
    diags.dedup();
    policy.diagnostics = diags;
    Ok(analyze::analyze(&snapshot, &policy, &config))
}

/// The agent's last analysis; missing or unreadable is exit 2.
pub fn read_agent_report(state_dir: &Path) -> Result<Report, CliError> {
    let path = state_dir.join(ANALYSIS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::Environment(format!(
            "no analysis at {} ({e}): the agent is not running, or is too old to write one; start `tollgate agent` (with the same --bpffs or --state-dir), or analyze manifests offline with --manifests DIR",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::Environment(format!(
            "the analysis at {} cannot be read ({e}): the agent is of another version than this command; use the same release for both",
            path.display()
        ))
    })
}

/// One line per finding: `severity code object[ field][ (rule r)]:
/// message` (line breaks inside a text become spaces), then the counts.
pub fn render_text(report: &Report) -> String {
    let one_line = |s: &str| s.replace(['\r', '\n'], " ");
    let mut out = String::new();
    for f in &report.findings {
        out.push_str(f.severity.as_str());
        out.push(' ');
        out.push_str(&one_line(&f.code));
        out.push(' ');
        out.push_str(&one_line(&f.object));
        if let Some(field) = &f.field {
            out.push(' ');
            out.push_str(&one_line(field));
        }
        if let Some(rule) = &f.rule {
            out.push_str(" (rule ");
            out.push_str(&one_line(rule));
            out.push(')');
        }
        out.push_str(": ");
        out.push_str(&one_line(&f.message));
        out.push('\n');
    }
    out.push_str(&format!(
        "{} findings ({} errors, {} warnings, {} info)\n",
        report.findings.len(),
        report.count(FindingSeverity::Error),
        report.count(FindingSeverity::Warning),
        report.count(FindingSeverity::Info)
    ));
    out
}

impl Source {
    /// The source the flags ask for: `--cluster-cidr`, `--trusted-namespace`
    /// and `--osm-namespace` only go with `--manifests` (the agent analyzes
    /// with its own).
    pub fn from_flags(
        manifests: Option<PathBuf>,
        cluster_cidrs: Vec<String>,
        trust: Trust,
        state_dir: PathBuf,
    ) -> Result<Self, CliError> {
        trust.check("analyze")?;
        match manifests {
            Some(dir) => Ok(Source::Manifests { dir, cluster_cidrs, trust }),
            None if !cluster_cidrs.is_empty() => Err(CliError::Input(
                "analyze: flag --cluster-cidr: only with --manifests (the running agent analyzes with its own cluster CIDRs)".into(),
            )),
            None if trust != Trust::default() => Err(CliError::Input(
                "analyze: flags --trusted-namespace/--osm-namespace: only with --manifests (the running agent analyzes with its own)".into(),
            )),
            None => Ok(Source::Agent { state_dir }),
        }
    }
}

pub fn run(source: Source, format: OutputFormat) -> Result<(), CliError> {
    let report = match source {
        Source::Manifests { dir, cluster_cidrs, trust } => analyze_dir(&dir, parse_cidrs(&cluster_cidrs)?, &trust)?,
        Source::Agent { state_dir } => read_agent_report(&state_dir)?,
    };
    let text = match format {
        OutputFormat::Json => {
            let mut json = serde_json::to_string_pretty(&report)
                .map_err(|e| CliError::Environment(format!("cannot encode the report: {e}")))?;
            json.push('\n');
            json
        }
        OutputFormat::Text => render_text(&report),
    };
    // A closed pipe (`| head`) is not an error of the analysis.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::Finding;

    #[test]
    fn text_lines_and_summary() {
        let report = Report {
            findings: vec![
                Finding::new(FindingSeverity::Warning, "no-gateway", "cluster", None, "m1"),
                Finding::new(FindingSeverity::Info, "audit-mode", "Namespace a", Some("f"), "m2"),
            ],
        };
        assert_eq!(
            render_text(&report),
            "warning no-gateway cluster: m1\ninfo audit-mode Namespace a f: m2\n2 findings (0 errors, 1 warnings, 1 info)\n"
        );
        let multiline = Report { findings: vec![Finding::new(FindingSeverity::Error, "c", "o", None, "a\nb")] };
        assert!(render_text(&multiline).starts_with("error c o: a b\n"));
        let mut ignored = Finding::new(FindingSeverity::Warning, "ignored-untrusted", "Pod t/p", None, "m");
        ignored.rule = Some("untrusted-gateway-pod".into());
        assert!(render_text(&Report { findings: vec![ignored] }).starts_with("warning ignored-untrusted Pod t/p (rule untrusted-gateway-pod): m\n"));
    }

    #[test]
    fn bad_cidr_and_missing_inputs_have_their_exit_codes() {
        assert_eq!(parse_cidrs(&["10.0.0.0/99".into()]).map_err(|e| e.exit_code()).err(), Some(1));
        assert_eq!(parse_cidrs(&["10.1.2.3/8".into()]).ok(), Some(vec!["10.0.0.0/8".parse().expect("net")]));
        let tmp = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_agent_report(tmp.path()).err().map(|e| e.exit_code()), Some(2));
        assert_eq!(analyze_dir(&tmp.path().join("missing"), Vec::new(), &Trust::default()).err().map(|e| e.exit_code()), Some(1));
        std::fs::write(tmp.path().join(ANALYSIS_FILE), "{\"findings\": []}").expect("write");
        assert_eq!(read_agent_report(tmp.path()).ok(), Some(Report::default()));
        let flags = Source::from_flags(None, vec!["10.0.0.0/8".into()], Trust::default(), tmp.path().into());
        assert_eq!(flags.err().map(|e| e.exit_code()), Some(1));
        let trust = Trust { trusted_namespaces: vec!["gw".into()], osm_namespace: None };
        assert_eq!(Source::from_flags(None, Vec::new(), trust, tmp.path().into()).err().map(|e| e.exit_code()), Some(1));
        let bad = Trust { trusted_namespaces: vec!["Bad_NS".into()], osm_namespace: None };
        let err = Source::from_flags(Some(tmp.path().into()), Vec::new(), bad, tmp.path().into()).err();
        assert!(matches!(&err, Some(CliError::Input(m)) if m.contains("--trusted-namespace")), "{err:?}");
    }

    #[test]
    fn offline_analysis_reports_load_errors() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("bad.yaml"), "a: [").expect("write");
        let report = analyze_dir(tmp.path(), Vec::new(), &Trust::default()).expect("folder reads");
        assert!(report.findings.iter().any(|f| f.code == "invalid-object" && f.message.contains("bad.yaml")), "{report:#?}");
    }
}
