//! Loading the kernel object for the agent: adopt what a previous agent
//! left pinned, or attach (and pin) the programs at the cgroup root.
use std::{
    collections::BTreeMap,
    fs::File,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Instant,
};

use agent_common::META_OBJECT_HASH;
use aya::{Ebpf, EbpfLoader};
use tracing::info;

use super::{
    bpffs::PinDir,
    layout::{self, Fate, MapPlan},
    layout_pins,
    object,
    pinned::{map_err, Maps},
    root_programs::{attach_root, load_one},
    tc::TcLayer,
    tc_pods::{TcPodInput, TcPods},
    upgrade::{LayoutUpgrade, UpgradeReport},
    DatapathError,
};

/// `TG_META` index of the cgroup id the programs are attached to.
pub const META_CGROUP_ROOT: u32 = 1;

/// Loads the object with its maps pinned in `pins` (reusing maps that are
/// already pinned there with this build's layout, so counters and state
/// survive restarts). A map pinned with another layout is an error: only
/// the agent migrates (see [`start_agent_datapath_with`]).
pub fn load_object(pins: &PinDir) -> Result<Ebpf, DatapathError> {
    load_object_with(pins, &LoadOptions::default())
}

/// Options of a load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// (map, max entries) overrides: tests shrink maps to fill them fast,
    /// and the upgrade test gives a map another layout. The override is
    /// part of the map's layout id.
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

/// The fate of each map of this build, given what `pins` holds.
pub fn plan_layouts(pins: &PinDir, opts: &LoadOptions) -> Result<Vec<MapPlan>, DatapathError> {
    let wanted = layout::object_layouts(object::bytes()?, &opts.max_entries)?;
    let pinned = layout_pins::read_all(pins, wanted.keys())?;
    Ok(layout::plan(&wanted, &pinned))
}

pub fn load_object_with(pins: &PinDir, opts: &LoadOptions) -> Result<Ebpf, DatapathError> {
    let plans = plan_layouts(pins, opts)?;
    if let Some((p, from)) = plans.iter().find_map(|p| match &p.fate {
        Fate::Changed { from, .. } => Some((p, from)),
        _ => None,
    }) {
        return Err(DatapathError::LayoutMismatch { map: p.name.clone(), pinned: from.clone(), ours: p.id.clone() });
    }
    // Pins under the bare name (an older release's) are used where they are.
    let paths = plans.iter().map(|p| {
        let path = if p.legacy { pins.map(&p.name) } else { pins.versioned(&p.name, &p.id) };
        (p.name.clone(), path)
    });
    let ebpf = load_at(paths.collect(), opts)?;
    for p in plans.iter().filter(|p| p.fate == Fate::New) {
        layout_pins::point(pins, &p.name, &p.id)?;
    }
    Ok(ebpf)
}

/// Loads the object with each pinned map at the path given (a map pinned
/// there is used as it is; aya creates and pins the others).
fn load_at(paths: BTreeMap<String, PathBuf>, opts: &LoadOptions) -> Result<Ebpf, DatapathError> {
    let bytes = object::bytes()?;
    let mut loader = EbpfLoader::new();
    for (name, path) in &paths {
        loader.map_pin_path(name.as_str(), path.as_path());
    }
    for (name, n) in &opts.max_entries {
        loader.map_max_entries(name, *n);
    }
    let level: u8 = if opts.kernel_log { LOG_LEVEL_DEBUG } else { 0 };
    loader.override_global(LOG_LEVEL_GLOBAL, &level, true);
    Ok(loader.load(bytes)?)
}

/// The agent's load: maps of this build's layout are kept (an older
/// release's bare pins pinned again under their versioned name), maps of
/// another layout get a new, empty map at their versioned pin (a leftover
/// of an upgrade that did not finish is dropped first). The names point
/// at the new pins only once the upgrade is done ([`LayoutUpgrade`]).
fn load_for_agent(pins: &PinDir, opts: &LoadOptions, plans: &[MapPlan]) -> Result<Ebpf, DatapathError> {
    let mut paths = BTreeMap::new();
    for p in plans {
        match &p.fate {
            Fate::Kept if p.legacy => layout_pins::pin_legacy_as(pins, &p.name, &p.id)?,
            Fate::Changed { .. } => layout_pins::unpin(&pins.versioned(&p.name, &p.id))?,
            _ => {}
        }
        paths.insert(p.name.clone(), pins.versioned(&p.name, &p.id));
    }
    load_at(paths, opts)
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
    /// Each map's layout id (what `status` shows).
    pub layout: BTreeMap<String, String>,
    /// Some map's layout changed: the new maps are being filled while the
    /// old programs enforce; [`AgentDatapath::finish_upgrade`] swaps.
    pub upgrade: Option<PendingUpgrade>,
}

/// What the swap of an upgrade needs.
pub struct PendingUpgrade {
    migration: LayoutUpgrade,
    hash: u64,
    root_id: u64,
}

