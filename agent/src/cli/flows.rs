//! `tollgate flows`: dropped and audited flows, one per line, from the
//! event journal in the state folder. When no agent runs (nobody holds the
//! journal), it drains the kernel's ring buffer into the journal itself,
//! so it works while the agent is down; `--follow` keeps printing new ones.
use std::{path::Path, time::Duration};

use super::{CliError, OutputFormat};
use crate::datapath::{
    bpffs::PinDir,
    events::{FlowEvents, FlowRecord},
    pinned::Maps,
};

/// Only the flows of this namespace / pod.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub pod: Option<String>,
}

impl Filter {
    fn keeps(&self, r: &FlowRecord) -> bool {
        self.namespace.as_ref().is_none_or(|n| *n == r.namespace) && self.pod.as_ref().is_none_or(|p| *p == r.pod)
    }
}

fn print(r: &FlowRecord, format: OutputFormat) {
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string(r).unwrap_or_default()),
        OutputFormat::Text => println!(
            "{}  {}/{}  {} -> {} {}  {} ({}) at {}",
            r.time, r.namespace, r.pod, r.src, r.dst, r.protocol, r.verdict, r.reason, r.layer
        ),
    }
}

pub fn run(bpffs: &Path, state_dir: &Path, follow: bool, format: OutputFormat, filter: Filter) -> Result<(), CliError> {
    let mut maps = Maps::open_pinned(&PinDir::new(bpffs))?;
    let mut events = FlowEvents::new(state_dir);
    // Without an agent, this process consumes the ring (into the journal).
    events.poll(&mut maps)?;
    let mut shown = 0usize;
    loop {
        let all = events.journal.read_all();
        // The journal rotates: never skip what came after a rotation.
        if all.len() < shown {
            shown = 0;
        }
        for r in all.iter().skip(shown).filter(|r| filter.keeps(r)) {
            print(r, format);
        }
        shown = all.len();
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
        events.poll(&mut maps)?;
    }
}
