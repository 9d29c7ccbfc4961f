//! A generation's schema: created with its checkpoint tables and the
//! projector's migrations on first open, its checkpoint read back, dropped
//! whole; and the `jetsource_projections` table naming the generation
//! each projection serves.

use crate::link::store_error;
use crate::names::{
    self, quote, CHECKPOINT_TABLE, HOLDER_TABLE, MIGRATIONS_TABLE, PROJECTIONS_TABLE,
};
use crate::store::{Checkpoint, PgStore};
use crate::PgProjector;
use jetsource_projector::{ProjectionError, ProjectionErrorKind};
use jetsource_schemas::error::Error;
use std::collections::BTreeSet;
use tokio_postgres::Transaction;

/// Serialises schema changes of one name across processes: `CREATE ...
/// IF NOT EXISTS` run by two sessions at once can still collide.
async fn lock_name(tx: &Transaction<'_>, name: &str) -> Result<(), ProjectionError> {
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&name])
        .await
        .map_err(|e| store_error("the schema lock was not taken", e))?;
    Ok(())
}

/// Creates the table naming the generation each projection serves.
pub(crate) async fn create_projections_table(tx: &Transaction<'_>) -> Result<(), ProjectionError> {
    lock_name(tx, PROJECTIONS_TABLE).await?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS public.{PROJECTIONS_TABLE} (
            name text PRIMARY KEY,
            generation bigint NOT NULL,
            switched_at timestamptz NOT NULL DEFAULT now()
        )"
    ))
    .await
    .map_err(|e| store_error("jetsource_projections was not created", e))
}

