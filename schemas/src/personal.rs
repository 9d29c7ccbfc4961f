//! Personal data in events, sealed under a key per data subject, so that
//! destroying the key forgets the person without rewriting history.
//!
//! An aggregate names its personal fields ([`Aggregate::personal_data`]):
//! top-level fields of some of its event types. The data subject they
//! belong to is the aggregate instance ([`data_subject`]). On append each
//! such field's value is replaced by a *sealed value*, a JSON object that
//! holds the value encrypted (XChaCha20-Poly1305, a random 24-byte nonce
//! per field, so a nonce is never reused) and the value to show once the
//! key is gone:
//!
//! ```json
//! {"$sealed": "xchacha20poly1305-v1", "kid": "<16 hex>", "nonce": "<base64, 24 bytes>",
//!  "data": "<base64, ciphertext and 16-byte tag>", "redacted": "[forgotten]"}
//! ```
//!
//! Every reader calls [`reveal_body`] (through
//! [`crate::upcast::decode_stored`]) with the data subject's key, or none
//! when it was forgotten: a sealed value reads as its plain value, or as its
//! `redacted` value. A sealed value is an object, so a reader that does not
//! know the format fails on it instead of taking ciphertext for a name.
//! PROTOCOL.md ("Personal data") is the contract for other languages.
//!
//! [`Aggregate::personal_data`]: crate::aggregate::Aggregate::personal_data

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::{Map, Value};
use std::fmt;

/// The key naming a sealed value's scheme; an object with it is sealed.
pub const SEALED: &str = "$sealed";
/// The one scheme of this contract version.
pub const SCHEME: &str = "xchacha20poly1305-v1";
/// What a forgotten field reads as unless its aggregate says otherwise.
pub const REDACTED: &str = "[forgotten]";
/// Bytes of a data key.
pub const KEY_LEN: usize = 32;
/// Bytes of a nonce.
const NONCE_LEN: usize = 24;

/// The data subject of an aggregate instance: `<type>.<id>`, the name of
/// its key in the keys bucket.
pub fn data_subject(aggregate_type: &str, aggregate_id: &str) -> String {
    format!("{aggregate_type}.{aggregate_id}")
}

/// One personal field of one event type.
#[derive(Debug, Clone, PartialEq)]
struct Field {
    event_type: String,
    field: String,
    redacted: Value,
}

/// The personal fields an aggregate's events hold. Empty by default: the
/// events are stored exactly as without this module.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonalData {
    fields: Vec<Field>,
}

impl PersonalData {
    /// No personal fields.
    pub fn new() -> Self {
        PersonalData::default()
    }

    /// `event_type`'s top-level field `field` is personal; once forgotten it
    /// reads as [`REDACTED`].
    pub fn field(self, event_type: &str, field: &str) -> Self {
        self.field_redacted_as(event_type, field, Value::String(REDACTED.to_string()))
    }

    /// Like [`PersonalData::field`], read as `redacted` once forgotten
    /// (for a field that is not a string, a value its type decodes from).
    pub fn field_redacted_as(mut self, event_type: &str, field: &str, redacted: Value) -> Self {
        self.fields.push(Field {
            event_type: event_type.to_string(),
            field: field.to_string(),
            redacted,
        });
        self
    }

    /// True when no field is personal.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Whether `event_type` has a personal field.
    pub fn covers(&self, event_type: &str) -> bool {
        self.fields.iter().any(|f| f.event_type == event_type)
    }
}

