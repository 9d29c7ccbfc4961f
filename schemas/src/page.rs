//! Pages of list answers: every list a query answers (`errors.list`, a
//! projection's `list`) is read a page at a time, so no answer outgrows a
//! message whatever the list holds.
//!
//! A request body may carry `{"limit": n, "after": "<cursor>"}` (both
//! optional; an empty body is the first page at the default limit). The
//! answer says where the next page starts (`"next": "<cursor>"`), or
//! `null` on the last page. A cursor is opaque: pass back what an answer
//! gave. A page may hold fewer than `limit` items when more would not fit
//! in one message; `next` is then set all the same.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most bytes a cursor may have.
pub const MAX_CURSOR_BYTES: usize = 512;

/// Which page a list query asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageRequest {
    /// The most items wanted; the list's default when absent, and never
    /// more than its maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The `next` of the previous page; absent for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Why a page request is refused (`bad_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    /// The body is not a page request.
    #[error("the body is not a page request {{\"limit\": n, \"after\": \"<cursor>\"}}: {0}")]
    Body(String),
    /// `limit` is 0.
    #[error("limit must be at least 1")]
    ZeroLimit,
    /// `after` is not a cursor this list gave.
    #[error("after is not a cursor of this list")]
    Cursor,
}

impl PageRequest {
    /// Reads a request body: empty means the first page.
    pub fn parse(body: &[u8]) -> Result<Self, PageError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(PageRequest::default());
        }
        // serde reads a struct from an array too; a page is an object.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(PageError::Body("not a JSON object".into()));
        }
        let page: PageRequest =
            serde_json::from_slice(body).map_err(|e| PageError::Body(e.to_string()))?;
        if page.limit == Some(0) {
            return Err(PageError::ZeroLimit);
        }
        if page
            .after
            .as_ref()
            .is_some_and(|a| a.is_empty() || a.len() > MAX_CURSOR_BYTES)
        {
            return Err(PageError::Cursor);
        }
        Ok(page)
    }

    /// The limit to use: as asked, else `default`, at most `max`.
    pub fn limit_or(&self, default: usize, max: usize) -> usize {
        self.limit
            .map_or(default, |l| usize::try_from(l).unwrap_or(usize::MAX))
            .min(max)
            .max(1)
    }
}

/// One page of a list answer: `{"items":[…],"next":"<cursor>"|null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Page<T> {
    /// The items of this page, in list order.
    pub items: Vec<T>,
    /// The cursor of the next page (pass it back as `after`), or `null` on
    /// the last one.
    #[serde(default)]
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The page [`fill`] makes of `items`: `next` is `cursor` of the last
    /// item when items were left.
    pub fn fill(
        items: impl IntoIterator<Item = T>,
        limit: usize,
        budget: usize,
        cursor: impl Fn(&T) -> String,
    ) -> Self
    where
        T: Serialize,
    {
        let (items, more) = fill(items, limit, budget);
        let next = items.last().filter(|_| more).map(cursor);
        Page { items, next }
    }
}

/// Fills a page from `items` (in list order) while the encoded items stay
/// within `budget` bytes (the first is taken whatever its size): returns
/// the page and whether items were left.
pub fn fill<T: Serialize>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    budget: usize,
) -> (Vec<T>, bool) {
    let mut page = Vec::new();
    let mut used = 0;
    let mut items = items.into_iter().peekable();
    while let Some(item) = items.next() {
        // A comma or bracket per item, and the item itself.
        let size = serde_json::to_vec(&item).map_or(usize::MAX, |b| b.len() + 1);
        if page.len() == limit || (used + size > budget && !page.is_empty()) {
            return (page, true);
        }
        // An item larger than a page may be is a page of its own: sent
        // when the answer still fits in a message, else answered
        // `too_large` (see `crate::answer`), never skipped.
        used += size;
        page.push(item);
        if items.peek().is_none() {
            return (page, false);
        }
    }
    (page, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_request_reads_empty_bodies_and_refuses_nonsense() {
        assert_eq!(PageRequest::parse(b""), Ok(PageRequest::default()));
        assert_eq!(PageRequest::parse(b"  \n"), Ok(PageRequest::default()));
        let page = PageRequest::parse(br#"{"limit":5,"after":"x"}"#).expect("a page");
        assert_eq!(
            (page.limit_or(100, 1000), page.after.as_deref()),
            (5, Some("x"))
        );
        assert_eq!(
            PageRequest::parse(br#"{"limit":0}"#),
            Err(PageError::ZeroLimit)
        );
        assert!(matches!(
            PageRequest::parse(br#"{"lmit":5}"#),
            Err(PageError::Body(_))
        ));
        assert!(matches!(
            PageRequest::parse(b"[1]"),
            Err(PageError::Body(_))
        ));
        let long = format!(r#"{{"after":"{}"}}"#, "x".repeat(MAX_CURSOR_BYTES + 1));
        assert_eq!(PageRequest::parse(long.as_bytes()), Err(PageError::Cursor));
        assert_eq!(
            PageRequest {
                limit: Some(1 << 40),
                after: None
            }
            .limit_or(100, 1000),
            1000
        );
    }

    #[test]
    fn a_page_stops_at_the_limit_or_the_budget() {
        let items: Vec<String> = (0..10).map(|i| format!("item{i}")).collect();
        assert_eq!(fill(items.clone(), 3, 1 << 20), (items[..3].to_vec(), true));
        assert_eq!(fill(items.clone(), 10, 1 << 20), (items.clone(), false));
        assert_eq!(fill(items.clone(), 100, 1 << 20), (items.clone(), false));
        // Each encodes to 8 bytes, one more for its comma.
        assert_eq!(fill(items.clone(), 100, 20), (items[..2].to_vec(), true));
        assert_eq!(fill(Vec::<String>::new(), 5, 20), (vec![], false));
        assert_eq!(
            fill(vec!["x".repeat(100)], 5, 20),
            (vec!["x".repeat(100)], false)
        );
        let big_then_small = vec!["x".repeat(100), "y".into()];
        assert_eq!(
            fill(big_then_small.clone(), 5, 20),
            (big_then_small[..1].to_vec(), true)
        );
    }

    #[test]
    fn a_page_names_where_the_next_starts_only_when_items_were_left() {
        let items: Vec<String> = (0..5).map(|i| format!("item{i}")).collect();
        let page = Page::fill(items.clone(), 2, 1 << 20, |s| s.clone());
        assert_eq!(page.next.as_deref(), Some("item1"));
        let last = Page::fill(items.clone(), 5, 1 << 20, |s| s.clone());
        assert_eq!((last.items.len(), last.next.clone()), (5, None));
        assert_eq!(
            serde_json::to_value(&last).expect("JSON")["next"],
            serde_json::Value::Null
        );
    }
}
