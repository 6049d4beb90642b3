use super::*;

const HASH: u32 = 1;
const PERCPU_ARRAY: u32 = 6;
const LRU_HASH: u32 = 9;

fn l(map_type: u32, key: u32, value: u32, max: u32) -> MapLayout {
    MapLayout { map_type, key_size: key, value_size: value, max_entries: max, flags: 0 }
}

#[test]
fn ids_are_short_stable_and_see_every_field() {
    let base = l(HASH, 8, 16, 65_536);
    let id = base.id();
    assert_eq!(id.len(), 8);
    assert_eq!(id, base.id());
    let variants = [
        MapLayout { map_type: LRU_HASH, ..base },
        MapLayout { key_size: 4, ..base },
        MapLayout { value_size: 24, ..base },
        MapLayout { max_entries: 32_768, ..base },
        MapLayout { flags: 1, ..base },
    ];
    for v in variants {
        assert_ne!(v.id(), id, "{v:?} has the id of {base:?}");
    }
}

#[test]
fn versioned_names_round_trip_and_refuse_other_files() {
    let n = versioned_name("TG_CGROUPS", "0a1b2c3d");
    assert_eq!(n, "TG_CGROUPS-0a1b2c3d");
    assert_eq!(parse_versioned(&n), Some(("TG_CGROUPS", "0a1b2c3d")));
    assert_eq!(parse_versioned("TG_CGROUPS"), None);
    assert_eq!(parse_versioned("TG_CGROUPS-zz"), None);
    assert_eq!(parse_versioned("NOT_OURS-0a1b2c3d"), None);
    assert_eq!(parse_versioned("links"), None);
}

fn wanted() -> BTreeMap<String, MapLayout> {
    [
        (map_names::CGROUPS, l(HASH, 8, 16, 32_768)),
        (map_names::COUNTERS, l(PERCPU_ARRAY, 4, 16, 1_024)),
        (map_names::TC_FLOWS, l(LRU_HASH, 40, 8, 1_000)),
        (map_names::WORKLOADS, l(HASH, 4, 64, 16_384)),
        (map_names::EVENTS, l(RINGBUF, 0, 0, 1 << 20)),
        (map_names::META, l(2, 4, 8, 8)),
    ]
    .into_iter()
    .map(|(n, l)| (n.to_string(), l))
    .collect()
}

fn fate_of<'a>(plans: &'a [MapPlan], name: &str) -> &'a MapPlan {
    plans.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} not planned"))
}

#[test]
fn nothing_pinned_means_new_maps_and_no_migration() {
    let plans = plan(&wanted(), &BTreeMap::new());
    assert!(plans.iter().all(|p| p.fate == Fate::New));
    assert!(!needs_migration(&plans));
}

#[test]
fn same_layout_is_kept_versioned_or_legacy() {
    let w = wanted();
    let pinned: BTreeMap<String, Pinned> = w
        .iter()
        .enumerate()
        .map(|(i, (n, l))| {
            let p = if i % 2 == 0 { Pinned::Legacy(*l) } else { Pinned::Versioned { id: l.id(), layout: *l } };
            (n.clone(), p)
        })
        .collect();
    let plans = plan(&w, &pinned);
    assert!(plans.iter().all(|p| p.fate == Fate::Kept), "{plans:?}");
    assert!(!needs_migration(&plans));
    assert!(plans.iter().filter(|p| p.legacy).count() == 3);
}

#[test]
fn a_changed_capacity_migrates_that_map_only_and_says_how() {
    let w = wanted();
    let mut pinned: BTreeMap<String, Pinned> = w.iter().map(|(n, l)| (n.clone(), Pinned::Legacy(*l))).collect();
    // Today's release had 65,536 cgroup entries, bigger counters and a
    // different TC flow key.
    let old_cgroups = l(HASH, 8, 16, 65_536);
    pinned.insert(map_names::CGROUPS.into(), Pinned::Legacy(old_cgroups));
    pinned.insert(map_names::COUNTERS.into(), Pinned::Versioned { id: "00000001".into(), layout: l(PERCPU_ARRAY, 4, 16, 2_048) });
    pinned.insert(map_names::TC_FLOWS.into(), Pinned::Versioned { id: "00000002".into(), layout: l(LRU_HASH, 36, 8, 1_000) });
    pinned.insert(map_names::WORKLOADS.into(), Pinned::Versioned { id: "00000003".into(), layout: l(HASH, 4, 48, 16_384) });
    let plans = plan(&w, &pinned);
    assert!(needs_migration(&plans));
    assert_eq!(fate_of(&plans, map_names::CGROUPS).fate, Fate::Changed { from: old_cgroups.id(), carry: Carry::Copy });
    assert!(fate_of(&plans, map_names::CGROUPS).legacy);
    assert_eq!(fate_of(&plans, map_names::COUNTERS).fate, Fate::Changed { from: "00000001".into(), carry: Carry::AddCounters });
    // Another key size: nothing to copy; the kernel state starts empty.
    assert_eq!(fate_of(&plans, map_names::TC_FLOWS).fate, Fate::Changed { from: "00000002".into(), carry: Carry::Lost });
    // Another value size of a map the agent writes: the apply rebuilds it.
    assert_eq!(fate_of(&plans, map_names::WORKLOADS).fate, Fate::Changed { from: "00000003".into(), carry: Carry::Rebuilt });
    assert_eq!(fate_of(&plans, map_names::EVENTS).fate, Fate::Kept);
    assert_eq!(fate_of(&plans, map_names::META).fate, Fate::Kept);
}

#[test]
fn carry_by_kind_of_map() {
    let a = l(LRU_HASH, 40, 8, 1_000);
    let b = l(LRU_HASH, 40, 8, 2_000);
    assert_eq!(carry(map_names::TC_FLOWS, &a, &b), Carry::CopyAndCatchUp);
    assert_eq!(carry(map_names::UDP_PEERS, &a, &b), Carry::CopyAndCatchUp);
    assert_eq!(carry(map_names::CGROUPS, &a, &b), Carry::Copy);
    assert_eq!(carry(map_names::EVENTS_SUPPRESSED, &a, &b), Carry::AddCounters);
    // A ring buffer or socket storage never copies.
    let r = l(RINGBUF, 0, 0, 1 << 20);
    assert_eq!(carry(map_names::EVENTS, &r, &MapLayout { max_entries: 1 << 21, ..r }), Carry::Lost);
    let s = l(SK_STORAGE, 4, 32, 0);
    assert_eq!(carry(map_names::SOCKS, &s, &MapLayout { flags: 1, ..s }), Carry::Lost);
    // Another map type under the same name: nothing is copied.
    assert_eq!(carry(map_names::CGROUPS, &l(HASH, 8, 16, 1), &l(LRU_HASH, 8, 16, 1)), Carry::Rebuilt);
}

#[test]
fn the_embedded_object_has_a_layout_for_every_pinned_map() {
    let Ok(bytes) = super::super::object::bytes() else {
        eprintln!("built without the kernel object: skipped");
        return;
    };
    let layouts = object_layouts(bytes, &[]).unwrap();
    let names: Vec<&str> = layouts.keys().map(String::as_str).collect();
    let mut all = map_names::ALL.to_vec();
    all.sort();
    assert_eq!(names, all);
    let smaller = object_layouts(bytes, &[(map_names::CGROUPS, 1_000)]).unwrap();
    assert_ne!(smaller[map_names::CGROUPS].id(), layouts[map_names::CGROUPS].id());
    assert_eq!(smaller[map_names::COUNTERS].id(), layouts[map_names::COUNTERS].id());
}