/// A data subject's key: its id (which sealed values name) and 32 secret
/// bytes. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey {
    subject: String,
    id: String,
    secret: [u8; KEY_LEN],
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("subject", &self.subject)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A new random key for `subject`.
    pub fn generate(subject: &str) -> Result<DataKey, SealError> {
        let mut bytes = [0u8; KEY_LEN + 8];
        getrandom::getrandom(&mut bytes)
            .map_err(|e| SealError::with_source(SealErrorKind::NoRandomness, e))?;
        let mut secret = [0u8; KEY_LEN];
        secret.copy_from_slice(&bytes[..KEY_LEN]);
        let id = bytes[KEY_LEN..]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(DataKey {
            subject: subject.to_string(),
            id,
            secret,
        })
    }

    /// The key `subject` had, from its id and secret as stored.
    pub fn from_parts(subject: &str, id: &str, secret: &[u8]) -> Result<DataKey, SealError> {
        let secret: [u8; KEY_LEN] = secret.try_into().map_err(|_| {
            SealError::new(
                SealErrorKind::Malformed,
                format!("a key of {} bytes, not {KEY_LEN}", secret.len()),
            )
        })?;
        Ok(DataKey {
            subject: subject.to_string(),
            id: id.to_string(),
            secret,
        })
    }

    /// The data subject it belongs to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Its id, named by every value sealed with it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret bytes, for storing the key.
    pub fn secret(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }

    /// The key as the keys bucket stores it: `{"kid":"<id>","key":"<base64
    /// of the 32 secret bytes>"}`.
    pub fn to_stored(&self) -> Vec<u8> {
        serde_json::json!({"kid": self.id, "key": BASE64.encode(self.secret)})
            .to_string()
            .into_bytes()
    }

    /// `subject`'s key from its value in the keys bucket.
    pub fn from_stored(subject: &str, value: &[u8]) -> Result<DataKey, SealError> {
        let malformed = |what: &str| {
            SealError::new(
                SealErrorKind::Malformed,
                format!("the stored key of {subject}: {what}"),
            )
        };
        let stored: Value = serde_json::from_slice(value).map_err(|_| malformed("not JSON"))?;
        let kid = stored["kid"].as_str().ok_or_else(|| malformed("no kid"))?;
        let secret = stored["key"]
            .as_str()
            .and_then(|k| BASE64.decode(k).ok())
            .ok_or_else(|| malformed("no key in base64"))?;
        DataKey::from_parts(subject, kid, &secret)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.secret).into())
    }
}

/// What went wrong sealing or revealing personal fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealErrorKind {
    /// The body is not a JSON object, or a sealed value is not of the
    /// documented shape.
    Malformed,
    /// A sealed value of another scheme (written by a newer version).
    Unsupported,
    /// A sealed value does not open with the key it names: it was altered,
    /// or moved from another data subject's event.
    Tampered,
    /// The system gave no randomness for a key or a nonce.
    NoRandomness,
}

impl fmt::Display for SealErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealErrorKind::Malformed => "malformed personal data",
            SealErrorKind::Unsupported => "sealed with an unknown scheme",
            SealErrorKind::Tampered => "sealed data does not open with its key",
            SealErrorKind::NoRandomness => "no randomness",
        })
    }
}

/// A failure sealing or revealing; see [`SealErrorKind`].
pub type SealError = crate::error::Error<SealErrorKind>;

/// What binds a sealed value to its data subject and field, so it cannot
/// be moved to another's event and read there.
fn associated_data(subject: &str, field: &str) -> Vec<u8> {
    format!("{SCHEME}\n{subject}\n{field}").into_bytes()
}

/// `body` (an event of `event_type`, encoded) with its personal fields
/// sealed under `key`, or `None` when `event_type` has none (the body is
/// stored as it is).
pub fn seal_body(
    personal: &PersonalData,
    event_type: &str,
    body: &[u8],
    key: &DataKey,
) -> Result<Option<Vec<u8>>, SealError> {
    if !personal.covers(event_type) {
        return Ok(None);
    }
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| SealError::with_source(SealErrorKind::Malformed, e))?;
    let Value::Object(fields) = &mut value else {
        return Err(SealError::new(
            SealErrorKind::Malformed,
            "an event body with personal fields must be a JSON object",
        ));
    };
    for f in personal
        .fields
        .iter()
        .filter(|f| f.event_type == event_type)
    {
        if let Some(plain) = fields.get_mut(&f.field) {
            *plain = seal_value(key, &f.field, plain, &f.redacted)?;
        }
    }
    serde_json::to_vec(&value)
        .map(Some)
        .map_err(|e| SealError::with_source(SealErrorKind::Malformed, e))
}

