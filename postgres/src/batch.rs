//! One batch in one transaction: the events applied in order, then the
//! checkpoint advanced past them, then the commit. An event that fails
//! rolls the whole attempt back; the events before it are applied again
//! in a second transaction and stored without it.

use crate::link::store_error;
use crate::names::{quote, CHECKPOINT_TABLE, HOLDER_TABLE};
use crate::store::{Checkpoint, PgStore};
use crate::{names, PgProjector};
use jetsource_projector::store::Committed;
use jetsource_projector::{Event, Follows, ProjectionError, ProjectionErrorKind, ProjectorError};
use jetsource_schemas::error::Error;
use tokio_postgres::Client;

/// How one attempt ended.
enum Attempt {
    Stored,
    Failed(usize, ProjectorError),
}

pub(crate) fn db_seq(seq: u64) -> Result<i64, ProjectionError> {
    i64::try_from(seq).map_err(|_| {
        Error::new(
            ProjectionErrorKind::Store,
            format!("sequence {seq} is beyond bigint"),
        )
    })
}

impl<P: PgProjector> PgStore<P> {
    /// Applies `events` (in stream order per stream, none at or below
    /// `base`'s positions) to generation `generation` and stores `base`
    /// advanced over those applied, in one transaction.
    ///
    /// Refused with [`ProjectionErrorKind::Conflict`] when the generation
    /// was opened since under another lease token than `base`'s (another
    /// instance took over), and with [`ProjectionErrorKind::Store`] when the database
    /// failed: then nothing of the batch is stored, or, when the commit's
    /// answer was lost, possibly all of it (read the checkpoint again with
    /// [`PgStore::open`]).
    pub async fn commit(
        &self,
        generation: u64,
        base: &Checkpoint,
        events: &[Event],
    ) -> Result<Committed, ProjectionError> {
        let schema = names::schema(self.storage_name(), generation)?;
        let mut client = self.writer.get().await?;
        match self.attempt(&mut client, &schema, base, events).await? {
            Attempt::Stored => Ok(Committed {
                applied: events.len(),
                failure: None,
            }),
            Attempt::Failed(mut at, mut why) => {
                // The failed statement aborted the transaction: store the
                // events before it on their own.
                loop {
                    match self
                        .attempt(&mut client, &schema, base, &events[..at])
                        .await?
                    {
                        Attempt::Stored => break,
                        // Applied once, failed now: stop at the earlier one.
                        Attempt::Failed(earlier, e) => (at, why) = (earlier, e),
                    }
                }
                Ok(Committed {
                    applied: at,
                    failure: Some(why),
                })
            }
        }
    }

    async fn attempt(
        &self,
        client: &mut Client,
        schema: &str,
        base: &Checkpoint,
        events: &[Event],
    ) -> Result<Attempt, ProjectionError> {
        let tx = client
            .transaction()
            .await
            .map_err(|e| store_error("no transaction", e))?;
        tx.batch_execute(&format!("SET LOCAL search_path TO {}", quote(schema)))
            .await
            .map_err(|e| store_error("the generation's schema was not set", e))?;
        let holder = tx
            .query_opt(&format!("SELECT lease FROM {HOLDER_TABLE} FOR UPDATE"), &[])
            .await
            .map_err(|e| store_error("the lease token was not read", e))?;
        let stored_lease = holder.map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0));
        if stored_lease != base.lease {
            return Err(Error::new(
                ProjectionErrorKind::Conflict,
                format!(
                    "{schema} was opened under lease {stored_lease} since, not this instance's {}",
                    base.lease
                ),
            ));
        }
        let mut checkpoint = base.clone();
        for (index, event) in events.iter().enumerate() {
            // A type it does not follow, or an event upcasting dropped:
            // only the position moves.
            let applied = match P::Input::decode_all(event) {
                Ok(inputs) => {
                    let mut applied = Ok(());
                    for input in inputs.unwrap_or_default() {
                        applied = self.projector.apply(&tx, input).await;
                        if applied.is_err() {
                            break;
                        }
                    }
                    applied
                }
                Err(e) => Err(e),
            };
            if let Err(e) = applied {
                return Ok(Attempt::Failed(index, e));
            }
            let position = checkpoint
                .positions
                .entry(event.stream.clone())
                .or_insert(0);
            *position = (*position).max(event.seq);
        }
        let upsert = tx
            .prepare(&format!(
                "INSERT INTO {CHECKPOINT_TABLE} (stream, seq, skipped) VALUES ($1, $2, $3)
                 ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, skipped = excluded.skipped"
            ))
            .await
            .map_err(|e| store_error("the checkpoint statement was not prepared", e))?;
        for (stream, seq) in &checkpoint.positions {
            let skipped = checkpoint
                .skipped
                .get(stream)
                .map(|s| {
                    s.iter()
                        .map(|seq| db_seq(*seq))
                        .collect::<Result<Vec<i64>, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            tx.execute(&upsert, &[stream, &db_seq(*seq)?, &skipped])
                .await
                .map_err(|e| store_error("the checkpoint was not written", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| store_error("the batch was not committed", e))?;
        Ok(Attempt::Stored)
    }
}
