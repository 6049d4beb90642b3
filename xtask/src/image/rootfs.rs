//! What goes into the image's one layer: the binary, the shared libraries
//! `ldd` names for it (with the symbolic links on the way to them, such as
//! /lib -> usr/lib on merged-/usr hosts), and minimal /etc files.
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One entry of the layer, by its path without the leading `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

/// The layer's entries, sorted by path (parents before children).
pub type Tree = BTreeMap<String, Entry>;

const ETC_PASSWD: &str = "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
const ETC_GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";
const ETC_NSSWITCH: &str = "passwd: files\ngroup: files\nhosts: files dns\n";

/// Everything for an image running `binary` as /usr/local/bin/tollgate.
pub fn tree(binary: &Path) -> Result<Tree> {
    let mut t = Tree::new();
    for dir in ["etc", "usr/local/bin", "proc", "sys", "dev", "run"] {
        add_dirs(&mut t, dir);
    }
    t.insert("tmp".into(), Entry::Dir { mode: 0o1777 });
    t.insert("root".into(), Entry::Dir { mode: 0o700 });
    let data = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    t.insert("usr/local/bin/tollgate".into(), Entry::File { mode: 0o755, data });
    t.insert("usr/local/bin/kubectl-tollgate".into(), Entry::Symlink { target: "tollgate".into() });
    for (name, text) in [("passwd", ETC_PASSWD), ("group", ETC_GROUP), ("nsswitch.conf", ETC_NSSWITCH)] {
        t.insert(format!("etc/{name}"), Entry::File { mode: 0o644, data: text.as_bytes().to_vec() });
    }
    for lib in shared_libraries(binary)? {
        add_host_path(&mut t, &lib)?;
    }
    Ok(t)
}

fn add_dirs(t: &mut Tree, rel: &str) {
    let mut cur = String::new();
    for part in rel.split('/') {
        if !cur.is_empty() {
            cur.push('/');
        }
        cur.push_str(part);
        t.entry(cur.clone()).or_insert(Entry::Dir { mode: 0o755 });
    }
}

/// The absolute paths `ldd` resolves for `binary`, the dynamic loader
/// included; an unresolved library is an error.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd (Debian package libc-bin)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        if text.contains("not a dynamic executable") || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", binary.display()))
}

/// Paths from ldd's lines (`name => /path (0x..)`, `/path (0x..)`); the
/// vDSO has no file and is skipped.
pub fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("statically linked") {
            continue;
        }
        let target = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("library {} not found", name.trim());
                }
                rest
            }
            None => line,
        };
        let path = target.split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        } else if !line.starts_with("linux-vdso") && !line.starts_with("linux-gate") {
            bail!("unexpected ldd line {line:?}");
        }
    }
    Ok(libs)
}

/// Adds the host file at `path` at the same path, following symbolic links
/// on the way and adding each link as a link (so that the paths the binary
/// and the loader use all resolve inside the image).
fn add_host_path(t: &mut Tree, path: &Path) -> Result<()> {
    let mut pending: Vec<String> = normal_parts(path);
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = (!pending.is_empty()).then(|| pending.remove(0)) {
        done.push(part);
        let rel = done.join("/");
        let host = Path::new("/").join(&rel);
        let meta = std::fs::symlink_metadata(&host).with_context(|| format!("reading {}", host.display()))?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                bail!("too many symbolic links resolving {}", path.display());
            }
            let target = std::fs::read_link(&host)?;
            t.insert(rel.clone(), Entry::Symlink { target: target.to_string_lossy().into_owned() });
            done.pop();
            let base = if target.is_absolute() { PathBuf::from("/") } else { Path::new("/").join(done.join("/")) };
            let mut rest = normal_parts(&base.join(&target));
            rest.extend(pending);
            pending = rest;
            done.clear();
        } else if meta.is_dir() {
            t.entry(rel).or_insert(Entry::Dir { mode: 0o755 });
        } else if meta.is_file() && pending.is_empty() {
            let data = std::fs::read(&host).with_context(|| format!("reading {}", host.display()))?;
            t.insert(rel, Entry::File { mode: meta.permissions().mode() & 0o7777, data });
        } else {
            bail!("{} is neither a folder, a file nor a link", host.display());
        }
    }
    Ok(())
}

/// The normal components of an absolute path, `..` applied.
fn normal_parts(p: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn ldd_lines() {
        let text = "\tlinux-vdso.so.1 (0x00007ffc)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        let err = parse_ldd("\tlibssl.so.3 => not found\n").unwrap_err();
        assert!(err.to_string().contains("libssl.so.3"), "{err}");
    }

    #[test]
    fn dot_dot_in_link_targets() {
        // /usr/lib64/ld-linux-x86-64.so.2 -> ../lib/x86_64-linux-gnu/...
        assert_eq!(normal_parts(Path::new("/usr/lib/../lib64/./x")), vec!["usr", "lib64", "x"]);
    }
}
