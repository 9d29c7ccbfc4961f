//! Given/when/then for projectors, with no server: given these events,
//! then this read model and these answers.
//!
//! [`ProjectorTest`] hands each event to the projector as the runtime
//! does: typed events are encoded as the command side stores them (the
//! event type from the variant, the body from its fields, `Event-Version`
//! the aggregate's), built into an [`Event`] of the aggregate's stream at
//! the next sequence, and folded with [`Projector::apply`], so decoding,
//! upcasting and key checks are those of a running projection. It takes
//! any [`Projector`], typed projectors ([`crate::TypedProjector`])
//! included; [`ProjectorTest::documents`] folds a [`DocumentProjector`]'s
//! documents in memory ([`InMemory`]), through the same `apply` and the
//! same `get` and `list` queries as its KV bucket.
//!
//! ```
//! # use jetsource_schemas::aggregate::{Aggregate, Rejection};
//! # #[derive(Default, Clone)] struct Order;
//! # #[derive(Debug, serde::Serialize, serde::Deserialize)] enum OrderEvent { Placed { total: u64 } }
//! # impl Aggregate for Order {
//! #     const TYPE: &'static str = "order";
//! #     type Command = ();
//! #     type Event = OrderEvent;
//! #     fn handle(&self, _: ()) -> Result<Vec<OrderEvent>, Rejection> { Ok(vec![]) }
//! #     fn apply(&mut self, _: OrderEvent) {}
//! # }
//! use jetsource_projector::document::DocumentProjector;
//! use jetsource_projector::testing::ProjectorTest;
//! use jetsource_projector::{Envelope, ProjectorError, QueryErrorCode};
//!
//! /// Each order's total, one document per order.
//! struct Totals;
//!
//! impl DocumentProjector for Totals {
//!     type Input = Envelope<Order>;
//!     type Document = u64;
//!     fn name(&self) -> &'static str { "totals" }
//!     fn key(&self, input: &Envelope<Order>) -> Option<String> {
//!         Some(input.meta.aggregate_id.clone())
//!     }
//!     fn apply(&self, _: Option<u64>, input: Envelope<Order>) -> Result<Option<u64>, ProjectorError> {
//!         let OrderEvent::Placed { total } = input.event;
//!         Ok(Some(total))
//!     }
//! }
//!
//! let test = ProjectorTest::documents(Totals)
//!     .given::<Order>("o1", OrderEvent::Placed { total: 30 })
//!     .given::<Order>("o2", OrderEvent::Placed { total: 20 });
//! test.then_expect_document("o1", Some(30));
//! test.then_expect_answer("get.o2", serde_json::json!(20));
//! test.then_expect_query_error("get.o3", QueryErrorCode::NotFound);
//! ```

use crate::document::{DocumentProjector, InMemory};
use crate::event::Event;
use crate::projector::{Projector, ProjectorError, Query, QueryError};
use crate::typed::Envelope;
use crate::QueryErrorCode;
use jetsource_schemas::aggregate::Aggregate;
use jetsource_schemas::{codec, headers, Namespace};
use std::collections::BTreeMap;
use std::fmt::Debug;

/// The time events get unless [`ProjectorTest::at`] says otherwise.
pub const DEFAULT_TIME: &str = "2026-01-01T00:00:00Z";

/// The bytes a query's result may take: about what a server's default
/// `max_payload` (1 MiB) leaves.
const BUDGET: usize = 1 << 20;

/// A projector under test, and the streams its events were "stored" in.
pub struct ProjectorTest<P: Projector> {
    projector: P,
    /// The last sequence used per stream: each aggregate type's events
    /// are numbered 1, 2, … in its own stream, as JetStream numbers them.
    seqs: BTreeMap<String, u64>,
    time: String,
}

impl<P: Projector> ProjectorTest<P> {
    /// `projector`, having folded nothing.
    pub fn new(projector: P) -> Self {
        ProjectorTest {
            projector,
            seqs: BTreeMap::new(),
            time: DEFAULT_TIME.to_string(),
        }
    }

