//! The pins, as the kernel sees them: raw `bpf(2)` calls (BPF_OBJ_GET,
//! BPF_OBJ_GET_INFO_BY_FD, BPF_MAP_GET_NEXT_KEY). aya's `LinkInfo` does
//! not give the attach type or the cgroup, and its typed map handles need
//! the key type; here any pin is read the same way, and nothing is written.
use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

use super::observed::{Found, LinkInfo, LinkTarget, MapInfo};

const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// `file_flags` of BPF_OBJ_GET: a read-only descriptor.
const BPF_F_RDONLY: u32 = 1 << 3;

pub const LINK_TYPE_CGROUP: u32 = 3;
const LINK_TYPE_XDP: u32 = 6;
const LINK_TYPE_TCX: u32 = 11;
const LINK_TYPE_NETKIT: u32 = 13;

pub const MAP_TYPE_HASH: u32 = 1;
pub const MAP_TYPE_ARRAY: u32 = 2;
pub const MAP_TYPE_PERCPU_HASH: u32 = 5;
pub const MAP_TYPE_PERCPU_ARRAY: u32 = 6;
pub const MAP_TYPE_LRU_HASH: u32 = 9;
pub const MAP_TYPE_LRU_PERCPU_HASH: u32 = 10;
pub const MAP_TYPE_LPM_TRIE: u32 = 11;
pub const MAP_TYPE_RINGBUF: u32 = 27;

/// Maps whose entries are worth counting: the agent fills them, and a
/// full one refuses new entries.
pub fn counted(map_type: u32) -> bool {
    matches!(map_type, MAP_TYPE_HASH | MAP_TYPE_PERCPU_HASH | MAP_TYPE_LPM_TRIE)
}

/// `bpf(cmd, attr, size)`; `attr` is zero-padded, as the kernel wants.
fn sys_bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> io::Result<libc::c_long> {
    // SAFETY: attr is a valid, writable buffer of the size passed; the
    // kernel reads and writes at most that many bytes.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of_val(attr)) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens a pinned object (`file_flags`: 0, or BPF_F_RDONLY for maps;
/// the kernel opens links read-write only).
fn obj_get(path: &Path, file_flags: u32) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    let mut attr = [0u64; 16];
    attr[0] = c.as_ptr() as u64;
    attr[1] = u64::from(file_flags) << 32; // bpf_fd (u32) = 0, file_flags (u32)
    let fd = sys_bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// BPF_OBJ_GET_INFO_BY_FD into `info` (a `bpf_*_info` struct's bytes).
fn obj_info(fd: &OwnedFd, info: &mut [u64; 32]) -> io::Result<()> {
    let mut attr = [0u64; 16];
    attr[0] = fd.as_raw_fd() as u32 as u64 | ((std::mem::size_of_val(info) as u64) << 32); // bpf_fd, info_len
    attr[1] = info.as_mut_ptr() as u64;
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(|_| ())
}

fn u32_at(buf: &[u64; 32], offset: usize) -> u32 {
    let word = buf[offset / 8];
    if offset.is_multiple_of(8) {
        word as u32
    } else {
        (word >> 32) as u32
    }
}

fn ifname(ifindex: u32) -> Option<String> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: name has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into `name`.
    Some(unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }.to_string_lossy().into_owned())
}

fn found<T>(r: io::Result<T>) -> Found<T> {
    match r {
        Ok(v) => Found::Present(v),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Found::Missing,
        Err(e) => Found::Unreadable(e.to_string()),
    }
}

/// The kernel's view of the link pinned at `path`.
pub fn link(path: &Path) -> Found<LinkInfo> {
    found(obj_get(path, 0).and_then(|fd| {
        // struct bpf_link_info { u32 type, id, prog_id; union (8-aligned, at 16) }
        let mut info = [0u64; 32];
        obj_info(&fd, &mut info)?;
        let link_type = u32_at(&info, 0);
        let (attach_type, target) = match link_type {
            // cgroup: { u64 cgroup_id; u32 attach_type; }
            LINK_TYPE_CGROUP => (Some(u32_at(&info, 24)), LinkTarget::Cgroup(info[2])),
            // tcx, netkit: { u32 ifindex; u32 attach_type; }
            LINK_TYPE_TCX | LINK_TYPE_NETKIT => {
                let ifindex = u32_at(&info, 16);
                (Some(u32_at(&info, 20)), LinkTarget::Device { ifindex, name: ifname(ifindex) })
            }
            // xdp: { u32 ifindex; }
            LINK_TYPE_XDP => {
                let ifindex = u32_at(&info, 16);
                (None, LinkTarget::Device { ifindex, name: ifname(ifindex) })
            }
            _ => (None, LinkTarget::Other),
        };
        Ok(LinkInfo { id: u32_at(&info, 4), prog_id: u32_at(&info, 8), link_type, attach_type, target })
    }))
}

/// The kernel's view of the map pinned at `path`, with its entries
/// counted when its fill matters (at most capacity + 1 keys are walked).
pub fn map(path: &Path) -> Found<MapInfo> {
    found(obj_get(path, BPF_F_RDONLY).and_then(|fd| {
        // struct bpf_map_info { u32 type, id, key_size, value_size, max_entries, ... }
        let mut info = [0u64; 32];
        obj_info(&fd, &mut info)?;
        let map_type = u32_at(&info, 0);
        let key_size = u32_at(&info, 8) as usize;
        let capacity = u32_at(&info, 16);
        let entries = if counted(map_type) { Some(count_keys(&fd, key_size, u64::from(capacity) + 1)?) } else { None };
        Ok(MapInfo { map_type, capacity, entries })
    }))
}

/// Walks the keys with BPF_MAP_GET_NEXT_KEY (read-only), up to `limit`.
fn count_keys(fd: &OwnedFd, key_size: usize, limit: u64) -> io::Result<u64> {
    let mut key = vec![0u8; key_size.max(1)];
    let mut next = vec![0u8; key_size.max(1)];
    let mut n = 0u64;
    let mut first = true;
    while n < limit {
        let mut attr = [0u64; 16];
        attr[0] = fd.as_raw_fd() as u32 as u64; // map_fd
        attr[1] = if first { 0 } else { key.as_ptr() as u64 }; // key (NULL: the first)
        attr[2] = next.as_mut_ptr() as u64; // next_key
        match sys_bpf(BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        }
        n += 1;
        first = false;
        std::mem::swap(&mut key, &mut next);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_fields_by_offset() {
        let mut buf = [0u64; 32];
        buf[0] = 7 | (42 << 32);
        buf[1] = 9;
        assert_eq!((u32_at(&buf, 0), u32_at(&buf, 4), u32_at(&buf, 8)), (7, 42, 9));
    }

    #[test]
    fn a_missing_pin_is_missing() {
        assert_eq!(link(Path::new("/sys/fs/bpf/tollgate-no-such-pin")), Found::Missing);
        assert_eq!(map(Path::new("/nonexistent/tollgate/TG_META")), Found::Missing);
    }
}
