//! `--log-format json`: every line the agent writes is one JSON object
//! with `level`, `time`, `component` and `message`; a line about an object
//! names it in `object` (an invalid NetworkPolicy here), so that
//! `kubectl logs … | jq 'select(.level=="error")'` finds it.
//!
//! Needs root, bpffs, cgroup v2, iproute2 and the agent binary.

use std::path::Path;

use serde_json::Value;
use tollgate_e2e::agent::default_tollgate_bin;
use tollgate_e2e::story::Story;

const BAD_POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: bad-cidr
  namespace: test-egress
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.300/8
";

#[test]
fn every_agent_log_line_is_flat_json_and_names_the_invalid_object() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    std::fs::write(story.manifests.join("bad-policy.yaml"), BAD_POLICY).expect("writing the invalid object");
    let mut cfg = story.agent_config(&default_tollgate_bin());
    cfg.extra_args = vec!["--log-format".into(), "json".into()];
    story.start_agent_with(cfg).expect("starting the agent");

    let log = story.agent().log_files()[0].clone();
    let text = std::fs::read_to_string(&log).expect("agent log");
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\nlog:\n{text}")))
        .collect();
    assert!(lines.len() >= 3, "the agent logs its start-up:\n{text}");
    for l in &lines {
        for key in ["level", "time", "component", "message"] {
            assert!(l[key].is_string(), "{key} missing or not a string in {l}");
        }
        assert!(["error", "warn", "info", "debug", "trace"].contains(&l["level"].as_str().unwrap_or_default()), "{l}");
        assert!(l.get("fields").is_none(), "fields are flat, not nested: {l}");
        let t = l["time"].as_str().unwrap_or_default();
        assert!(t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T', "RFC 3339 UTC: {l}");
    }
    let bad: Vec<&Value> = lines.iter().filter(|l| l["object"] == "NetworkPolicy test-egress/bad-cidr").collect();
    assert!(!bad.is_empty(), "a line names the invalid object:\n{text}");
    for l in &bad {
        assert!(l["level"] == "error" || l["level"] == "warn", "{l}");
        assert!(l["field"].as_str().is_some_and(|f| f.contains("ipBlock")), "the field at fault: {l}");
        assert!(!l["message"].as_str().unwrap_or_default().is_empty(), "{l}");
    }
    let components: std::collections::BTreeSet<&str> = lines.iter().filter_map(|l| l["component"].as_str()).collect();
    assert!(components.contains("datapath") && components.contains("runtime"), "components by module: {components:?}\n{text}");
}
