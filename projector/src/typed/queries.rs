//! Typed queries: a projector declares each query by its name, the Rust
//! type of its arguments and the Rust type of its answer; the wire stays
//! JSON (`query.<projection>.<name>.<args…>`, a JSON body, the answer's
//! `result`), so clients in any language read it as before.
//!
//! ```
//! use jetsource_projector::typed::{Id, Paging, Queries};
//! use jetsource_projector::{Query, QueryError};
//! use std::collections::BTreeMap;
//!
//! fn answer(posts: &BTreeMap<String, String>, query: &Query) -> Result<serde_json::Value, QueryError> {
//!     Queries::new(query)
//!         // `get.<id>`: the post, or `not_found`.
//!         .get("get", |id: Id| posts.get(id.as_str()))
//!         // `list` with `{"limit": n, "after": "<cursor>"}`: one page.
//!         .route("list", |paging: Paging| {
//!             let after = paging.after().map(str::to_string);
//!             let rest = posts.iter().filter(|(id, _)| after.as_ref().is_none_or(|a| *id > a));
//!             Ok(paging.page(rest, |(id, _)| id.to_string()))
//!         })
//!         .answer()
//! }
//! ```

use crate::projector::{Query, QueryError};
use jetsource_schemas::page::{Page, PageRequest};
use jetsource_schemas::token;
use serde::Serialize;

/// The arguments of one query, read from the subject's tokens after the
/// query's name and from the body.
pub trait FromQuery: Sized {
    /// How its tokens read after the query's name, for the list of known
    /// queries (`".<id>"`, or `""` for none).
    const SHAPE: &'static str;

    /// Reads the arguments: `args` are the tokens after the query's name;
    /// a malformed one is a `bad_request`.
    fn from_query(args: &[String], query: &Query) -> Result<Self, QueryError>;
}

/// No arguments: no tokens after the name; the body is not read.
impl FromQuery for () {
    const SHAPE: &'static str = "";

    fn from_query(args: &[String], _query: &Query) -> Result<Self, QueryError> {
        no_tokens(args)
    }
}

fn no_tokens(args: &[String]) -> Result<(), QueryError> {
    match args {
        [] => Ok(()),
        _ => Err(QueryError::bad_request(format!(
            "this query takes no tokens after its name; got {}",
            args.len()
        ))),
    }
}

/// One id: exactly one token after the query's name, valid as a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id(String);

impl Id {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromQuery for Id {
    const SHAPE: &'static str = ".<id>";

    fn from_query(args: &[String], _query: &Query) -> Result<Self, QueryError> {
        match args {
            [id] => {
                token::validate("id", id).map_err(|e| QueryError::bad_request(e.to_string()))?;
                Ok(Id(id.clone()))
            }
            _ => Err(QueryError::bad_request(format!(
                "this query takes one id after its name; got {} tokens",
                args.len()
            ))),
        }
    }
}

/// Which page of a list is asked for (the body `{"limit": n, "after":
/// "<cursor>"}`, both optional) and how many bytes its items may take in
/// one answer; no tokens after the name.
///
/// A page holds at most `limit` items ([`Paging::DEFAULT_LIMIT`] when
/// absent, never more than [`Paging::MAX_LIMIT`]), and fewer when more
/// would not fit in one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    /// The page asked for.
    pub request: PageRequest,
    /// The bytes the page's items may take (see [`Query::budget`]).
    pub budget: usize,
}

impl Paging {
    /// The items a page holds when the request names no `limit`.
    pub const DEFAULT_LIMIT: usize = 100;
    /// The most items a page holds, whatever is asked.
    pub const MAX_LIMIT: usize = 1000;

    /// The `next` of the previous page, when this is not the first.
    pub fn after(&self) -> Option<&str> {
        self.request.after.as_deref()
    }

    /// The most items this page may hold.
    pub fn limit(&self) -> usize {
        self.request.limit_or(Self::DEFAULT_LIMIT, Self::MAX_LIMIT)
    }

    /// The page of `items` (those after the cursor, in list order):
    /// as many as the limit and the budget allow; `cursor` names an item
    /// as the `after` of the page that follows it.
    pub fn page<T: Serialize>(
        &self,
        items: impl IntoIterator<Item = T>,
        cursor: impl Fn(&T) -> String,
    ) -> Page<T> {
        Page::fill(items, self.limit(), self.budget, cursor)
    }
}

impl FromQuery for Paging {
    const SHAPE: &'static str = "";