impl AgentDatapath {
    /// The swap of a layout upgrade, once the agent's first apply (and
    /// the TC layer's) filled the new maps: the cgroup-root programs are
    /// attached (each old link unpinned only after its successor runs),
    /// the maps' names point at the new pins, and the old layout's pins
    /// go. On an error the programs not replaced yet stay attached.
    pub fn finish_upgrade(&mut self, cgroup_root: &Path) -> Result<Option<UpgradeReport>, DatapathError> {
        let Some(up) = self.upgrade.take() else { return Ok(None) };
        let cgroup = open_cgroup(cgroup_root)?;
        attach_root(&mut self.ebpf, &self.pins, &cgroup)
            .map_err(|e| DatapathError::Upgrade(format!("attaching the new programs: {e}; the programs not replaced yet stay attached with the old maps")))?;
        self.maps.meta.set(META_OBJECT_HASH, up.hash, 0).map_err(map_err("TG_META"))?;
        self.maps.meta.set(META_CGROUP_ROOT, up.root_id, 0).map_err(map_err("TG_META"))?;
        let report = up.migration.finish(&self.pins)?;
        self.outcome = AttachOutcome::Attached;
        Ok(Some(report))
    }

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
/// their logs are read by [`AgentDatapath::flush_kernel_log`]. When some
/// map's layout changed, nothing is attached yet: the returned datapath
/// carries a [`PendingUpgrade`] (see `upgrade`).
pub fn start_agent_datapath_with(
    pins: PinDir,
    cgroup_root: &Path,
    opts: &LoadOptions,
) -> Result<AgentDatapath, DatapathError> {
    let started = Instant::now();
    pins.create()?;
    let plans = plan_layouts(&pins, opts)?;
    let layout = layout::summary(&plans);
    let hash = object::hash() ^ if opts.kernel_log { KERNEL_LOG_SALT } else { 0 };
    let root_id = cgroup_id(cgroup_root)?;
    if layout::needs_migration(&plans) {
        return start_upgrade(pins, opts, plans, started, hash, root_id);
    }
    let mut ebpf = load_for_agent(&pins, opts, &plans)?;
    // Same layouts: the names point at the versioned pins (a release
    // before versioned pins is converted here), leftovers go.
    for p in &plans {
        layout_pins::point(&pins, &p.name, &p.id)?;
        for stale in layout_pins::others(&pins, &p.name, &p.id) {
            info!(pin = %stale.display(), "removing the pin of an unused map layout");
            layout_pins::unpin(&stale)?;
        }
    }
    let mut maps = Maps::take(&mut ebpf)?;
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
            layout,
            upgrade: None,
        });
    }
    let cgroup = open_cgroup(cgroup_root)?;
    attach_root(&mut ebpf, &pins, &cgroup)?;
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
    Ok(AgentDatapath { ebpf, maps, pins, outcome: AttachOutcome::Attached, kernel_log, tc, tc_pods: TcPods::default(), layout, upgrade: None })
}

/// The first half of a layout upgrade: the old maps opened, the new
/// object loaded with new maps where the layout changed, what crosses
/// copied, every program loaded (so that a verifier error shows now, with
/// the old programs still attached) and none attached.
fn start_upgrade(
    pins: PinDir,
    opts: &LoadOptions,
    plans: Vec<MapPlan>,
    started: Instant,
    hash: u64,
    root_id: u64,
) -> Result<AgentDatapath, DatapathError> {
    let layout = layout::summary(&plans);
    for p in &plans {
        if let Fate::Changed { from, carry } = &p.fate {
            info!(map = %p.name, from = %from, to = %p.id, carry = ?carry, legacy_pin = p.legacy, "map layout changed: upgrading (the old programs enforce until the new maps are filled)");
        }
    }
    let upgrade_err = |e: DatapathError| DatapathError::Upgrade(format!("{e}; the old programs stay attached with the old maps"));
    let mut migration = LayoutUpgrade::open(&pins, plans.clone(), started).map_err(upgrade_err)?;
    let mut ebpf = load_for_agent(&pins, opts, &plans).map_err(upgrade_err)?;
    migration.copy_before_swap(&pins).map_err(upgrade_err)?;
    let maps = Maps::take(&mut ebpf)?;
    for spec in object::root_programs() {
        load_one(&mut ebpf, spec).map_err(upgrade_err)?;
    }
    let tc = TcLayer::new(&mut ebpf, &pins).map_err(upgrade_err)?;
    let kernel_log = if opts.kernel_log {
        Some(aya_log::EbpfLogger::init(&mut ebpf).map_err(|e| DatapathError::KernelLog(e.to_string()))?)
    } else {
        None
    };
    Ok(AgentDatapath {
        ebpf,
        maps,
        pins,
        outcome: AttachOutcome::Attached,
        kernel_log,
        tc,
        tc_pods: TcPods::default(),
        layout,
        upgrade: Some(PendingUpgrade { migration, hash, root_id }),
    })
}

fn open_cgroup(cgroup_root: &Path) -> Result<File, DatapathError> {
    File::open(cgroup_root).map_err(|e| DatapathError::io(format!("opening cgroup root {}", cgroup_root.display()), e))
}

