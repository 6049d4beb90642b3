//! An upgrade across a map-layout change, with no gap: the new object is
//! loaded with new maps for the layouts that changed, what can be carried
//! is copied into them, the agent's first full apply fills them while the
//! old programs (with the old maps) stay attached and enforcing, and only
//! then are the new programs attached (TC links swapped in place, after
//! each pod's `TG_TC_PODS` entry; cgroup-root programs attached, then the
//! old links unpinned). The links under the maps' names then point at the
//! new pins, what the old programs counted meanwhile is carried over, and
//! the old layout's pins are removed. A failure before the swap leaves
//! the old programs attached with their maps and pins: the next agent
//! starts the upgrade again.
use std::{collections::BTreeMap, time::Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{
    bpffs::PinDir,
    layout::{Carry, Fate, MapPlan},
    layout_pins,
    raw_map::{self, Copied, RawMap},
    DatapathError,
};

/// One map of an upgrade, as `status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MapMigration {
    pub map: String,
    pub from: String,
    pub to: String,
    pub carry: Carry,
    /// Entries copied before the swap.
    pub copied: u64,
    /// Entries (or counter slots) carried after the swap.
    pub caught_up: u64,
    /// Entries the new map refused (it is smaller and full).
    pub refused: u64,
}

/// What an upgrade did: the maps that changed layout and how long the
/// old programs enforced alone while the new maps were filled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpgradeReport {
    pub at: String,
    pub maps: Vec<MapMigration>,
    /// Maps whose layout was kept (their state untouched).
    pub kept: Vec<String>,
    /// From the load of the new object to the old layout's pins removed.
    pub duration_ms: f64,
    /// Old pins removed.
    pub removed_pins: Vec<String>,
}

/// An upgrade in progress: the new maps are loaded and filled, the old
/// programs still attached.
pub struct LayoutUpgrade {
    pub plans: Vec<MapPlan>,
    /// The maps of the old layout, opened before anything was changed.
    old: BTreeMap<String, RawMap>,
    copied: BTreeMap<String, Copied>,
    started: Instant,
}

fn new_map(pins: &PinDir, p: &MapPlan) -> Result<RawMap, DatapathError> {
    RawMap::open(&pins.versioned(&p.name, &p.id))
}

impl LayoutUpgrade {
    /// Opens the old maps of the layouts that change, before the new
    /// object is loaded (the names still point at them).
    pub fn open(pins: &PinDir, plans: Vec<MapPlan>, started: Instant) -> Result<LayoutUpgrade, DatapathError> {
        let mut old = BTreeMap::new();
        for p in &plans {
            if let Fate::Changed { .. } = p.fate {
                old.insert(p.name.clone(), RawMap::open(&pins.map(&p.name))?);
            }
        }
        Ok(LayoutUpgrade { plans, old, copied: BTreeMap::new(), started })
    }

    /// Copies what crosses before the swap into the new maps (no program
    /// reads them yet).
    pub fn copy_before_swap(&mut self, pins: &PinDir) -> Result<(), DatapathError> {
        for p in &self.plans {
            let Fate::Changed { carry, .. } = &p.fate else { continue };
            if !matches!(carry, Carry::Copy | Carry::CopyAndCatchUp) {
                continue;
            }
            let (Some(old), new) = (self.old.get(&p.name), new_map(pins, p)?) else { continue };
            let c = raw_map::copy(old, &new, 0);
            if c.refused > 0 {
                warn!(map = %p.name, copied = c.copied, refused = c.refused, "layout upgrade: the new map refused entries (smaller than what is there)");
            }
            self.copied.insert(p.name.clone(), c);
        }
        Ok(())
    }

    /// After the new programs are attached: the names point at the new
    /// pins, what the old programs added is carried, the old pins go.
    pub fn finish(self, pins: &PinDir) -> Result<UpgradeReport, DatapathError> {
        for p in &self.plans {
            layout_pins::point(pins, &p.name, &p.id)?;
        }
        let mut maps = Vec::new();
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for p in &self.plans {
            let Fate::Changed { from, carry } = &p.fate else {
                if p.fate == Fate::Kept {
                    kept.push(p.name.clone());
                }
                continue;
            };
            let before = self.copied.get(&p.name).copied().unwrap_or_default();
            let after = match (carry, self.old.get(&p.name)) {
                (Carry::CopyAndCatchUp, Some(old)) => raw_map::copy(old, &new_map(pins, p)?, raw_map::NOEXIST),
                (Carry::AddCounters, Some(old)) => raw_map::add_counters(old, &new_map(pins, p)?),
                _ => Copied::default(),
            };
            if !p.legacy {
                let old_pin = pins.versioned(&p.name, from);
                layout_pins::unpin(&old_pin)?;
                removed.push(old_pin.display().to_string());
            } else {
                removed.push(pins.map(&p.name).display().to_string());
            }
            maps.push(MapMigration {
                map: p.name.clone(),
                from: from.clone(),
                to: p.id.clone(),
                carry: *carry,
                copied: before.copied,
                caught_up: after.copied,
                refused: before.refused + after.refused,
            });
        }
        for p in &self.plans {
            for stale in layout_pins::others(pins, &p.name, &p.id) {
                layout_pins::unpin(&stale)?;
                removed.push(stale.display().to_string());
            }
        }
        let report = UpgradeReport {
            at: crate::runtime::time::now_rfc3339(),
            maps,
            kept,
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            removed_pins: removed,
        };
        for m in &report.maps {
            info!(map = %m.map, from = %m.from, to = %m.to, carry = ?m.carry, copied = m.copied, caught_up = m.caught_up, refused = m.refused, "layout upgrade: map migrated");
        }
        info!(
            changed = report.maps.len(),
            kept = report.kept.len(),
            ms = report.duration_ms,
            "layout upgrade done: the new programs enforce with the new maps; the old layout's pins are removed"
        );
        Ok(report)
    }
}
