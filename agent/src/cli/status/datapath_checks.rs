//! bpffs, the attached programs and the pinned maps.
use super::check::{first, Check};
use super::kernel::{self, LINK_TYPE_CGROUP};
use super::observed::{Found, LinkInfo, LinkTarget, MapInfo, Observed};

/// The hook of a `BPF_*` attach type, as bpftool and aya name it.
pub fn hook_name(attach_type: u32) -> String {
    match attach_type {
        0 => "cgroup_skb/ingress".into(),
        1 => "cgroup_skb/egress".into(),
        2 => "cgroup/sock_create".into(),
        3 => "sockops".into(),
        10 => "cgroup/connect4".into(),
        11 => "cgroup/connect6".into(),
        14 => "cgroup/sendmsg4".into(),
        15 => "cgroup/sendmsg6".into(),
        19 => "cgroup/recvmsg4".into(),
        20 => "cgroup/recvmsg6".into(),
        46 => "tcx/ingress".into(),
        47 => "tcx/egress".into(),
        n => format!("attach type {n}"),
    }
}

fn where_attached(info: &LinkInfo, root: Option<&(String, u64)>) -> String {
    match &info.target {
        LinkTarget::Cgroup(0) => "a cgroup that no longer exists".into(),
        LinkTarget::Cgroup(id) => match root {
            Some((path, root_id)) if root_id == id => format!("cgroup {path}"),
            _ => format!("cgroup id {id}"),
        },
        LinkTarget::Device { ifindex, name } => match name {
            Some(n) => format!("device {n}"),
            None => format!("device ifindex {ifindex} (gone)"),
        },
        LinkTarget::Other => format!("link type {}", info.link_type),
    }
}

const RESTART: &str = "restart the agent on this node (`kubectl -n tollgate-system delete pod <agent pod>`, or restart `tollgate agent` with the same --bpffs): it attaches them again";

pub fn bpffs(o: &Observed) -> Check {
    let path = o.bpffs.display();
    if o.bpffs_mounted {
        Check::pass("bpffs", format!("{path} is on a bpffs"))
    } else {
        Check::fail(
            "bpffs",
            format!("{path} is not on a bpffs: nothing can be pinned there"),
            "mount it on the node (`mount -t bpf bpf /sys/fs/bpf`; systemd does it at boot) and give the agent pod the hostPath /sys/fs/bpf; or pass the --bpffs the agent uses",
        )
    }
}

pub fn programs(o: &Observed) -> Check {
    let root = o.cgroup_root.as_ref();
    let expected: Vec<_> = o.links.iter().filter(|l| l.expected).collect();
    let mut good = Vec::new();
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    let mut items = Vec::new();
    for l in &o.links {
        match &l.found {
            Found::Present(info) => {
                let hook = info.attach_type.map(hook_name).unwrap_or_else(|| format!("link type {}", info.link_type));
                items.push(format!("{}: {hook} on {} (link {}, program {})", l.program, where_attached(info, root), info.id, info.prog_id));
                let on_root = match (&info.target, root) {
                    (LinkTarget::Cgroup(0), _) => false,
                    (LinkTarget::Cgroup(id), Some((_, root_id))) => id == root_id,
                    (LinkTarget::Cgroup(_), None) => info.link_type == LINK_TYPE_CGROUP,
                    (LinkTarget::Device { name, .. }, _) => name.is_some(),
                    (LinkTarget::Other, _) => true,
                };
                if !l.expected {
                    continue;
                }
                if on_root {
                    good.push(l.program.as_str());
                } else {
                    wrong.push(format!("{} on {}", l.program, where_attached(info, root)));
                }
            }
            Found::Missing if l.expected => {
                missing.push(l.program.as_str());
                items.push(format!("{}: not attached (no pin {}/links/{})", l.program, o.bpffs.display(), l.program));
            }
            Found::Missing => {}
            Found::Unreadable(e) => {
                items.push(format!("{}: pinned, but unreadable: {e}", l.program));
                if l.expected {
                    wrong.push(format!("{} (unreadable: {e})", l.program));
                }
            }
        }
    }
    let n = expected.len();
    let place = match root {
        Some((path, _)) => format!("cgroup {path}"),
        None => "the cgroup root".to_owned(),
    };
    if missing.len() == n && n > 0 {
        return Check::fail(
            "programs",
            format!("none of the {n} programs is attached (no pins under {}/links): pods on this node are NOT enforced", o.bpffs.display()),
            RESTART,
        )
        .with_items(items);
    }
    if !missing.is_empty() {
        return Check::fail(
            "programs",
            format!("{} of {n} programs attached; not attached: {}: enforcement is incomplete", good.len(), missing.join(", ")),
            RESTART,
        )
        .with_items(items);
    }
    if !wrong.is_empty() {
        return Check::fail(
            "programs",
            format!("attached, but not to the agent's {place}: {}", wrong.join("; ")),
            format!("check the agent's --cgroup-root (the host's cgroup2 mount; /host/sys/fs/cgroup in the DaemonSet), then {RESTART}"),
        )
        .with_items(items);
    }
    Check::pass("programs", format!("{n}/{n} programs attached to {place}")).with_items(items)
}

