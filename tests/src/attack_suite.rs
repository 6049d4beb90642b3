//! The bypass suite's runner: each attempt (`tollgate-e2e attack ...`) runs
//! inside an enforced pod as an unprivileged user with CAP_NET_RAW and as
//! root, and the same attempt from a pod that is not enforced proves that
//! the attack is real (the sniffer sees it). The verdict of every row is
//! what the sniffer on the external host saw, never the sender's error.
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::attack_sniff::{now_ms, Seen};
use crate::pods::PodSpec;
use crate::procs::{exec_in_command, run_capture, Proc};
use crate::story::Story;

/// Who runs the attempt inside the pod.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub label: &'static str,
    pub uid: Option<u32>,
}

/// A default container's non-root user: uid 1000, CAP_NET_RAW only.
pub const UNPRIVILEGED: Mode = Mode { label: "uid1000+NET_RAW", uid: Some(1000) };
pub const ROOT: Mode = Mode { label: "root", uid: None };
pub const MODES: [Mode; 2] = [UNPRIVILEGED, ROOT];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Nothing may reach the external host.
    Blocked,
    /// Must reach it (a control: the gateway, or a pod that is not enforced).
    Arrives,
}

/// One kind of attempt: `attack CASE --to TO EXTRA...`. A `to` with port 0
/// gets a port of its own per run; with `own_source`, the pod's address of
/// `to`'s family is passed as `--src`.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Row name: `[a-z0-9-]` only (it is part of the tag).
    pub name: String,
    pub case: &'static str,
    pub to: SocketAddr,
    pub own_source: bool,
    pub extra: Vec<String>,
}

impl Spec {
    pub fn new(name: &str, case: &'static str, to: SocketAddr) -> Spec {
        Spec { name: name.to_string(), case, to, own_source: false, extra: Vec::new() }
    }

    pub fn own_source(mut self) -> Spec {
        self.own_source = true;
        self
    }

    pub fn arg(mut self, flag: &str, value: impl ToString) -> Spec {
        self.extra.extend([flag.to_string(), value.to_string()]);
        self
    }
}

#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub pod: String,
    pub mode: &'static str,
    pub expect: Expect,
    pub observed: u64,
    pub sender: String,
    pub skipped: bool,
    tag: String,
    port: u16,
    addrs: [IpAddr; 2],
    window: (u64, u64),
    /// Local ports of the TCP connections this attempt made.
    sports: Vec<u16>,
}

impl Row {
    /// A row that holds: blocked and nothing seen, or a control that arrived
    /// (a skipped case holds, and says why in `sender`).
    pub fn holds(&self) -> bool {
        self.skipped
            || match self.expect {
                Expect::Blocked => self.observed == 0,
                Expect::Arrives => self.observed > 0,
            }
    }

    /// An untagged packet (a TCP handshake) of this row's port from this
    /// row's pod, sent after the row started.
    fn may_own(&self, s: &Seen) -> bool {
        s.tag.is_none() && s.dport == Some(self.port) && self.addrs.contains(&s.src) && s.t_ms + 5 >= self.window.0
    }
}

/// Source, source port, destination, destination port, protocol.
type FlowKey = (IpAddr, Option<u16>, IpAddr, Option<u16>, u8);

/// Runs attempts and judges them with one sniffer on the external host.
pub struct Suite<'a> {
    story: &'a Story,
    sniffer: Proc,
    rows: Vec<Row>,
    next: u16,
}

/// Base of the per-run destination ports (and of the tags' numbers).
const PORT_BASE: u16 = 30000;

