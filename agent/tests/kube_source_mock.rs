//! The Kubernetes source against a scripted API server (kube-rs
//! `tower-test` mock): what is hard to provoke on a real one — a watch
//! that expires (410 Gone) and relists, an outage in the middle of a paged
//! list, and an Istio CRD that appears after the agent started.
//!
//! Time is paused (tokio auto-advances it while everything waits), so the
//! watcher's backoff and the CRD rediscovery cost no real time.
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tollgate::model::ObjectKind;
use tollgate::source::kubernetes::{crd, typed};
use tollgate::source::{ObjectChange, SourceEvent};
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

/// What the scripted server answers to one request.
enum Answer {
    Json(u16, Value),
    /// A watch response: one JSON event per line, then the stream ends.
    Lines(Vec<Value>),
    /// Never answer (a watch that stays open).
    Hang,
}

/// Serves `script` in order; each entry checks the request (a substring of
/// its path and query) and answers it. Returns the requests seen.
fn serve(mut handle: Handle, script: Vec<(&'static str, Answer)>) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut hung = Vec::new();
        for (want, answer) in script {
            let Some((req, send)) = handle.next_request().await else { break };
            let uri = req.uri().to_string();
            assert!(uri.contains(want), "request {} was {uri}, expected one containing {want:?}; before: {seen:?}", seen.len());
            seen.push(uri);
            match answer {
                Answer::Json(code, v) => send.send_response(
                    Response::builder().status(code).body(Body::from(serde_json::to_vec(&v).expect("json"))).expect("response"),
                ),
                Answer::Lines(lines) => {
                    let mut bytes = Vec::new();
                    for l in lines {
                        bytes.extend(serde_json::to_vec(&l).expect("json"));
                        bytes.push(b'\n');
                    }
                    send.send_response(Response::builder().body(Body::from(bytes)).expect("response"))
                }
                Answer::Hang => hung.push(send),
            }
        }
        seen
    })
}

fn ns(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "resourceVersion": "1", "uid": format!("uid-{name}")}})
}

fn list(kind: &str, rv: &str, items: Vec<Value>, cont: Option<&str>) -> Value {
    let mut meta = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    json!({"apiVersion": "v1", "kind": kind, "metadata": meta, "items": items})
}

fn status(code: u16, reason: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason, "message": format!("scripted {reason}")})
}

/// Events until `done` says so, or a (virtual) minute passes.
async fn collect(rx: &mut mpsc::UnboundedReceiver<SourceEvent>, done: impl Fn(&[SourceEvent]) -> bool) -> Vec<SourceEvent> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done(&got) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => got.push(ev),
            _ => panic!("events so far: {got:#?}"),
        }
    }
    got
}