    fn from_query(args: &[String], query: &Query) -> Result<Self, QueryError> {
        no_tokens(args)?;
        let request =
            PageRequest::parse(&query.body).map_err(|e| QueryError::bad_request(e.to_string()))?;
        Ok(Paging {
            request,
            budget: query.budget,
        })
    }
}

/// Routes a [`Query`] to the first declared query whose name is the
/// path's first token, reads its typed arguments and encodes its typed
/// answer; a query of no declared name is a `bad_request` listing them.
pub struct Queries<'q> {
    query: &'q Query,
    answer: Option<Result<serde_json::Value, QueryError>>,
    known: Vec<String>,
}

impl<'q> Queries<'q> {
    /// Starts routing `query`.
    pub fn new(query: &'q Query) -> Self {
        Queries {
            query,
            answer: None,
            known: Vec::new(),
        }
    }

    /// Declares the query `name`: its arguments `A`, its answer `R` or a
    /// typed refusal.
    pub fn route<A: FromQuery, R: Serialize>(
        mut self,
        name: &'static str,
        answer: impl FnOnce(A) -> Result<R, QueryError>,
    ) -> Self {
        self.known.push(format!(
            "query.{}.{name}{}",
            self.query.projection,
            A::SHAPE
        ));
        if self.answer.is_some() {
            return self;
        }
        let Some((first, args)) = self.query.path.split_first() else {
            return self;
        };
        if first != name {
            return self;
        }
        self.answer = Some(
            A::from_query(args, self.query)
                .and_then(answer)
                .and_then(|r| to_json(&r)),
        );
        self
    }

    /// Declares the query `name` whose answer may be missing: `None` is
    /// answered `not_found`.
    pub fn get<A: FromQuery, R: Serialize>(
        self,
        name: &'static str,
        answer: impl FnOnce(A) -> Option<R>,
    ) -> Self {
        self.route(name, |args: A| {
            answer(args).ok_or_else(|| QueryError::not_found(format!("nothing found for {name}")))
        })
    }

    /// The answer of the query routed, or a `bad_request` naming the known
    /// queries.
    pub fn answer(self) -> Result<serde_json::Value, QueryError> {
        self.answer.unwrap_or_else(|| {
            Err(QueryError::bad_request(format!(
                "known queries: {}",
                self.known.join(", ")
            )))
        })
    }
}

/// Encodes an answer; a failure (a map with non-string keys) becomes a
/// refusal rather than a panic.
fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value, QueryError> {
    serde_json::to_value(value).map_err(|e| QueryError::bad_request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(path: &[&str], body: &str) -> Query {
        Query {
            projection: "p".into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            body: body.to_string().into(),
            budget: 1 << 20,
        }
    }

    fn answer(q: &Query) -> Result<serde_json::Value, QueryError> {
        let items: Vec<u32> = (1..=5).collect();
        Queries::new(q)
            .get("get", |id: Id| (id.as_str() == "a").then_some(1))
            .route("list", |paging: Paging| {
                let after: u32 = paging.after().and_then(|a| a.parse().ok()).unwrap_or(0);
                Ok(paging.page(items.iter().filter(|i| **i > after), |i| i.to_string()))
            })
            .answer()
    }

    #[test]
    fn a_query_is_routed_by_name_with_typed_arguments() {
        assert_eq!(answer(&query(&["get", "a"], "")), Ok(serde_json::json!(1)));
        let code = |q: Query| answer(&q).map_err(|e| e.code);
        use crate::QueryErrorCode::{BadRequest, NotFound};
        assert_eq!(code(query(&["get", "b"], "")), Err(NotFound));
        assert_eq!(code(query(&["get", "a.b"], "")), Err(BadRequest));
        assert_eq!(code(query(&["get"], "")), Err(BadRequest));
        assert_eq!(code(query(&["list", "x"], "")), Err(BadRequest));
        assert_eq!(code(query(&["list"], "[1]")), Err(BadRequest));
        let unknown = answer(&query(&["nope"], "")).expect_err("unknown");
        assert!(unknown.reason.contains("query.p.get.<id>"), "{unknown:?}");
    }

    #[test]
    fn a_list_is_read_page_by_page() {
        let first = answer(&query(&["list"], r#"{"limit":2}"#)).expect("a page");
        assert_eq!(first, serde_json::json!({"items":[1,2],"next":"2"}));
        let last = answer(&query(&["list"], r#"{"limit":5,"after":"2"}"#)).expect("a page");
        assert_eq!(last, serde_json::json!({"items":[3,4,5],"next":null}));
    }
}