impl<'a> Suite<'a> {
    pub fn start(story: &'a Story) -> Result<Suite<'a>> {
        let ext = story.topo.external_ns.clone();
        let cmd = exec_in_command(&story.e2e_bin, Some(&ext), None, &story.e2e_bin, &["attack-sniff".into(), "--ms".into(), "900000".into()]);
        let sniffer = Proc::spawn("attack-sniff", cmd, story.dir.path.join("attack-sniff.log"), Some(Duration::from_secs(10)))?;
        Ok(Suite { story, sniffer, rows: Vec::new(), next: 0 })
    }

    /// Runs `spec` from `pod` as `mode`; the row is judged in [`Suite::finish`].
    pub fn attempt(&mut self, spec: &Spec, pod: &PodSpec, mode: Mode, expect: Expect) -> Result<()> {
        let i = self.next;
        self.next += 1;
        let tag = format!("tgbx-{i}-{}", spec.name);
        let port = if spec.to.port() == 0 { PORT_BASE + i } else { spec.to.port() };
        let to = SocketAddr::new(spec.to.ip(), port);
        let mut args: Vec<String> = vec!["attack".into(), spec.case.into(), "--to".into(), to.to_string(), "--tag".into(), tag.clone()];
        if let Some(uid) = mode.uid {
            args.extend(["--uid".into(), uid.to_string()]);
        }
        if spec.own_source {
            let src: IpAddr = if to.is_ipv4() { pod.ipv4.into() } else { pod.ipv6.into() };
            args.extend(["--src".into(), src.to_string()]);
        }
        args.extend(spec.extra.iter().cloned());
        let cmd = exec_in_command(&self.story.e2e_bin, Some(self.story.topo.pod_ns(pod)), Some(self.story.cgroups.container(pod)), &self.story.e2e_bin, &args);
        let t0 = now_ms();
        let out = run_capture(cmd, Duration::from_secs(15)).with_context(|| format!("attack {}", spec.name))?;
        let t1 = now_ms();
        let v: Value = serde_json::from_str(out.lines().last().unwrap_or_default()).with_context(|| format!("attack {} printed {out:?}", spec.name))?;
        if let Some(uid) = mode.uid {
            anyhow::ensure!(v["uid"] == uid && v["cap_eff"] == "0000000000002000", "attack {} did not run as uid {uid} with CAP_NET_RAW only: {v}", spec.name);
        }
        let skipped = v["skipped"].as_str().unwrap_or_default().to_string();
        let sender = if !skipped.is_empty() {
            format!("skipped: {skipped}")
        } else {
            let err = v["error"].as_str().unwrap_or_default();
            let sent = v["sent"].as_u64().unwrap_or(0);
            if err.is_empty() { format!("sent {sent}") } else { format!("sent {sent}, then {err}") }
        };
        self.rows.push(Row {
            name: spec.name.clone(),
            pod: pod.key(),
            mode: mode.label,
            expect,
            observed: 0,
            sender,
            skipped: !skipped.is_empty(),
            tag,
            port,
            addrs: [pod.ipv4.into(), pod.ipv6.into()],
            window: (t0, t1),
            sports: v["local_ports"].as_array().into_iter().flatten().filter_map(|p| p.as_u64()).map(|p| p as u16).collect(),
        });
        Ok(())
    }

    /// `spec` from the enforced pod in both modes (expected blocked), and
    /// from the control pod (not enforced) in both modes (must arrive).
    pub fn attempt_all(&mut self, spec: &Spec, enforced: &PodSpec, control: &PodSpec) -> Result<()> {
        for mode in MODES {
            self.attempt(spec, enforced, mode, Expect::Blocked)?;
        }
        for mode in MODES {
            self.attempt(spec, control, mode, Expect::Arrives)?;
        }
        Ok(())
    }

    /// Stops the sniffer and counts what it saw for each row.
    pub fn finish(mut self) -> Result<Vec<Row>> {
        std::thread::sleep(Duration::from_millis(800));
        self.sniffer.kill();
        let log = self.sniffer.log_text();
        let seen: Vec<Seen> = log.lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect();
        // Untagged packets of one flow (a handshake, a late FIN) belong to
        // the row that owns the flow's first packet.
        let mut flows: std::collections::HashMap<FlowKey, Option<usize>> = Default::default();
        for s in &seen {
            // A tagged packet belongs to its tag's row; an untagged flow to
            // the latest row that may own it (rows run one after another).
            // A connection an attempt reported (by its local port) is that
            // attempt's, however late its packets arrive.
            let claimed = || {
                self.rows
                    .iter()
                    .position(|r| s.tag.is_none() && r.addrs.contains(&s.src) && s.sport.is_some_and(|p| r.sports.contains(&p)) && s.dport == Some(r.port))
            };
            let latest = || {
                claimed().or_else(|| self.rows.iter().enumerate().filter(|(_, r)| r.may_own(s)).max_by_key(|(_, r)| r.window.0).map(|(i, _)| i))
            };
            let owner = match &s.tag {
                Some(t) => self.rows.iter().position(|r| r.tag == *t),
                None => *flows.entry((s.src, s.sport, s.dst, s.dport, s.proto)).or_insert_with(latest),
            };
            if let Some(i) = owner {
                self.rows[i].observed += 1;
            }
        }
        Ok(self.rows)
    }
}

/// The rows as a table (the suite prints it whatever the outcome).
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<28} {:<22} {:<16} {:<9} {:>8}  {:<5} sender\n",
        "case", "pod", "as", "expected", "observed", "holds"
    );
    for r in rows {
        let exp = match r.expect {
            Expect::Blocked => "blocked",
            Expect::Arrives => "arrives",
        };
        s.push_str(&format!(
            "{:<28} {:<22} {:<16} {:<9} {:>8}  {:<5} {}\n",
            r.name,
            r.pod,
            r.mode,
            exp,
            r.observed,
            if r.holds() { "yes" } else { "NO" },
            r.sender
        ));
    }
    s
}

/// Prints the table; panics naming every row that does not hold.
pub fn assert_rows(title: &str, rows: &[Row]) {
    let t = table(rows);
    eprintln!("[e2e] {title}:\n{t}");
    let bad: Vec<String> = rows.iter().filter(|r| !r.holds()).map(|r| format!("{} from {} as {} (observed {})", r.name, r.pod, r.mode, r.observed)).collect();
    assert!(bad.is_empty(), "{title}: {} rows do not hold:\n  {}\n{t}", bad.len(), bad.join("\n  "));
}

/// The MAC address of `dev` in netns `ns` (for AF_PACKET frames).
pub fn mac_in(ns: &str, dev: &str) -> Result<String> {
    let out = crate::util::ip_in(ns, &["-j", "link", "show", dev])?;
    let v: Value = serde_json::from_str(&out)?;
    v[0]["address"].as_str().map(str::to_string).with_context(|| format!("no address for {dev} in {ns}: {out}"))
}

/// Starts an extra server in `netns` (kept in the story, stopped with it).
pub fn spawn_in(story: &mut Story, name: &str, netns: &str, cgroup: Option<&Path>, args: &[String]) -> Result<()> {
    let cmd = exec_in_command(&story.e2e_bin, Some(netns), cgroup, &story.e2e_bin, args);
    let p = Proc::spawn(name, cmd, story.dir.path.join(format!("{name}.log")), Some(Duration::from_secs(10)))?;
    story.servers.push(p);
    Ok(())
}
