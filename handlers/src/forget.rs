//! Forgetting a data subject on request: `forget.<type>.<id>` (under the
//! subject prefix) destroys the aggregate instance's data key, then stores
//! a notice on `forgotten.<type>.<id>` in the stream `jetsource_forgotten`
//! (see [`jetsource_schemas::forgotten`]) and only then answers. Every
//! handler process hears the notice as a plain subscriber and drops the
//! aggregate's state from its cache, so no decision or reply uses a value
//! read before; read models follow the stream, so one that was down at the
//! time learns of it when it starts. Served by the handlers role, one
//! process per request (the command queue group).
//!
//! Replies: `{"status":"forgotten","aggregate_type","aggregate_id",
//! "keys_erased":n}` (0 when it had no key: forgetting twice, or an id that
//! never had personal data, is no error), or `{"status":"rejected","code",
//! "reason"}` with `bad_request` (not a hosted type, not a token) or
//! `unavailable` (the keys bucket or the notices stream did not answer;
//! nothing may be assumed forgotten, or told: send again).

use crate::keys::KeyRing;
use async_nats::jetstream;
use async_nats::{Client, Message, Subscriber};
use futures::StreamExt;
use jetsource_schemas::forgotten::{self, ForgottenNotice};
use jetsource_schemas::{personal, token, Namespace};
use serde_json::json;

/// The request subjects, `forget.*.*` under `namespace`.
pub fn forget_filter(namespace: &Namespace) -> String {
    namespace.subject("forget.*.*")
}

/// The notices, `forgotten.*.*` under `namespace`.
pub fn forgotten_filter(namespace: &Namespace) -> String {
    namespace.subject("forgotten.*.*")
}

/// The request subject forgetting aggregate `id` of `aggregate_type`;
/// refused when either is not a token.
pub fn forget_subject(
    namespace: &Namespace,
    aggregate_type: &str,
    id: &str,
) -> Result<String, token::TokenError> {
    token::validate("aggregate type", aggregate_type)?;
    token::validate("aggregate id", id)?;
    Ok(namespace.subject(format!("forget.{aggregate_type}.{id}")))
}

