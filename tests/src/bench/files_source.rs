//! The synthetic cluster as a folder of YAML (one file per namespace, one
//! for the cluster-wide objects) and the [`Driver`] that changes it the way
//! an operator would: a file replaced atomically (rename) per change.
use crate::bench::events::{Change, Driver, BIG_ENTRIES};
use crate::bench::synth::{self, Cluster};
use crate::manifests::write_atomic;
use anyhow::{Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct FilesDriver {
    dir: PathBuf,
    groups: Vec<(String, Vec<Value>)>,
}

fn file(dir: &Path, group: &str) -> PathBuf {
    dir.join(format!("{group}.yaml"))
}

impl FilesDriver {
    /// Writes the cluster into `dir`.
    pub fn write(cluster: &Cluster, dir: &Path) -> Result<FilesDriver> {
        std::fs::create_dir_all(dir)?;
        for (g, objs) in &cluster.groups {
            std::fs::write(file(dir, g), synth::to_yaml(objs)?).with_context(|| format!("writing {g}.yaml"))?;
        }
        Ok(FilesDriver { dir: dir.to_path_buf(), groups: cluster.groups.clone() })
    }

    /// Replaces object `kind/name` of namespace group `ns` and rewrites its file.
    fn replace(&mut self, ns: usize, kind: &str, name: &str, object: Value) -> Result<()> {
        let g = synth::namespace_name(ns);
        let (_, objs) = self.groups.iter_mut().find(|(n, _)| *n == g).with_context(|| format!("no namespace {g}"))?;
        let slot = objs
            .iter_mut()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .with_context(|| format!("no {kind} {name} in {g}"))?;
        *slot = object;
        write_atomic(&file(&self.dir, &g), &synth::to_yaml(objs)?)
    }
}

impl Driver for FilesDriver {
    fn apply(&mut self, change: &Change) -> Result<()> {
        match change {
            Change::PodAdded { index, ns } => {
                let pod = synth::added_pod(*index, *ns, "node-2");
                write_atomic(&file(&self.dir, &format!("added-pod-{index}")), &synth::to_yaml(&[pod])?)
            }
            Change::NamespaceLabel { ns, team } => {
                let name = synth::namespace_name(*ns);
                self.replace(*ns, "Namespace", &name, synth::namespace(*ns, *team))
            }
            Change::PolicyEdited { ns, port } => {
                let name = synth::namespace_name(*ns);
                self.replace(*ns, "NetworkPolicy", "allow-same-ns-and-dns", synth::same_ns_policy(&name, *port))
            }
            Change::BigPolicy { ns, shift } => {
                let p = synth::ip_block_policy(&synth::namespace_name(*ns), "big", BIG_ENTRIES, *shift);
                write_atomic(&file(&self.dir, "big-policy"), &synth::to_yaml(&[p])?)
            }
            Change::BigPolicyDeleted { .. } => {
                let f = file(&self.dir, "big-policy");
                std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))
            }
        }
    }
}
