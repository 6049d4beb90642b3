//! No pod gets packets out before its policy is in place.
//!
//! The agent already knows the pod (its object is in the source); its
//! cgroup does not exist yet. A process then creates the pod's cgroup the
//! way the kubelet does, joins it, and sends UDP to the external host in a
//! tight loop from that moment on. A sink on the external host counts what
//! arrives: nothing may, and the sender must see the refusal (EPERM) once
//! the agent has classified the cgroup.
//!
//! The figures (datagrams that got out, microseconds until the first
//! refusal) are printed; run with `TOLLGATE_BIN` pointing at an older
//! build to measure its window.
use std::path::Path;
use std::time::Duration;

use tollgate_e2e::agent::{default_tollgate_bin, find_workload};
use tollgate_e2e::util::poll;
use tollgate_e2e::burst::BurstResult;
use tollgate_e2e::pods;
use tollgate_e2e::procs::{exec_in_command, run_capture, Proc};
use tollgate_e2e::story::{v4, Story};

const LATE_UID: &str = "6f1c2a3e-0000-4000-8000-000000000099";
const SINK_PORT: u16 = 9999;

fn late_pod_manifest() -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: late\n  namespace: test-egress\n  uid: {LATE_UID}\nspec:\n  nodeName: node-1\n  containers: [{{name: app, image: sleep}}]\nstatus:\n  phase: Running\n  podIP: 10.244.0.99\n  podIPs: [{{ip: 10.244.0.99}}]\n"
    )
}

#[test]
fn a_new_pod_cgroup_sends_nothing_before_its_policy_is_in_place() {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut story = Story::build(e2e).expect("building the sandbox");
    std::fs::write(story.manifests.join("late-pod.yaml"), late_pod_manifest()).expect("writing the pod");
    story.start_agent(&default_tollgate_bin()).expect("starting the agent");
    let agent = story.agent.as_ref().expect("agent");
    poll("the agent to know test-egress/late (no cgroup yet)", Duration::from_secs(15), || {
        let st = agent.status()?;
        Ok(find_workload(&st, "test-egress", "late").filter(|w| w["mode"] == "enforce" && w["cgroups"] == 0).map(|_| ()))
    })
    .expect("the agent knows the pod before its cgroup exists");

    let ext = story.topo.external_ns.clone();
    let sink_log = story.dir.path.join("udp-sink.log");
    let sink_cmd = exec_in_command(e2e, Some(&ext), None, e2e, &["udp-sink".into(), "--listen".into(), v4(pods::EXTERNAL_V4, SINK_PORT).to_string()]);
    let sink = Proc::spawn("udp-sink", sink_cmd, sink_log.clone(), Some(Duration::from_secs(10))).expect("starting the sink");

    let pod_dir = story
        .cgroups
        .root
        .join("kubepods.slice/kubepods-besteffort.slice")
        .join(format!("kubepods-besteffort-pod{}.slice", LATE_UID.replace('-', "_")));
    let container = pod_dir.join("cri-containerd-0000000000000000000000000000000000000000000000000000000000000099.scope");
    let netns = story.topo.pod_ns(&pods::TEST_EGRESS_SLEEP).to_string();
    let mut burst = std::process::Command::new(e2e);
    burst.args(["burst", "--netns", &netns, "--to", &v4(pods::EXTERNAL_V4, SINK_PORT).to_string(), "--count", "20000", "--cgroup"]).arg(&container);
    let out = run_capture(burst, Duration::from_secs(60)).expect("running the burst");
    let result: BurstResult = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("burst output {out:?}: {e}"));
    // Whatever left must have reached the sink by now.
    std::thread::sleep(Duration::from_millis(500));
    let arrived = sink.log_text().lines().filter(|l| l.starts_with("got ")).count();
    eprintln!(
        "[pod-start window] {arrived} datagrams reached the external host; kernel accepted {} sends, refused {} with EPERM; first refusal {:?} µs after the cgroup was created; 20000 sends took {} µs",
        result.sent_ok, result.eperm, result.first_eperm_us, result.elapsed_us
    );
    // Control: the sink does receive what an unenforced pod sends.
    let control = story.probe(&pods::DEFAULT_SLEEP, &["udp".into(), "--to".into(), v4(pods::EXTERNAL_V4, SINK_PORT).to_string(), "--payload".into(), "control".into()], Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(300));
    let sink_text = sink.log_text();
    assert!(sink_text.contains("got control from"), "the sink saw nothing from default/sleep: {control:?}\n{sink_text}");
    // Leave the cgroup so the story can remove it.
    let _ = std::fs::remove_dir(&container);
    let _ = std::fs::remove_dir(&pod_dir);
    assert!(result.eperm > 0, "the policy never arrived: {result:?}");
    assert_eq!(arrived, 0, "{arrived} datagrams left the new pod before its policy was in place: {result:?}");
    drop(sink);
}
