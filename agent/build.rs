//! Embeds the kernel object built by `cargo xtask build`.
//!
//! The object is looked up at `$TOLLGATE_EBPF_OBJ`, else at
//! `target/ebpf/tollgate.bpf.o` in the workspace. Without it the agent
//! still compiles (for `cargo check`, clippy and unit tests), but every
//! command that needs the kernel programs exits with status 2 and says to
//! run `cargo xtask build`.
use std::path::PathBuf;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(tollgate_ebpf)");
    println!("cargo:rerun-if-env-changed=TOLLGATE_EBPF_OBJ");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let obj = std::env::var_os("TOLLGATE_EBPF_OBJ")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/ebpf/tollgate.bpf.o"));
    println!("cargo:rerun-if-changed={}", obj.display());
    if obj.is_file() {
        println!("cargo:rustc-cfg=tollgate_ebpf");
        println!("cargo:rustc-env=TOLLGATE_EBPF_OBJ={}", obj.display());
    }
}
