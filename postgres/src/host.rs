//! Hosting a [`PgProjector`] on the projector runtime.

use crate::store::PgStore;
use crate::PgProjector;
use jetsource_projector::{ProjectionError, ProjectorRuntimeBuilder};

/// Registers PostgreSQL read models on a [`ProjectorRuntimeBuilder`].
pub trait HostPostgres: Sized {
    /// Registers `projector`, its generations kept in the database at
    /// `url`: driven like any persisted projection (durable consumers, one
    /// lease holder, rebuilds, parking, status). Refused with
    /// [`ProjectionErrorKind::BadProjector`](jetsource_projector::ProjectionErrorKind::BadProjector)
    /// when the URL does not parse or the name cannot name a schema;
    /// nothing connects before the runtime starts.
    fn postgres<P: PgProjector>(self, url: &str, projector: P) -> Result<Self, ProjectionError>;
}

impl HostPostgres for ProjectorRuntimeBuilder {
    fn postgres<P: PgProjector>(self, url: &str, projector: P) -> Result<Self, ProjectionError> {
        let store = PgStore::new(url, projector)?;
        // Its schemas and its row in `jetsource_projections` are named in
        // the runtime's namespace, as its KV buckets are.
        Ok(self.read_store_in(store, |store, namespace| store.in_namespace(namespace)))
    }
}
