//! Commands and events to and from `(name, JSON body)`.
//!
//! The subject carries the name (`…create`, `…BlogPostCreated`) and the
//! body carries only the fields, so other languages never see Rust's enum
//! tagging. Decoding feeds serde's externally tagged enum representation
//! straight from the two parts, without building an intermediate JSON value.

use crate::token;
use bytes::Bytes;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Serialize;

/// Why a command could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CommandDecodeError {
    /// The name is not a variant of the command enum.
    #[error("unknown command {name:?}; known commands: {known}")]
    Unknown {
        /// The name received.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// The body is not valid JSON for this command.
    #[error("invalid body for command {name:?}: {source}")]
    Body {
        /// The command name.
        name: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes the command `name` with JSON `body` (empty means `{}`).
pub fn decode_command<C: DeserializeOwned>(
    name: &str,
    body: &[u8],
) -> Result<C, CommandDecodeError> {
    let mut unknown = None;
    let result = C::deserialize(Tagged {
        name,
        body,
        unknown: &mut unknown,
    });
    match (result, unknown) {
        (_, Some(known)) => Err(CommandDecodeError::Unknown {
            name: name.to_string(),
            known,
        }),
        (Ok(command), None) => Ok(command),
        (Err(source), None) => Err(CommandDecodeError::Body {
            name: name.to_string(),
            source,
        }),
    }
}

/// Decodes the event `event_type` with JSON `body`.
pub fn decode_event<E: DeserializeOwned>(
    event_type: &str,
    body: &[u8],
) -> Result<E, serde_json::Error> {
    let mut unknown = None;
    E::deserialize(Tagged {
        name: event_type,
        body,
        unknown: &mut unknown,
    })
}

/// The variant names of an enum deserialized the usual way (serde's derive
/// hands them to `deserialize_enum`), or `None` for any other shape.
pub fn variant_names<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    let mut found = None;
    let _ = T::deserialize(VariantsProbe { found: &mut found });
    found
}

/// A deserializer that produces nothing: it only notes the variant list.
struct VariantsProbe<'a> {
    found: &'a mut Option<&'static [&'static str]>,
}

impl<'de> de::Deserializer<'de> for VariantsProbe<'_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not an enum"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.found = Some(variants);
        Err(de::Error::custom("variants noted"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// An event split into its type and its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    /// The variant name, the last token of the event's subject.
    pub event_type: String,
    /// The variant's fields as JSON (`{}` for a unit variant).
    pub body: Bytes,
}

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EventEncodeError {
    /// serde_json failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The value did not serialize as an enum variant.
    #[error("events must be enums; got {0}")]
    NotAnEnum(String),
    /// The variant name is not a valid subject token.
    #[error(transparent)]
    BadName(#[from] token::TokenError),
}

/// Encodes an event enum into its variant name and its fields' JSON.
///
/// The variant name comes from [`variant_name`]; serde_json writes the
/// variant as `{"Name":<fields>}` (or `"Name"` for a unit variant), and the
/// fields are cut out of that output in place.
pub fn encode_event<E: Serialize>(event: &E) -> Result<EncodedEvent, EventEncodeError> {
    let event_type = variant_name(event)?;
    token::validate("event type", event_type)?;
    let body = crate::scratch::encode(|bytes| {
        serde_json::to_writer(&mut *bytes, event)?;
        if bytes.first() == Some(&b'"') {
            bytes.clear();
            bytes.extend_from_slice(b"{}");
            return Ok(0..2);
        }
        // A token needs no escaping, so the prefix is exactly `{"<name>":`.
        let prefix = event_type.len() + 4;
        if bytes.len() < prefix + 1 || bytes.last() != Some(&b'}') {
            return Err(EventEncodeError::NotAnEnum(event_type.to_string()));
        }
        Ok(prefix..bytes.len() - 1)
    })?;
    Ok(EncodedEvent {
        event_type: event_type.to_string(),
        body,
    })
}

/// The name of the enum variant `value` serializes as.
pub fn variant_name<T: Serialize + ?Sized>(value: &T) -> Result<&'static str, EventEncodeError> {
    match value.serialize(probe::Probe) {
        Err(probe::Found::Variant(name)) => Ok(name),
        Err(probe::Found::Other(what)) => Err(EventEncodeError::NotAnEnum(what)),
        Ok(never) => match never {},
    }
}

mod probe {
    //! A serializer that serializes nothing: it stops at the first call and
    //! reports the variant name, or what it found instead.
    use serde::ser::{self, Impossible, Serialize};
    use std::fmt;

    pub(super) enum Never {}

    #[derive(Debug)]
    pub(super) enum Found {
        Variant(&'static str),
        Other(String),
    }

    impl fmt::Display for Found {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Found::Variant(v) => write!(f, "variant {v}"),
                Found::Other(o) => f.write_str(o),
            }
        }
    }

    impl std::error::Error for Found {}

    impl ser::Error for Found {
        fn custom<T: fmt::Display>(msg: T) -> Self {
            Found::Other(msg.to_string())
        }
    }

    pub(super) struct Probe;

    fn other<T>(what: &str) -> Result<T, Found> {
        Err(Found::Other(format!("a {what}, not an enum variant")))
    }

    impl ser::Serializer for Probe {
        type Ok = Never;
        type Error = Found;
        type SerializeSeq = Impossible<Never, Found>;
        type SerializeTuple = Impossible<Never, Found>;
        type SerializeTupleStruct = Impossible<Never, Found>;
        type SerializeTupleVariant = Impossible<Never, Found>;
        type SerializeMap = Impossible<Never, Found>;
        type SerializeStruct = Impossible<Never, Found>;
        type SerializeStructVariant = Impossible<Never, Found>;

        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            v: &'static str,
        ) -> Result<Never, Found> {
            Err(Found::Variant(v))
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            v: &'static str,
            _: &T,
        ) -> Result<Never, Found> {
            Err(Found::Variant(v))
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            v: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleVariant, Found> {
            Err(Found::Variant(v))
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            v: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStructVariant, Found> {
            Err(Found::Variant(v))
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            value: &T,
        ) -> Result<Never, Found> {
            value.serialize(self)
        }
        fn serialize_bool(self, _: bool) -> Result<Never, Found> {
            other("bool")
        }
        fn serialize_i8(self, _: i8) -> Result<Never, Found> {
            other("number")
        }
        fn serialize_i16(self, _: i16) -> Result<Never, Found> {
            other("number")
        }
        fn serialize_i32(self, _: i32) -> Result<Never, Found> {
            other("number")
        }
        fn serialize_i64(self, _: i64) -> Result<Never, Found> {
            other("number")
        }
        fn serialize_u8(self, _: u8) -> Result<Never, Found> {
            other("number")
        }
        fn serialize_u16(self, _: u16) -> Result<Never, Found> {
            other("number")
        }
        fn serialize_u32(self, _: u32) -> Result<Never, Found> {
            other("number")
        }
        fn serialize_u64(self, _: u64) -> Result<Never, Found> {
            other("number")
        }
        fn serialize_f32(self, _: f32) -> Result<Never, Found> {
            other("number")
        }
        fn serialize_f64(self, _: f64) -> Result<Never, Found> {
            other("number")
        }
        fn serialize_char(self, _: char) -> Result<Never, Found> {
            other("char")
        }
        fn serialize_str(self, _: &str) -> Result<Never, Found> {
            other("string")
        }
        fn serialize_bytes(self, _: &[u8]) -> Result<Never, Found> {
            other("byte string")
        }
        fn serialize_none(self) -> Result<Never, Found> {
            other("none")
        }
        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<Never, Found> {
            other("option")
        }
        fn serialize_unit(self) -> Result<Never, Found> {
            other("unit")
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<Never, Found> {
            other("unit struct")
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Found> {
            other("sequence")
        }
        fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Found> {
            other("tuple")
        }
        fn serialize_tuple_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeTupleStruct, Found> {
            other("tuple struct")
        }
        fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Found> {
            other("map")
        }
        fn serialize_struct(
            self,
            _: &'static str,
            _: usize,
        ) -> Result<Self::SerializeStruct, Found> {
            other("struct")
        }
    }
}

/// A deserializer for an externally tagged enum whose tag and content arrive
/// apart.
struct Tagged<'a, 'de> {
    name: &'a str,
    body: &'de [u8],
    /// Set to the list of known variants when `name` is not one of them.
    unknown: &'a mut Option<String>,
}

fn body_or_empty(body: &[u8]) -> &[u8] {
    if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    }
}

impl<'de> de::Deserializer<'de> for Tagged<'_, 'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("commands and events must be enums"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        if !variants.contains(&self.name) {
            *self.unknown = Some(variants.join(", "));
            return Err(de::Error::unknown_variant(self.name, variants));
        }
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'a, 'de> de::EnumAccess<'de> for Tagged<'a, 'de> {
    type Error = serde_json::Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self), Self::Error> {
        let name: de::value::StrDeserializer<'_, serde_json::Error> = self.name.into_deserializer();
        let value = seed.deserialize(name)?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for Tagged<'_, 'de> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        // A unit variant accepts an empty body, `{}` or `null`.
        let value: serde_json::Value = serde_json::from_slice(body_or_empty(self.body))?;
        match value {
            serde_json::Value::Null => Ok(()),
            serde_json::Value::Object(map) if map.is_empty() => Ok(()),
            _ => Err(de::Error::custom("expected an empty body, {} or null")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        let mut de = serde_json::Deserializer::from_slice(body_or_empty(self.body));
        let value = seed.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let mut de = serde_json::Deserializer::from_slice(body_or_empty(self.body));
        let value = de::Deserializer::deserialize_seq(&mut de, visitor)?;
        de.end()?;
        Ok(value)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let body = body_or_empty(self.body);
        // serde's derived structs also accept a JSON array, by field
        // position; the wire contract is an object with named fields, so
        // field order never becomes part of it.
        let first = body
            .iter()
            .find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
        if first != Some(&b'{') {
            return Err(de::Error::custom(
                "expected a JSON object of the command's fields",
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let value = de::Deserializer::deserialize_struct(&mut de, "", fields, visitor)?;
        de.end()?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    enum Cmd {
        Create {
            title: String,
            publish: Option<bool>,
        },
        Publish {},
        Ping,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Evt {
        Created { title: String },
        Published {},
        Touched,
    }

    #[test]
    fn decodes_commands() {
        let c: Cmd = decode_command("create", br#"{"title":"x"}"#).expect("create");
        assert_eq!(
            c,
            Cmd::Create {
                title: "x".into(),
                publish: None
            }
        );
        assert_eq!(
            decode_command::<Cmd>("publish", b"").expect("publish"),
            Cmd::Publish {}
        );
        assert_eq!(
            decode_command::<Cmd>("publish", b" {} ").expect("publish"),
            Cmd::Publish {}
        );
        assert_eq!(decode_command::<Cmd>("ping", b"").expect("ping"), Cmd::Ping);
    }

    #[test]
    fn fields_come_by_name_never_by_position() {
        for body in [
            &br#"["x", true]"#[..],
            b"[]",
            b" [\"x\"]",
            b"null",
            b"\"x\"",
        ] {
            assert!(
                decode_command::<Cmd>("create", body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(decode_command::<Cmd>("publish", b"[]").is_err());
    }

    #[test]
    fn tells_unknown_from_malformed() {
        assert!(matches!(
            decode_command::<Cmd>("delete", b"{}"),
            Err(CommandDecodeError::Unknown { .. })
        ));
        for body in [
            &b"{"[..],
            b"[]",
            br#"{"title":1}"#,
            br#"{"title":"x","extra":1}"#,
            br#"{"title":"x"} x"#,
            b"null",
        ] {
            assert!(
                matches!(
                    decode_command::<Cmd>("create", body),
                    Err(CommandDecodeError::Body { .. })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode_command::<Cmd>("create", deep.as_bytes()).is_err());
    }

    #[test]
    fn events_round_trip() {
        for (event, ty, body) in [
            (
                Evt::Created {
                    title: "a\"}".into(),
                },
                "Created",
                r#"{"title":"a\"}"}"#,
            ),
            (Evt::Published {}, "Published", "{}"),
            (Evt::Touched, "Touched", "{}"),
        ] {
            let enc = encode_event(&event).expect("encode");
            assert_eq!(enc.event_type, ty);
            assert_eq!(std::str::from_utf8(&enc.body).expect("utf8"), body);
            assert_eq!(
                decode_event::<Evt>(&enc.event_type, &enc.body).expect("decode"),
                event
            );
        }
    }

    #[test]
    fn variant_names_of_an_enum() {
        assert_eq!(
            variant_names::<Evt>(),
            Some(&["Created", "Published", "Touched"][..])
        );
        assert_eq!(variant_names::<String>(), None);
    }

    #[test]
    fn non_enums_are_refused() {
        #[derive(Serialize)]
        struct NotEnum {
            a: u8,
        }
        assert!(matches!(
            encode_event(&NotEnum { a: 1 }),
            Err(EventEncodeError::NotAnEnum(_))
        ));
        assert!(matches!(
            encode_event(&5u8),
            Err(EventEncodeError::NotAnEnum(_))
        ));
    }
}