    /// Events from now on were stored at `time` (RFC 3339), their
    /// `Event-Time`.
    pub fn at(mut self, time: &str) -> Self {
        self.time = time.to_string();
        self
    }

    /// The "given" step: `event` of aggregate `A` instance `id`, folded.
    ///
    /// # Panics
    /// When the projector refuses it: a test failure (test refusals with
    /// [`ProjectorTest::when`]).
    pub fn given<A: Aggregate>(mut self, id: &str, event: A::Event) -> Self {
        if let Err(e) = self.when::<A>(id, event) {
            panic!("a given event of {} {id} was refused: {e}", A::TYPE);
        }
        self
    }

    /// The "given" step with an event as stored: its aggregate type and
    /// id, event type, `Event-Version` and JSON body; for events an older
    /// version wrote.
    ///
    /// # Panics
    /// When the projector refuses it.
    pub fn given_stored(
        mut self,
        aggregate_type: &str,
        id: &str,
        event_type: &str,
        version: u32,
        body: &str,
    ) -> Self {
        if let Err(e) = self.when_stored(aggregate_type, id, event_type, version, body) {
            panic!("a given {event_type} of {aggregate_type} {id} was refused: {e}");
        }
        self
    }

    /// The "when" step: folds `event` of aggregate `A` instance `id`, and
    /// returns what `apply` returned (on `Err` a running projection halts
    /// or parks the event).
    ///
    /// # Panics
    /// When the event does not encode as stored events do (not an enum, a
    /// variant name that is no subject token): the test is wrong.
    pub fn when<A: Aggregate>(&mut self, id: &str, event: A::Event) -> Result<(), ProjectorError> {
        let encoded = match codec::encode_event(&event) {
            Ok(encoded) => encoded,
            Err(e) => panic!("an event of {} does not encode: {e}", A::TYPE),
        };
        let body = String::from_utf8_lossy(&encoded.body).into_owned();
        self.when_stored(A::TYPE, id, &encoded.event_type, A::EVENT_VERSION, &body)
    }

    /// [`ProjectorTest::when`] with an event as stored, which need not
    /// decode: a body of the wrong shape, an unknown event type.
    ///
    /// # Panics
    /// When the parts make no event subject (not tokens).
    pub fn when_stored(
        &mut self,
        aggregate_type: &str,
        id: &str,
        event_type: &str,
        version: u32,
        body: &str,
    ) -> Result<(), ProjectorError> {
        let stream = Namespace::default().stream_name(aggregate_type);
        let seq = self.seqs.entry(stream).or_insert(0);
        *seq += 1;
        let event = stored(
            aggregate_type,
            id,
            event_type,
            version,
            body,
            *seq,
            &self.time,
        );
        self.projector.apply(&event)
    }

    /// The projector, for checks of its own state.
    pub fn projector(&self) -> &P {
        &self.projector
    }

    /// The last sequence of aggregate type `aggregate_type`'s stream: what
    /// an `After-Seq` after the given events would name.
    pub fn last_seq(&self, aggregate_type: &str) -> u64 {
        let stream = Namespace::default().stream_name(aggregate_type);
        self.seqs.get(&stream).copied().unwrap_or(0)
    }

    /// Asks `query.<name>.<path>` (`path` dot-separated, `get.o1`) with no
    /// body.
    pub fn query(&self, path: &str) -> Result<serde_json::Value, QueryError> {
        self.query_with(path, serde_json::Value::Null)
    }

