//! Map layouts against the real kernel:
//! - pins made the way releases before versioned pins made them (aya's
//!   default pin folder, bare names) are recognised as this build's
//!   layout, map by map (the kernel reports what the object defines), and
//!   an agent start converts them to versioned pins without a migration;
//! - an agent start with another `max_entries` for TG_CGROUPS loads new
//!   maps and loads the programs but attaches nothing: the old links and
//!   the names still lead to the old programs and maps until
//!   `finish_upgrade`, which attaches the new programs, points the names
//!   at the new pins, carries the entries over and removes the old pins;
//!   the counters (same layout) are the same map throughout; an agent
//!   that dies before the swap leaves the old programs and names as they
//!   were, and the next start begins again with fresh maps;
//! - counters whose layout changes are added after the swap (nothing the
//!   old programs counted is lost), reply state is copied before and what
//!   the old programs recorded meanwhile caught up after.
mod support;
use std::path::{Path, PathBuf};

use agent_common::{map_names, CounterValue};
use aya::{maps::PerCpuValues, programs::links::PinnedLink, EbpfLoader};
use tollgate::{
    cgroups::CgroupIndex,
    datapath::{
        layout::{Carry, Fate},
        load::{plan_layouts, start_agent_datapath_with, LoadOptions},
        object,
        raw_map::RawMap,
        reconcile::{self, ALLOWED_ENTRY},
    },
};

