//! PostgreSQL read models for jetsource: a [`PgProjector`] folds events
//! into tables of its own, and answers queries with SQL.
//!
//! Each batch of events is applied in **one transaction** that also
//! advances the projection's checkpoint (the last stream sequence applied
//! per stream, in `jetsource_checkpoint`): the tables and the checkpoint
//! commit together or not at all. A crash before the commit leaves neither;
//! after it, the redelivered events are at or below the checkpoint and are
//! acknowledged without being applied again: an exactly-once effect over
//! JetStream's at-least-once delivery.
//!
//! Every generation of a projection lives in a schema of its own,
//! `<name>_g<generation>`, created with the projector's
//! [`migrations`](PgProjector::migrations) on first open. A rebuild fills
//! the next generation's schema beside the one served and switches when it
//! has caught up; the table `public.jetsource_projections` names the
//! generation each projection serves, and the old schema is dropped.
//! Transactions and query connections have the generation's schema as
//! their `search_path`, so a projector's SQL names its tables unqualified.
//!
//! It is built on `tokio-postgres`: asynchronous on the runtime jetsource
//! already uses, small (no ORM, no pool), and it needs no database to
//! compile (unlike `sqlx`'s checked queries), so a workspace build never
//! depends on a server.
//!
//! # Layout
//! - [`projector`]: the [`PgProjector`] trait and the mapping of SQL
//!   failures into apply and query errors.
//! - [`store`]: [`PgStore`], a projection's generations in one database.
//! - `generation`: creating, reading and dropping a generation's schema,
//!   and the generation served.
//! - `read_store`: [`PgStore`] as the runtime's
//!   [`ReadStore`](jetsource_projector::store::ReadStore): the lease,
//!   rebuilds, parking and status come from the runtime.
//! - [`host`]: [`HostPostgres`], registering a PostgreSQL read model on
//!   the projector runtime.
//! - `batch`: one batch of events and the checkpoint in one transaction.
//! - `link`: connections, reopened when they drop.
//! - [`names`]: schema and table names.

mod batch;
mod generation;
pub mod host;
mod link;
pub mod names;
pub mod projector;
mod read_store;
pub mod store;

pub use host::HostPostgres;
pub use projector::{projector_error, query_error, PgProjector};
pub use store::{Checkpoint, PgStore};