/// The notices stream's settings: every `forgotten.>` subject of
/// `namespace`, the last notice of each aggregate kept (a later one covers
/// an earlier one: it names a later position), replicated as the event
/// streams are.
pub fn stream_config(namespace: &Namespace, replicas: usize) -> jetstream::stream::Config {
    jetstream::stream::Config {
        name: forgotten::stream_name(namespace),
        description: Some("jetsource: aggregates whose personal data was forgotten".into()),
        subjects: vec![forgotten::all_filter(namespace)],
        max_messages_per_subject: 1,
        num_replicas: replicas.max(1),
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates the notices stream when absent; an existing one is used as it is.
pub async fn ensure_stream(
    js: &jetstream::Context,
    namespace: &Namespace,
    replicas: usize,
) -> Result<(), jetstream::context::CreateStreamError> {
    js.get_or_create_stream(stream_config(namespace, replicas))
        .await
        .map(|_| ())
}

/// `<type>` and `<id>` of a `<root>.<type>.<id>` subject under `namespace`.
fn parse<'a>(namespace: &Namespace, root: &str, subject: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = namespace.strip(subject)?.strip_prefix(root)?;
    let rest = rest.strip_prefix('.')?;
    let (aggregate_type, id) = rest.split_once('.')?;
    (token::validate("aggregate type", aggregate_type).is_ok()
        && token::validate("aggregate id", id).is_ok())
    .then_some((aggregate_type, id))
}

/// What a forget request and its notices need.
pub(crate) struct Forgetting {
    pub(crate) client: Client,
    /// Stores the notices, and reads where the event stream ends.
    pub(crate) jetstream: jetstream::Context,
    pub(crate) namespace: Namespace,
    pub(crate) keys: std::sync::Arc<KeyRing>,
    /// The hosted aggregate types.
    pub(crate) hosted: Vec<&'static str>,
}

impl Forgetting {
    /// Serves `requests` and drops forgotten aggregates on `notices` with
    /// `evict`, until both end.
    pub(crate) async fn serve(
        self,
        mut requests: Subscriber,
        mut notices: Subscriber,
        evict: impl Fn(&str, &str),
    ) {
        loop {
            tokio::select! {
                request = requests.next() => match request {
                    Some(request) => self.answer(request).await,
                    None => break,
                },
                notice = notices.next() => match notice {
                    Some(notice) => {
                        if let Some((t, id)) = parse(&self.namespace, "forgotten", &notice.subject) {
                            evict(t, id);
                        }
                    }
                    None => break,
                },
            }
        }
    }

    async fn answer(&self, request: Message) {
        let Some(reply) = request.reply.clone() else {
            return;
        };
        let answer = match self.forget(&request.subject).await {
            Ok((aggregate_type, id, erased)) => json!({
                "status": "forgotten",
                "aggregate_type": aggregate_type,
                "aggregate_id": id,
                "keys_erased": erased,
            }),
            Err((code, reason)) => json!({"status": "rejected", "code": code, "reason": reason}),
        };
        if let Err(e) = self.client.publish(reply, answer.to_string().into()).await {
            tracing::warn!(error = %e, "a forget reply was not sent");
        }
    }

    async fn forget(&self, subject: &str) -> Result<(String, String, usize), (&str, String)> {
        let Some((aggregate_type, id)) = parse(&self.namespace, "forget", subject) else {
            return Err((
                "bad_request",
                "the subject is not forget.<type>.<id> with tokens".into(),
            ));
        };
        if !self.hosted.contains(&aggregate_type) {
            return Err((
                "bad_request",
                format!(
                    "unknown aggregate type {aggregate_type:?}; known: {}",
                    self.hosted.join(", ")
                ),
            ));
        }
        let erased = self
            .keys
            .forget(&personal::data_subject(aggregate_type, id))
            .await
            .map_err(|e| ("unavailable", e.to_string()))?;
        self.notify(aggregate_type, id)
            .await
            .map_err(|why| ("unavailable", why))?;
        tracing::info!(aggregate_type, aggregate_id = id, erased, "forgotten");
        Ok((aggregate_type.to_string(), id.to_string(), erased))
    }
}

impl Forgetting {
    /// Stores the notice that `aggregate_type` `id` was forgotten, with
    /// where its event stream ends now; every handler process, this one
    /// included, hears it too and drops its state.
    async fn notify(&self, aggregate_type: &str, id: &str) -> Result<(), String> {
        let stream = self.namespace.stream_name(aggregate_type);
        let seq = self
            .jetstream
            .get_stream(&stream)
            .await
            .map_err(|e| format!("the stream {stream}: {e}"))?
            .cached_info()
            .state
            .last_sequence;
        let notice = ForgottenNotice {
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: id.to_string(),
            stream,
            seq,
        };
        let payload = serde_json::to_vec(&notice).map_err(|e| e.to_string())?;
        let subject = forgotten::subject(&self.namespace, aggregate_type, id);
        self.jetstream
            .publish(subject, payload.into())
            .await
            .map_err(|e| format!("the forgotten notice was not sent: {e}"))?
            .await
            .map_err(|e| format!("the forgotten notice was not stored: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_two_tokens_in_the_namespace() {
        let shop = Namespace::new("acme.shop").expect("prefix");
        let subject = forget_subject(&shop, "account", "a1").expect("tokens");
        assert_eq!(subject, "acme.shop.forget.account.a1");
        assert_eq!(parse(&shop, "forget", &subject), Some(("account", "a1")));
        assert_eq!(parse(&Namespace::default(), "forget", &subject), None);
        assert!(forget_subject(&shop, "account", "a.b").is_err());
        assert!(forget_subject(&shop, "acc*", "a").is_err());
        assert_eq!(parse(&shop, "forget", "acme.shop.forgetx.account.a1"), None);
    }
}
