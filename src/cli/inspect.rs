//! Looking at what is stored: `tail` (live events), `rewind` (an
//! aggregate's state at any point) and `streams` (what exists in this
//! application's namespace).

use crate::app::App;
use crate::config::Config;
use crate::rewind::RewindErrorKind;
use async_nats::jetstream::{self, consumer::pull::OrderedConfig, consumer::DeliverPolicy};
use futures::{StreamExt, TryStreamExt};
use jetsource_handlers::keys::KeyRing;
use jetsource_handlers::store::EventStore;
use jetsource_schemas::key_wrap::MasterKey;
use jetsource_schemas::{headers, personal, Namespace, CONTRACT_METADATA_KEY};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use super::client::{client_connection, master_key, namespace, print_json};
use super::op::{OpError, OpErrorKind};

/// One event as `tail` prints it (and the console shows it).
#[derive(Debug, Serialize)]
pub(crate) struct TailedEvent {
    pub(crate) stream: String,
    pub(crate) seq: u64,
    pub(crate) subject: String,
    pub(crate) command_id: Option<String>,
    pub(crate) headers: std::collections::BTreeMap<String, String>,
    pub(crate) body: serde_json::Value,
    /// The body's version (`Event-Version`, 1 when absent).
    pub(crate) version: u32,
    /// When the event is of an older version than the hosted aggregate's:
    /// what today's code reads it as (one event, several or none), or why
    /// it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    reads_as: Option<ReadsAs>,
}

/// An older event as today's code reads it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum ReadsAs {
    Events(Vec<ReadEvent>),
    Unreadable { error: String },
}

#[derive(Debug, Serialize)]
pub(crate) struct ReadEvent {
    event_type: String,
    body: serde_json::Value,
}

impl std::fmt::Display for ReadsAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadsAs::Events(events) if events.is_empty() => write!(f, "(read as nothing)"),
            ReadsAs::Events(events) => {
                let read: Vec<String> = events
                    .iter()
                    .map(|e| format!("{} {}", e.event_type, e.body))
                    .collect();
                write!(f, "{}", read.join(", "))
            }
            ReadsAs::Unreadable { error } => write!(f, "(unreadable: {error})"),
        }
    }
}

/// What the application's code reads an event stored at `version` as, when it hosts
/// the aggregate type and that version is older than today's: the same
/// upcasters every reader of events runs.
fn reads_as(
    schemas: &[crate::app::AggregateSchemas],
    namespace: &Namespace,
    subject: &str,
    version: u32,
    body: &serde_json::Value,
) -> Option<ReadsAs> {
    let event = namespace.parse_event(subject)?;
    let schemas = schemas
        .iter()
        .find(|s| s.aggregate_type == event.aggregate_type)?;
    if version == schemas.event_version {
        return None;
    }
    let stored = jetsource_schemas::upcast::EventBody::new(event.event_type, body.clone());
    Some(
        match schemas
            .upcasters
            .upcast(version, schemas.event_version, stored)
        {
            Ok(read) => ReadsAs::Events(
                read.into_iter()
                    .map(|e| ReadEvent {
                        event_type: e.event_type,
                        body: e.body,
                    })
                    .collect(),
            ),
            Err(e) => ReadsAs::Unreadable {
                error: e.to_string(),
            },
        },
    )
}

/// True when every subject `inner` matches is matched by `outer` (NATS
/// wildcards: `*` one token, `>` one or more trailing tokens).
pub(crate) fn subject_within(inner: &str, outer: &str) -> bool {
    let inner: Vec<&str> = inner.split('.').collect();
    let outer: Vec<&str> = outer.split('.').collect();
    for (i, o) in outer.iter().enumerate() {
        match (*o, inner.get(i)) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(&t)) if t != ">" => {}
            (o, Some(&t)) if o == t && t != "*" && t != ">" => {}
            _ => return false,
        }
    }
    inner.len() == outer.len()
}

/// Checks a filter is a well-formed subject: non-empty tokens, `>` last.
fn valid_filter(filter: &str) -> bool {
    let tokens: Vec<&str> = filter.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && !t.contains(char::is_whitespace)
            && (*t != ">" || i == tokens.len() - 1)
            && (t.len() == 1 || !t.contains(['*', '>']))
    })
}

