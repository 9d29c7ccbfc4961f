//! [`PgStore`]: one PostgreSQL projection's generations, its writer
//! connection and its query connections.

use crate::link::{self, Readers, Writer};
use crate::names;
use crate::PgProjector;
use jetsource_projector::{ProjectionError, ProjectionErrorKind, Query, QueryError};
use jetsource_schemas::error::Error;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What a generation stores beside its tables, in the same transaction as
/// every change to them: the last stream sequence applied per stream, the
/// parked events skipped at or below it, and the lease token of the
/// instance holding it (the runtime's checkpoint, without state: the
/// tables are the state).
pub use jetsource_projector::store::Checkpoint;

/// Where a [`PgProjector`]'s generations live: one schema each in the
/// database at the URL it was connected to.
pub struct PgStore<P: PgProjector> {
    pub(crate) projector: Arc<P>,
    /// What names its schemas and its row in `jetsource_projections`:
    /// the projection's name, under a namespace's bucket prefix.
    storage: String,
    pub(crate) writer: Writer,
    pub(crate) readers: Readers,
    prepared: tokio::sync::OnceCell<()>,
    opened: std::sync::Mutex<BTreeSet<u64>>,
}

impl<P: PgProjector> PgStore<P> {
    /// The store of `projector` in the database at `url`
    /// (`postgres://user@host:port/db`, or `host=… user=… dbname=…`). It
    /// connects when first used, and creates `jetsource_projections` there
    /// when it is missing.
    ///
    /// Refused with [`ProjectionErrorKind::BadProjector`] when the URL does
    /// not parse or the projection's name cannot name a schema.
    pub fn new(url: &str, projector: P) -> Result<Self, ProjectionError> {
        let config = link::parse(url)?;
        jetsource_projector::position::validate_name(projector.name())
            .map_err(|e| Error::new(ProjectionErrorKind::BadProjector, e.to_string()))?;
        // The longest generation number still fits.
        names::schema(projector.name(), u64::MAX)?;
        Ok(PgStore {
            storage: projector.name().to_string(),
            projector: Arc::new(projector),
            writer: Writer::new(config.clone()),
            readers: Readers::new(config),
            prepared: tokio::sync::OnceCell::new(),
            opened: std::sync::Mutex::new(BTreeSet::new()),
        })
    }

    /// The generations this store has open for writing.
    pub(crate) fn open_generations(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        // Only inserts and removes happen under it: a poisoned set is whole.
        self.opened.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates `jetsource_projections` once per store.
    pub(crate) async fn prepare(&self) -> Result<(), ProjectionError> {
        self.prepared
            .get_or_try_init(|| async {
                let mut client = self.writer.get().await?;
                let tx = client
                    .transaction()
                    .await
                    .map_err(|e| link::store_error("no transaction", e))?;
                crate::generation::create_projections_table(&tx).await?;
                tx.commit()
                    .await
                    .map_err(|e| link::store_error("jetsource_projections was not committed", e))
            })
            .await
            .map(|_| ())
    }

    /// The store named in `namespace`: its schemas are
    /// `<bucket prefix><name>_g<generation>` (`ACME_SHOP_blogposts_pg_g0`
    /// under the prefix `acme.shop`; unchanged in the default namespace),
    /// so applications under different prefixes can share a database. A
    /// name too long for PostgreSQL under the prefix is refused when the
    /// store is first opened.
    pub fn in_namespace(mut self, namespace: &jetsource_schemas::Namespace) -> Self {
        self.storage = namespace.bucket(self.projector.name());
        self
    }

    /// The projection's name.
    pub fn name(&self) -> &'static str {
        self.projector.name()
    }

    /// The name of its storage: its schemas' stem and its row in
    /// `jetsource_projections`.
    pub fn storage_name(&self) -> &str {
        &self.storage
    }

    /// The projector.
    pub fn projector(&self) -> &P {
        &self.projector
    }

    /// Answers `query` from generation `generation`, on its query
    /// connection. A database that cannot be reached is `unavailable`.
    pub async fn query(
        &self,
        generation: u64,
        query: &Query,
    ) -> Result<serde_json::Value, QueryError> {
        let schema = names::schema(self.storage_name(), generation)
            .map_err(|e| QueryError::bad_request(e.to_string()))?;
        let client = self
            .readers
            .get(&schema)
            .await
            .map_err(|e| QueryError::unavailable(e.to_string()))?;
        self.projector.query(&client, query).await
    }
}
