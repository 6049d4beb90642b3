//! Loading the kernel object for the agent: adopt what a previous agent
//! left pinned, or attach (and pin) the programs at the cgroup root.
use std::{fs::File, os::unix::fs::MetadataExt, path::Path};

use agent_common::META_OBJECT_HASH;
use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, SockOps,
    },
    Ebpf, EbpfLoader,
};
use tracing::info;

use super::{
    bpffs::PinDir,
    object::{self, Attach, ProgramSpec, SkbDirection},
    pinned::{map_err, Maps},
    tc::TcLayer,
    tc_pods::{TcPodInput, TcPods},
    DatapathError,
};

/// `TG_META` index of the cgroup id the programs are attached to.
pub const META_CGROUP_ROOT: u32 = 1;

/// Loads the object with its maps pinned in `pins` (reusing maps that are
/// already pinned there, so counters and state survive restarts).
pub fn load_object(pins: &PinDir) -> Result<Ebpf, DatapathError> {
    load_object_with(pins, &LoadOptions::default())
}

/// Options of a load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// (map, max entries) overrides: tests shrink maps to fill them fast.
    /// Only for maps not pinned yet (a pinned map keeps its size).
    pub max_entries: Vec<(&'static str, u32)>,
    /// Kernel logs (aya-log) on: the programs' log level is set at load
    /// (a read-only global: when off, the verifier removes every log call,
    /// so the packet path pays nothing).
    pub kernel_log: bool,
}

/// aya-log-ebpf's level global: 0 is off, 4 is debug.
const LOG_LEVEL_GLOBAL: &str = "AYA_LOG_LEVEL";
const LOG_LEVEL_DEBUG: u8 = 4;
/// Mixed into the stored object hash when the programs log, so that an
/// agent without --kernel-log replaces them instead of adopting them.
const KERNEL_LOG_SALT: u64 = 0x6b6c_6f67_0000_0001;

pub fn load_object_with(pins: &PinDir, opts: &LoadOptions) -> Result<Ebpf, DatapathError> {
    let bytes = object::bytes()?;
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(&pins.root);
    for (name, n) in &opts.max_entries {
        loader.map_max_entries(name, *n);
    }
    let level: u8 = if opts.kernel_log { LOG_LEVEL_DEBUG } else { 0 };
    loader.override_global(LOG_LEVEL_GLOBAL, &level, true);
    Ok(loader.load(bytes)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachOutcome {
    /// The programs a previous agent attached are this build's: kept.
    Adopted,
    /// Programs attached (first start, an upgrade, or a new cgroup root).
    Attached,
}

pub struct AgentDatapath {
    pub ebpf: Ebpf,
    pub maps: Maps,
    pub pins: PinDir,
    pub outcome: AttachOutcome,
    /// Reads the kernel programs' logs (with `--kernel-log`).
    pub kernel_log: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The TC layer on each enforced pod's veth.
    pub tc: TcLayer,
    pub tc_pods: TcPods,
}

impl AgentDatapath {
    /// Forwards what the kernel programs logged to the agent's log (call
    /// it every tick).
    pub fn flush_kernel_log(&mut self) {
        if let Some(l) = self.kernel_log.as_mut() {
            l.flush();
        }
    }

    /// Puts the TC layer on the veths of the enforced pods of an apply and
    /// takes it off pods that are gone. Errors are per pod (retried).
    pub fn sync_tc(&mut self, pods: Vec<TcPodInput>) -> Vec<(String, DatapathError)> {
        self.tc_pods.set(pods, &mut self.tc, &mut self.ebpf)
    }

    /// Looks again for veths not found yet (call it every tick).
    pub fn retry_tc(&mut self) -> Vec<(String, DatapathError)> {
        self.tc_pods.retry(&mut self.tc, &mut self.ebpf)
    }
}

fn cgroup_id(path: &Path) -> Result<u64, DatapathError> {
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| DatapathError::io(format!("reading cgroup root {}", path.display()), e))
}

/// Loads, then adopts or attaches (as bpf links, which coexist with other
/// programs on the same cgroup). A replaced program is detached only
/// after its successor is attached, so enforcement never stops.
pub fn start_agent_datapath(pins: PinDir, cgroup_root: &Path) -> Result<AgentDatapath, DatapathError> {
    start_agent_datapath_with(pins, cgroup_root, &LoadOptions::default())
}

/// [`start_agent_datapath`] with load options. With `kernel_log`, the
/// programs are always attached anew (the log level is set at load), and
/// their logs are read by [`AgentDatapath::flush_kernel_log`].
pub fn start_agent_datapath_with(
    pins: PinDir,
    cgroup_root: &Path,
    opts: &LoadOptions,
) -> Result<AgentDatapath, DatapathError> {
    pins.create()?;
    let mut ebpf = load_object_with(&pins, opts)?;
    let mut maps = Maps::take(&mut ebpf)?;
    let hash = object::hash() ^ if opts.kernel_log { KERNEL_LOG_SALT } else { 0 };
    let root_id = cgroup_id(cgroup_root)?;
    let stored_hash = maps.meta.get(&META_OBJECT_HASH, 0).map_err(map_err("TG_META"))?;
    let stored_root = maps.meta.get(&META_CGROUP_ROOT, 0).map_err(map_err("TG_META"))?;
    let all_pinned = object::root_programs().all(|p| pins.link(p.name).exists());
    if all_pinned && stored_hash == hash && stored_root == root_id && !opts.kernel_log {
        info!(bpffs = %pins.root.display(), "adopted the pinned programs of a previous agent");
        let tc = TcLayer::new(&mut ebpf, &pins)?;
        return Ok(AgentDatapath {
            ebpf,
            maps,
            pins,
            outcome: AttachOutcome::Adopted,
            kernel_log: None,
            tc,
            tc_pods: TcPods::default(),
        });
    }
    let cgroup = File::open(cgroup_root)
        .map_err(|e| DatapathError::io(format!("opening cgroup root {}", cgroup_root.display()), e))?;
    for spec in object::root_programs() {
        let name = spec.name;
        let link = attach_one(&mut ebpf, spec, &cgroup)?;
        let final_path = pins.link(name);
        // bpffs refuses names with dots.
        let new_path = pins.link(&format!("{name}_next"));
        let _ = std::fs::remove_file(&new_path);
        let pinned = link
            .pin(&new_path)
            .map_err(|source| DatapathError::Pin { path: new_path.clone(), source })?;
        if final_path.exists() {
            // Detach the previous program only now that its successor runs.
            match PinnedLink::from_pin(&final_path) {
                Ok(old) => {
                    let _ = old.unpin();
                }
                Err(_) => {
                    let _ = std::fs::remove_file(&final_path);
                }
            }
        }
        std::fs::rename(&new_path, &final_path)
            .map_err(|e| DatapathError::io(format!("renaming pin {}", new_path.display()), e))?;
        drop(pinned);
    }
    maps.meta.set(META_OBJECT_HASH, hash, 0).map_err(map_err("TG_META"))?;
    maps.meta.set(META_CGROUP_ROOT, root_id, 0).map_err(map_err("TG_META"))?;
    // The TC programs load after the cgroup root's are attached.
    let tc = TcLayer::new(&mut ebpf, &pins)?;
    info!(bpffs = %pins.root.display(), cgroup_root = %cgroup_root.display(), "attached the programs");
    let kernel_log = if opts.kernel_log {
        Some(aya_log::EbpfLogger::init(&mut ebpf).map_err(|e| DatapathError::KernelLog(e.to_string()))?)
    } else {
        None
    };
    Ok(AgentDatapath { ebpf, maps, pins, outcome: AttachOutcome::Attached, kernel_log, tc, tc_pods: TcPods::default() })
}

fn prog_err(name: &str) -> impl Fn(aya::programs::ProgramError) -> DatapathError + '_ {
    move |source| DatapathError::Program { name: name.to_string(), source }
}

