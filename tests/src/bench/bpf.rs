//! What the kernel says about one agent's BPF objects, read through its
//! pins: each attached program's run statistics (`BPF_OBJ_GET_INFO_BY_FD`
//! on the program behind each pinned link; counted only while
//! `kernel.bpf_stats_enabled` is 1) and each pinned map's memory
//! (`memlock` in the fdinfo of a descriptor for it).
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd, AsRawFd};
use std::path::{Path, PathBuf};

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

// Offsets in struct bpf_prog_info and bpf_link_info (linux/bpf.h, stable ABI).
const PROG_INFO_NAME: usize = 64;
const PROG_INFO_RUN_TIME_NS: usize = 192;
const PROG_INFO_RUN_CNT: usize = 200;
const PROG_INFO_LEN: usize = 232;
const LINK_INFO_PROG_ID: usize = 8;
const LINK_INFO_LEN: usize = 48;

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> std::io::Result<i64> {
    // SAFETY: attr is a zero-padded bpf_attr of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as libc::c_uint) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fd(rc: i64) -> OwnedFd {
    // SAFETY: rc is a descriptor the kernel just returned to us.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

/// A descriptor for the object pinned at `path`.
pub fn obj_get(path: &Path) -> Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())?;
    let mut attr = [0u8; 32];
    attr[0..8].copy_from_slice(&(c.as_ptr() as u64).to_ne_bytes());
    let rc = bpf(BPF_OBJ_GET, &mut attr).with_context(|| format!("BPF_OBJ_GET {}", path.display()))?;
    Ok(fd(rc))
}

fn info(fd: &OwnedFd, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut attr = [0u8; 16];
    attr[0..4].copy_from_slice(&(fd.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(buf.as_mut_ptr() as u64).to_ne_bytes());
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).context("BPF_OBJ_GET_INFO_BY_FD")?;
    Ok(buf)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().unwrap_or_default())
}

/// Run statistics of one program.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ProgStats {
    /// The pin's name (the program's name in the object).
    pub pin: String,
    /// The kernel's (15-character) program name.
    pub name: String,
    pub id: u32,
    pub run_time_ns: u64,
    pub run_cnt: u64,
}

/// The programs behind every link pinned in `<bpffs>/links/`, and in its
/// folders (`links/tc/`: the TC layer's links, one pair per pod).
pub fn prog_stats(bpffs: &Path) -> Result<Vec<ProgStats>> {
    let dir = bpffs.join("links");
    let mut names: Vec<PathBuf> = Vec::new();
    for path in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            names.extend(std::fs::read_dir(&path).with_context(|| format!("reading {}", path.display()))?.filter_map(|e| e.ok().map(|e| e.path())));
        } else {
            names.push(path);
        }
    }
    names.sort();
    let mut out = Vec::new();
    for path in names {
        let link = obj_get(&path)?;
        let li = info(&link, LINK_INFO_LEN)?;
        let prog_id = u32_at(&li, LINK_INFO_PROG_ID);
        let mut attr = [0u8; 12];
        attr[0..4].copy_from_slice(&prog_id.to_ne_bytes());
        let prog = fd(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).with_context(|| format!("BPF_PROG_GET_FD_BY_ID {prog_id}"))?);
        let pi = info(&prog, PROG_INFO_LEN)?;
        let raw = &pi[PROG_INFO_NAME..PROG_INFO_NAME + 16];
        let name = String::from_utf8_lossy(&raw[..raw.iter().position(|b| *b == 0).unwrap_or(16)]).into_owned();
        out.push(ProgStats {
            pin: path.strip_prefix(&dir).unwrap_or(&path).to_string_lossy().into_owned(),
            name,
            id: prog_id,
            run_time_ns: u64_at(&pi, PROG_INFO_RUN_TIME_NS),
            run_cnt: u64_at(&pi, PROG_INFO_RUN_CNT),
        });
    }
    if out.is_empty() {
        bail!("no pinned links in {}: is the agent running with --bpffs {}?", dir.display(), bpffs.display());
    }
    Ok(out)
}

/// `after - before` per program (by id).
pub fn delta(before: &[ProgStats], after: &[ProgStats]) -> Vec<ProgStats> {
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.id == a.id);
            ProgStats {
                run_time_ns: a.run_time_ns - b.map(|b| b.run_time_ns).unwrap_or(0),
                run_cnt: a.run_cnt - b.map(|b| b.run_cnt).unwrap_or(0),
                ..a.clone()
            }
        })
        .collect()
}

/// One pinned map, as its fdinfo tells.
#[derive(Clone, Debug, Serialize)]
pub struct MapMemory {
    pub name: String,
    pub map_type: u32,
    pub max_entries: u64,
    /// `memlock`: what the kernel charges for the map (its actual use for
    /// maps that allocate on demand, such as LPM tries, on kernels ≥ 6.5).
    pub memlock: u64,
}

/// Every map pinned directly in `bpffs`, once: the agent pins each map
/// as `<MAP>-<layout id>` with a symbolic link `<MAP>` to it, and the
/// links are skipped (counting both doubled the figure).
pub fn map_memory(bpffs: &Path) -> Result<Vec<MapMemory>> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(bpffs)
        .with_context(|| format!("reading {}", bpffs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.is_symlink())
        .collect();
    entries.sort();
    for path in entries {
        let Ok(f) = obj_get(&path) else { continue };
        let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd()))?;
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(':')))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        // Programs pinned here have no map_type.
        let (Some(map_type), Some(memlock)) = (field("map_type"), field("memlock")) else { continue };
        out.push(MapMemory {
            name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            map_type: map_type as u32,
            max_entries: field("max_entries").unwrap_or(0),
            memlock,
        });
    }
    Ok(out)
}

/// Sets a sysctl under /proc/sys for as long as it lives, then puts the
/// old value back.
pub struct SysctlGuard {
    path: PathBuf,
    old: String,
}

impl SysctlGuard {
    pub fn set(key: &str, value: &str) -> Result<SysctlGuard> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        let old = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        std::fs::write(&path, value).with_context(|| format!("writing {value} to {}", path.display()))?;
        Ok(SysctlGuard { path, old: old.trim().to_string() })
    }
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(&self.path, &self.old) {
            eprintln!("[bench] could not restore {} to {}: {e}", self.path.display(), self.old);
        }
    }
}