/// The events on subjects matching `filter` (written without the subject
/// prefix) as they are stored (or all of them with `from_start`), merged
/// from one ordered consumer per event stream of `namespace` it touches;
/// data keys wrapped under a master key are opened with `master_key`.
pub(crate) async fn follow(
    app: &App,
    client: async_nats::Client,
    namespace: &Namespace,
    master_key: Option<MasterKey>,
    filter: &str,
    from_start: bool,
) -> Result<impl futures::Stream<Item = TailedEvent> + Send + 'static, OpError> {
    if !valid_filter(filter) {
        return Err(OpError::new(
            OpErrorKind::InvalidInput,
            format!("{filter:?} is not a subject filter"),
        ));
    }
    let filter = namespace.subject(filter);
    let filter = filter.as_str();
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        OpError::new(OpErrorKind::Unavailable, format!("{what}: {e}"))
    };
    // Sealed personal fields shown opened, or as their redaction value.
    let keys = std::sync::Arc::new(
        KeyRing::new(client.clone(), namespace, 1, Duration::from_secs(5))
            .with_master_key(master_key),
    );
    let js = jetstream::new(client);
    let infos: Vec<jetstream::stream::Info> = js
        .streams()
        .try_collect()
        .await
        .map_err(|e| unavailable("listing streams", &e))?;
    let mut merged = futures::stream::SelectAll::new();
    for info in infos {
        // Follow only event streams, each with the narrower of the two
        // filters, so that `evt.>` spans every aggregate type.
        let Some(stream_filter) = info.config.subjects.iter().find_map(|s| {
            if subject_within(filter, s) {
                Some(filter.to_string())
            } else if subject_within(s, filter) {
                Some(s.clone())
            } else {
                None
            }
        }) else {
            continue;
        };
        if !info.config.name.starts_with(namespace.stream_prefix()) {
            continue;
        }
        let consumer = OrderedConfig {
            filter_subject: stream_filter,
            deliver_policy: if from_start {
                DeliverPolicy::All
            } else {
                DeliverPolicy::New
            },
            ..Default::default()
        };
        let name = &info.config.name;
        let stream = js
            .get_stream(name)
            .await
            .map_err(|e| unavailable(name, &e))?;
        let consumer = stream
            .create_consumer(consumer)
            .await
            .map_err(|e| unavailable(name, &e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable(name, &e))?;
        merged.push(messages.boxed());
    }
    if merged.is_empty() {
        return Err(OpError::new(
            OpErrorKind::Unavailable,
            format!("no event stream holds {filter}"),
        ));
    }
    let schemas: std::sync::Arc<Vec<_>> = std::sync::Arc::new(app.aggregate_schemas().to_vec());
    let namespace = namespace.clone();
    Ok(merged.filter_map(move |message| {
        let (schemas, namespace, keys) = (schemas.clone(), namespace.clone(), keys.clone());
        async move {
            match message {
                Ok(message) => {
                    let payload =
                        revealed(&keys, &namespace, &message.subject, &message.payload).await;
                    tailed(&schemas, &namespace, &message, &payload)
                }
                // The ordered consumer recreates itself from the last sequence.
                Err(e) => {
                    tracing::warn!(error = %e, "consumer trouble; it recovers");
                    None
                }
            }
        }
    }))
}

/// One stored message as an event, headers and body read.
fn tailed(
    schemas: &[crate::app::AggregateSchemas],
    namespace: &Namespace,
    message: &jetstream::Message,
    payload: &[u8],
) -> Option<TailedEvent> {
    let info = message.info().ok()?;
    let headers: std::collections::BTreeMap<String, String> = message
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .filter_map(|(name, values)| {
            values
                .first()
                .map(|v| (name.to_string(), v.as_str().to_string()))
        })
        .collect();
    let body = serde_json::from_slice(payload).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(payload).into_owned())
    });
    let version = headers
        .get(headers::EVENT_VERSION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    Some(TailedEvent {
        stream: info.stream.to_string(),
        seq: info.stream_sequence,
        subject: message.subject.to_string(),
        command_id: headers.get(headers::COMMAND_ID).cloned(),
        reads_as: reads_as(schemas, namespace, &message.subject, version, &body),
        version,
        body,
        headers,
    })
}

