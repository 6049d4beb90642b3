//! What the kernel tests share: a private pin folder removed on drop, the
//! Istio example as a snapshot, and its state compiled for node-1.
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};

use tollgate::{
    compiler::{self, CompilerConfig},
    datapath::bpffs::PinDir,
    desired::DesiredState,
    model::Snapshot,
};

/// Removes a test's pin folder when dropped.
pub struct Pins(pub PathBuf);
impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A new pin folder `/sys/fs/bpf/tollgate-it-<tag>-<pid>`, and its guard.
pub fn pins(tag: &str) -> (Pins, PinDir) {
    let dir = PathBuf::from(format!("/sys/fs/bpf/tollgate-it-{tag}-{}", std::process::id()));
    let pd = PinDir::new(&dir);
    pd.create().expect("needs root and a bpffs at /sys/fs/bpf (run via `cargo xtask test`)");
    (Pins(dir), pd)
}

/// `examples/istio-egress-gateway` plus `extra` (more YAML documents).
pub fn snapshot(extra: &str) -> Snapshot {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/istio-egress-gateway");
    let mut text = String::new();
    for f in ["namespaces.yaml", "pods.yaml", "services.yaml", "gateway.yaml"] {
        text.push_str(&std::fs::read_to_string(root.join(f)).unwrap());
        text.push_str("\n---\n");
    }
    text.push_str(extra);
    let mut snap = Snapshot::new();
    let mut diags = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
        if !v.is_null() {
            snap.add_document("test", v, &mut diags);
        }
    }
    assert!(diags.is_empty(), "{diags:?}");
    snap
}

/// `snap` compiled and bound for node-1, with the example's cluster ranges.
pub fn compile(snap: &Snapshot) -> DesiredState {
    let cidrs = ["10.244.0.0/16", "10.96.0.0/12", "fd00:10:244::/56"].iter().map(|c| c.parse().unwrap()).collect();
    let policy = compiler::compile(snap, &CompilerConfig { node_name: Some("node-1".into()), cluster_cidrs: cidrs, ..Default::default() });
    compiler::bind(&policy, &Default::default())
}
