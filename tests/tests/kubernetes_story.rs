//! The Istio egress-gateway story on a real API server: every object in a
//! private `kube-apiserver`, the pods in network namespaces and kubelet
//! cgroups, the agent on `--source kubernetes`.
//!
//! - enforcement follows `kubectl label namespace test-egress
//!   tollgate.dev/egress=enforce|audit` and its removal, and the time from
//!   `kubectl label` returning to the first probe that sees the new
//!   behaviour is measured over 100 flips (p50 and p99 printed);
//! - a NetworkPolicy applied with `kubectl apply` takes effect, and its
//!   deletion too;
//! - a pod deleted and re-created under the same name (a new UID, a new
//!   cgroup) is enforced;
//! - the API server stopped: enforcement holds; started again: the agent
//!   sees changes at once; the agent stopped while objects change: a new
//!   agent starts from the current objects.
//!
//! Needs root, bpffs, cgroup v2, iproute2, the agent binary and the local
//! control plane (`cargo xtask cluster build`, or TOLLGATE_APISERVER_BIN and
//! TOLLGATE_KUBECTL_BIN). Missing prerequisites fail the test.
use std::path::Path;
use std::time::Duration;

use tollgate_e2e::agent::{default_tollgate_bin, find_workload};
use tollgate_e2e::connect_watch::ConnectWatch;
use tollgate_e2e::kube_story::{set_pod_status, KubeStory};
use tollgate_e2e::pods::{self, PodSpec};
use tollgate_e2e::story::{v4, StoryOpts};
use tollgate_e2e::util::poll;

const LABEL: &str = "tollgate.dev/egress";
const T: Duration = Duration::from_secs(3);
const SEEN: Duration = Duration::from_secs(30);

fn te() -> PodSpec {
    pods::TEST_EGRESS_SLEEP
}

fn setup() -> KubeStory {
    tollgate_e2e::util::require_environment();
    let e2e = Path::new(env!("CARGO_BIN_EXE_tollgate-e2e"));
    let mut ks = KubeStory::build(e2e, StoryOpts::default()).expect("building the sandbox and the API server");
    ks.start_agent(&default_tollgate_bin()).expect("starting the agent on --source kubernetes");
    ks
}

fn watch(ks: &KubeStory, pod: &PodSpec, to: std::net::SocketAddr) -> ConnectWatch {
    let s = &ks.story;
    ConnectWatch::start(&s.e2e_bin, s.topo.pod_ns(pod), s.cgroups.container(pod), to).expect("starting connect-watch")
}

