//! The forgotten notice: published on `forgotten.<type>.<id>` (under the
//! subject prefix) once a data subject's key was erased, and kept in the
//! stream `jetsource_forgotten` (named as buckets are, under the prefix),
//! so a read model that was down at the time still learns of it when it
//! starts, and one built later (a rebuild) learns of it in its replay.
//!
//! The payload names the aggregate and where its event stream ended when
//! the key was erased: every event of the aggregate up to that sequence
//! was sealed under the erased key (or holds nothing personal), so a read
//! model that drops what it derived from the aggregate need not fold those
//! events again, whatever order it meets them in.
//!
//! ```json
//! {"aggregate_type": "account", "aggregate_id": "a1", "stream": "EVT_ACCOUNT", "seq": 42}
//! ```

use crate::Namespace;
use serde::{Deserialize, Serialize};

/// The notices stream's name before the namespace's prefix.
pub const FORGOTTEN_STREAM: &str = "jetsource_forgotten";
/// The notices' first subject token.
pub const FORGOTTEN_ROOT: &str = "forgotten";

/// One forgotten notice's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgottenNotice {
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
    /// The aggregate type's event stream (`EVT_ACCOUNT`, prefixed under a
    /// subject prefix).
    pub stream: String,
    /// The stream's last sequence when the key was erased (0: empty).
    pub seq: u64,
}

/// The notices stream of `namespace`: `jetsource_forgotten`, with the
/// bucket prefix (`ACME_SHOP_jetsource_forgotten`).
pub fn stream_name(namespace: &Namespace) -> String {
    namespace.bucket(FORGOTTEN_STREAM)
}

/// Every notice of `namespace`: `forgotten.>` under its prefix, what the
/// stream captures.
pub fn all_filter(namespace: &Namespace) -> String {
    namespace.subject(format!("{FORGOTTEN_ROOT}.>"))
}

/// The notices of one aggregate type: `forgotten.<type>.*` under the prefix.
pub fn type_filter(namespace: &Namespace, aggregate_type: &str) -> String {
    namespace.subject(format!("{FORGOTTEN_ROOT}.{aggregate_type}.*"))
}

/// The notice subject of aggregate `aggregate_id` of `aggregate_type`
/// (both tokens, checked by the caller).
pub fn subject(namespace: &Namespace, aggregate_type: &str, aggregate_id: &str) -> String {
    namespace.subject(format!("{FORGOTTEN_ROOT}.{aggregate_type}.{aggregate_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_namespace() {
        let shop = Namespace::new("acme.shop").expect("prefix");
        assert_eq!(stream_name(&Namespace::default()), "jetsource_forgotten");
        assert_eq!(stream_name(&shop), "ACME_SHOP_jetsource_forgotten");
        assert_eq!(all_filter(&shop), "acme.shop.forgotten.>");
        assert_eq!(
            type_filter(&shop, "account"),
            "acme.shop.forgotten.account.*"
        );
        assert_eq!(
            subject(&shop, "account", "a1"),
            "acme.shop.forgotten.account.a1"
        );
    }
}
