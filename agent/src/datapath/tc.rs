//! The TC layer's attachments: `tg_tc_from_pod` on the ingress and
//! `tg_tc_to_pod` on the egress of each enforced pod's host-side veth, as
//! TCX links pinned under `<bpffs>/links/tc/<uid>-<ifindex>-<dir>`, so
//! that they survive agent restarts. A restarted agent swaps its program
//! into each pinned link in place (no moment without a program).
//! `TG_TC_PODS` maps each watched ifindex to the pod's workload id.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use agent_common::{map_names, TcPod, TC_POD_ALONE};
use aya::{
    maps::{HashMap, MapData},
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        LinkOrder, SchedClassifier, TcAttachType,
    },
    Ebpf,
};
use tracing::{info, warn};

use super::{bpffs::PinDir, pinned::map_err, DatapathError};

pub const FROM_POD_PROGRAM: &str = "tg_tc_from_pod";
pub const TO_POD_PROGRAM: &str = "tg_tc_to_pod";

/// One pod the TC layer should enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcTarget {
    pub uid: String,
    pub workload: u32,
    /// The host-side veth; `None` while it is not found (what is attached
    /// for the pod stays).
    pub ifindex: Option<u32>,
    /// The TC layer is the pod's only enforcement (sandboxed runtime).
    pub alone: bool,
}

/// What the TC layer holds for one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcAttached {
    pub ifindex: u32,
    pub pod: TcPod,
}

pub struct TcLayer {
    dir: PathBuf,
    pods: HashMap<MapData, u32, TcPod>,
    attached: BTreeMap<String, TcAttached>,
}

/// The programs of the layer and where they attach.
const DIRECTIONS: [(&str, &str, TcAttachType); 2] =
    [(FROM_POD_PROGRAM, "from", TcAttachType::Ingress), (TO_POD_PROGRAM, "to", TcAttachType::Egress)];

fn prog_err(name: &str) -> impl Fn(aya::programs::ProgramError) -> DatapathError + '_ {
    move |source| DatapathError::Program { name: name.to_string(), source }
}

fn pin_name(uid: &str, ifindex: u32, dir: &str) -> String {
    format!("{uid}-{ifindex}-{dir}")
}

/// (uid, ifindex) of a pin name.
fn parse_pin_name(name: &str) -> Option<(&str, u32)> {
    let (rest, _dir) = name.rsplit_once('-')?;
    let (uid, ifindex) = rest.rsplit_once('-')?;
    Some((uid, ifindex.parse().ok()?))
}

fn ifname(ifindex: u32) -> Result<String, DatapathError> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(DatapathError::io(format!("naming interface {ifindex}"), std::io::Error::last_os_error()));
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier, DatapathError> {
    let missing = || DatapathError::Program { name: name.to_string(), source: aya::programs::ProgramError::UnexpectedProgramType };
    let p: &mut SchedClassifier = ebpf.program_mut(name).ok_or_else(missing)?.try_into().map_err(prog_err(name))?;
    if p.fd().is_err() {
        p.load().map_err(prog_err(name))?;
    }
    Ok(p)
}

/// Puts `name` on `ifindex` (`kind`), pinned at `pin`: into the link a
/// previous agent pinned there when it is still attached, else anew.
fn attach(ebpf: &mut Ebpf, name: &str, kind: TcAttachType, ifindex: u32, pin: &Path) -> Result<(), DatapathError> {
    let p = program(ebpf, name)?;
    if pin.exists() {
        let swapped = PinnedLink::from_pin(pin)
            .ok()
            .and_then(|old| SchedClassifierLink::try_from(FdLink::from(old)).ok())
            .and_then(|link| p.attach_to_link(link).ok());
        if let Some(id) = swapped {
            // Already pinned: the link lives on without this handle.
            let _ = p.take_link(id);
            return Ok(());
        }
        let _ = std::fs::remove_file(pin);
    }
    let iface = ifname(ifindex)?;
    let id = p
        .attach_with_options(&iface, kind, TcAttachOptions::TcxOrder(LinkOrder::default()))
        .map_err(prog_err(name))?;
    let link = p.take_link(id).map_err(prog_err(name))?;
    let fd = FdLink::try_from(link).map_err(|source| DatapathError::Link { path: pin.into(), source })?;
    fd.pin(pin).map_err(|source| DatapathError::Pin { path: pin.into(), source })?;
    Ok(())
}

/// Removes a pin: the link goes (and the program with it) unless someone
/// else holds it.
fn detach(pin: &Path) {
    match PinnedLink::from_pin(pin) {
        Ok(link) => {
            let _ = link.unpin();
        }
        Err(_) => {
            let _ = std::fs::remove_file(pin);
        }
    }
}

