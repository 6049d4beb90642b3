//! The programs attached at the cgroup root: loading them, attaching
//! them as bpf links pinned under `<bpffs>/links/<program>`, and replacing
//! a previous agent's (its link is unpinned only once the successor runs).
use std::fs::File;

use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, SockOps,
    },
    Ebpf,
};

use super::{
    bpffs::PinDir,
    object::{self, Attach, ProgramSpec, SkbDirection},
    DatapathError,
};

/// Attaches every cgroup-root program and pins its link; the link a
/// previous agent pinned is unpinned (detached) only once its successor
/// runs.
pub fn attach_root(ebpf: &mut Ebpf, pins: &PinDir, cgroup: &File) -> Result<(), DatapathError> {
    for spec in object::root_programs() {
        let name = spec.name;
        let link = attach_one(ebpf, spec, cgroup)?;
        let final_path = pins.link(name);
        // bpffs refuses names with dots.
        let new_path = pins.link(&format!("{name}_next"));
        let _ = std::fs::remove_file(&new_path);
        let pinned = link
            .pin(&new_path)
            .map_err(|source| DatapathError::Pin { path: new_path.clone(), source })?;
        if final_path.exists() {
            // Detach the previous program only now that its successor runs.
            match PinnedLink::from_pin(&final_path) {
                Ok(old) => {
                    let _ = old.unpin();
                }
                Err(_) => {
                    let _ = std::fs::remove_file(&final_path);
                }
            }
        }
        std::fs::rename(&new_path, &final_path)
            .map_err(|e| DatapathError::io(format!("renaming pin {}", new_path.display()), e))?;
        drop(pinned);
    }
    Ok(())
}

fn prog_err(name: &str) -> impl Fn(aya::programs::ProgramError) -> DatapathError + '_ {
    move |source| DatapathError::Program { name: name.to_string(), source }
}

fn link_err(name: &str) -> impl Fn(aya::programs::links::LinkError) -> DatapathError + '_ {
    move |source| DatapathError::Link { path: name.into(), source }
}

/// Loads (verifies) one cgroup-root program without attaching it.
pub fn load_one(ebpf: &mut Ebpf, spec: &ProgramSpec) -> Result<(), DatapathError> {
    let name = spec.name;
    let missing = || DatapathError::Program { name: name.to_string(), source: aya::programs::ProgramError::UnexpectedProgramType };
    let program = ebpf.program_mut(name).ok_or_else(missing)?;
    match program {
        aya::programs::Program::CgroupSkb(p) => p.load(),
        aya::programs::Program::CgroupSockAddr(p) => p.load(),
        aya::programs::Program::SockOps(p) => p.load(),
        _ => return Err(missing()),
    }
    .map_err(prog_err(name))
}

/// Loads (unless loaded) and attaches one program at the cgroup root, as
/// its table entry says.
fn attach_one(ebpf: &mut Ebpf, spec: &ProgramSpec, cgroup: &File) -> Result<FdLink, DatapathError> {
    let name = spec.name;
    let missing = || DatapathError::Program {
        name: name.to_string(),
        source: aya::programs::ProgramError::UnexpectedProgramType,
    };
    let program = ebpf.program_mut(name).ok_or_else(missing)?;
    // bpf_link attachments to a cgroup always run beside other programs
    // (multi semantics) and the kernel wants flags 0 for them.
    let mode = CgroupAttachMode::Single;
    match spec.attach {
        Attach::CgroupSkb(direction) => {
            let p = <&mut CgroupSkb>::try_from(program).map_err(prog_err(name))?;
            if p.fd().is_err() {
                p.load().map_err(prog_err(name))?;
            }
            let kind = match direction {
                SkbDirection::Ingress => CgroupSkbAttachType::Ingress,
                SkbDirection::Egress => CgroupSkbAttachType::Egress,
            };
            let id = p.attach(cgroup, kind, mode).map_err(prog_err(name))?;
            let link = p.take_link(id).map_err(prog_err(name))?;
            FdLink::try_from(link).map_err(link_err(name))
        }
        Attach::CgroupSockAddr => {
            let p = <&mut CgroupSockAddr>::try_from(program).map_err(prog_err(name))?;
            if p.fd().is_err() {
                p.load().map_err(prog_err(name))?;
            }
            let id = p.attach(cgroup, mode).map_err(prog_err(name))?;
            let link = p.take_link(id).map_err(prog_err(name))?;
            FdLink::try_from(link).map_err(link_err(name))
        }
        Attach::SockOps => {
            let p = <&mut SockOps>::try_from(program).map_err(prog_err(name))?;
            if p.fd().is_err() {
                p.load().map_err(prog_err(name))?;
            }
            let id = p.attach(cgroup, mode).map_err(prog_err(name))?;
            let link = p.take_link(id).map_err(prog_err(name))?;
            FdLink::try_from(link).map_err(link_err(name))
        }
        Attach::Tc(_) | Attach::Never => Err(missing()),
    }
}
