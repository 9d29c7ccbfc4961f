//! The built-in queries of a document projection, wherever its documents
//! are kept (a KV bucket, memory): what a query asks for, and the page a
//! `list` answers. Both hosts answer through here, so their wire is one.
//!
//! - `get.<key>`: the document, or `not_found` (also for a deleted one);
//! - `list`, body `{"limit":n,"after":"<cursor>"}` (both optional, see
//!   [`jetsource_schemas::page`]): `{"items":[…],"next":"<cursor>"|null}`
//!   in key order, each item as [`DocumentProjector::list_item`] shows it,
//!   at most [`DocumentProjector::LIST_DEFAULT`] items unless asked for
//!   more, never more than [`DocumentProjector::LIST_MAX`], and never more
//!   than fits in one message (the page then stops early and `next` says
//!   where to go on).

use super::{check_key_of, DocumentProjector};
use crate::projector::{Query, QueryError};
use jetsource_schemas::page::{self, PageRequest};
use serde::{Serialize, Serializer};
use serde_json::json;

/// What a query of a document projection asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Asked {
    /// One document.
    Get(String),
    /// A page of at most `limit` documents with keys after `after`.
    List { after: Option<String>, limit: usize },
}

impl Asked {
    /// Reads `query`; a query it does not know, a key the projection
    /// cannot hold or a request that is not a page is `bad_request`.
    pub(crate) fn parse<P: DocumentProjector>(
        projector: &P,
        query: &Query,
    ) -> Result<Self, QueryError> {
        match query.path_str().as_slice() {
            ["get", key @ ..] if !key.is_empty() => {
                let key = key.join(".");
                check_key_of(projector, &key)
                    .map_err(|e| QueryError::bad_request(e.to_string()))?;
                Ok(Asked::Get(key))
            }
            ["list"] => {
                let request = PageRequest::parse(&query.body)
                    .map_err(|e| QueryError::bad_request(e.to_string()))?;
                if let Some(after) = &request.after {
                    check_key_of(projector, after).map_err(|_| {
                        QueryError::bad_request(page::PageError::Cursor.to_string())
                    })?;
                }
                let limit = request.limit_or(P::LIST_DEFAULT, P::LIST_MAX);
                Ok(Asked::List {
                    after: request.after,
                    limit,
                })
            }
            _ => Err(QueryError::bad_request(
                "known queries: get.<key>, list (body {\"limit\":n,\"after\":\"<cursor>\"})",
            )),
        }
    }
}

/// The `not_found` of `get.<key>`.
pub(crate) fn not_found(key: &str) -> QueryError {
    QueryError::not_found(format!("no document {key}"))
}

/// An item of a page with the key it was listed under (the item as shown
/// need not name it).
struct Item {
    key: String,
    shown: serde_json::Value,
}

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.shown.serialize(serializer)
    }
}

/// The `list` page of `candidates`: the first keys after the cursor in key
/// order, at most `limit`, each with its document (`None`: deleted, not
/// shown); `more`: keys follow them. The page holds what fits in `budget`
/// bytes.
pub(crate) fn page<P: DocumentProjector>(
    projector: &P,
    candidates: Vec<(String, Option<serde_json::Value>)>,
    more: bool,
    limit: usize,
    budget: usize,
) -> serde_json::Value {
    let last_examined = candidates.last().map(|(key, _)| key.clone());
    let items = candidates.into_iter().filter_map(|(key, doc)| {
        doc.map(|doc| Item {
            shown: projector.list_item(&key, doc),
            key,
        })
    });
    let (items, cut) = page::fill(items, limit, budget.max(1));
    // Cut short by the budget: on from the last item shown. Otherwise on
    // from the last key examined, deleted ones included, so a page of
    // deleted documents still moves on.
    let next = if cut {
        items.last().map(|item| item.key.clone())
    } else if more {
        last_examined
    } else {
        None
    };
    json!({"items": items, "next": next})
}