#[test]
fn the_istio_story_on_a_real_api_server() {
    let mut ks = setup();
    let ext4 = v4(pods::EXTERNAL_V4, 80);

    // The gateway story: direct refused, the gateway and cluster DNS work.
    let r = ks.story.probe_tcp(&te(), ext4, true, T).expect("probe");
    assert_eq!(r.errno, Some(libc::EPERM), "direct to the external host: {r:?}");
    let gw = pods::EGRESS_GATEWAY;
    let r = ks.story.probe_tcp(&te(), v4(gw.ipv4, pods::GATEWAY_PORT), true, T).expect("probe");
    assert!(r.ok && r.status == Some(200), "through the gateway: {r:?}");
    let r = ks.story.probe_dns(&te(), v4(pods::COREDNS.ipv4, 53), "A", false).expect("probe");
    assert!(r.ok && r.answers == vec!["203.0.113.10"], "cluster DNS: {r:?}");
    let st = ks.story.agent().status().expect("status");
    assert_eq!(st["source"], "kubernetes", "{st}");
    assert_eq!(st["cluster_cidrs_from"], "learned", "cluster ranges learned from node-1 and the ServiceCIDR: {st}");

    // 100 label flips, each timed from `kubectl label` returning to the
    // first connect() that sees the new behaviour.
    let mut w = watch(&ks, &te(), ext4);
    w.wait_for(|o| !o.allowed, SEEN).expect("enforced at start");
    // Signed: the kernel may have the new state before kubectl returns.
    let (mut from_return, mut from_start) = (Vec::<f64>::new(), Vec::<f64>::new());
    let cycle = [Some("audit"), Some("enforce"), None, Some("enforce")];
    for i in 0..100 {
        let value = cycle[i % cycle.len()];
        let started = ConnectWatch::now_ns();
        ks.label_namespace("test-egress", LABEL, value).expect("kubectl label");
        let returned = ConnectWatch::now_ns();
        let allowed = value != Some("enforce");
        let o = w
            .wait_for(|o| o.allowed == allowed, SEEN)
            .unwrap_or_else(|e| panic!("flip {i} to {value:?}: {e:#}\n{}", ks.story.agent().logs_text()));
        from_return.push((o.t_ns as f64 - returned as f64) / 1e6);
        from_start.push((o.t_ns as f64 - started as f64) / 1e6);
    }
    let pct = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
    };
    let before_return = from_return.iter().filter(|d| **d <= 0.0).count();
    eprintln!(
        "[label flips] {} flips; from `kubectl label` returning to the first probe that sees the new behaviour: p50 {:.1} ms, p99 {:.1} ms ({} flips were in force before kubectl returned); from starting kubectl: p50 {:.1} ms, p99 {:.1} ms",
        from_return.len(),
        pct(&mut from_return, 0.5),
        pct(&mut from_return, 0.99),
        before_return,
        pct(&mut from_start, 0.5),
        pct(&mut from_start, 0.99),
    );
    let st = ks.story.agent().status().expect("status");
    eprintln!("[label flips] agent event-to-map: {}", st["event_to_map"]);
    assert!(!w.last.as_ref().expect("outcome").allowed, "the last flip enforces");

    // A NetworkPolicy with kubectl apply: test-egress may reach only DNS,
    // so default/sleep (inside the cluster, allowed by rule 4) is refused.
    let peer = v4(pods::DEFAULT_SLEEP.ipv4, 80);
    let mut wp = watch(&ks, &te(), peer);
    wp.wait_for(|o| o.allowed, SEEN).expect("default/sleep reachable under the cluster rule");
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: dns-only, namespace: test-egress}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n";
    ks.api.apply_yaml(np).expect("kubectl apply the NetworkPolicy");
    let t = ConnectWatch::now_ns();
    let d = wp.wait_allowed(false, t, SEEN).expect("the NetworkPolicy takes effect");
    eprintln!("[networkpolicy] applied -> enforced in {:.1} ms", d.as_secs_f64() * 1e3);
    let r = ks.story.probe_dns(&te(), v4(pods::COREDNS.ipv4, 53), "A", false).expect("probe");
    assert!(r.ok, "DNS still allowed under the policy: {r:?}");
    ks.api.kubectl(&["delete", "networkpolicy", "dns-only", "-n", "test-egress"]).expect("delete the policy");
    let t = ConnectWatch::now_ns();
    wp.wait_allowed(true, t, SEEN).expect("the deletion takes effect");
    drop(wp);

    // The API server goes away (killed): enforcement holds meanwhile.
    ks.api.crash();
    std::thread::sleep(Duration::from_secs(2));
    let r = ks.story.probe_tcp(&te(), ext4, true, T).expect("probe");
    assert_eq!(r.errno, Some(libc::EPERM), "enforcement holds while the API server is away: {r:?}");
    ks.story.agent().check_alive().expect("the agent survives the outage");
    ks.api.start_again().expect("starting the API server again");
    // A change right after it is back reaches the kernel (watches resume).
    ks.label_namespace("test-egress", LABEL, Some("audit")).expect("kubectl label");
    let t = ConnectWatch::now_ns();
    let d = w.wait_allowed(true, t, Duration::from_secs(90)).expect("the agent caught up after the outage");
    eprintln!("[outage] first change after the API server came back seen in {:.1} s", d.as_secs_f64());

    // The agent goes away while objects change; a new one starts from them.
    ks.story.agent().kill9();
    ks.label_namespace("test-egress", LABEL, Some("enforce")).expect("kubectl label");
    let t = ConnectWatch::now_ns();
    ks.story.agent().restart().expect("restarting the agent");
    w.wait_allowed(false, t, SEEN).expect("the restarted agent enforces the label set while it was away");

    // A pod deleted and re-created: a new UID and a new cgroup.
    let agent = ks.story.agent.as_ref().expect("agent");
    let old_uid = poll("the restarted agent's status", SEEN, || {
        Ok(agent.status().ok().and_then(|st| find_workload(&st, "test-egress", "sleep").map(|w| w["uid"].clone())))
    })
    .expect("old uid");
    ks.delete_pod("test-egress", "sleep").expect("delete the pod");
    ks.wait_pod_gone("test-egress", "sleep", SEEN).expect("pod deleted");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: sleep, namespace: test-egress, labels: {app: sleep}}\nspec:\n  nodeName: node-1\n  containers: [{name: sleep, image: curlimages/curl}]\n".to_owned();
    ks.api.apply_yaml(&pod).expect("re-create the pod");
    set_pod_status(&ks.api, "test-egress", "sleep", &serde_json::json!({"phase": "Running", "podIP": "10.244.0.10", "podIPs": [{"ip": "10.244.0.10"}, {"ip": "fd00:10:244::10"}]})).expect("status");
    let uids = tollgate_e2e::kube_story::pod_uids(&ks.api).expect("uids");
    let new_uid = uids["test-egress/sleep"].clone();
    assert_ne!(serde_json::Value::String(new_uid.clone()), old_uid, "a new UID");
    // The kubelet makes the new pod's cgroup; the old one goes.
    let root = ks.story.cgroups.root.clone();
    let new_dir = root
        .join("kubepods.slice/kubepods-besteffort.slice")
        .join(format!("kubepods-besteffort-pod{}.slice", new_uid.replace('-', "_")))
        .join("cri-containerd-0000000000000000000000000000000000000000000000000000000000000abc.scope");
    std::fs::create_dir_all(&new_dir).expect("new pod cgroup");
    let agent = ks.story.agent.as_ref().expect("agent");
    poll("the re-created pod enforced in its new cgroup", SEEN, || {
        let st = agent.status()?;
        Ok(find_workload(&st, "test-egress", "sleep").filter(|w| w["uid"] == new_uid.as_str() && w["mode"] == "enforce" && w["cgroups"].as_u64().unwrap_or(0) >= 1).map(|_| ()))
    })
    .expect("new pod registered");
    let s = &ks.story;
    let mut wn = ConnectWatch::start(&s.e2e_bin, s.topo.pod_ns(&te()), &new_dir, ext4).expect("connect-watch in the new cgroup");
    wn.wait_for(|o| !o.allowed && o.errno == Some(libc::EPERM), SEEN).expect("the new pod is enforced");
    drop(wn);
    let _ = std::fs::remove_dir(&new_dir);
    let _ = std::fs::remove_dir(new_dir.parent().expect("pod dir"));
    drop(w);
}
