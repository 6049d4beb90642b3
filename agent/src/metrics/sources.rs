//! What the metrics read at scrape time, behind two small traits the
//! runtime implements (today with the pinned maps, see
//! [`super::maps_source`]): the datapath counters ([`CounterSource`]) and
//! the fill of every map ([`MapFillSource`]). A change of the map layout
//! changes only the implementation.

/// Why a source could not be read; the scrape goes on without its series.
#[derive(Debug, thiserror::Error)]
#[error("reading {what}: {message}")]
pub struct SourceError {
    pub what: &'static str,
    pub message: String,
}

impl SourceError {
    pub fn new(what: &'static str, message: impl std::fmt::Display) -> Self {
        SourceError { what, message: message.to_string() }
    }
}

/// The `verdict` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Allowed,
    Dropped,
    Audited,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Allowed, Verdict::Dropped, Verdict::Audited];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Dropped => "dropped",
            Verdict::Audited => "audited",
        }
    }
}

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

/// The traffic of one pod of this node under one verdict and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTraffic {
    pub namespace: String,
    pub pod: String,
    pub verdict: Verdict,
    /// A reason code of the contract (`no-rule`, `gateway`, ...).
    pub reason: String,
    pub traffic: Traffic,
}

/// Drop events of one pod that the kernel's rate limit did not send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSuppressed {
    pub namespace: String,
    pub pod: String,
    pub events: u64,
}

/// The datapath counters at one moment. Only pods registered on this node
/// appear in `pods` and `suppressed`; `node` also counts pods that are gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatapathCounters {
    pub node: Vec<(Verdict, Traffic)>,
    pub pods: Vec<PodTraffic>,
    pub suppressed: Vec<PodSuppressed>,
}

/// Reads the datapath counters (called on every scrape, from a blocking
/// thread).
pub trait CounterSource: Send + Sync {
    fn read(&self) -> Result<DatapathCounters, SourceError>;
}

/// Entries and capacity of one map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFill {
    /// The map's name (`TG_CGROUPS`, `TG_RULES_V4`, ...).
    pub map: String,
    /// `None` for maps the kernel fills itself (LRU tables), which only
    /// a walk could count.
    pub entries: Option<u64>,
    pub capacity: u64,
}

/// The map fill the agent's loop last computed (from its shadow of the
/// maps, no walk), served as it is.
#[derive(Default)]
pub struct FillCache {
    fill: std::sync::Mutex<Vec<MapFill>>,
}

impl FillCache {
    pub fn set(&self, fill: Vec<MapFill>) {
        *self.fill.lock().unwrap_or_else(|p| p.into_inner()) = fill;
    }
}

impl MapFillSource for FillCache {
    fn read(&self) -> Result<Vec<MapFill>, SourceError> {
        Ok(self.fill.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Reads the fill of every map (called on every scrape, from a blocking
/// thread).
pub trait MapFillSource: Send + Sync {
    fn read(&self) -> Result<Vec<MapFill>, SourceError>;
}

impl<F> CounterSource for F
where
    F: Fn() -> Result<DatapathCounters, SourceError> + Send + Sync,
{
    fn read(&self) -> Result<DatapathCounters, SourceError> {
        self()
    }
}

impl<F> MapFillSource for F
where
    F: Fn() -> Result<Vec<MapFill>, SourceError> + Send + Sync,
{
    fn read(&self) -> Result<Vec<MapFill>, SourceError> {
        self()
    }
}
