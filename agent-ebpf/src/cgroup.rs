//! Which pod does a socket belong to?
//!
//! The agent registers every pod cgroup and every container cgroup it
//! finds, so the socket's own cgroup usually answers with one lookup (and
//! traffic of pods that are not enforced passes after that one lookup).
//! A cgroup the agent has not seen yet (a container that just started, a
//! sub-cgroup made inside a container) is attributed to its nearest
//! registered ancestor, so new cgroups are enforced from their first
//! packet.
use agent_common::{CgroupEntry, MAX_CGROUP_LEVEL};

use crate::maps::TG_CGROUPS;

#[inline(always)]
pub fn resolve(own: u64, ancestor: impl Fn(i32) -> u64) -> Option<CgroupEntry> {
    if let Some(e) = unsafe { TG_CGROUPS.get(own) } {
        return Some(*e);
    }
    let mut level = 1;
    while level <= MAX_CGROUP_LEVEL {
        let id = ancestor(level);
        if id == 0 || id == own {
            return None;
        }
        if let Some(e) = unsafe { TG_CGROUPS.get(id) } {
            return Some(*e);
        }
        level += 1;
    }
    None
}
