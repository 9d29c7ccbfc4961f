//! The header names jetsource reads and writes, built at compile time.
//!
//! async-nats turns a `&str` name into an owned copy on every insert and
//! every lookup; these are statics, not consts (a name holds `Bytes`), and
//! cloning a static one copies nothing.

use async_nats::header::HeaderName;
use jetsource_schemas::headers;

pub(crate) static COMMAND_ID: HeaderName = HeaderName::from_static(headers::COMMAND_ID);
pub(crate) static EVENT_VERSION: HeaderName = HeaderName::from_static(headers::EVENT_VERSION);
pub(crate) static CORRELATION_ID: HeaderName = HeaderName::from_static(headers::CORRELATION_ID);
pub(crate) static CAUSATION_ID: HeaderName = HeaderName::from_static(headers::CAUSATION_ID);
pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static(headers::TRACEPARENT);
pub(crate) static EXPECTED_LAST_SUBJECT_SEQUENCE: HeaderName =
    HeaderName::from_static("Nats-Expected-Last-Subject-Sequence");
pub(crate) static EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: HeaderName =
    HeaderName::from_static("Nats-Expected-Last-Subject-Sequence-Subject");