    /// Asks `path` with a JSON body (`Null` for none), as a query over the
    /// wire does.
    pub fn query_with(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, QueryError> {
        let body = match body {
            serde_json::Value::Null => bytes::Bytes::new(),
            other => other.to_string().into(),
        };
        self.projector.query(&Query {
            projection: self.projector.name().to_string(),
            path: path.split('.').map(str::to_string).collect(),
            body,
            budget: BUDGET,
        })
    }

    /// Asserts `path` answers `expected`.
    ///
    /// # Panics
    /// When it answers otherwise, or not at all.
    pub fn then_expect_answer(&self, path: &str, expected: serde_json::Value) {
        match self.query(path) {
            Ok(answer) => assert_eq!(answer, expected, "query {path}"),
            Err(e) => panic!("query {path}: expected {expected}, got {e:?}"),
        }
    }

    /// Asserts `path` is answered with the error `code`; returns the error.
    ///
    /// # Panics
    /// When it is answered, or with another code.
    pub fn then_expect_query_error(&self, path: &str, code: QueryErrorCode) -> QueryError {
        match self.query(path) {
            Ok(answer) => panic!("query {path}: expected {code:?}, got {answer}"),
            Err(e) => {
                assert_eq!(e.code, code, "query {path}: {}", e.reason);
                e
            }
        }
    }
}

impl<D: DocumentProjector> ProjectorTest<InMemory<D>>
where
    D::Document: Clone,
{
    /// A document projection, its documents folded in memory.
    pub fn documents(projector: D) -> Self {
        ProjectorTest::new(InMemory::new(projector))
    }

    /// The document at `key`, if any.
    pub fn document(&self, key: &str) -> Option<&D::Document> {
        self.projector.documents().get(key)
    }

    /// Asserts the document at `key` is `expected` (`None`: there is none).
    ///
    /// # Panics
    /// When it is not.
    pub fn then_expect_document(&self, key: &str, expected: Option<D::Document>)
    where
        D::Document: PartialEq + Debug,
    {
        assert_eq!(self.document(key), expected.as_ref(), "document {key}");
    }
}

/// Event `event_type` of `aggregate_type` `id` as stored at `seq` of its
/// stream at `time`, with `Event-Version` `version`.
///
/// # Panics
/// When the parts make no event subject.
pub fn stored(
    aggregate_type: &str,
    id: &str,
    event_type: &str,
    version: u32,
    body: &str,
    seq: u64,
    time: &str,
) -> Event {
    let namespace = Namespace::default();
    let subject = match namespace.event_subject(aggregate_type, id, event_type) {
        Ok(subject) => subject,
        Err(e) => panic!("no event subject: {e}"),
    };
    let mut headers = BTreeMap::new();
    headers.insert(headers::EVENT_TIME.to_string(), time.to_string());
    if version != 1 {
        headers.insert(headers::EVENT_VERSION.to_string(), version.to_string());
    }
    match Event::from_parts(
        &namespace,
        subject,
        namespace.stream_name(aggregate_type),
        seq,
        time.to_string(),
        headers,
        body.to_string().into(),
    ) {
        Ok(event) => event,
        Err(e) => panic!("no event: {e}"),
    }
}

/// `event` of aggregate `A` instance `id`, stored at `seq` at `time`, read
/// back as a projector or a process manager receives it: for building
/// their inputs in tests (a process manager's
/// `Trigger::Event(Envelope)`).
///
/// # Panics
/// When it does not encode, or does not read back as one event.
pub fn envelope<A: Aggregate>(id: &str, seq: u64, time: &str, event: A::Event) -> Envelope<A> {
    let encoded = match codec::encode_event(&event) {
        Ok(encoded) => encoded,
        Err(e) => panic!("an event of {} does not encode: {e}", A::TYPE),
    };
    let body = String::from_utf8_lossy(&encoded.body).into_owned();
    let stored = stored(
        A::TYPE,
        id,
        &encoded.event_type,
        A::EVENT_VERSION,
        &body,
        seq,
        time,
    );
    match Envelope::<A>::decode(&stored) {
        Ok(Some(envelope)) => envelope,
        Ok(None) => panic!("{} {id}: reads as no event", A::TYPE),
        Err(e) => panic!("{} {id}: does not read back: {e}", A::TYPE),
    }
}
