//! Finding a pod's host-side veth, from the node's network namespace and
//! without entering the pod's (no setns, so no CAP_SYS_ADMIN):
//! 1. a process of the pod (its cgroup's `cgroup.procs`) whose network
//!    namespace is not the node's: `/proc/<pid>/ns/net` (CAP_SYS_PTRACE);
//! 2. the id the node's namespace gives that namespace (RTM_GETNSID with
//!    the namespace's file descriptor);
//! 3. the node's link whose peer lives in that namespace
//!    (IFLA_LINK_NETNSID of an RTM_GETLINK dump): the veth.
//!
//! A pod whose processes all run in the node's namespace (a sandboxed
//! runtime such as gVisor or Kata, or host networking) has no veth found
//! this way.
use std::{
    fs::File,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::fs::MetadataExt,
    path::Path,
};

const NETLINK_ROUTE: i32 = 0;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const IFLA_LINK_NETNSID: u16 = 37;
/// Size of `struct nlmsghdr`, `struct ifinfomsg`, `struct rtgenmsg` (padded).
const NLMSG_HDR: usize = 16;
const IFINFOMSG: usize = 16;
const RTGENMSG: usize = 4;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A NETLINK_ROUTE socket of the calling thread's network namespace.
struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    fn open() -> io::Result<Rtnl> {
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_ROUTE) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Rtnl { fd: unsafe { OwnedFd::from_raw_fd(fd) }, seq: 0 })
    }

    fn send(&mut self, kind: u16, flags: u16, body: &[u8]) -> io::Result<u32> {
        self.seq += 1;
        let len = NLMSG_HDR + body.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    /// Calls `each(kind, payload)` for every answer to `seq` until the
    /// dump ends (or, for a plain request, after the first answer).
    fn recv(&mut self, seq: u32, dump: bool, mut each: impl FnMut(u16, &[u8])) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + NLMSG_HDR <= n {
                let h = &buf[off..];
                let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let kind = u16::from_ne_bytes([h[4], h[5]]);
                let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                if len < NLMSG_HDR || off + len > n {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "truncated netlink message"));
                }
                let payload = &buf[off + NLMSG_HDR..off + len];
                off += align4(len);
                if mseq != seq {
                    continue;
                }
                match kind {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let errno = payload.get(..4).map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                        if errno == 0 {
                            return Ok(());
                        }
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                    _ => {
                        each(kind, payload);
                        if !dump {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

/// The netlink attributes of `payload` after a fixed header of `skip` bytes.
fn attrs(payload: &[u8], skip: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = skip;
    std::iter::from_fn(move || {
        if off + 4 > payload.len() {
            return None;
        }
        let len = u16::from_ne_bytes([payload[off], payload[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([payload[off + 2], payload[off + 3]]) & 0x3fff;
        if len < 4 || off + len > payload.len() {
            return None;
        }
        let data = &payload[off + 4..off + len];
        off += align4(len);
        Some((kind, data))
    })
}

fn i32_of(data: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

/// (ifindex, link netnsid) of every link of the node that has a peer in
/// another namespace.
fn links_with_peer_ns(rtnl: &mut Rtnl) -> io::Result<Vec<(u32, i32)>> {
    let seq = rtnl.send(RTM_GETLINK, NLM_F_DUMP, &[0u8; IFINFOMSG])?;
    let mut out = Vec::new();
    rtnl.recv(seq, true, |kind, payload| {
        if kind != RTM_NEWLINK || payload.len() < IFINFOMSG {
            return;
        }
        let index = i32::from_ne_bytes([payload[4], payload[5], payload[6], payload[7]]) as u32;
        if let Some(nsid) = attrs(payload, IFINFOMSG).find(|(k, _)| *k == IFLA_LINK_NETNSID).and_then(|(_, d)| i32_of(d)) {
            out.push((index, nsid));
        }
    })?;
    Ok(out)
}

/// The id the node's namespace gives the namespace open as `ns` (None:
/// no id assigned, so no link of the node has a peer there).
fn nsid_of(rtnl: &mut Rtnl, ns: &File) -> io::Result<Option<i32>> {
    let mut body = vec![0u8; RTGENMSG];
    body.extend_from_slice(&8u16.to_ne_bytes());
    body.extend_from_slice(&NETNSA_FD.to_ne_bytes());
    body.extend_from_slice(&(ns.as_raw_fd() as u32).to_ne_bytes());
    let seq = rtnl.send(RTM_GETNSID, 0, &body)?;
    let mut id = None;
    rtnl.recv(seq, false, |kind, payload| {
        if kind == RTM_NEWNSID {
            id = attrs(payload, RTGENMSG).find(|(k, _)| *k == NETNSA_NSID).and_then(|(_, d)| i32_of(d));
        }
    })?;
    Ok(id.filter(|i| *i >= 0))
}

/// The node's links that have a peer in another namespace, read once
/// per search round.
pub struct NodeLinks {
    rtnl: Rtnl,
    links: Vec<(u32, i32)>,
}

impl NodeLinks {
    pub fn read() -> io::Result<NodeLinks> {
        let mut rtnl = Rtnl::open()?;
        // The dump makes the kernel assign ids to the peers' namespaces.
        let links = links_with_peer_ns(&mut rtnl)?;
        Ok(NodeLinks { rtnl, links })
    }

    /// The ifindex of the node's link whose peer lives in the network
    /// namespace open as `ns`.
    pub fn peer_of(&mut self, ns: &File) -> io::Result<Option<u32>> {
        let Some(id) = nsid_of(&mut self.rtnl, ns)? else {
            return Ok(None);
        };
        Ok(self.links.iter().find(|(_, nsid)| *nsid == id).map(|(index, _)| *index))
    }
}

/// Processes of a cgroup directory and of the directories below it.
fn pids_under(dir: &Path, out: &mut Vec<u32>, depth: u32) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if depth == 0 {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                pids_under(&e.path(), out, depth - 1);
            }
        }
    }
}

/// Where a pod's veth search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodLink {
    /// The host-side veth.
    Veth(u32),
    /// The pod has processes, all in the node's network namespace (a
    /// sandboxed runtime, host networking): no veth found this way.
    InNodeNamespace,
    /// No process yet (or none readable).
    NoProcess,
}

/// Finds the host-side veth of the pod whose cgroup directory is `pod_dir`.
pub fn find_pod_link(links: &mut NodeLinks, pod_dir: &Path) -> io::Result<PodLink> {
    let node_ns = std::fs::metadata("/proc/self/ns/net")?.ino();
    let mut pids = Vec::new();
    pids_under(pod_dir, &mut pids, 3);
    let mut seen_node = false;
    for pid in pids {
        let path = format!("/proc/{pid}/ns/net");
        let Ok(ns) = File::open(&path) else { continue };
        let Ok(meta) = ns.metadata() else { continue };
        if meta.ino() == node_ns {
            seen_node = true;
            continue;
        }
        if let Some(index) = links.peer_of(&ns)? {
            return Ok(PodLink::Veth(index));
        }
    }
    Ok(if seen_node { PodLink::InNodeNamespace } else { PodLink::NoProcess })
}