impl TcLayer {
    /// Takes `TG_TC_PODS` out of the agent's object and loads the programs.
    pub fn new(ebpf: &mut Ebpf, pins: &PinDir) -> Result<TcLayer, DatapathError> {
        let dir = pins.links().join("tc");
        std::fs::create_dir_all(&dir).map_err(|e| DatapathError::io(format!("creating {}", dir.display()), e))?;
        let map = ebpf
            .take_map(map_names::TC_PODS)
            .ok_or_else(|| DatapathError::MissingMap { name: map_names::TC_PODS.to_string() })?;
        let pods = HashMap::try_from(map).map_err(map_err(map_names::TC_PODS))?;
        for (name, _, _) in DIRECTIONS {
            program(ebpf, name)?;
        }
        Ok(TcLayer { dir, pods, attached: BTreeMap::new() })
    }

    /// What is attached, by pod UID.
    pub fn attached(&self) -> &BTreeMap<String, TcAttached> {
        &self.attached
    }

    /// Attaches the layer to every target's veth and detaches it from
    /// pods that are no longer targets. Errors are per pod: the others are
    /// done anyway; a failed pod is retried on the next call.
    pub fn sync(&mut self, ebpf: &mut Ebpf, targets: &[TcTarget]) -> Vec<(String, DatapathError)> {
        let mut errors = Vec::new();
        let by_uid: BTreeMap<&str, &TcTarget> = targets.iter().map(|t| (t.uid.as_str(), t)).collect();
        let mut wanted_pins: BTreeSet<String> = BTreeSet::new();
        let mut wanted_ifindex: BTreeMap<u32, TcPod> = BTreeMap::new();
        // Pods whose veth is not found now keep what they have.
        let pending: BTreeSet<u32> = targets.iter().filter(|t| t.ifindex.is_none()).map(|t| t.workload).collect();
        for t in targets {
            let Some(ifindex) = t.ifindex else { continue };
            let pod = TcPod { workload: t.workload, flags: if t.alone { TC_POD_ALONE } else { 0 } };
            let want = TcAttached { ifindex, pod };
            for (_, dir, _) in DIRECTIONS {
                wanted_pins.insert(pin_name(&t.uid, ifindex, dir));
            }
            wanted_ifindex.insert(ifindex, pod);
            if self.attached.get(&t.uid) == Some(&want) {
                continue;
            }
            match self.attach_pod(ebpf, &t.uid, want) {
                Ok(()) => {
                    info!(uid = %t.uid, ifindex, workload = t.workload, "TC layer attached to the pod's veth");
                    self.attached.insert(t.uid.clone(), want);
                }
                Err(e) => errors.push((t.uid.clone(), e)),
            }
        }
        // Pins of pods that are gone (or of a veth the pod no longer has).
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let keep = wanted_pins.contains(&name)
                    || parse_pin_name(&name)
                        .is_some_and(|(uid, _)| by_uid.get(uid).is_some_and(|t| t.ifindex.is_none()));
                if !keep {
                    detach(&e.path());
                    if let Some((uid, ifindex)) = parse_pin_name(&name) {
                        if self.attached.remove(uid).is_some() {
                            info!(uid, ifindex, "TC layer detached from the pod's veth");
                        }
                    }
                }
            }
        }
        self.attached.retain(|uid, _| by_uid.contains_key(uid.as_str()));
        let stale: Vec<u32> = self
            .pods
            .iter()
            .filter_map(|r| r.ok())
            .filter(|(ifindex, pod)| !wanted_ifindex.contains_key(ifindex) && !pending.contains(&pod.workload))
            .map(|(ifindex, _)| ifindex)
            .collect();
        for ifindex in stale {
            if let Err(e) = self.pods.remove(&ifindex) {
                warn!(ifindex, error = %e, "cannot remove a veth from TG_TC_PODS");
            }
        }
        errors
    }

    fn attach_pod(&mut self, ebpf: &mut Ebpf, uid: &str, want: TcAttached) -> Result<(), DatapathError> {
        // The pod's entry first: the programs pass veths they do not know.
        self.pods.insert(want.ifindex, want.pod, 0).map_err(map_err(map_names::TC_PODS))?;
        for (name, dir, kind) in DIRECTIONS {
            attach(ebpf, name, kind, want.ifindex, &self.dir.join(pin_name(uid, want.ifindex, dir)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_names_round_trip() {
        let n = pin_name("6f1c2a3e-0000-4000-8000-000000000010", 42, "from");
        assert_eq!(parse_pin_name(&n), Some(("6f1c2a3e-0000-4000-8000-000000000010", 42)));
        assert_eq!(parse_pin_name("junk"), None);
    }
}
