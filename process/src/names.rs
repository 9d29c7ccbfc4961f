//! The names a process manager's runtime uses: its KV bucket, its
//! deadlines' stream, subjects and consumers, each under the subject
//! prefix.

use jetsource_schemas::{token, Namespace};

/// The longest manager name.
pub const MAX_NAME_LEN: usize = 32;

/// The names of one manager in one namespace.
#[derive(Debug, Clone)]
pub struct Names {
    namespace: Namespace,
    name: String,
}

impl Names {
    /// The names of manager `name`, refused unless `[a-z0-9_-]{1,32}`
    /// (lower case, so the bucket and stream names map one-to-one).
    pub fn new(namespace: Namespace, name: &str) -> Result<Names, String> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(format!(
                "process manager name {} is not [a-z0-9_-]{{1,{MAX_NAME_LEN}}}",
                jetsource_schemas::reply::excerpt(name, 64)
            ));
        }
        Ok(Names {
            namespace,
            name: name.to_string(),
        })
    }

    /// The manager's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The KV bucket of its instances: `pm_<name>`.
    pub fn bucket(&self) -> String {
        self.namespace.bucket(&format!("pm_{}", self.name))
    }

    /// The stream holding its deadlines, scheduled and fired:
    /// `pm_<name>_deadlines` (with the bucket's prefix).
    pub fn deadlines_stream(&self) -> String {
        self.namespace
            .bucket(&format!("pm_{}_deadlines", self.name))
    }

    /// The durable consumer's name on every stream it reads.
    pub fn durable(&self) -> String {
        format!("pm_{}", self.name)
    }

    /// Every scheduled deadline: `pm.<name>.deadline.>`.
    pub fn scheduled_filter(&self) -> String {
        self.namespace
            .subject(format!("pm.{}.deadline.>", self.name))
    }

    /// The request subject of control `action` (`replay-parked`,
    /// `skip-parked`): `pm.<name>.control.<action>`.
    pub fn control(&self, action: &str) -> String {
        self.namespace
            .subject(format!("pm.{}.control.{action}", self.name))
    }

    /// Every control request: `pm.<name>.control.*`.
    pub fn control_filter(&self) -> String {
        self.namespace
            .subject(format!("pm.{}.control.*", self.name))
    }

    /// Every fired deadline: `pm.<name>.fired.>`.
    pub fn fired_filter(&self) -> String {
        self.namespace.subject(format!("pm.{}.fired.>", self.name))
    }

    /// Where deadline `deadline` of instance `key` is held until it
    /// comes: `pm.<name>.deadline.<key>.<deadline>`. Purging it cancels.
    pub fn scheduled(&self, key: &str, deadline: &str) -> String {
        self.namespace
            .subject(format!("pm.{}.deadline.{key}.{deadline}", self.name))
    }

    /// Where it is published when it comes:
    /// `pm.<name>.fired.<key>.<deadline>`.
    pub fn fired(&self, key: &str, deadline: &str) -> String {
        self.namespace
            .subject(format!("pm.{}.fired.{key}.{deadline}", self.name))
    }

    /// The instance key and deadline name of a fired deadline's subject.
    pub fn parse_fired<'a>(&self, subject: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = self.namespace.strip(subject)?;
        let rest = rest.strip_prefix("pm.")?.strip_prefix(self.name.as_str())?;
        let rest = rest.strip_prefix(".fired.")?;
        let (key, deadline) = rest.split_once('.')?;
        (token::validate("instance key", key).is_ok()
            && token::validate("deadline", deadline).is_ok())
        .then_some((key, deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix_and_fired_subjects_parse_back() {
        let shop = Namespace::new("acme.shop").expect("a prefix");
        let names = Names::new(shop, "publishing").expect("a name");
        assert_eq!(names.bucket(), "ACME_SHOP_pm_publishing");
        assert_eq!(
            names.deadlines_stream(),
            "ACME_SHOP_pm_publishing_deadlines"
        );
        let fired = names.fired("p1", "publish");
        assert_eq!(fired, "acme.shop.pm.publishing.fired.p1.publish");
        assert_eq!(names.parse_fired(&fired), Some(("p1", "publish")));
        assert_eq!(names.parse_fired("pm.publishing.fired.p1.publish"), None);
        assert_eq!(
            names.parse_fired("acme.shop.pm.publishing.fired.p1.a.b"),
            None,
            "a deadline name is one token"
        );
    }

    #[test]
    fn a_name_outside_the_alphabet_is_refused() {
        for bad in [
            "",
            "Publishing",
            "a.b",
            "a b",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(Names::new(Namespace::default(), bad).is_err(), "{bad:?}");
        }
    }
}