fn to_seq(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl<P: PgProjector> PgStore<P> {
    /// Opens generation `generation` for writing: creates its schema,
    /// checkpoint tables and the migrations not yet run, stores `lease` as
    /// the holder's token (a commit under any other fails from now on), and
    /// reads its checkpoint.
    pub async fn open(&self, generation: u64, lease: u64) -> Result<Checkpoint, ProjectionError> {
        let schema = names::schema(self.storage_name(), generation)?;
        self.prepare().await?;
        let mut client = self.writer.get().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| store_error("no transaction", e))?;
        lock_name(&tx, &schema).await?;
        tx.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema_q};
             SET LOCAL search_path TO {schema_q};
             CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
                 index integer PRIMARY KEY,
                 statement text NOT NULL,
                 run_at timestamptz NOT NULL DEFAULT now()
             );
             CREATE TABLE IF NOT EXISTS {CHECKPOINT_TABLE} (
                 stream text PRIMARY KEY,
                 seq bigint NOT NULL,
                 skipped bigint[] NOT NULL DEFAULT '{{}}'
             );
             CREATE TABLE IF NOT EXISTS {HOLDER_TABLE} (
                 only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                 lease bigint NOT NULL
             );",
            schema_q = quote(&schema)
        ))
        .await
        .map_err(|e| store_error(&format!("schema {schema} was not created"), e))?;
        let run: Vec<(i32, String)> = tx
            .query(
                &format!("SELECT index, statement FROM {MIGRATIONS_TABLE} ORDER BY index"),
                &[],
            )
            .await
            .map_err(|e| store_error("the migrations run were not read", e))?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        for (index, statement) in self.projector.migrations().iter().enumerate() {
            let index = i32::try_from(index).map_err(|_| {
                Error::new(ProjectionErrorKind::BadProjector, "too many migrations")
            })?;
            if let Some((_, before)) = run.iter().find(|(i, _)| *i == index) {
                if before != statement {
                    // The tables were made by another statement: only a
                    // rebuild makes them by this one.
                    tracing::warn!(%schema, index, "a migration already run has changed; rebuild the projection to apply it");
                }
                continue;
            }
            tx.batch_execute(statement).await.map_err(|e| {
                Error::with_message_and_source(
                    ProjectionErrorKind::BadProjector,
                    format!(
                        "migration {index} of {} failed in {schema}: {e}",
                        self.name()
                    ),
                    e,
                )
            })?;
            tx.execute(
                &format!("INSERT INTO {MIGRATIONS_TABLE} (index, statement) VALUES ($1, $2)"),
                &[&index, &statement],
            )
            .await
            .map_err(|e| store_error("a migration was not recorded", e))?;
        }
        tx.execute(
            &format!(
                "INSERT INTO {HOLDER_TABLE} (only_row, lease) VALUES (true, $1)
                 ON CONFLICT (only_row) DO UPDATE SET lease = excluded.lease"
            ),
            &[&crate::batch::db_seq(lease)?],
        )
        .await
        .map_err(|e| store_error("the lease token was not written", e))?;
        let checkpoint = read_checkpoint(&tx).await?;
        tx.commit()
            .await
            .map_err(|e| store_error(&format!("schema {schema} was not committed"), e))?;
        Ok(checkpoint)
    }

    /// Reads generation `generation`'s checkpoint without writing: `None`
    /// when it has no schema yet.
    pub async fn refresh(&self, generation: u64) -> Result<Option<Checkpoint>, ProjectionError> {
        let schema = names::schema(self.storage_name(), generation)?;
        let mut client = self.writer.get().await?;
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(|e| store_error("no transaction", e))?;
        let exists = tx
            .query_opt(
                &format!(
                    "SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = '{HOLDER_TABLE}'"
                ),
                &[&schema],
            )
            .await
            .map_err(|e| store_error("the schemas were not read", e))?
            .is_some();
        if !exists {
            return Ok(None);
        }
        tx.batch_execute(&format!("SET LOCAL search_path TO {}", quote(&schema)))
            .await
            .map_err(|e| store_error("the generation's schema was not set", e))?;
        let checkpoint = read_checkpoint(&tx).await?;
        tx.commit()
            .await
            .map_err(|e| store_error("the checkpoint read did not end", e))?;
        Ok(Some(checkpoint))
    }

    /// Drops generation `generation`'s schema with everything in it.
    pub async fn remove(&self, generation: u64) -> Result<(), ProjectionError> {
        let schema = names::schema(self.storage_name(), generation)?;
        self.readers.forget(&schema);
        let client = self.writer.get().await?;
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&schema)))
            .await
            .map_err(|e| store_error(&format!("schema {schema} was not dropped"), e))
    }

    /// Records `generation` as the one served, in `jetsource_projections`.
    pub async fn serve(&self, generation: u64) -> Result<(), ProjectionError> {
        let generation = i64::try_from(generation)
            .map_err(|_| Error::new(ProjectionErrorKind::BadProjector, "generation too large"))?;
        self.prepare().await?;
        let client = self.writer.get().await?;
        client
            .execute(
                &format!(
                    "INSERT INTO public.{PROJECTIONS_TABLE} (name, generation) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE
                     SET generation = excluded.generation, switched_at = now()"
                ),
                &[&self.storage_name(), &generation],
            )
            .await
            .map_err(|e| store_error("the generation served was not recorded", e))?;
        Ok(())
    }

    /// The generation `jetsource_projections` names as served, if any.
    pub async fn served(&self) -> Result<Option<u64>, ProjectionError> {
        self.prepare().await?;
        let client = self.writer.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT generation FROM public.{PROJECTIONS_TABLE} WHERE name = $1"),
                &[&self.storage_name()],
            )
            .await
            .map_err(|e| store_error("the generation served was not read", e))?;
        Ok(row.map(|row| to_seq(row.get(0))))
    }
}

/// The checkpoint of the schema on the transaction's `search_path`.
pub(crate) async fn read_checkpoint(tx: &Transaction<'_>) -> Result<Checkpoint, ProjectionError> {
    let mut checkpoint = Checkpoint::default();
    let rows = tx
        .query(
            &format!("SELECT stream, seq, skipped FROM {CHECKPOINT_TABLE}"),
            &[],
        )
        .await
        .map_err(|e| store_error("the checkpoint was not read", e))?;
    for row in rows {
        let stream: String = row.get(0);
        let skipped: Vec<i64> = row.get(2);
        if !skipped.is_empty() {
            checkpoint.skipped.insert(
                stream.clone(),
                skipped.into_iter().map(to_seq).collect::<BTreeSet<u64>>(),
            );
        }
        checkpoint.positions.insert(stream, to_seq(row.get(1)));
    }
    let holder = tx
        .query_opt(&format!("SELECT lease FROM {HOLDER_TABLE}"), &[])
        .await
        .map_err(|e| store_error("the lease token was not read", e))?;
    checkpoint.lease = holder.map_or(0, |row| to_seq(row.get(0)));
    Ok(checkpoint)
}