fn seal_value(
    key: &DataKey,
    field: &str,
    plain: &Value,
    redacted: &Value,
) -> Result<Value, SealError> {
    let msg = serde_json::to_vec(plain)
        .map_err(|e| SealError::with_source(SealErrorKind::Malformed, e))?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce)
        .map_err(|e| SealError::with_source(SealErrorKind::NoRandomness, e))?;
    let aad = associated_data(key.subject(), field);
    let data = key
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &msg,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::new(SealErrorKind::Malformed, "encryption failed"))?;
    let mut sealed = Map::new();
    sealed.insert(SEALED.into(), Value::String(SCHEME.into()));
    sealed.insert("kid".into(), Value::String(key.id().into()));
    sealed.insert("nonce".into(), Value::String(BASE64.encode(nonce)));
    sealed.insert("data".into(), Value::String(BASE64.encode(data)));
    sealed.insert("redacted".into(), redacted.clone());
    Ok(Value::Object(sealed))
}

/// Whether `body` may hold a sealed value: a byte search, so events
/// without one are never parsed twice.
pub fn may_be_sealed(body: &[u8]) -> bool {
    let needle = b"\"$sealed\"";
    body.windows(needle.len()).any(|w| w == needle)
}

/// `body` with every sealed top-level field read: opened with `key` (the
/// data subject's, when it still has one), else its `redacted` value. A
/// sealed value naming another key id reads as redacted too: its key was
/// forgotten and the subject has a new one. `None` when nothing is sealed
/// (read the body as it is).
pub fn reveal_body(body: &[u8], key: Option<&DataKey>) -> Result<Option<Vec<u8>>, SealError> {
    if !may_be_sealed(body) {
        return Ok(None);
    }
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| SealError::with_source(SealErrorKind::Malformed, e))?;
    let Value::Object(fields) = &mut value else {
        return Ok(None);
    };
    let mut changed = false;
    for (name, field) in fields.iter_mut() {
        let Value::Object(sealed) = field else {
            continue;
        };
        if !sealed.contains_key(SEALED) {
            continue;
        }
        *field = reveal_value(name, sealed, key)?;
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    serde_json::to_vec(&value)
        .map(Some)
        .map_err(|e| SealError::with_source(SealErrorKind::Malformed, e))
}

