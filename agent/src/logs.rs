//! The agent's log lines. With `--log-format json` every line is one JSON
//! object with flat keys, so that `kubectl logs … | jq 'select(.level=="error")'`
//! works:
//!
//! - `level`: `error`, `warn`, `info`, `debug` or `trace`;
//! - `time`: RFC 3339, UTC, milliseconds;
//! - `component`: the module that logged, e.g. `runtime`, `datapath`,
//!   `resolver`, `cgroups`, `source.kubernetes`, `source.files` (another
//!   crate's events: the crate, e.g. `kube_runtime`);
//! - `message`;
//! - `object`, when the line concerns one (`Pod shop/web-0`,
//!   `NetworkPolicy shop/deny`);
//! - then the event's other fields (`error`, `field`, `kind`, ...), flat.
//!
//! tracing-subscriber's own JSON layer nests the fields under `fields`;
//! [`JsonLines`] writes them flat instead.
use std::fmt::{self, Write as _};

use tracing::{
    field::{Field, Visit},
    Event, Subscriber,
};
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields},
    registry::LookupSpan,
};

use crate::runtime::time::now_rfc3339;

/// The keys every line starts with; a field of the same name is written as
/// `field.<name>`.
const RESERVED: [&str; 4] = ["level", "time", "component", "message"];

/// The component of an event's target (its module path).
pub fn component(target: &str) -> String {
    let mut parts = target.split("::");
    match parts.next() {
        Some("tollgate") => match (parts.next(), parts.next()) {
            (Some("source"), Some(kind)) => format!("source.{kind}"),
            (Some(module), _) => module.to_owned(),
            (None, _) => "tollgate".to_owned(),
        },
        Some(krate) if !krate.is_empty() => krate.to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// The fields of one event, in the order they were recorded.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: Vec<(String, serde_json::Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        let name = field.name();
        if name == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
            return;
        }
        let key = if RESERVED.contains(&name) { format!("field.{name}") } else { name.to_owned() };
        self.rest.push((key, value));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, serde_json::Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut cause = value.source();
        while let Some(c) = cause {
            let _ = write!(text, ": {c}");
            cause = c.source();
        }
        self.put(field, text.into());
    }
}

/// One event as a JSON line (without the newline).
fn json_line(event: &Event<'_>, time: &str) -> String {
    let meta = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    let mut obj = serde_json::Map::new();
    let mut line = String::from("{");
    let mut push = |key: &str, value: &serde_json::Value| {
        if line.len() > 1 {
            line.push(',');
        }
        line.push_str(&serde_json::Value::String(key.to_owned()).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    };
    push("level", &meta.level().as_str().to_lowercase().into());
    push("time", &time.into());
    push("component", &component(meta.target()).into());
    push("message", &fields.message.unwrap_or_default().into());
    for (k, v) in fields.rest {
        // A field recorded twice keeps its last value, written once.
        obj.insert(k, v);
    }
    if let Some(o) = obj.remove("object") {
        push("object", &o);
    }
    for (k, v) in &obj {
        push(k, v);
    }
    line.push('}');
    line
}

/// `tracing_subscriber::fmt().event_format(JsonLines)`: flat JSON lines.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        writeln!(writer, "{}", json_line(event, &now_rfc3339()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(emit: impl FnOnce()) -> (Vec<serde_json::Value>, String) {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt().event_format(JsonLines).with_writer(move || writer.clone()).finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buf.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).unwrap_or_default();
        let parsed = text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
        (parsed, text)
    }

    #[test]
    fn components_from_module_paths() {
        assert_eq!(component("tollgate::source::kubernetes::recorder"), "source.kubernetes");
        assert_eq!(component("tollgate::source::files::watch"), "source.files");
        assert_eq!(component("tollgate::runtime::agent"), "runtime");
        assert_eq!(component("tollgate::datapath::load"), "datapath");
        assert_eq!(component("tollgate::resolver"), "resolver");
        assert_eq!(component("tollgate"), "tollgate");
        assert_eq!(component("kube_runtime::watcher"), "kube_runtime");
    }

    #[test]
    fn flat_keys_with_object_and_fields() {
        let err = std::io::Error::other("boom");
        let (out, raw) = lines(|| {
            tracing::error!(target: "tollgate::runtime::agent", object = %"NetworkPolicy shop/np", field = "spec.egress", "bad {}", "cidr");
            tracing::warn!(target: "tollgate::source::kubernetes::pods", error = %err, count = 3u64, ok = true, "watch failed");
            tracing::info!(target: "tollgate::datapath::load", message2 = "x", level = "shadowed", "attached");
        });
        assert_eq!(out.len(), 3, "{out:?}");
        let e = &out[0];
        assert_eq!(e["level"], "error");
        assert_eq!(e["component"], "runtime");
        assert_eq!(e["message"], "bad cidr");
        assert_eq!(e["object"], "NetworkPolicy shop/np");
        assert_eq!(e["field"], "spec.egress");
        let t = e["time"].as_str().unwrap_or_default();
        assert!(t.len() == 24 && t.ends_with('Z'), "{t}");
        let w = &out[1];
        assert_eq!((w["level"].as_str(), w["component"].as_str()), (Some("warn"), Some("source.kubernetes")));
        assert_eq!((w["error"].as_str(), w["count"].as_u64(), w["ok"].as_bool()), (Some("boom"), Some(3), Some(true)));
        assert!(w.get("object").is_none(), "no object, no key: {w}");
        let i = &out[2];
        assert_eq!(i["level"], "info");
        assert_eq!(i["field.level"], "shadowed", "a field never overwrites a reserved key: {i}");
        // The reserved keys come first, in order, then the object.
        let first = raw.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(r#"{"level":"error","time":""#) && first.contains(r#""message":"bad cidr","object":"NetworkPolicy shop/np","field""#),
            "{first}"
        );
    }
}