/// Prints events on subjects matching `filter` (see [`follow`]) until
/// `count` were printed or forever. Exit 2 for an invalid filter, 3 when
/// NATS fails.
pub(crate) async fn tail(
    app: &App,
    config: &Config,
    nats_url: Option<&str>,
    filter: &str,
    from_start: bool,
    count: Option<u64>,
) -> ExitCode {
    let namespace = match namespace(config, "tail") {
        Ok(namespace) => namespace,
        Err(code) => return code,
    };
    let master_key = match master_key(config, "tail") {
        Ok(master_key) => master_key,
        Err(code) => return code,
    };
    let client = match client_connection(config, nats_url, "tail").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let events = match follow(app, client, &namespace, master_key, filter, from_start).await {
        Ok(events) => events,
        Err(e) => return super::op::exit("tail", &e),
    };
    let mut events = std::pin::pin!(events);
    let pretty = std::io::stdout().is_terminal();
    let mut printed = 0;
    while count.is_none_or(|count| printed < count) {
        let Some(event) = events.next().await else {
            break;
        };
        if pretty {
            let read = match &event.reads_as {
                Some(read) => format!("  (v{}, reads as {read})", event.version),
                None => String::new(),
            };
            println!(
                "{} #{}  {}  Command-Id={}  {}{read}",
                event.stream,
                event.seq,
                event.subject,
                event.command_id.as_deref().unwrap_or("-"),
                event.body
            );
        } else {
            print_json(&event);
        }
        let _ = std::io::stdout().flush();
        printed += 1;
    }
    ExitCode::SUCCESS
}

/// `payload` of the event on `subject` with its sealed personal fields
/// opened with the aggregate's data key, or read as their redaction value
/// when it was forgotten; as stored when it seals nothing, or when the key
/// cannot be read (a sealed value shows as such, never as data).
async fn revealed(
    keys: &KeyRing,
    namespace: &Namespace,
    subject: &str,
    payload: &bytes::Bytes,
) -> bytes::Bytes {
    if !personal::may_be_sealed(payload) {
        return payload.clone();
    }
    let Some(parsed) = namespace.parse_event(subject) else {
        return payload.clone();
    };
    let data_subject = personal::data_subject(parsed.aggregate_type, parsed.aggregate_id);
    let key = match keys.key(&data_subject).await {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(error = %e, %subject, "personal data shown sealed");
            return payload.clone();
        }
    };
    match personal::reveal_body(payload, key.as_ref()) {
        Ok(Some(body)) => body.into(),
        Ok(None) => payload.clone(),
        Err(e) => {
            tracing::warn!(error = %e, %subject, "personal data shown sealed");
            payload.clone()
        }
    }
}

/// An aggregate's state after its events up to `to_seq`: the `rewind`
/// fold, for a type `app` hosts.
pub(crate) async fn rewound(
    app: &App,
    store: &EventStore,
    aggregate_type: &str,
    aggregate_id: &str,
    to_seq: Option<u64>,
) -> Result<crate::rewind::Rewound, crate::rewind::RewindError> {
    if !app.aggregate_types().contains(&aggregate_type) {
        return Err(crate::rewind::RewindError::new(
            RewindErrorKind::InvalidInput,
            format!(
                "unknown aggregate type {aggregate_type:?}; known: {}",
                app.aggregate_types().join(", ")
            ),
        ));
    }
    app.rewind(store, aggregate_type, aggregate_id, to_seq)
        .await
}

/// Prints an aggregate's state after its events up to `to_seq`. Exit 0
/// when it has events, 1 when it has none (up to `to_seq`), 2 for an
/// unknown type or invalid id, 3 when the store is unreachable.
pub(crate) async fn rewind(
    app: &App,
    config: &Config,
    nats_url: Option<&str>,
    aggregate_type: &str,
    aggregate_id: &str,
    to_seq: Option<u64>,
    timeout: u64,
) -> ExitCode {
    let namespace = match namespace(config, "rewind") {
        Ok(namespace) => namespace,
        Err(code) => return code,
    };
    let master_key = match master_key(config, "rewind") {
        Ok(master_key) => master_key,
        Err(code) => return code,
    };
    let client = match client_connection(config, nats_url, "rewind").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let store = match EventStore::new(client, Duration::from_secs(timeout)).await {
        Ok(store) => store.with_namespace(namespace).with_master_key(master_key),
        Err(e) => {
            eprintln!("jetsource rewind: {e}");
            return ExitCode::from(3);
        }
    };
    match rewound(app, &store, aggregate_type, aggregate_id, to_seq).await {
        Ok(rewound) => {
            if let Some(asked) = rewound.snapped_from {
                eprintln!(
                    "jetsource rewind: #{asked} falls inside one command's events; \
                     shown after the command before it (#{})",
                    rewound.seq
                );
            }
            print_json(&rewound);
            if rewound.events == 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("jetsource rewind: {e}");
            match e.kind() {
                RewindErrorKind::InvalidInput => ExitCode::from(2),
                RewindErrorKind::Unavailable => ExitCode::from(3),
                RewindErrorKind::Corrupt => ExitCode::from(1),
                RewindErrorKind::MasterKey => ExitCode::from(2),
            }
        }
    }
}

