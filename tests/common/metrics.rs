//! `/metrics` read as Prometheus reads it: parsed by a Prometheus text
//! parser (`prometheus-parse`) into series, never matched as strings.

use prometheus_parse::{Scrape, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One series: its sample name and its labels, sorted.
pub type SeriesKey = (String, BTreeMap<String, String>);

/// Every series of a scrape with its value. A histogram's buckets are
/// `<name>_bucket` series with their `le` as a number in canonical form,
/// so `le="1"` and `le="1.0"` are the one bucket they are to Prometheus.
pub fn series(text: &str) -> BTreeMap<SeriesKey, f64> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse /metrics");
    let mut out = BTreeMap::new();
    for sample in scrape.samples {
        let labels: BTreeMap<String, String> = sample
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match &sample.value {
            Value::Histogram(buckets) => {
                for bucket in buckets {
                    let mut labels = labels.clone();
                    labels.insert("le".into(), canonical_le(bucket.less_than));
                    out.insert((format!("{}_bucket", sample.metric), labels), bucket.count);
                }
            }
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                out.insert((sample.metric.clone(), labels), *v);
            }
            Value::Summary(_) => panic!("no summaries expected: {}", sample.metric),
        }
    }
    out
}

fn canonical_le(bound: f64) -> String {
    match bound.is_infinite() {
        true => "+Inf".into(),
        false => format!("{bound:?}"),
    }
}

/// The series' names and label sets, without their values.
pub fn series_set(text: &str) -> BTreeSet<SeriesKey> {
    series(text).into_keys().collect()
}

/// Each family's help text, by family name: a counter's name without its
/// `_total` (OpenMetrics names the family without it, the classic text
/// format with it) and the text without a final period.
pub fn helps(text: &str) -> BTreeMap<String, String> {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse /metrics");
    scrape
        .docs
        .into_iter()
        .map(|(name, doc)| {
            let name = name.strip_suffix("_total").unwrap_or(&name).to_string();
            (name, doc.trim_end_matches('.').to_string())
        })
        .collect()
}

/// The value of one series; panics naming it when it is missing.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| match *k {
            "le" => (
                k.to_string(),
                canonical_le(v.parse().expect("a bucket bound")),
            ),
            _ => (k.to_string(), v.to_string()),
        })
        .collect();
    let all = series(text);
    *all.get(&(name.to_string(), labels.clone()))
        .unwrap_or_else(|| panic!("{name}{labels:?} is missing:\n{text}"))
}