fn reveal_value(
    field: &str,
    sealed: &Map<String, Value>,
    key: Option<&DataKey>,
) -> Result<Value, SealError> {
    let text = |name: &str| {
        sealed.get(name).and_then(Value::as_str).ok_or_else(|| {
            SealError::new(
                SealErrorKind::Malformed,
                format!("sealed field {field:?} has no string {name:?}"),
            )
        })
    };
    let scheme = text(SEALED)?;
    if scheme != SCHEME {
        return Err(SealError::new(
            SealErrorKind::Unsupported,
            format!(
                "sealed field {field:?} uses {:?}",
                crate::reply::excerpt(scheme, 32)
            ),
        ));
    }
    let redacted = sealed.get("redacted").cloned().ok_or_else(|| {
        SealError::new(
            SealErrorKind::Malformed,
            format!("sealed field {field:?} has no \"redacted\""),
        )
    })?;
    let kid = text("kid")?;
    let Some(key) = key.filter(|k| k.id() == kid) else {
        return Ok(redacted);
    };
    let bytes = |name: &str| {
        BASE64
            .decode(text(name)?)
            .map_err(|e| SealError::with_source(SealErrorKind::Malformed, e))
    };
    let nonce = bytes("nonce")?;
    if nonce.len() != NONCE_LEN {
        return Err(SealError::new(
            SealErrorKind::Malformed,
            format!(
                "sealed field {field:?} has a nonce of {} bytes",
                nonce.len()
            ),
        ));
    }
    let data = bytes("data")?;
    let aad = associated_data(key.subject(), field);
    let plain = key
        .cipher()
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &data,
                aad: &aad,
            },
        )
        .map_err(|_| {
            SealError::new(
                SealErrorKind::Tampered,
                format!("sealed field {field:?} of {}", key.subject()),
            )
        })?;
    serde_json::from_slice(&plain).map_err(|e| SealError::with_source(SealErrorKind::Malformed, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn personal() -> PersonalData {
        PersonalData::new().field("Opened", "owner")
    }

    fn sealed(key: &DataKey) -> Vec<u8> {
        seal_body(
            &personal(),
            "Opened",
            br#"{"owner":"Ada Lovelace","n":1}"#,
            key,
        )
        .expect("seals")
        .expect("has personal fields")
    }

    #[test]
    fn a_sealed_field_never_holds_the_plain_value_and_reveals_with_its_key() {
        let key = DataKey::generate("account.a1").expect("key");
        let body = sealed(&key);
        assert!(!String::from_utf8_lossy(&body).contains("Ada"));
        let stored: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(stored["owner"][SEALED], SCHEME);
        assert_eq!(stored["n"], 1);
        let read = reveal_body(&body, Some(&key))
            .expect("reveals")
            .expect("sealed");
        assert_eq!(
            serde_json::from_slice::<Value>(&read).expect("json"),
            json!({"owner": "Ada Lovelace", "n": 1})
        );
    }

    #[test]
    fn without_its_key_a_field_reads_as_redacted_and_the_rest_intact() {
        let key = DataKey::generate("account.a1").expect("key");
        // The subject's key after it was forgotten and made anew.
        let newer = DataKey::generate("account.a1").expect("key");
        for reader in [None, Some(&newer)] {
            let read = reveal_body(&sealed(&key), reader)
                .expect("reveals")
                .expect("sealed");
            assert_eq!(
                serde_json::from_slice::<Value>(&read).expect("json"),
                json!({"owner": REDACTED, "n": 1})
            );
        }
    }

    #[test]
    fn a_value_moved_to_another_subject_or_altered_is_refused() {
        let key = DataKey::generate("account.a1").expect("key");
        let body = sealed(&key);
        let elsewhere = DataKey::from_parts("account.a2", key.id(), key.secret()).expect("key");
        let err = reveal_body(&body, Some(&elsewhere)).expect_err("moved");
        assert_eq!(err.kind(), SealErrorKind::Tampered);
        let mut value: Value = serde_json::from_slice(&body).expect("json");
        value["owner"]["nonce"] = json!(BASE64.encode([0u8; NONCE_LEN]));
        let altered = serde_json::to_vec(&value).expect("json");
        let err = reveal_body(&altered, Some(&key)).expect_err("altered");
        assert_eq!(err.kind(), SealErrorKind::Tampered);
        let newer = br#"{"owner":{"$sealed":"other-v9","redacted":"x"}}"#;
        let err = reveal_body(newer, None).expect_err("newer");
        assert_eq!(err.kind(), SealErrorKind::Unsupported);
    }

    #[test]
    fn events_without_personal_fields_pass_untouched() {
        let key = DataKey::generate("account.a1").expect("key");
        assert!(seal_body(&personal(), "Deposited", br#"{"n":1}"#, &key)
            .expect("ok")
            .is_none());
        assert!(reveal_body(br#"{"n":1}"#, Some(&key))
            .expect("ok")
            .is_none());
        // A string that merely mentions the marker is data, not a sealed value.
        assert!(reveal_body(br#"{"s":"\"$sealed\""}"#, None)
            .expect("ok")
            .is_none());
    }

    #[test]
    fn nonces_differ_for_equal_values() {
        let key = DataKey::generate("account.a1").expect("key");
        assert_ne!(sealed(&key), sealed(&key));
    }
}
