//! Writing whole metric families from a collector: one descriptor, then
//! one sample per label set, summed when a label set comes twice (a pod
//! re-created under the same name has two workload ids for a while).
use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Label names and values, in order.
pub(super) type Labels<const N: usize> = [(&'static str, String); N];

/// A counter family (`name` without `_total`: the encoders add it).
pub(super) fn counters<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<N>, u64)>,
) -> fmt::Result {
    family(encoder, (name, help, MetricType::Counter), samples, u64::saturating_add, ConstCounter::new)
}

/// A gauge family.
pub(super) fn gauges<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<N>, i64)>,
) -> fmt::Result {
    family(encoder, (name, help, MetricType::Gauge), samples, i64::saturating_add, ConstGauge::new)
}

/// One descriptor (name, help, type), then the samples summed per label set.
fn family<const N: usize, V: Copy + Default, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, kind): (&str, &str, MetricType),
    samples: impl IntoIterator<Item = (Labels<N>, V)>,
    add: fn(V, V) -> V,
    metric: fn(V) -> M,
) -> fmt::Result {
    let mut summed: BTreeMap<Labels<N>, V> = BTreeMap::new();
    for (labels, v) in samples {
        let slot = summed.entry(labels).or_default();
        *slot = add(*slot, v);
    }
    let mut family = encoder.encode_descriptor(name, &sentence(help), None, kind)?;
    for (labels, v) in &summed {
        metric(*v).encode(family.encode_family(&as_label_set(labels))?)?;
    }
    Ok(())
}

/// A gauge without labels.
pub(super) fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> fmt::Result {
    ConstGauge::new(v).encode(encoder.encode_descriptor(name, &sentence(help), None, MetricType::Gauge)?)
}

/// Help texts end with a period, as prometheus-client writes those of the
/// metrics it registers itself.
fn sentence(help: &str) -> String {
    format!("{help}.")
}

fn as_label_set<const N: usize>(labels: &Labels<N>) -> impl EncodeLabelSet + '_ {
    labels.each_ref().map(|(k, v)| (*k, v.as_str()))
}

/// A label value that cannot break the exposition or blow up memory: at
/// most 253 bytes (the longest Kubernetes name), cut at a character
/// boundary. prometheus-client escapes quotes, backslashes and newlines.
pub(super) fn value(s: &str) -> String {
    const MAX: usize = 253;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
