//! Map layouts: what the kernel fixes when a map is created (type, key
//! size, value size, max entries, flags), a short id of it, and what an
//! agent does with each pinned map when its layout differs from the one
//! this build wants. Pure: the pins are read in `layout_pins`, the maps
//! copied in `raw_map`, the whole upgrade run in `upgrade`.
use std::collections::BTreeMap;

use agent_common::map_names;
use serde::{Deserialize, Serialize};

use super::DatapathError;

/// BPF_MAP_TYPE_RINGBUF: aya creates it with value size 0.
const RINGBUF: u32 = 27;
/// BPF_MAP_TYPE_SK_STORAGE: its entries belong to sockets, out of reach
/// of a copy from user space.
const SK_STORAGE: u32 = 24;

/// What the kernel fixes when it creates a map: a pinned map with another
/// layout cannot serve this build's programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapLayout {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub flags: u32,
}

impl MapLayout {
    /// Eight hex digits (FNV-1a of the fields): the suffix of the map's
    /// pin, `<NAME>-<id>`.
    pub fn id(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for field in [self.map_type, self.key_size, self.value_size, self.max_entries, self.flags] {
            for b in field.to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!("{:08x}", (h ^ (h >> 32)) as u32)
    }

    /// Entries can be copied byte for byte into a map of `other` layout
    /// (only the capacity or the flags differ).
    pub fn copyable_to(&self, other: &MapLayout) -> bool {
        self.map_type == other.map_type
            && self.key_size == other.key_size
            && self.value_size == other.value_size
            && self.map_type != RINGBUF
            && self.map_type != SK_STORAGE
    }
}

/// The pin of map `name` with layout `id` (bpffs refuses dots in names).
pub fn versioned_name(name: &str, id: &str) -> String {
    format!("{name}-{id}")
}

/// (map name, layout id) of a versioned pin name.
pub fn parse_versioned(file: &str) -> Option<(&str, &str)> {
    let (name, id) = file.rsplit_once('-')?;
    (id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) && map_names::ALL.contains(&name)).then_some((name, id))
}

/// The layouts of the pinned maps of a kernel object, with `max_entries`
/// overrides applied as the loader applies them.
pub fn object_layouts(bytes: &[u8], max_entries: &[(&str, u32)]) -> Result<BTreeMap<String, MapLayout>, DatapathError> {
    let obj = aya_obj::Object::parse(bytes).map_err(|e| DatapathError::Layout(format!("parsing the kernel object: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, map) in &obj.maps {
        if map.pinning() != aya_obj::maps::PinningType::ByName {
            continue;
        }
        let max = max_entries.iter().find(|(n, _)| n == name).map(|(_, m)| *m).unwrap_or(map.max_entries());
        let value_size = if map.map_type() == RINGBUF { 0 } else { map.value_size() };
        out.insert(
            name.clone(),
            MapLayout { map_type: map.map_type(), key_size: map.key_size(), value_size, max_entries: max, flags: map.map_flags() },
        );
    }
    Ok(out)
}

/// What is pinned under a map's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    Nothing,
    /// A map pinned under the bare name: the layout of releases before
    /// versioned pins (read from the kernel).
    Legacy(MapLayout),
    /// The name is a link to `<NAME>-<id>`; the layout as the kernel
    /// reports it.
    Versioned { id: String, layout: MapLayout },
}

impl Pinned {
    pub fn id(&self) -> Option<String> {
        match self {
            Pinned::Nothing => None,
            Pinned::Legacy(l) => Some(l.id()),
            Pinned::Versioned { id, .. } => Some(id.clone()),
        }
    }

    fn layout(&self) -> Option<&MapLayout> {
        match self {
            Pinned::Nothing => None,
            Pinned::Legacy(l) | Pinned::Versioned { layout: l, .. } => Some(l),
        }
    }
}

/// What becomes of a map's state when its layout changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Carry {
    /// Copied before the new programs run; the agent's first apply then
    /// brings it up to date (maps the agent writes).
    Copy,
    /// Copied before, and what the old programs added since copied again
    /// after the swap (state the kernel writes: reply state, rate limits).
    CopyAndCatchUp,
    /// Added after the swap, when the old programs no longer count
    /// (per-CPU counters): totals never go backwards.
    AddCounters,
    /// Starts empty: the agent's first apply writes all of it again.
    Rebuilt,
    /// Starts empty and nothing writes it back (events in flight, socket
    /// storage): said in the log.
    Lost,
}

/// What the agent does with one map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "fate")]
pub enum Fate {
    /// Nothing pinned: created.
    New,
    /// Pinned with this build's layout: its state is kept as it is.
    Kept,
    /// Pinned with another layout (`from`): a new map is filled, then
    /// swapped in.
    Changed { from: String, carry: Carry },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapPlan {
    pub name: String,
    /// The layout id this build wants.
    pub id: String,
    #[serde(flatten)]
    pub fate: Fate,
    /// The pin is under the bare name (a release before versioned pins).
    pub legacy: bool,
}

/// Maps only the agent writes: the first apply writes them in full.
const AGENT_WRITTEN: [&str; 7] = [
    map_names::CGROUPS,
    map_names::RULES_V4,
    map_names::RULES_V6,
    map_names::WORKLOADS,
    map_names::ADDRS,
    map_names::TC_PODS,
    map_names::META,
];
/// Per-CPU arrays of u64 counters.
const COUNTERS: [&str; 2] = [map_names::COUNTERS, map_names::EVENTS_SUPPRESSED];

/// How the state of map `name` crosses from layout `old` to `new`.
pub fn carry(name: &str, old: &MapLayout, new: &MapLayout) -> Carry {
    let copyable = old.copyable_to(new);
    if COUNTERS.contains(&name) {
        return if copyable { Carry::AddCounters } else { Carry::Lost };
    }
    if AGENT_WRITTEN.contains(&name) {
        // Workload ids come from TG_WORKLOADS: copied, they stay stable
        // (so do the counters indexed by them).
        return if copyable { Carry::Copy } else { Carry::Rebuilt };
    }
    if copyable {
        Carry::CopyAndCatchUp
    } else {
        Carry::Lost
    }
}

/// The fate of every map this build wants, given what is pinned.
pub fn plan(wanted: &BTreeMap<String, MapLayout>, pinned: &BTreeMap<String, Pinned>) -> Vec<MapPlan> {
    wanted
        .iter()
        .map(|(name, layout)| {
            let id = layout.id();
            let current = pinned.get(name).cloned().unwrap_or(Pinned::Nothing);
            let legacy = matches!(current, Pinned::Legacy(_));
            let fate = match (current.id(), current.layout()) {
                (None, _) | (_, None) => Fate::New,
                (Some(old), Some(_)) if old == id => Fate::Kept,
                (Some(old), Some(old_layout)) => Fate::Changed { from: old, carry: carry(name, old_layout, layout) },
            };
            MapPlan { name: name.clone(), id, fate, legacy }
        })
        .collect()
}

/// Some map changed layout: the agent fills new maps, then swaps.
pub fn needs_migration(plans: &[MapPlan]) -> bool {
    plans.iter().any(|p| matches!(p.fate, Fate::Changed { .. }))
}

/// `NAME=id` of each map, for logs and `status`.
pub fn summary(plans: &[MapPlan]) -> BTreeMap<String, String> {
    plans.iter().map(|p| (p.name.clone(), p.id.clone())).collect()
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
