//! Connections to PostgreSQL, reopened when they drop: one writer (a
//! transaction holds its connection to itself) and one query connection
//! per generation, whose `search_path` is that generation's schema.

use jetsource_projector::{ProjectionError, ProjectionErrorKind};
use jetsource_schemas::error::Error;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

/// Reads a connection URL (`postgres://user@host:port/db`) or key=value
/// string; refused with [`ProjectionErrorKind::BadProjector`].
pub(crate) fn parse(url: &str) -> Result<Config, ProjectionError> {
    url.parse::<Config>().map_err(|e| {
        Error::with_message_and_source(
            ProjectionErrorKind::BadProjector,
            "the PostgreSQL URL does not parse",
            e,
        )
    })
}

/// A database failure as a store error: [`ProjectionErrorKind::Store`].
pub(crate) fn store_error(what: &str, e: tokio_postgres::Error) -> ProjectionError {
    Error::with_message_and_source(ProjectionErrorKind::Store, format!("{what}: {e}"), e)
}

/// True when `e` says nothing about the statement: the connection or the
/// transaction's isolation failed, and the same work may succeed again.
pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => true,
        Some(code) => {
            *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
                || code.code().starts_with("08")
        }
    }
}

/// Opens a connection and drives it in a task of its own.
pub(crate) async fn connect(config: &Config) -> Result<Client, ProjectionError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| store_error("PostgreSQL could not be reached", e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// The writer connection: a transaction borrows it mutably, so batches
/// take it in turn.
pub(crate) struct Writer {
    config: Config,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl Writer {
    pub(crate) fn new(config: Config) -> Self {
        Writer {
            config,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection, opened again when it dropped.
    pub(crate) async fn get(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, Client>, ProjectionError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.config).await?);
        }
        tokio::sync::MutexGuard::try_map(guard, Option::as_mut).map_err(|_| {
            Error::new(
                ProjectionErrorKind::Store,
                "the PostgreSQL connection is gone",
            )
        })
    }
}

/// Query connections, one per generation queried, each with its schema as
/// `search_path` (so concurrent queries of one generation share it, and
/// none can see another generation's tables).
pub(crate) struct Readers {
    config: Config,
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

impl Readers {
    pub(crate) fn new(config: Config) -> Self {
        Readers {
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The query connection of `schema`, opened when there is none or it
    /// dropped.
    pub(crate) async fn get(&self, schema: &str) -> Result<Arc<Client>, ProjectionError> {
        if let Some(client) = self.lock().get(schema) {
            if !client.is_closed() {
                return Ok(client.clone());
            }
        }
        let mut config = self.config.clone();
        config.options(format!("-c search_path={}", crate::names::quote(schema)));
        let client = Arc::new(connect(&config).await?);
        self.lock().insert(schema.to_string(), client.clone());
        Ok(client)
    }

    /// Closes the query connection of `schema` (its schema was dropped).
    pub(crate) fn forget(&self, schema: &str) {
        self.lock().remove(schema);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Client>>> {
        // Only inserts and removes happen under it: a poisoned map is whole.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}
