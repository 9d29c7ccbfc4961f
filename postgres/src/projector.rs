//! The contract of a PostgreSQL read model: its name, the events it
//! follows, the tables it creates, how one event changes them, and the
//! queries it answers from them.

use jetsource_projector::{
    Follows, PoisonPolicy, ProjectorError, ProjectorErrorKind, Query, QueryError,
};
use std::future::Future;

/// A read model kept in PostgreSQL tables.
///
/// Each generation of the projection lives in a schema of its own
/// (`<name>_g<generation>`), which is the `search_path` of every
/// transaction and query connection the projector is handed: its SQL names
/// its tables unqualified. Events arrive in batches; a batch is applied in
/// one transaction together with the checkpoint (the last stream sequence
/// applied per stream), so the tables and the checkpoint never disagree
/// and a redelivered event is never applied twice.
///
/// ```
/// use jetsource_postgres::{PgProjector, projector_error};
/// use jetsource_projector::{Envelope, ProjectorError, Query, QueryError};
/// # use jetsource_schemas::aggregate::{Aggregate, Rejection};
/// # #[derive(Default, Clone)] struct Order;
/// # #[derive(serde::Serialize, serde::Deserialize)] enum OrderEvent { Placed {} }
/// # impl Aggregate for Order {
/// #     const TYPE: &'static str = "order";
/// #     type Command = ();
/// #     type Event = OrderEvent;
/// #     fn handle(&self, _: ()) -> Result<Vec<OrderEvent>, Rejection> { Ok(vec![]) }
/// #     fn apply(&mut self, _: OrderEvent) {}
/// # }
///
/// struct Orders;
///
/// impl PgProjector for Orders {
///     type Input = Envelope<Order>;
///
///     fn name(&self) -> &'static str { "orders" }
///
///     fn migrations(&self) -> &'static [&'static str] {
///         &["CREATE TABLE orders (id text PRIMARY KEY, placed bigint NOT NULL)"]
///     }
///
///     async fn apply(
///         &self,
///         tx: &tokio_postgres::Transaction<'_>,
///         input: Envelope<Order>,
///     ) -> Result<(), ProjectorError> {
///         let seq = input.meta.seq as i64;
///         tx.execute(
///             "INSERT INTO orders (id, placed) VALUES ($1, $2) \
///              ON CONFLICT (id) DO UPDATE SET placed = excluded.placed",
///             &[&input.meta.aggregate_id, &seq],
///         )
///         .await
///         .map_err(projector_error)?;
///         Ok(())
///     }
///
///     async fn query(
///         &self,
///         client: &tokio_postgres::Client,
///         query: &Query,
///     ) -> Result<serde_json::Value, QueryError> {
///         let row = client
///             .query_one("SELECT count(*) FROM orders", &[])
///             .await
///             .map_err(jetsource_postgres::query_error)?;
///         Ok(serde_json::json!({ "orders": row.get::<_, i64>(0) }))
///     }
/// }
/// ```
pub trait PgProjector: Send + Sync + 'static {
    /// The typed events it folds: an [`Envelope`](jetsource_projector::Envelope)
    /// of one aggregate type, or an enum declared with
    /// [`follows!`](jetsource_projector::follows) for several.
    type Input: Follows;

    /// The projection's name: `[A-Za-z0-9_-]{1,64}`, and short enough
    /// that `<name>_g<generation>` is a PostgreSQL identifier (at most 63
    /// bytes). It names the query subjects, the durable consumers and the
    /// schemas, so it must never change.
    fn name(&self) -> &'static str;

    /// The DDL creating its tables, in order: run in the generation's
    /// schema when the generation is first opened. A statement added at
    /// the end later is run on a generation that has the earlier ones
    /// (each is recorded once run); changing one already run takes a
    /// rebuild.
    fn migrations(&self) -> &'static [&'static str];

    /// Applies one event inside the batch's transaction.
    ///
    /// On `Err` the transaction is rolled back to before this event; the
    /// events before it in the batch are stored, this one is delivered
    /// again and, after the poison policy's number of deliveries, parked.
    /// Map SQL failures with [`projector_error`].
    /// `execute_typed` (parameters with their types) takes one round trip
    /// per statement; `execute` with SQL text prepares it first, two.
    fn apply(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        input: Self::Input,
    ) -> impl Future<Output = Result<(), ProjectorError>> + Send;

    /// Answers a query on `query.<name>.<path…>` from the generation
    /// served, on a connection whose `search_path` is its schema. Map SQL
    /// failures with [`query_error`].
    fn query(
        &self,
        client: &tokio_postgres::Client,
        query: &Query,
    ) -> impl Future<Output = Result<serde_json::Value, QueryError>> + Send;

    /// Its poison policy; the default keeps the runtime's settings.
    fn poison_policy(&self, default: PoisonPolicy) -> PoisonPolicy {
        default
    }
}

/// An SQL failure inside [`PgProjector::apply`] as an apply error:
/// [`ProjectorErrorKind::Transient`] when the connection or the
/// transaction's isolation failed (worth retrying as it is),
/// [`ProjectorErrorKind::Invalid`] when the statement itself failed for
/// this event (a constraint, a type). Either way the event is retried and
/// then parked per the poison policy.
pub fn projector_error(e: tokio_postgres::Error) -> ProjectorError {
    let kind = if crate::link::is_transient(&e) {
        ProjectorErrorKind::Transient
    } else {
        ProjectorErrorKind::Invalid
    };
    ProjectorError::with_source(kind, e)
}

/// An SQL failure inside [`PgProjector::query`] as a query answer:
/// `unavailable` (the database could not answer; ask again).
pub fn query_error(e: tokio_postgres::Error) -> QueryError {
    QueryError::unavailable(format!("the read model's database failed: {e}"))
}
