//! Data keys as the keys bucket stores them: as they are, or sealed
//! ("wrapped") under a master key from the configuration, so that a copy
//! of the bucket (a backup, a replica's disk) opens no personal field
//! without the master key too.
//!
//! Plain (no master key configured): `{"kid":"<id>","key":"<base64>"}`.
//! Wrapped:
//!
//! ```json
//! {"kid": "<16 hex>", "wrapped": "xchacha20poly1305-v1", "mkid": "<16 hex>",
//!  "nonce": "<base64, 24 bytes>", "data": "<base64, the 32 key bytes sealed, and the tag>"}
//! ```
//!
//! The data key is sealed with XChaCha20-Poly1305 under the master key, a
//! random nonce each time, with associated data
//! `jetsource-key-wrap-v1\n<data subject>\n<kid>`: a wrapped key moved to
//! another subject's name does not open. `mkid` names the master key
//! (see [`MasterKey::id`]) so that a reader with another one says so
//! rather than calling the key altered.
//!
//! Reading accepts both forms whatever is configured: keys stored before
//! a master key was set keep working as they are, and new keys are
//! wrapped. A wrapped key without a master key, or under another one, is
//! an error ([`StoredKeyErrorKind`]), never read as forgotten.
//! PROTOCOL.md ("Personal data") is the contract for other languages.

use crate::personal::{DataKey, KEY_LEN, SCHEME};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde_json::Value;
use std::fmt;
use std::path::Path;

/// The field naming a wrapped key's scheme; a stored key with it is wrapped.
pub const WRAPPED: &str = "wrapped";
/// Bytes of a nonce.
const NONCE_LEN: usize = 24;

/// The key data keys are wrapped under: 32 bytes, given as base64 text
/// (`head -c 32 /dev/urandom | base64`). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    secret: [u8; KEY_LEN],
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// The master key from its text: base64 of 32 bytes, surrounding
    /// whitespace ignored. The error never quotes the text.
    pub fn from_text(text: &str) -> Result<MasterKey, StoredKeyError> {
        let bytes = BASE64.decode(text.trim()).map_err(|_| {
            StoredKeyError::new(
                StoredKeyErrorKind::Malformed,
                "a master key is base64 of 32 bytes; this is not base64",
            )
        })?;
        let secret: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
            StoredKeyError::new(
                StoredKeyErrorKind::Malformed,
                format!("a master key is {KEY_LEN} bytes, not {}", bytes.len()),
            )
        })?;
        Ok(MasterKey::from_bytes(secret))
    }

    /// The master key from the file at `path` (see [`MasterKey::from_text`]).
    pub fn from_file(path: &Path) -> Result<MasterKey, StoredKeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            StoredKeyError::with_message_and_source(
                StoredKeyErrorKind::Malformed,
                format!("cannot read {}", path.display()),
                e,
            )
        })?;
        MasterKey::from_text(&text)
    }

    /// The master key of these 32 bytes.
    pub fn from_bytes(secret: [u8; KEY_LEN]) -> MasterKey {
        let id = fingerprint(&secret);
        MasterKey { secret, id }
    }

    /// Its id, 16 hex digits, which wrapped keys name: the first 8 bytes of
    /// the tag XChaCha20-Poly1305 gives for no message under this key, an
    /// all-zero nonce and the associated data `jetsource-master-key-id-v1`
    /// (a MAC of a constant: it says nothing of the key; wrapping never
    /// uses that nonce by more than chance, 2^-192).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.secret).into())
    }
}

