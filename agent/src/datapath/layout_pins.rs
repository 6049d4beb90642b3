//! Versioned map pins under an agent's bpffs folder: `<NAME>-<id>` holds
//! the map of layout `id`, and `<NAME>` is a symbolic link to the one in
//! use (read-only commands, `tollgate maps`, older tools open `<NAME>`,
//! the kernel follows the link). Switching layouts is one rename of a new
//! link over the old one. A map pinned under the bare name itself is the
//! layout of releases before versioned pins.
use std::{collections::BTreeMap, path::PathBuf};

use super::{
    bpffs::PinDir,
    layout::{parse_versioned, versioned_name, Pinned},
    raw_map::{self, RawMap},
    DatapathError,
};

impl PinDir {
    /// Where the map `name` of layout `id` is pinned.
    pub fn versioned(&self, name: &str, id: &str) -> PathBuf {
        self.root.join(versioned_name(name, id))
    }
}

/// What is pinned under the name of each of `names`.
pub fn read_all<'a>(pins: &PinDir, names: impl Iterator<Item = &'a String>) -> Result<BTreeMap<String, Pinned>, DatapathError> {
    names.map(|n| Ok((n.clone(), read(pins, n)?))).collect()
}

/// What is pinned under `name`.
pub fn read(pins: &PinDir, name: &str) -> Result<Pinned, DatapathError> {
    let bare = pins.map(name);
    let meta = match std::fs::symlink_metadata(&bare) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Pinned::Nothing),
        Err(e) => return Err(DatapathError::io(format!("reading {}", bare.display()), e)),
    };
    if !meta.file_type().is_symlink() {
        return Ok(Pinned::Legacy(RawMap::open(&bare)?.layout));
    }
    let target = std::fs::read_link(&bare).map_err(|e| DatapathError::io(format!("reading link {}", bare.display()), e))?;
    let file = target.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let Some((n, id)) = parse_versioned(&file) else {
        return Err(DatapathError::Layout(format!("{} links to {}, not a versioned pin of {name}", bare.display(), target.display())));
    };
    if n != name {
        return Err(DatapathError::Layout(format!("{} links to the pin of another map, {file}", bare.display())));
    }
    if !pins.versioned(name, id).exists() {
        // A dangling link (its map was removed by hand): nothing to keep.
        return Ok(Pinned::Nothing);
    }
    let layout = RawMap::open(&bare)?.layout;
    Ok(Pinned::Versioned { id: id.to_owned(), layout })
}

/// Points `<NAME>` at `<NAME>-<id>` in one rename (a legacy pin under the
/// bare name is replaced, and so unpinned, by the same rename).
pub fn point(pins: &PinDir, name: &str, id: &str) -> Result<(), DatapathError> {
    let bare = pins.map(name);
    if std::fs::read_link(&bare).is_ok_and(|t| t.as_os_str() == versioned_name(name, id).as_str()) {
        return Ok(());
    }
    let next = pins.root.join(format!("{name}_link_next"));
    let _ = std::fs::remove_file(&next);
    std::os::unix::fs::symlink(versioned_name(name, id), &next)
        .map_err(|e| DatapathError::io(format!("linking {}", next.display()), e))?;
    std::fs::rename(&next, &bare).map_err(|e| DatapathError::io(format!("renaming {} to {}", next.display(), bare.display()), e))
}

/// Pins the map under the bare name (a release before versioned pins)
/// at its versioned path too, so it is kept when the bare name becomes
/// a link.
pub fn pin_legacy_as(pins: &PinDir, name: &str, id: &str) -> Result<(), DatapathError> {
    let to = pins.versioned(name, id);
    if to.exists() {
        return Ok(());
    }
    let map = RawMap::open(&pins.map(name))?;
    raw_map::obj_pin(map.fd(), &to)
}

/// Versioned pins of `name` with another layout than `keep`.
pub fn others(pins: &PinDir, name: &str, keep: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(&pins.root) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| {
            let f = e.file_name().to_string_lossy().into_owned();
            parse_versioned(&f).is_some_and(|(n, id)| n == name && id != keep)
        })
        .map(|e| e.path())
        .collect()
}

/// Removes a map's pin (the map lives on while a program uses it).
pub fn unpin(path: &std::path::Path) -> Result<(), DatapathError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DatapathError::io(format!("removing pin {}", path.display()), e)),
    }
}
