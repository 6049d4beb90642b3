//! Maps as bytes, through the bpf(2) syscall: what an upgrade needs to
//! copy entries between two maps of any key and value type, to read a
//! pinned map's layout, and to pin a map a second time.
use std::{
    ffi::CString,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    path::Path,
};

use super::{layout::MapLayout, DatapathError};

const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_MAP_GET_NEXT_KEY: i64 = 4;
const BPF_OBJ_PIN: i64 = 6;
const BPF_OBJ_GET: i64 = 7;
const BPF_OBJ_GET_INFO_BY_FD: i64 = 15;
/// BPF_NOEXIST: insert only keys the map does not hold.
pub const NOEXIST: u64 = 1;

/// Per-CPU map types: a value per possible CPU, each rounded up to 8 bytes.
const PERCPU_TYPES: [u32; 4] = [5, 6, 10, 21];

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn bpf<T>(cmd: i64, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr` for `cmd`
    // (the kernel zero-extends a shorter attr); the pointers in it point
    // at live buffers of the sizes the map declares.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn c_path(path: &Path) -> Result<CString, DatapathError> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| DatapathError::Layout(format!("pin path {} has a NUL byte", path.display())))
}

/// Opens the object pinned at `path` (a symbolic link is followed).
pub fn obj_get(path: &Path) -> Result<OwnedFd, DatapathError> {
    let p = c_path(path)?;
    let mut attr = ObjAttr { pathname: p.as_ptr() as u64, ..Default::default() };
    let fd = bpf(BPF_OBJ_GET, &mut attr).map_err(|e| DatapathError::io(format!("opening pin {}", path.display()), e))?;
    // SAFETY: BPF_OBJ_GET returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Pins `fd` at `path` too (a map may have several pins).
pub fn obj_pin(fd: BorrowedFd<'_>, path: &Path) -> Result<(), DatapathError> {
    let p = c_path(path)?;
    let mut attr = ObjAttr { pathname: p.as_ptr() as u64, bpf_fd: fd.as_raw_fd() as u32, file_flags: 0 };
    bpf(BPF_OBJ_PIN, &mut attr).map_err(|e| DatapathError::io(format!("pinning {}", path.display()), e))?;
    Ok(())
}

/// The kernel's id and layout of a map.
pub fn map_info(fd: BorrowedFd<'_>) -> Result<(u32, MapLayout), DatapathError> {
    // struct bpf_map_info starts: type, id, key_size, value_size,
    // max_entries, map_flags; the rest is not needed.
    let mut info = [0u32; 32];
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of_val(&info) as u32,
        info: info.as_mut_ptr() as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map_err(|e| DatapathError::io("reading a map's info", e))?;
    let layout = MapLayout { map_type: info[0], key_size: info[2], value_size: info[3], max_entries: info[4], flags: info[5] };
    Ok((info[1], layout))
}

/// A map opened as bytes.
pub struct RawMap {
    fd: OwnedFd,
    pub id: u32,
    pub layout: MapLayout,
    value_len: usize,
}

impl RawMap {
    pub fn open(path: &Path) -> Result<RawMap, DatapathError> {
        RawMap::from_fd(obj_get(path)?)
    }

    pub fn from_fd(fd: OwnedFd) -> Result<RawMap, DatapathError> {
        let (id, layout) = map_info(fd.as_fd())?;
        let value_len = if PERCPU_TYPES.contains(&layout.map_type) {
            let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::io("counting CPUs", e))?;
            (layout.value_size as usize).div_ceil(8) * 8 * cpus
        } else {
            layout.value_size as usize
        };
        Ok(RawMap { fd, id, layout, value_len })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn attr(&self, key: &[u8], value: *mut u8, flags: u64) -> ElemAttr {
        ElemAttr { map_fd: self.fd.as_raw_fd() as u32, _pad: 0, key: key.as_ptr() as u64, value: value as u64, flags }
    }

    /// Every key, in the kernel's order.
    pub fn keys(&self) -> Vec<Vec<u8>> {
        let n = self.layout.key_size as usize;
        let mut out = Vec::new();
        let mut next = vec![0u8; n];
        let mut attr = ElemAttr { map_fd: self.fd.as_raw_fd() as u32, key: 0, value: next.as_mut_ptr() as u64, ..Default::default() };
        // The first key (key NULL), then each key's successor until ENOENT.
        while bpf(BPF_MAP_GET_NEXT_KEY, &mut attr).is_ok() {
            out.push(next.clone());
            let last = out.last().map(|k| k.as_ptr() as u64).unwrap_or(0);
            attr = ElemAttr { map_fd: self.fd.as_raw_fd() as u32, key: last, value: next.as_mut_ptr() as u64, ..Default::default() };
        }
        out
    }

    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut value = vec![0u8; self.value_len];
        let mut attr = self.attr(key, value.as_mut_ptr(), 0);
        bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).ok().map(|_| value)
    }

    pub fn set(&self, key: &[u8], value: &[u8], flags: u64) -> std::io::Result<()> {
        if value.len() != self.value_len || key.len() != self.layout.key_size as usize {
            return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut attr = self.attr(key, value.as_ptr().cast_mut(), flags);
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }
}

/// Entries copied, and refused (a smaller map is full, an index past
/// its end).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub copied: u64,
    pub refused: u64,
}

/// Copies every entry of `from` into `to` (same key and value sizes).
/// `flags` NOEXIST keeps what `to` already has.
pub fn copy(from: &RawMap, to: &RawMap, flags: u64) -> Copied {
    let mut c = Copied::default();
    for key in from.keys() {
        let Some(value) = from.get(&key) else { continue };
        match to.set(&key, &value, flags) {
            Ok(()) => c.copied += 1,
            Err(e) if flags == NOEXIST && e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(_) => c.refused += 1,
        }
    }
    c
}

/// Adds each u64 of `from`'s values to `to`'s (per-CPU counters): after
/// the swap, the old programs' totals join what the new ones counted.
pub fn add_counters(from: &RawMap, to: &RawMap) -> Copied {
    let mut c = Copied::default();
    for key in from.keys() {
        let Some(old) = from.get(&key) else { continue };
        if old.iter().all(|b| *b == 0) {
            continue;
        }
        let mut sum = to.get(&key).unwrap_or_else(|| vec![0u8; old.len()]);
        for (s, o) in sum.chunks_exact_mut(8).zip(old.chunks_exact(8)) {
            let v = u64::from_ne_bytes(s.try_into().unwrap_or([0; 8])).wrapping_add(u64::from_ne_bytes(o.try_into().unwrap_or([0; 8])));
            s.copy_from_slice(&v.to_ne_bytes());
        }
        match to.set(&key, &sum, 0) {
            Ok(()) => c.copied += 1,
            Err(_) => c.refused += 1,
        }
    }
    c
}
