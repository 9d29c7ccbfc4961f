//! Parked events: an event whose apply kept failing, kept with its error
//! and delivery count under `<name>.parked.<stream>.<seq>` in the control
//! bucket until `replay-parked` applies it.

use crate::error::{ProjectionError, ProjectionErrorKind};
use crate::event::Event;
use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use jetsource_schemas::error::Error;
use jetsource_schemas::Namespace;
use serde::{Deserialize, Serialize};

/// One parked event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedEvent {
    /// The projection that could not apply it.
    pub projection: String,
    /// Its stream.
    pub stream: String,
    /// Its stream sequence.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// The last apply error.
    pub error: String,
    /// Deliveries that failed.
    pub deliveries: u64,
    /// When it was parked, RFC 3339 UTC.
    pub parked_at: String,
    /// Its body, the first [`PARKED_BODY_BYTES`] of it (the event itself
    /// stays whole in its stream, and a replay reads it from there).
    pub body: String,
}

/// How much of a parked event's body its record keeps: the record must fit
/// in one KV value whatever the event's size.
pub const PARKED_BODY_BYTES: usize = 16 * 1024;

/// `body`, cut to [`PARKED_BODY_BYTES`] at a character boundary, saying so:
/// what a parked record keeps of a message (projectors' and process
/// managers').
pub fn kept_body(body: &[u8]) -> String {
    let body = String::from_utf8_lossy(body);
    if body.len() <= PARKED_BODY_BYTES {
        return body.into_owned();
    }
    let mut cut = PARKED_BODY_BYTES;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}… (cut: {} bytes in all; the event is whole in its stream)",
        &body[..cut],
        body.len()
    )
}

fn prefix(name: &str) -> String {
    format!("{name}.parked.")
}

fn key(name: &str, stream: &str, seq: u64) -> String {
    format!("{}{stream}.{seq}", prefix(name))
}

/// Parks `event` for `name` (again, when it was: the key is its position).
pub(crate) async fn park(
    control: &kv::Store,
    name: &str,
    event: &Event,
    error: &str,
    deliveries: u64,
) -> Result<(), ProjectionError> {
    let parked = ParkedEvent {
        projection: name.to_string(),
        stream: event.stream.clone(),
        seq: event.seq,
        subject: event.subject.clone(),
        error: jetsource_schemas::reply::bounded_reason(error.to_string()),
        deliveries,
        parked_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        body: kept_body(&event.body),
    };
    let value = serde_json::to_vec(&parked)
        .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
    control
        .put(key(name, &event.stream, event.seq), value.into())
        .await
        .map(|_| ())
        .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))
}

/// Removes a parked event, after it was applied.
pub(crate) async fn remove(control: &kv::Store, p: &ParkedEvent) -> Result<(), ProjectionError> {
    control
        .purge(key(&p.projection, &p.stream, p.seq))
        .await
        .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))
}

pub(crate) async fn list_from(
    control: &kv::Store,
    name: &str,
) -> Result<Vec<ParkedEvent>, ProjectionError> {
    let wanted = prefix(name);
    let keys: Vec<String> = control
        .keys()
        .await
        .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?
        .try_collect()
        .await
        .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
    let mut parked = Vec::new();
    for k in keys.into_iter().filter(|k| k.starts_with(&wanted)) {
        let value = control
            .get(k.as_str())
            .await
            .map_err(|e| Error::with_source(ProjectionErrorKind::Store, e))?;
        if let Some(value) = value {
            let p: ParkedEvent = serde_json::from_slice(&value).map_err(|e| {
                Error::with_message_and_source(
                    ProjectionErrorKind::Store,
                    format!("{k} does not decode"),
                    e,
                )
            })?;
            parked.push(p);
        }
    }
    parked.sort_by(|a, b| (&a.stream, a.seq).cmp(&(&b.stream, b.seq)));
    Ok(parked)
}

/// The events parked for projection `name`, by stream and sequence (none
/// when the control bucket does not exist yet). (No subject prefix; see
/// [`list_in`].)
pub async fn list(
    client: &async_nats::Client,
    name: &str,
) -> Result<Vec<ParkedEvent>, ProjectionError> {
    list_in(client, &Namespace::default(), name).await
}

/// Like [`list`], for the projection `name` of `namespace`.
pub async fn list_in(
    client: &async_nats::Client,
    namespace: &Namespace,
    name: &str,
) -> Result<Vec<ParkedEvent>, ProjectionError> {
    crate::position::validate_name(name)
        .map_err(|e| Error::with_source(ProjectionErrorKind::BadProjector, e))?;
    let js = jetstream::new(client.clone());
    match js
        .get_key_value(crate::control::control_bucket(namespace))
        .await
    {
        Ok(control) => list_from(&control, name).await,
        Err(e) if e.kind() == jetstream::context::KeyValueErrorKind::GetBucket => Ok(Vec::new()),
        Err(e) => Err(Error::with_source(ProjectionErrorKind::Store, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_body_is_kept_whole_up_to_its_bound_and_cut_after() {
        assert_eq!(kept_body(b"{\"a\":1}"), "{\"a\":1}");
        let long = "é".repeat(PARKED_BODY_BYTES);
        let kept = kept_body(long.as_bytes());
        assert!(kept.len() < PARKED_BODY_BYTES + 100, "{}", kept.len());
        assert!(kept.ends_with(&format!(
            "(cut: {} bytes in all; the event is whole in its stream)",
            long.len()
        )));
    }
}
