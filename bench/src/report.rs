//! Figures and how they are printed: a table on stdout, or one JSON object
//! per line with `--json`.

use serde_json::{Map, Value};

/// One measured figure.
#[derive(Debug, Clone, Default)]
pub struct Figure {
    /// Its name, for example `command_roundtrip`.
    pub name: String,
    /// Operations measured (commands, events).
    pub count: Option<u64>,
    /// Operations per second.
    pub rate: Option<f64>,
    /// Median latency in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
    /// The figure this one is compared with.
    pub baseline: Option<String>,
    /// `rate / baseline's rate`.
    pub ratio: Option<f64>,
    /// `p99_ms / baseline's p99_ms`.
    pub p99_ratio: Option<f64>,
    /// Figure-specific values (bytes added, memory, failures).
    pub extra: Map<String, Value>,
    /// Why a figure has no numbers, or what it means.
    pub note: Option<String>,
}

impl Figure {
    /// A figure named `name` with nothing measured yet.
    pub fn named(name: impl Into<String>) -> Self {
        Figure {
            name: name.into(),
            ..Figure::default()
        }
    }

    /// Compares this figure with `baseline`, setting `baseline`, `ratio` and
    /// `p99_ratio`.
    pub fn against(mut self, baseline: &Figure) -> Self {
        self.baseline = Some(baseline.name.clone());
        self.ratio = ratio(self.rate, baseline.rate);
        self.p99_ratio = ratio(self.p99_ms, baseline.p99_ms);
        self
    }

    /// Adds a figure-specific value.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The figure as one JSON object.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("name".into(), Value::from(self.name.as_str()));
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                object.insert(key.to_string(), value);
            }
        };
        put("count", self.count.map(Value::from));
        put("rate", self.rate.map(|r| Value::from(round(r, 1))));
        put("p50_ms", self.p50_ms.map(|v| Value::from(round(v, 3))));
        put("p99_ms", self.p99_ms.map(|v| Value::from(round(v, 3))));
        put("baseline", self.baseline.clone().map(Value::from));
        put("ratio", self.ratio.map(|v| Value::from(round(v, 3))));
        put(
            "p99_ratio",
            self.p99_ratio.map(|v| Value::from(round(v, 3))),
        );
        put("note", self.note.clone().map(Value::from));
        for (key, value) in &self.extra {
            object.insert(key.clone(), value.clone());
        }
        Value::Object(object)
    }
}

fn ratio(value: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (value, baseline) {
        (Some(v), Some(b)) if b > 0.0 => Some(v / b),
        _ => None,
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Prints figures as they are measured.
#[derive(Debug)]
pub struct Report {
    json: bool,
    header_printed: bool,
    figures: Vec<Figure>,
}

const HEADER: &str =
    "| figure | count | rate/s | p50 ms | p99 ms | vs | ratio | p99 ratio | notes |";
const RULE: &str = "|---|---:|---:|---:|---:|---|---:|---:|---|";

impl Report {
    /// A report printing JSON lines (`json`) or a Markdown table.
    pub fn new(json: bool) -> Self {
        Report {
            json,
            header_printed: false,
            figures: Vec::new(),
        }
    }

    /// Prints `figure` and keeps it for later comparisons.
    pub fn add(&mut self, figure: Figure) {
        if self.json {
            println!("{}", figure.to_json());
        } else {
            if !self.header_printed {
                println!("{HEADER}\n{RULE}");
                self.header_printed = true;
            }
            println!("{}", table_row(&figure));
        }
        self.figures.push(figure);
    }

    /// A figure measured earlier in this run.
    pub fn get(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }
}

fn table_row(figure: &Figure) -> String {
    let number =
        |v: Option<f64>, digits: usize| v.map_or(String::new(), |v| format!("{v:.digits$}"));
    let mut notes: Vec<String> = figure
        .extra
        .iter()
        .map(|(key, value)| match value {
            Value::String(s) => format!("{key}={s}"),
            other => format!("{key}={other}"),
        })
        .collect();
    if let Some(note) = &figure.note {
        notes.push(note.clone());
    }
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        figure.name,
        figure.count.map_or(String::new(), |c| c.to_string()),
        number(figure.rate, 0),
        number(figure.p50_ms, 2),
        number(figure.p99_ms, 2),
        figure.baseline.as_deref().unwrap_or(""),
        number(figure.ratio, 2),
        number(figure.p99_ratio, 2),
        notes.join(", "),
    )
}