/// A private cgroup to attach to, removed on drop.
struct Cgroup(PathBuf);
impl Cgroup {
    fn new(tag: &str) -> Cgroup {
        let root = tollgate::cgroups::default_cgroup_root();
        let p = root.join(format!("tollgate-it-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("a cgroup2 mount at {}: {e}", root.display()));
        Cgroup(p)
    }
}
impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn map_id(path: &Path) -> u32 {
    RawMap::open(path).unwrap().id
}

fn link_program(path: &Path) -> u32 {
    let link = PinnedLink::from_pin(path).unwrap();
    let fd = aya::programs::links::FdLink::from(link);
    fd.info().unwrap().program_id()
}

#[test]
fn pins_of_a_release_before_versioned_pins_are_this_builds_layout() {
    let (_g, pins) = support::pins("layout-legacy");
    // The loader of those releases: every map pinned by its bare name.
    let ebpf = EbpfLoader::new().default_map_pin_directory(&pins.root).load(object::bytes().unwrap()).unwrap();
    drop(ebpf);
    let plans = plan_layouts(&pins, &LoadOptions::default()).unwrap();
    assert_eq!(plans.len(), map_names::ALL.len());
    for p in &plans {
        assert_eq!(p.fate, Fate::Kept, "{}: the kernel's layout differs from the object's: {p:?}", p.name);
        assert!(p.legacy, "{p:?}");
    }
    // An agent start converts them: same maps, now behind links.
    let counts_before = map_id(&pins.map(map_names::COUNTERS));
    let cg = Cgroup::new("layout-legacy");
    let dp = start_agent_datapath_with(pins.clone(), &cg.0, &LoadOptions::default()).unwrap();
    assert!(dp.upgrade.is_none());
    for p in &plans {
        let target = std::fs::read_link(pins.map(&p.name)).unwrap_or_else(|e| panic!("{} is no link: {e}", p.name));
        assert_eq!(target, PathBuf::from(format!("{}-{}", p.name, p.id)));
    }
    assert_eq!(map_id(&pins.map(map_names::COUNTERS)), counts_before, "the counters map was replaced");
    drop(dp);
}

#[test]
fn a_changed_layout_is_filled_then_swapped() {
    let (_g, pins) = support::pins("layout-upgrade");
    let cg = Cgroup::new("layout-upgrade");
    // Agent A: this build's layout, a few cgroups and a counter.
    let mut a = start_agent_datapath_with(pins.clone(), &cg.0, &LoadOptions::default()).unwrap();
    assert!(a.upgrade.is_none());
    for id in 1..=5u64 {
        a.maps.cgroups.insert(id, ALLOWED_ENTRY, 0).unwrap();
    }
    let cpus = aya::util::nr_cpus().unwrap();
    let one = PerCpuValues::try_from(vec![CounterValue { packets: 7, bytes: 700 }; cpus]).unwrap();
    a.maps.counters.set(3, one, 0).unwrap();
    let old_cgroups = map_id(&pins.map(map_names::CGROUPS));
    let counts = map_id(&pins.map(map_names::COUNTERS));
    let old_target = std::fs::read_link(pins.map(map_names::CGROUPS)).unwrap();
    let old_prog = link_program(&pins.link("tg_egress"));
    drop(a);

    // Agent B: TG_CGROUPS with another capacity. A first B dies before
    // its swap: A's programs and maps stay, and the next B starts over
    // (its half-filled map is dropped, not reused).
    let opts = LoadOptions { max_entries: vec![(map_names::CGROUPS, 4096)], ..Default::default() };
    let died = start_agent_datapath_with(pins.clone(), &cg.0, &opts).unwrap();
    assert!(died.upgrade.is_some());
    let half = RawMap::open(&pins.versioned(map_names::CGROUPS, &died.layout[map_names::CGROUPS])).unwrap();
    half.set(&99u64.to_ne_bytes(), &[0u8; 16], 0).unwrap();
    let half_id = half.id;
    drop((half, died));
    assert_eq!(link_program(&pins.link("tg_egress")), old_prog, "a dead upgrade replaced the program");
    assert_eq!(std::fs::read_link(pins.map(map_names::CGROUPS)).unwrap(), old_target);
    let mut b = start_agent_datapath_with(pins.clone(), &cg.0, &opts).unwrap();
    let up = b.upgrade.as_ref().expect("a layout upgrade is pending");
    let _ = up;
    // Nothing swapped yet: the names and links lead to A's maps and programs.
    assert_eq!(std::fs::read_link(pins.map(map_names::CGROUPS)).unwrap(), old_target);
    assert_eq!(link_program(&pins.link("tg_egress")), old_prog);
    let new_path = pins.versioned(map_names::CGROUPS, &b.layout[map_names::CGROUPS]);
    let new_cgroups = RawMap::open(&new_path).unwrap();
    assert_ne!(new_cgroups.id, old_cgroups);
    assert_ne!(new_cgroups.id, half_id, "the half-filled map of the dead upgrade was reused");
    assert_eq!(new_cgroups.layout.max_entries, 4096);
    // Copied before the swap.
    assert_eq!(new_cgroups.keys().len(), 5);

    // The first apply goes into the new maps, then the swap.
    let d = support::compile(&support::snapshot(""));
    reconcile::apply(&mut b.maps, &d, &CgroupIndex::default()).unwrap();
    let report = b.finish_upgrade(&cg.0).unwrap().expect("an upgrade report");
    assert_eq!(report.maps.len(), 1, "{report:?}");
    let m = &report.maps[0];
    assert_eq!((m.map.as_str(), m.carry, m.copied, m.refused), (map_names::CGROUPS, Carry::Copy, 5, 0), "{report:?}");
    assert_eq!(report.kept.len(), map_names::ALL.len() - 1);
    assert_ne!(link_program(&pins.link("tg_egress")), old_prog, "the new program is not attached");
    assert_eq!(std::fs::read_link(pins.map(map_names::CGROUPS)).unwrap(), PathBuf::from(new_path.file_name().unwrap()));
    assert_eq!(map_id(&pins.map(map_names::CGROUPS)), new_cgroups.id);
    assert!(!pins.root.join(old_target).exists(), "the old layout's pin is left: {report:?}");
    assert_eq!(map_id(&pins.map(map_names::COUNTERS)), counts, "the counters map (same layout) was replaced");
    let kept = b.maps.counters.get(&3, 0).unwrap();
    assert_eq!(kept.iter().map(|v| v.packets).sum::<u64>(), 7 * cpus as u64);
    drop(b);

    // B again: same layout, nothing to do.
    let again = start_agent_datapath_with(pins.clone(), &cg.0, &opts).unwrap();
    assert!(again.upgrade.is_none());
    assert_eq!(again.outcome, tollgate::datapath::load::AttachOutcome::Adopted);
    drop(again);
    // Unpin the links so that the cgroup can go.
    for p in object::root_programs() {
        let _ = std::fs::remove_file(pins.link(p.name));
    }
}

/// A per-CPU counter slot of `map`, every CPU set to `n` packets.
fn set_slot(map: &RawMap, slot: u32, n: u64) {
    let cpus = aya::util::nr_cpus().unwrap();
    let mut v = Vec::new();
    for _ in 0..cpus {
        v.extend_from_slice(&n.to_ne_bytes());
        v.extend_from_slice(&(n * 100).to_ne_bytes());
    }
    map.set(&slot.to_ne_bytes(), &v, 0).unwrap();
}

fn packets(map: &RawMap, slot: u32) -> u64 {
    let v = map.get(&slot.to_ne_bytes()).unwrap();
    v.chunks_exact(16).map(|c| u64::from_ne_bytes(c[..8].try_into().unwrap())).sum()
}

#[test]
fn counters_and_kernel_state_cross_a_layout_change() {
    let (_g, pins) = support::pins("layout-carry");
    let cg = Cgroup::new("layout-carry");
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    let a = start_agent_datapath_with(pins.clone(), &cg.0, &LoadOptions::default()).unwrap();
    let old_counts = RawMap::open(&pins.map(map_names::COUNTERS)).unwrap();
    let old_peers = RawMap::open(&pins.map(map_names::UDP_PEERS)).unwrap();
    set_slot(&old_counts, 3, 7);
    let peer = |b: u8| vec![b; old_peers.layout.key_size as usize];
    old_peers.set(&peer(1), &5u64.to_ne_bytes(), 0).unwrap();
    drop(a);

    let grow = |name: &'static str| {
        let m = RawMap::open(&pins.map(name)).unwrap();
        (name, m.layout.max_entries * 2)
    };
    let opts = LoadOptions { max_entries: vec![grow(map_names::COUNTERS), grow(map_names::UDP_PEERS)], ..Default::default() };
    let mut b = start_agent_datapath_with(pins.clone(), &cg.0, &opts).unwrap();
    assert!(b.upgrade.is_some());
    let new_counts = RawMap::open(&pins.versioned(map_names::COUNTERS, &b.layout[map_names::COUNTERS])).unwrap();
    let new_peers = RawMap::open(&pins.versioned(map_names::UDP_PEERS, &b.layout[map_names::UDP_PEERS])).unwrap();
    // Reply state is copied before the swap; counters are not (yet).
    assert_eq!(new_peers.get(&peer(1)), Some(5u64.to_ne_bytes().to_vec()));
    assert_eq!(packets(&new_counts, 3), 0);
    // Meanwhile the old programs count and record, the new ones count too.
    set_slot(&old_counts, 3, 10);
    old_peers.set(&peer(2), &6u64.to_ne_bytes(), 0).unwrap();
    set_slot(&new_counts, 3, 1);
    let d = support::compile(&support::snapshot(""));
    reconcile::apply(&mut b.maps, &d, &CgroupIndex::default()).unwrap();
    let report = b.finish_upgrade(&cg.0).unwrap().expect("an upgrade report");
    let m = |name: &str| report.maps.iter().find(|m| m.map == name).unwrap_or_else(|| panic!("{name} not migrated: {report:?}")).clone();
    let counts = m(map_names::COUNTERS);
    assert_eq!(counts.carry, Carry::AddCounters);
    let peers = m(map_names::UDP_PEERS);
    assert_eq!((peers.carry, peers.copied, peers.caught_up), (Carry::CopyAndCatchUp, 1, 1), "{report:?}");
    // Totals never go backwards: the old map's final count joins the new one's.
    assert_eq!(packets(&new_counts, 3), 11 * cpus);
    assert_eq!(new_peers.get(&peer(2)), Some(6u64.to_ne_bytes().to_vec()));
    assert_eq!(map_id(&pins.map(map_names::COUNTERS)), new_counts.id);
    drop(b);
    for p in object::root_programs() {
        let _ = std::fs::remove_file(pins.link(p.name));
    }
}

/// A hash map made with the bpf syscall: `key`/`value` bytes, `entries`.
fn create_hash_map(key: u32, value: u32, entries: u32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_HASH: u32 = 1;
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size,
    // max_entries, map_flags; the rest zero.
    let mut attr = [0u32; 30];
    attr[..4].copy_from_slice(&[BPF_MAP_TYPE_HASH, key, value, entries]);
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_CREATE, attr.as_mut_ptr(), std::mem::size_of_val(&attr)) };
    assert!(fd >= 0, "BPF_MAP_CREATE: {}", std::io::Error::last_os_error());
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