fn link_err(name: &str) -> impl Fn(aya::programs::links::LinkError) -> DatapathError + '_ {
    move |source| DatapathError::Link { path: name.into(), source }
}

/// Loads and attaches one program at the cgroup root, as its table entry
/// says.
fn attach_one(ebpf: &mut Ebpf, spec: &ProgramSpec, cgroup: &File) -> Result<FdLink, DatapathError> {
    let name = spec.name;
    let missing = || DatapathError::Program {
        name: name.to_string(),
        source: aya::programs::ProgramError::UnexpectedProgramType,
    };
    let program = ebpf.program_mut(name).ok_or_else(missing)?;
    // bpf_link attachments to a cgroup always run beside other programs
    // (multi semantics) and the kernel wants flags 0 for them.
    let mode = CgroupAttachMode::Single;
    match spec.attach {
        Attach::CgroupSkb(direction) => {
            let p = <&mut CgroupSkb>::try_from(program).map_err(prog_err(name))?;
            p.load().map_err(prog_err(name))?;
            let kind = match direction {
                SkbDirection::Ingress => CgroupSkbAttachType::Ingress,
                SkbDirection::Egress => CgroupSkbAttachType::Egress,
            };
            let id = p.attach(cgroup, kind, mode).map_err(prog_err(name))?;
            let link = p.take_link(id).map_err(prog_err(name))?;
            FdLink::try_from(link).map_err(link_err(name))
        }
        Attach::CgroupSockAddr => {
            let p = <&mut CgroupSockAddr>::try_from(program).map_err(prog_err(name))?;
            p.load().map_err(prog_err(name))?;
            let id = p.attach(cgroup, mode).map_err(prog_err(name))?;
            let link = p.take_link(id).map_err(prog_err(name))?;
            FdLink::try_from(link).map_err(link_err(name))
        }
        Attach::SockOps => {
            let p = <&mut SockOps>::try_from(program).map_err(prog_err(name))?;
            p.load().map_err(prog_err(name))?;
            let id = p.attach(cgroup, mode).map_err(prog_err(name))?;
            let link = p.take_link(id).map_err(prog_err(name))?;
            FdLink::try_from(link).map_err(link_err(name))
        }
        Attach::Tc(_) | Attach::Never => Err(missing()),
    }
}