fn fingerprint(secret: &[u8; KEY_LEN]) -> String {
    let tag = XChaCha20Poly1305::new(secret.into())
        .encrypt(
            XNonce::from_slice(&[0u8; NONCE_LEN]),
            Payload {
                msg: &[],
                aad: b"jetsource-master-key-id-v1",
            },
        )
        // Encrypting an empty message cannot exceed the cipher's limits.
        .unwrap_or_default();
    tag.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// What went wrong reading or writing a stored data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoredKeyErrorKind {
    /// Not of the documented shape (or a master key that does not read).
    Malformed,
    /// Wrapped with a scheme this version does not know.
    Unsupported,
    /// Wrapped under a master key, and none is configured.
    NoMasterKey,
    /// Wrapped under another master key than the one configured.
    WrongMasterKey,
    /// Wrapped under this master key, but it does not open: altered, or
    /// moved from another data subject.
    Tampered,
    /// The system gave no randomness for a nonce.
    NoRandomness,
}

impl fmt::Display for StoredKeyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoredKeyErrorKind::Malformed => "malformed stored key",
            StoredKeyErrorKind::Unsupported => "a key wrapped with an unknown scheme",
            StoredKeyErrorKind::NoMasterKey => "a wrapped key, and no master key configured",
            StoredKeyErrorKind::WrongMasterKey => "a key wrapped under another master key",
            StoredKeyErrorKind::Tampered => "a wrapped key does not open with its master key",
            StoredKeyErrorKind::NoRandomness => "no randomness",
        })
    }
}

/// A failure reading or writing a stored key; see [`StoredKeyErrorKind`].
pub type StoredKeyError = crate::error::Error<StoredKeyErrorKind>;

/// What binds a wrapped key to its data subject and id.
fn associated_data(subject: &str, kid: &str) -> Vec<u8> {
    format!("jetsource-key-wrap-v1\n{subject}\n{kid}").into_bytes()
}

/// `key` as the keys bucket stores it: wrapped under `master`, or plain
/// without one.
pub fn to_stored(key: &DataKey, master: Option<&MasterKey>) -> Result<Vec<u8>, StoredKeyError> {
    let Some(master) = master else {
        return Ok(key.to_stored());
    };
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce)
        .map_err(|e| StoredKeyError::with_source(StoredKeyErrorKind::NoRandomness, e))?;
    let aad = associated_data(key.subject(), key.id());
    let data = master
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: key.secret(),
                aad: &aad,
            },
        )
        .map_err(|_| StoredKeyError::new(StoredKeyErrorKind::Malformed, "wrapping failed"))?;
    Ok(serde_json::json!({
        "kid": key.id(),
        WRAPPED: SCHEME,
        "mkid": master.id(),
        "nonce": BASE64.encode(nonce),
        "data": BASE64.encode(data),
    })
    .to_string()
    .into_bytes())
}

/// Whether a stored key's value is wrapped (a byte search, as in
/// [`crate::personal::may_be_sealed`]; [`from_stored`] decides).
pub fn is_wrapped(value: &[u8]) -> bool {
    let needle = b"\"wrapped\"";
    value.windows(needle.len()).any(|w| w == needle)
}