/// One stream as `streams` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct StreamSummary {
    name: String,
    subjects: Vec<String>,
    messages: u64,
    bytes: u64,
    /// Distinct subjects: for an event stream, about one per aggregate
    /// instance and event type it has seen.
    subject_count: u64,
    first_seq: u64,
    last_seq: u64,
    consumers: usize,
    /// An event stream (`EVT_<TYPE>` under the subject prefix); otherwise
    /// the stream of one of the namespace's key-value buckets.
    events: bool,
    /// The contract version in the stream's metadata
    /// (`jetsource.contract`); `None` without the key, as key-value
    /// buckets' streams are.
    contract: Option<String>,
}

/// The beginnings of jetsource's key-value bucket names: the command index,
/// the projector control bucket, snapshots (`jetsource_…`) and projections
/// (`projection_…`).
const BUCKET_NAME_STARTS: [&str; 2] = ["jetsource_", "projection_"];

/// True for the streams of `namespace`: its event streams and the streams
/// (`KV_<bucket>`) behind its jetsource buckets. The names are one-to-one
/// per namespace (see [`Namespace`]), so no other namespace's stream, and
/// no stream jetsource did not name, is taken.
fn in_namespace(namespace: &Namespace, stream: &str) -> bool {
    if stream.starts_with(namespace.stream_prefix()) {
        return true;
    }
    stream.strip_prefix("KV_").is_some_and(|bucket| {
        BUCKET_NAME_STARTS
            .iter()
            .any(|start| bucket.starts_with(&namespace.bucket(start)))
    })
}

/// The table `streams` prints on a terminal.
fn table(summaries: &[StreamSummary]) -> String {
    let mut out = format!(
        "{:<32} {:>10} {:>12} {:>9} {:>10} {:>10} {:>8}\n",
        "STREAM", "MESSAGES", "BYTES", "SUBJECTS", "FIRST", "LAST", "CONTRACT"
    );
    for s in summaries {
        out.push_str(&format!(
            "{:<32} {:>10} {:>12} {:>9} {:>10} {:>10} {:>8}\n",
            s.name,
            s.messages,
            s.bytes,
            s.subject_count,
            s.first_seq,
            s.last_seq,
            s.contract.as_deref().unwrap_or("-")
        ));
    }
    out
}

/// The streams of `namespace` (per the subject prefix): what each holds,
/// how big it is, which contract version it names; sorted by name.
pub(crate) async fn stream_summaries(
    client: async_nats::Client,
    namespace: &Namespace,
) -> Result<Vec<StreamSummary>, OpError> {
    let js = jetstream::new(client);
    let infos: Vec<jetstream::stream::Info> = js
        .streams()
        .try_collect()
        .await
        .map_err(|e| OpError::with_source(OpErrorKind::Unavailable, e))?;
    let mut summaries: Vec<StreamSummary> = infos
        .into_iter()
        .filter(|info| in_namespace(namespace, &info.config.name))
        .map(|info| StreamSummary {
            events: info.config.name.starts_with(namespace.stream_prefix()),
            contract: info.config.metadata.get(CONTRACT_METADATA_KEY).cloned(),
            name: info.config.name,
            subjects: info.config.subjects,
            messages: info.state.messages,
            bytes: info.state.bytes,
            subject_count: info.state.subjects_count,
            first_seq: info.state.first_sequence,
            last_seq: info.state.last_sequence,
            consumers: info.state.consumer_count,
        })
        .collect();
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(summaries)
}