fn map_line(name: &str, m: &MapInfo) -> String {
    match (m.entries, m.map_type) {
        (Some(e), _) => format!("{name}: {e}/{} entries ({:.1}%)", m.capacity, percent(e, m.capacity)),
        (None, kernel::MAP_TYPE_LRU_HASH | kernel::MAP_TYPE_LRU_PERCPU_HASH) => {
            format!("{name}: LRU table of {} (the oldest entries make room)", m.capacity)
        }
        (None, kernel::MAP_TYPE_ARRAY | kernel::MAP_TYPE_PERCPU_ARRAY) => format!("{name}: array of {}", m.capacity),
        (None, kernel::MAP_TYPE_RINGBUF) => format!("{name}: ring buffer of {} bytes", m.capacity),
        (None, t) => format!("{name}: map type {t}, capacity {}", m.capacity),
    }
}

fn percent(entries: u64, capacity: u32) -> f64 {
    if capacity == 0 {
        return 100.0;
    }
    entries as f64 * 100.0 / f64::from(capacity)
}

/// Fill at which a map is reported.
pub const WARN_FILL_PERCENT: f64 = 90.0;

pub fn maps(o: &Observed) -> Check {
    let mut items = Vec::new();
    let mut missing = Vec::new();
    let mut unreadable = Vec::new();
    let mut full = Vec::new();
    let mut filling = Vec::new();
    for m in &o.maps {
        match &m.found {
            Found::Missing => missing.push(m.name.as_str()),
            Found::Unreadable(e) => {
                unreadable.push(format!("{} ({e})", m.name));
                items.push(format!("{}: unreadable: {e}", m.name));
            }
            Found::Present(info) => {
                items.push(map_line(&m.name, info));
                if let Some(e) = info.entries {
                    if e >= u64::from(info.capacity) {
                        full.push(format!("{} ({e}/{})", m.name, info.capacity));
                    } else if percent(e, info.capacity) >= WARN_FILL_PERCENT {
                        filling.push(format!("{} ({:.0}%)", m.name, percent(e, info.capacity)));
                    }
                }
            }
        }
    }
    let dir = o.bpffs.display();
    if !missing.is_empty() {
        let what = if missing.len() == o.maps.len() { "no map is pinned".to_owned() } else { format!("not pinned: {}", missing.join(", ")) };
        return Check::fail(
            "maps",
            format!("{what} under {dir}"),
            format!("start `tollgate agent` with --bpffs {dir} (it creates and pins the maps; counters then survive restarts), or pass the --bpffs the agent uses"),
        )
        .with_items(items);
    }
    if !unreadable.is_empty() {
        return Check::fail("maps", format!("pinned but unreadable: {}", unreadable.join(", ")), "run `tollgate status` as root (or with CAP_BPF) on the node, in the agent pod").with_items(items);
    }
    const SIZE_HINT: &str = "the node holds more pods, cgroups or policy addresses than the maps are sized for (agent-common map_sizes): spread the pods, simplify the policies, or build Tollgate with larger maps";
    if !full.is_empty() {
        return Check::fail(
            "maps",
            format!("full: {}: new entries are refused and the pods they are for fail closed", full.join(", ")),
            SIZE_HINT,
        )
        .with_items(items);
    }
    if !filling.is_empty() {
        return Check::warn("maps", format!("over {WARN_FILL_PERCENT:.0}% full: {}", filling.join(", ")), SIZE_HINT).with_items(items);
    }
    Check::pass("maps", format!("{} maps pinned under {dir}, none over {WARN_FILL_PERCENT:.0}% full", o.maps.len())).with_items(first(items, 20))
}