/// `subject`'s key from its value in the keys bucket, plain or wrapped;
/// a wrapped one is opened with `master`.
pub fn from_stored(
    subject: &str,
    value: &[u8],
    master: Option<&MasterKey>,
) -> Result<DataKey, StoredKeyError> {
    let malformed = |what: &str| {
        StoredKeyError::new(
            StoredKeyErrorKind::Malformed,
            format!("the stored key of {subject}: {what}"),
        )
    };
    let stored: Value = serde_json::from_slice(value).map_err(|_| malformed("not JSON"))?;
    let Some(scheme) = stored.get(WRAPPED) else {
        return DataKey::from_stored(subject, value)
            .map_err(|e| StoredKeyError::with_source(StoredKeyErrorKind::Malformed, e));
    };
    let text = |name: &str| {
        stored[name]
            .as_str()
            .ok_or_else(|| malformed(&format!("no string {name:?}")))
    };
    if scheme.as_str() != Some(SCHEME) {
        return Err(StoredKeyError::new(
            StoredKeyErrorKind::Unsupported,
            format!("the stored key of {subject} is wrapped with another scheme"),
        ));
    }
    let (kid, mkid) = (text("kid")?, text("mkid")?);
    let Some(master) = master else {
        return Err(StoredKeyError::new(
            StoredKeyErrorKind::NoMasterKey,
            format!("the key of {subject} is wrapped under master key {mkid}; configure [keys] master_key_file"),
        ));
    };
    if mkid != master.id() {
        return Err(StoredKeyError::new(
            StoredKeyErrorKind::WrongMasterKey,
            format!(
                "the key of {subject} is wrapped under master key {mkid}, not {}",
                master.id()
            ),
        ));
    }
    let bytes = |name: &str| {
        BASE64
            .decode(text(name)?)
            .map_err(|_| malformed(&format!("{name:?} is not base64")))
    };
    let nonce = bytes("nonce")?;
    if nonce.len() != NONCE_LEN {
        return Err(malformed("a nonce that is not 24 bytes"));
    }
    let data = bytes("data")?;
    let secret = master
        .cipher()
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &data,
                aad: &associated_data(subject, kid),
            },
        )
        .map_err(|_| {
            StoredKeyError::new(
                StoredKeyErrorKind::Tampered,
                format!("the wrapped key of {subject}"),
            )
        })?;
    DataKey::from_parts(subject, kid, &secret)
        .map_err(|e| StoredKeyError::with_source(StoredKeyErrorKind::Malformed, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; KEY_LEN])
    }

    #[test]
    fn a_wrapped_key_holds_no_key_bytes_and_opens_with_its_master_key() {
        let key = DataKey::generate("account.a1").expect("key");
        let stored = to_stored(&key, Some(&master(1))).expect("wrapped");
        assert!(is_wrapped(&stored));
        let text = String::from_utf8_lossy(&stored);
        assert!(!text.contains(&BASE64.encode(key.secret())), "{text}");
        assert!(!stored.windows(KEY_LEN).any(|w| w == key.secret()));
        let read = from_stored("account.a1", &stored, Some(&master(1))).expect("opens");
        assert_eq!(read, key);
        // A random nonce each time.
        assert_ne!(stored, to_stored(&key, Some(&master(1))).expect("wrapped"));
    }

    #[test]
    fn a_wrapped_key_without_its_master_key_or_moved_is_refused() {
        let key = DataKey::generate("account.a1").expect("key");
        let stored = to_stored(&key, Some(&master(1))).expect("wrapped");
        let kind = |subject: &str, master: Option<&MasterKey>| {
            from_stored(subject, &stored, master)
                .expect_err("refused")
                .kind()
        };
        assert_eq!(kind("account.a1", None), StoredKeyErrorKind::NoMasterKey);
        assert_eq!(
            kind("account.a1", Some(&master(2))),
            StoredKeyErrorKind::WrongMasterKey
        );
        assert_eq!(
            kind("account.a2", Some(&master(1))),
            StoredKeyErrorKind::Tampered
        );
    }

    #[test]
    fn plain_keys_read_with_or_without_a_master_key() {
        let key = DataKey::generate("account.a1").expect("key");
        let stored = to_stored(&key, None).expect("plain");
        assert!(!is_wrapped(&stored));
        for master in [None, Some(master(1))] {
            let read = from_stored("account.a1", &stored, master.as_ref()).expect("reads");
            assert_eq!(read, key);
        }
    }

    #[test]
    fn a_master_key_is_base64_of_32_bytes_and_never_shown() {
        let text = format!("{}\n", BASE64.encode([7u8; KEY_LEN]));
        let key = MasterKey::from_text(&text).expect("reads");
        assert_eq!(key, master(7));
        assert_eq!(key.id().len(), 16);
        assert_ne!(key.id(), master(8).id());
        assert!(!format!("{key:?}").contains(&BASE64.encode([7u8; KEY_LEN])));
        for bad in ["", "not base64!", &BASE64.encode([7u8; 16])] {
            let err = MasterKey::from_text(bad).expect_err(bad);
            assert_eq!(err.kind(), StoredKeyErrorKind::Malformed);
        }
    }
}
