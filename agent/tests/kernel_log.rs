//! Kernel logs (aya-log): off unless asked for at load. A denied packet of
//! an enforced workload (this test process's own cgroup, registered as
//! one) is run through the real `tg_egress` with BPF_PROG_TEST_RUN: with
//! `kernel_log` the program's log record reaches the agent's logger, and
//! without it nothing is logged (the verifier removed the call).
mod support;
use std::sync::{Arc, Mutex};

use agent_common::{CgroupEntry, MODE_ENFORCE};
use tollgate::{
    cgroups::default_cgroup_root,
    datapath::{
        load::{load_object_with, LoadOptions},
        packet::{self, Protocol},
        pinned::Maps,
        test_run,
    },
};


#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        self.0.lock().unwrap().push(record.args().to_string());
    }
    fn flush(&self) {}
}

/// The id of this process's cgroup v2 (the root cgroup, id 1, when CI runs
/// the test there): what `bpf_skb_cgroup_id` gives for a test run, whose
/// made-up socket belongs to the calling task's cgroup.
fn cgroup_id_of_this_process(mount: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 entry in /proc/self/cgroup");
    let path = mount.join(rel.trim_start_matches('/'));
    std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).ino()
}

fn logged_lines(kernel_log: bool) -> Vec<String> {
    let (_g, pins) = support::pins(&format!("klog-{kernel_log}"));
    let mut ebpf = load_object_with(&pins, &LoadOptions { kernel_log, ..Default::default() }).unwrap();
    let mut maps = Maps::take(&mut ebpf).unwrap();
    let root = default_cgroup_root();
    let me = cgroup_id_of_this_process(&root);
    let entry = CgroupEntry { workload: 1, policy: 0, mode: MODE_ENFORCE, flags: 0, _pad: [0; 6] };
    maps.cgroups.insert(me, entry, 0).unwrap();
    let capture = Capture::default();
    let mut logger = aya_log::EbpfLogger::init_with_logger(&mut ebpf, capture.clone()).unwrap();
    let prog = test_run::load_skb_program(&mut ebpf, "tg_egress").unwrap();
    let frame = packet::build("10.244.0.10".parse().unwrap(), "203.0.113.10".parse().unwrap(), Protocol::Tcp, 40000, 80);
    // Any interface but lo (1): the test run transmits nothing.
    let (_, ret) = test_run::time(prog, &frame, 2, 1).unwrap();
    assert_eq!(ret, 0, "the packet should have been dropped");
    logger.flush();
    let lines = capture.0.lock().unwrap().clone();
    lines
}

#[test]
fn kernel_logs_only_when_asked_for() {
    let on = logged_lines(true);
    assert!(on.iter().any(|l| l.contains("workload 1 denied: reason 8")), "{on:?}");
    let off = logged_lines(false);
    assert!(off.is_empty(), "logged while off: {off:?}");
}
