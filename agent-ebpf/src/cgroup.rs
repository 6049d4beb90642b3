//! Which pod does a socket belong to?
//!
//! The agent registers every pod cgroup and every container cgroup it
//! finds, so the socket's own cgroup usually answers with one lookup.
//! Otherwise the nearest registered ancestor answers: a container the
//! agent has not seen yet belongs to its pod; a pod the agent has not
//! classified yet finds the kubepods (or QoS) marker, which denies.
use agent_common::{CgroupEntry, MAX_CGROUP_LEVEL};

use crate::maps::TG_CGROUPS;

/// `ancestor(level)` is the id of the ancestor at `level` (0: the root),
/// 0 when the cgroup is shallower than that.
#[inline(always)]
pub fn resolve(own: u64, ancestor: impl Fn(i32) -> u64) -> Option<CgroupEntry> {
    if let Some(e) = unsafe { TG_CGROUPS.get(own) } {
        return Some(*e);
    }
    // Nearest ancestor first: from the deepest level up to the root.
    let mut level = MAX_CGROUP_LEVEL;
    while level >= 0 {
        let id = ancestor(level);
        if id != 0 && id != own {
            if let Some(e) = unsafe { TG_CGROUPS.get(id) } {
                return Some(*e);
            }
        }
        level -= 1;
    }
    None
}
