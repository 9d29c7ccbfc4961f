//! A document projection folded in memory: the same fold and the same
//! `get` and `list` queries as in its KV bucket, for a process that wants
//! the model replayed from sequence 1 at every start instead of stored
//! (register it with [`crate::ProjectorRuntimeBuilder::in_memory`]).

use super::{check_key_of, page, Asked, DocumentProjector};
use crate::event::Event;
use crate::projector::{Projector, ProjectorError, Query, QueryError};
use crate::typed::Follows;
use std::collections::BTreeMap;
use std::ops::Bound;

/// A [`DocumentProjector`]'s documents, in memory, by key.
pub struct InMemory<P: DocumentProjector> {
    projector: P,
    documents: BTreeMap<String, P::Document>,
}

impl<P: DocumentProjector> InMemory<P> {
    /// `projector` with no documents yet.
    pub fn new(projector: P) -> Self {
        InMemory {
            projector,
            documents: BTreeMap::new(),
        }
    }

    /// The documents, by key.
    pub fn documents(&self) -> &BTreeMap<String, P::Document> {
        &self.documents
    }
}

/// A document as JSON; one that does not encode is not answered.
fn to_json<D: serde::Serialize>(key: &str, doc: &D) -> Result<serde_json::Value, QueryError> {
    serde_json::to_value(doc)
        .map_err(|e| QueryError::unavailable(format!("document {key} does not encode: {e}")))
}

// `Clone`: `apply` takes the document, and a failed apply must leave the
// model as it was.
impl<P: DocumentProjector> Projector for InMemory<P>
where
    P::Document: Clone,
{
    fn name(&self) -> &'static str {
        self.projector.name()
    }

    fn subjects(&self) -> Vec<String> {
        self.projector.subjects()
    }

    fn apply(&mut self, event: &Event) -> Result<(), ProjectorError> {
        let Some(input) = P::Input::decode(event)? else {
            return Ok(());
        };
        let Some(key) = self.projector.key(&input) else {
            return Ok(());
        };
        check_key_of(&self.projector, &key)?;
        let current = self.documents.get(&key).cloned();
        match self.projector.apply(current, input)? {
            Some(doc) => {
                self.documents.insert(key, doc);
            }
            None => {
                self.documents.remove(&key);
            }
        }
        Ok(())
    }

    fn query(&self, query: &Query) -> Result<serde_json::Value, QueryError> {
        match Asked::parse(&self.projector, query)? {
            Asked::Get(key) => match self.documents.get(&key) {
                Some(doc) => to_json(&key, doc),
                None => Err(super::answer::not_found(&key)),
            },
            Asked::List { after, limit } => {
                let from = match &after {
                    Some(after) => Bound::Excluded(after.as_str()),
                    None => Bound::Unbounded,
                };
                let mut rest = self.documents.range::<str, _>((from, Bound::Unbounded));
                let candidates = rest
                    .by_ref()
                    .take(limit)
                    .map(|(key, doc)| Ok((key.clone(), Some(to_json(key, doc)?))))
                    .collect::<Result<Vec<_>, QueryError>>()?;
                let more = rest.next().is_some();
                Ok(page(&self.projector, candidates, more, limit, query.budget))
            }
        }
    }
}