/// A new agent allows its own cgroup before it talks to its source (its
/// pod is under kubepods, so unclassified and denied), also when the
/// pinned TG_CGROUPS is of another layout: an upgrade swaps the maps only
/// after the new agent has synced, so the old map must let it out first.
#[test]
fn the_agent_allows_itself_in_a_cgroups_map_of_another_layout() {
    use std::os::fd::AsFd;
    let (_g, pins) = support::pins("layout-allow");
    let other = create_hash_map(8, 24, 16);
    tollgate::datapath::raw_map::obj_pin(other.as_fd(), &pins.map(map_names::CGROUPS)).unwrap();
    reconcile::allow_now(&pins, 42).unwrap();
    let map = RawMap::open(&pins.map(map_names::CGROUPS)).unwrap();
    assert_eq!(map.layout.value_size, 24);
    assert_eq!(map.get(&42u64.to_ne_bytes()), Some(vec![0u8; 24]), "the entry of a cgroup that is not enforced, in that layout");
    // And in this build's layout, the same entry as ALLOWED_ENTRY.
    std::fs::remove_file(pins.map(map_names::CGROUPS)).unwrap();
    let size = std::mem::size_of_val(&ALLOWED_ENTRY) as u32;
    let ours = create_hash_map(8, size, 16);
    tollgate::datapath::raw_map::obj_pin(ours.as_fd(), &pins.map(map_names::CGROUPS)).unwrap();
    reconcile::allow_now(&pins, 43).unwrap();
    let map = RawMap::open(&pins.map(map_names::CGROUPS)).unwrap();
    let bytes = map.get(&43u64.to_ne_bytes()).expect("entry");
    let zero = ALLOWED_ENTRY;
    let allowed = unsafe { std::slice::from_raw_parts((&zero as *const agent_common::CgroupEntry).cast::<u8>(), size as usize) };
    assert_eq!(bytes, allowed, "zeros are ALLOWED_ENTRY in this build's layout");
}