/// Prints the streams of this namespace ([`stream_summaries`]). Exit 3
/// when NATS fails.
pub(crate) async fn streams(config: &Config, nats_url: Option<&str>) -> ExitCode {
    let namespace = match namespace(config, "streams") {
        Ok(namespace) => namespace,
        Err(code) => return code,
    };
    let client = match client_connection(config, nats_url, "streams").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    let summaries = match stream_summaries(client, &namespace).await {
        Ok(summaries) => summaries,
        Err(e) => return super::op::exit("streams", &e),
    };
    if std::io::stdout().is_terminal() {
        print!("{}", table(&summaries));
    } else {
        print_json(&serde_json::json!({ "streams": summaries }));
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_nest_by_wildcards() {
        assert!(subject_within("evt.blogpost.>", "evt.>"));
        assert!(subject_within("evt.blogpost.p1.*", "evt.blogpost.>"));
        assert!(subject_within("evt.blogpost.p1.X", "evt.*.*.X"));
        assert!(!subject_within("evt.>", "evt.blogpost.>"));
        assert!(!subject_within("evt.account.>", "evt.blogpost.>"));
        assert!(!subject_within("evt.blogpost", "evt.blogpost.>"));
        assert!(subject_within("evt.blogpost.>", "evt.blogpost.>"));
    }

    #[test]
    fn only_the_namespace_s_own_streams_are_its() {
        let plain = Namespace::default();
        let shop = Namespace::new("acme.shop").expect("valid");
        let acme = Namespace::new("acme").expect("valid");
        let dashed = Namespace::new("acme-shop").expect("valid");
        let streams = [
            "EVT_BLOGPOST",
            "KV_jetsource_command_index",
            "KV_projection_blogposts_g2",
            "acme_shop_EVT_BLOGPOST",
            "KV_ACME_SHOP_jetsource_projectors",
            "acme_EVT_BLOGPOST",
            "KV_ACME_projection_blogposts",
            "acme-shop_EVT_BLOGPOST",
            "KV_ACME-SHOP_jetsource_command_index",
            "ORDERS",
            "KV_settings",
            "KV_ACME_SHOP_settings",
            "OBJ_files",
        ];
        let of = |namespace: &Namespace| -> Vec<&str> {
            streams
                .iter()
                .copied()
                .filter(|s| in_namespace(namespace, s))
                .collect()
        };
        assert_eq!(
            of(&plain),
            [
                "EVT_BLOGPOST",
                "KV_jetsource_command_index",
                "KV_projection_blogposts_g2"
            ]
        );
        assert_eq!(
            of(&shop),
            [
                "acme_shop_EVT_BLOGPOST",
                "KV_ACME_SHOP_jetsource_projectors"
            ]
        );
        assert_eq!(
            of(&acme),
            ["acme_EVT_BLOGPOST", "KV_ACME_projection_blogposts"]
        );
        assert_eq!(
            of(&dashed),
            [
                "acme-shop_EVT_BLOGPOST",
                "KV_ACME-SHOP_jetsource_command_index"
            ]
        );
    }

    #[test]
    fn the_table_shows_the_contract_or_a_dash() {
        let summary = |name: &str, contract: Option<&str>| StreamSummary {
            name: name.into(),
            subjects: Vec::new(),
            messages: 0,
            bytes: 0,
            subject_count: 0,
            first_seq: 0,
            last_seq: 0,
            consumers: 0,
            events: contract.is_some(),
            contract: contract.map(String::from),
        };
        let printed = table(&[
            summary("EVT_BLOGPOST", Some("1")),
            summary("KV_jetsource_command_index", None),
        ]);
        let last_column: Vec<&str> = printed
            .lines()
            .filter_map(|line| line.split_whitespace().last())
            .collect();
        assert_eq!(last_column, ["CONTRACT", "1", "-"]);
    }

    #[test]
    fn malformed_filters_are_refused() {
        assert!(valid_filter("evt.>"));
        assert!(valid_filter("evt.*.p1.*"));
        assert!(!valid_filter("evt..x"));
        assert!(!valid_filter("evt.>.x"));
        assert!(!valid_filter("evt.a b"));
        assert!(!valid_filter("evt.x*"));
    }
}