/// The store-visible changes, as `apply NAME` / `delete NAME`, per batch.
fn batches(events: &[SourceEvent]) -> Vec<Vec<String>> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Changes { changes, .. } => Some(
                changes
                    .iter()
                    .map(|c| match c {
                        ObjectChange::Apply { object, .. } => format!("apply {}", object.object_ref().name),
                        ObjectChange::Delete(r) => format!("delete {}", r.name),
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn namespaces_watch(client: Client, tx: mpsc::UnboundedSender<SourceEvent>) {
    let w = typed::Watched {
        kind: ObjectKind::Namespace,
        resource: "namespaces",
        group: "",
        config: kube::runtime::watcher::Config::default(),
        convert: |o| tollgate::model::Object::from(tollgate::source::kubernetes::strip::namespace(o)),
    };
    tokio::spawn(typed::run(kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(client), w, tx));
}

#[tokio::test(start_paused = true)]
async fn expired_watch_relists_and_deletes_what_went_away_in_one_batch() {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(
        handle,
        vec![
            ("/api/v1/namespaces?", Answer::Json(200, list("NamespaceList", "10", vec![ns("a"), ns("b")], None))),
            ("watch=true", Answer::Lines(vec![json!({"type": "ADDED", "object": ns("c")}), json!({"type": "ERROR", "object": status(410, "Expired")})])),
            // Relist: b was deleted and d created while the watch was gone.
            ("/api/v1/namespaces?", Answer::Json(200, list("NamespaceList", "20", vec![ns("a"), ns("c"), ns("d")], None))),
            ("watch=true", Answer::Hang),
        ],
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    namespaces_watch(Client::new(svc, "default"), tx);
    let events = collect(&mut rx, |got| batches(got).len() >= 3).await;
    assert_eq!(
        batches(&events),
        vec![vec!["apply a", "apply b"], vec!["apply c"], vec!["delete b", "apply a", "apply c", "apply d"]],
        "{events:#?}"
    );
    let synced = events.iter().filter(|e| matches!(e, SourceEvent::Synced { kind: ObjectKind::Namespace })).count();
    assert_eq!(synced, 1);
    assert!(
        events.iter().any(|e| matches!(e, SourceEvent::WatchError { message, .. } if message.contains("410"))),
        "the expiry is reported: {events:#?}"
    );
    drop(rx);
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn an_outage_in_the_middle_of_a_paged_list_sends_nothing_half_listed() {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let server = serve(
        handle,
        vec![
            ("/api/v1/namespaces?", Answer::Json(200, list("NamespaceList", "10", vec![ns("a")], Some("page-2")))),
            ("continue=page-2", Answer::Json(503, status(503, "ServiceUnavailable"))),
            // After the backoff, the whole list again.
            ("/api/v1/namespaces?", Answer::Json(200, list("NamespaceList", "12", vec![ns("a")], Some("p2")))),
            ("continue=p2", Answer::Json(200, list("NamespaceList", "12", vec![ns("b")], None))),
            ("watch=true", Answer::Hang),
        ],
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    namespaces_watch(Client::new(svc, "default"), tx);
    let events = collect(&mut rx, |got| got.iter().any(|e| matches!(e, SourceEvent::Synced { .. }))).await;
    assert_eq!(batches(&events), vec![vec!["apply a", "apply b"]], "one complete batch: {events:#?}");
    let first_change = events.iter().position(|e| matches!(e, SourceEvent::Changes { .. })).expect("changes");
    let error = events.iter().position(|e| matches!(e, SourceEvent::WatchError { .. })).expect("the outage is reported");
    assert!(error < first_change, "nothing was sent before the list completed: {events:#?}");
    drop(rx);
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn an_istio_crd_installed_after_start_is_picked_up() {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let groups_without = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []});
    let groups_with = json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
        "name": "networking.istio.io",
        "versions": [{"groupVersion": "networking.istio.io/v1", "version": "v1"}],
        "preferredVersion": {"groupVersion": "networking.istio.io/v1", "version": "v1"}
    }]});
    let resources = json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "networking.istio.io/v1", "resources": [
        {"name": "gateways", "singularName": "gateway", "namespaced": true, "kind": "Gateway", "verbs": ["get", "list", "watch"]}
    ]});
    let gateway = json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "istio-egressgateway", "namespace": "istio-system", "resourceVersion": "3"},
        "spec": {"selector": {"istio": "egressgateway"}}});
    let server = serve(
        handle,
        vec![
            ("/apis", Answer::Json(200, groups_without)),
            // Looked for again after crd::REDISCOVER: now installed.
            ("/apis", Answer::Json(200, groups_with)),
            ("/apis/networking.istio.io/v1", Answer::Json(200, resources)),
            ("/apis/networking.istio.io/v1/gateways?", Answer::Json(200, json!({"apiVersion": "networking.istio.io/v1", "kind": "GatewayList", "metadata": {"resourceVersion": "3"}, "items": [gateway]}))),
            ("watch=true", Answer::Hang),
        ],
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = tokio::time::Instant::now();
    tokio::spawn(crd::run(Client::new(svc, "default"), crd::KINDS[0], tx));
    let events = collect(&mut rx, |got| !batches(got).is_empty()).await;
    let synced = events.iter().position(|e| matches!(e, SourceEvent::Synced { kind: ObjectKind::Gateway })).expect("synced while not installed");
    let unserved = events.iter().position(|e| matches!(e, SourceEvent::Served { served: false, .. })).expect("reported as not served");
    let served = events.iter().position(|e| matches!(e, SourceEvent::Served { served: true, .. })).expect("then served");
    assert!(unserved < served && synced < served, "{events:#?}");
    assert_eq!(batches(&events), vec![vec!["apply istio-egressgateway"]]);
    assert!(started.elapsed() >= crd::REDISCOVER, "picked up on the next discovery round");
    assert!(!events.iter().any(|e| matches!(e, SourceEvent::WatchError { .. })), "a missing CRD is not an error: {events:#?}");
    drop(rx);
    server.abort();
}
