//! Running the kernel's own programs on made-up packets
//! (BPF_PROG_TEST_RUN): `verify` and the benchmarks.
use agent_common::{
    VERIFY_CB_CGROUP_HI, VERIFY_CB_CGROUP_LO, VERIFY_CB_ON_LOOPBACK, VERIFY_CB_RESULT,
    VERIFY_RESULT_VALID,
};
use aya::{
    programs::{CgroupSkb, SchedClassifier, TestRun, TestRunOptions},
    Ebpf,
};

use super::{object::VERIFY_PROGRAM, DatapathError};

/// `sizeof(struct __sk_buff)`; `cb[0]` is at offset 48.
const SKB_CTX_SIZE: usize = 192;
const CB_OFFSET: usize = 48;

/// What the verify program answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelVerdict {
    pub verdict: u8,
    pub reason: u8,
    pub mode: u8,
}

pub fn prog_err(name: &str) -> impl Fn(aya::programs::ProgramError) -> DatapathError + '_ {
    move |source| DatapathError::TestRun { name: name.to_string(), source }
}

/// Loads a cgroup_skb program of `ebpf` (not attached) for test runs;
/// a program already loaded is returned as it is.
pub fn load_skb_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut CgroupSkb, DatapathError> {
    let p = ebpf.program_mut(name).ok_or_else(|| DatapathError::MissingMap { name: name.to_string() })?;
    let p: &mut CgroupSkb = p.try_into().map_err(prog_err(name))?;
    if p.fd().is_err() {
        p.load().map_err(prog_err(name))?;
    }
    Ok(p)
}

/// Runs the verify program for the workload registered under
/// `cgroup_id` on `frame`; `on_loopback`: the packet would leave on `lo`
/// (it is addressed to the pod itself).
pub fn verify(
    prog: &CgroupSkb,
    cgroup_id: u64,
    frame: &[u8],
    on_loopback: bool,
) -> Result<KernelVerdict, DatapathError> {
    let mut ctx_in = [0u8; SKB_CTX_SIZE];
    let put = |ctx: &mut [u8; SKB_CTX_SIZE], idx: usize, v: u32| {
        let off = CB_OFFSET + idx * 4;
        ctx[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    };
    put(&mut ctx_in, VERIFY_CB_CGROUP_LO, cgroup_id as u32);
    put(&mut ctx_in, VERIFY_CB_CGROUP_HI, (cgroup_id >> 32) as u32);
    put(&mut ctx_in, VERIFY_CB_ON_LOOPBACK, on_loopback as u32);
    let mut ctx_out = [0u8; SKB_CTX_SIZE];
    let mut data_out = vec![0u8; frame.len() + 64];
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut data_out),
        ctx_in: Some(&ctx_in),
        ctx_out: Some(&mut ctx_out),
        ..TestRunOptions::default()
    };
    prog.test_run(opts).map_err(prog_err(VERIFY_PROGRAM))?;
    let off = CB_OFFSET + VERIFY_CB_RESULT * 4;
    let r = u32::from_ne_bytes([ctx_out[off], ctx_out[off + 1], ctx_out[off + 2], ctx_out[off + 3]]);
    if r & VERIFY_RESULT_VALID == 0 {
        return Err(DatapathError::NoVerdict);
    }
    Ok(KernelVerdict { verdict: r as u8, reason: (r >> 8) as u8, mode: (r >> 16) as u8 })
}

/// Offset of `ifindex` in `struct __sk_buff`.
const IFINDEX_OFFSET: usize = 40;

/// Runs `prog` `repeat` times on `frame` as if it left through interface
/// `ifindex` (test runs default to `lo`, which the egress program lets
/// pass untouched); returns the kernel's mean time per run in nanoseconds
/// and the return value.
pub fn time(prog: &CgroupSkb, frame: &[u8], ifindex: u32, repeat: u32) -> Result<(f64, u32), DatapathError> {
    let mut data_out = vec![0u8; frame.len() + 64];
    let mut ctx_in = [0u8; SKB_CTX_SIZE];
    ctx_in[IFINDEX_OFFSET..IFINDEX_OFFSET + 4].copy_from_slice(&ifindex.to_ne_bytes());
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut data_out),
        ctx_in: Some(&ctx_in),
        repeat,
        ..TestRunOptions::default()
    };
    let r = prog.test_run(opts).map_err(prog_err("bench"))?;
    Ok((r.duration.as_nanos() as f64, r.return_value))
}

/// TC_ACT_UNSPEC as the test run returns it: the TC programs pass.
pub const TC_PASS: u32 = u32::MAX;
/// TC_ACT_SHOT.
pub const TC_DROP: u32 = 2;

/// Loads a TC program of `ebpf` (not attached) for test runs.
pub fn load_tc_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier, DatapathError> {
    let p = ebpf.program_mut(name).ok_or_else(|| DatapathError::MissingMap { name: name.to_string() })?;
    let p: &mut SchedClassifier = p.try_into().map_err(prog_err(name))?;
    if p.fd().is_err() {
        p.load().map_err(prog_err(name))?;
    }
    Ok(p)
}

/// Runs a TC program `repeat` times on the Ethernet frame `frame`, as
/// seen on `lo` (ifindex 1, where test runs happen); returns the kernel's
/// mean time per run in nanoseconds and the return value.
pub fn run_tc(prog: &SchedClassifier, frame: &[u8], repeat: u32) -> Result<(f64, u32), DatapathError> {
    let mut data_out = vec![0u8; frame.len() + 64];
    let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut data_out), repeat, ..TestRunOptions::default() };
    let r = prog.test_run(opts).map_err(prog_err("tc"))?;
    Ok((r.duration.as_nanos() as f64, r.return_value))
}
