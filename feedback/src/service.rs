//! The subscriptions of the feedback role and the answers to its queries.
//!
//! Every instance subscribes to all notices (no queue group), so each holds
//! every rejection of its lifetime. Queries are shared in the queue group
//! `jetsource-feedback`. An instance that misses asks its peers (plain
//! subscriptions on `feedback.peer.*`, answered only on a hit, never by the
//! asker itself) before answering `unknown`: that is how an instance started
//! after a rejection answers for it. Once an instance has run longer than
//! the time to live, it has seen every notice still alive and stops asking.
//!
//! Every subject is under the configured subject prefix, if any. The queue
//! group needs none: it only shares messages between subscriptions whose
//! subjects match them, and namespaces' subjects never overlap.

use crate::cache::{newest_first, AcceptedCache, Cursor, ErrorCache};
use crate::{CommandIndex, FeedbackConfig, FeedbackError, FeedbackErrorKind};
use async_nats::{Client, HeaderMap, Message};
use futures::StreamExt;
use jetsource_handlers::error::Error;
use jetsource_schemas::feedback::{
    self as contract, AcceptedStatus, BadQuery, FeedbackAnswer, Pending, RejectionList,
    RejectionNotice,
};
use jetsource_schemas::page::{PageError, PageRequest};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Queries answered at once; more wait (they may each wait on peers).
const MAX_QUERIES_IN_FLIGHT: usize = 1024;

/// The most rejections one `errors.list` page holds, whatever is asked.
const MAX_LIST_LIMIT: usize = 1000;

/// Room an answer keeps beside a list's items, in bytes: the other fields
/// and the reply's framing.
const ANSWER_HEADROOM: usize = 4096;

/// How often `status` looks again whether the index caught up.
const INDEX_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// State shared by the subscriptions.
pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: FeedbackConfig,
    pub(crate) instance: String,
    pub(crate) errors: ErrorCache,
    pub(crate) accepted: AcceptedCache,
    pub(crate) index: tokio::sync::OnceCell<CommandIndex>,
    pub(crate) started: Instant,
    pub(crate) received: AtomicU64,
}

#[derive(Clone, Copy)]
enum Query {
    Notice,
    ErrorsGet,
    ErrorsList,
    Status,
    PeerGet,
    PeerList,
}

/// Subscribes everything; the returned tasks end when `stop` turns true.
pub(crate) async fn subscribe(
    shared: Arc<Shared>,
    stop: &watch::Sender<bool>,
) -> Result<Vec<JoinHandle<()>>, FeedbackError> {
    let nats = |e| Error::with_source(FeedbackErrorKind::Nats, e);
    let client = &shared.client;
    let ns = &shared.config.namespace;
    let group = contract::QUEUE_GROUP.to_string();
    let subject = |root: &str, tokens: &str| ns.subject(format_args!("{root}.{tokens}"));
    let bare = |root: &str| ns.subject(format_args!("{root}"));
    // The queries take any number of tokens (and none), so that a subject
    // with too few or too many is answered `bad_request` rather than met by
    // "no responders", which a client cannot tell from jetsource being down.
    let queries = [
        (Query::ErrorsGet, contract::ERRORS_GET_ROOT),
        (Query::ErrorsList, contract::ERRORS_LIST_ROOT),
        (Query::Status, contract::STATUS_ROOT),
    ];
    let mut subscriptions = vec![(
        Query::Notice,
        client
            .subscribe(subject(contract::NOTICE_ROOT, "*.*"))
            .await
            .map_err(nats)?,
    )];
    for (query, root) in queries {
        for filter in [subject(root, ">"), bare(root)] {
            let subscriber = client
                .queue_subscribe(filter, group.clone())
                .await
                .map_err(nats)?;
            subscriptions.push((query, subscriber));
        }
    }
    // Peers answer only hits, so a malformed question simply goes unanswered.
    subscriptions.push((
        Query::PeerGet,
        client
            .subscribe(subject(contract::PEER_GET_ROOT, "*"))
            .await
            .map_err(nats)?,
    ));
    subscriptions.push((
        Query::PeerList,
        client
            .subscribe(subject(contract::PEER_LIST_ROOT, "*.*"))
            .await
            .map_err(nats)?,
    ));
    client
        .flush()
        .await
        .map_err(|e| Error::with_source(FeedbackErrorKind::Nats, e))?;
    let permits = Arc::new(Semaphore::new(MAX_QUERIES_IN_FLIGHT));
    Ok(subscriptions
        .into_iter()
        .map(|(query, mut subscriber)| {
            let shared = shared.clone();
            let permits = permits.clone();
            let mut stop = stop.subscribe();
            tokio::spawn(
                async move {
                    loop {
                        let message = tokio::select! {
                            _ = stop.wait_for(|s| *s) => break,
                            message = subscriber.next() => match message {
                                Some(message) => message,
                                None => break,
                            },
                        };
                        if let Query::Notice = query {
                            shared.receive_notice(&message);
                            continue;
                        }
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            shared.answer(query, message).await;
                            drop(permit);
                        });
                    }
                    let _ = subscriber.unsubscribe().await;
                }
                .instrument(tracing::info_span!("feedback")),
            )
        })
        .collect())
}

fn bad_query(reason: impl ToString) -> FeedbackAnswer {
    FeedbackAnswer::BadRequest(BadQuery {
        command_id: String::new(),
        reason: reason.to_string(),
    })
}

impl Shared {
    fn receive_notice(&self, message: &Message) {
        // The subject and the body must agree, and every id must be a token.
        let Ok((aggregate_type, aggregate_id)) = self
            .config
            .namespace
            .parse_aggregate(message.subject.as_str(), contract::NOTICE_ROOT)
        else {
            return;
        };
        match serde_json::from_slice::<RejectionNotice>(&message.payload) {
            Ok(notice)
                if notice.validate().is_ok()
                    && notice.aggregate_type == aggregate_type
                    && notice.aggregate_id == aggregate_id =>
            {
                self.errors.insert(notice);
                self.received.fetch_add(1, Ordering::Relaxed);
            }
            _ => tracing::debug!(subject = %message.subject, "malformed notice ignored"),
        }
    }

    async fn answer(&self, query: Query, message: Message) {
        let Some(reply_to) = message.reply.clone() else {
            return;
        };
        let subject = message.subject.as_str();
        let ns = &self.config.namespace;
        let from_self = || {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(contract::INSTANCE_HEADER))
                .is_some_and(|v| v.as_str() == self.instance)
        };
        let body = match query {
            Query::Notice => return,
            Query::ErrorsGet => json(
                &match ns.parse_command_id(subject, contract::ERRORS_GET_ROOT) {
                    Ok(id) => self.errors_get(id).await,
                    Err(e) => bad_query(e),
                },
            ),
            Query::Status => json(&match ns.parse_command_id(subject, contract::STATUS_ROOT) {
                Ok(id) => self.status(id).await,
                Err(e) => bad_query(e),
            }),
            Query::ErrorsList => match ns.parse_aggregate(subject, contract::ERRORS_LIST_ROOT) {
                Ok((t, i)) => match PageRequest::parse(&message.payload) {
                    Ok(page) => match self.errors_list(t, i, &page).await {
                        Ok(list) => json(&list),
                        Err(e) => json(&bad_query(e)),
                    },
                    Err(e) => json(&bad_query(e)),
                },
                Err(e) => json(&bad_query(e)),
            },
            // Peers answer only on a hit, so that the first answer is a hit.
            Query::PeerGet => {
                if from_self() {
                    return;
                }
                match ns
                    .parse_command_id(subject, contract::PEER_GET_ROOT)
                    .ok()
                    .and_then(|id| self.local(id))
                {
                    Some(answer) => json(&answer),
                    None => return,
                }
            }
            Query::PeerList => {
                if from_self() {
                    return;
                }
                let Ok((t, i)) = ns.parse_aggregate(subject, contract::PEER_LIST_ROOT) else {
                    return;
                };
                let Ok(page) = PageRequest::parse(&message.payload) else {
                    return;
                };
                let after = page.after.as_deref().and_then(Cursor::parse);
                let limit = page.limit_or(self.config.list_limit, MAX_LIST_LIMIT + 1);
                let rejections = self.errors.list(t, i, after.as_ref(), limit);
                let (rejections, _) =
                    jetsource_schemas::page::fill(rejections, limit, self.budget());
                if rejections.is_empty() {
                    return;
                }
                json(&rejections)
            }
        };
        let Some(body) = body else { return };
        // Every answer, peers' included, fits or says it does not.
        let max_payload = self.client.server_info().max_payload;
        let publish = |body| self.client.publish(reply_to.clone(), body);
        if let Err(e) = jetsource_schemas::answer::send(body.into(), max_payload, publish).await {
            tracing::warn!(error = %e, "feedback answer not sent");
        }
    }

    /// What this instance's memory holds about `command_id`.
    fn local(&self, command_id: &str) -> Option<FeedbackAnswer> {
        if let Some(notice) = self.errors.get(command_id) {
            return Some(FeedbackAnswer::Rejected(notice));
        }
        self.accepted.get(command_id).map(FeedbackAnswer::Accepted)
    }

    /// Whether a miss here may be a hit elsewhere: true until this instance
    /// has run for a whole time to live.
    fn peers_may_know(&self) -> bool {
        self.started.elapsed() < self.config.error_ttl
    }

    fn instance_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(contract::INSTANCE_HEADER, self.instance.as_str());
        headers
    }

    /// Asks the peers about `command_id` (a validated token); the first hit.
    async fn ask_peers(&self, command_id: &str) -> Option<FeedbackAnswer> {
        let subject = self.config.namespace.peer_get_subject(command_id).ok()?;
        let request = async_nats::Request::new()
            .headers(self.instance_headers())
            .timeout(Some(self.config.peer_timeout));
        let reply = self.client.send_request(subject, request).await.ok()?;
        let answer: FeedbackAnswer = serde_json::from_slice(&reply.payload).ok()?;
        let valid = answer.command_id() == command_id
            && match &answer {
                FeedbackAnswer::Rejected(n) => n.validate().is_ok(),
                FeedbackAnswer::Accepted(_) => true,
                _ => false,
            };
        valid.then_some(answer)
    }

    /// Answers `errors.get.<command_id>`.
    pub(crate) async fn errors_get(&self, command_id: &str) -> FeedbackAnswer {
        if let Err(e) = jetsource_schemas::token::validate("command id", command_id) {
            return bad_query(e);
        }
        if let Some(notice) = self.errors.get(command_id) {
            return FeedbackAnswer::Rejected(notice);
        }
        if self.peers_may_know() {
            if let Some(answer @ FeedbackAnswer::Rejected(_)) = self.ask_peers(command_id).await {
                return answer;
            }
            // The notice may have arrived while the peers were asked.
            if let Some(notice) = self.errors.get(command_id) {
                return FeedbackAnswer::Rejected(notice);
            }
        }
        FeedbackAnswer::unknown(command_id)
    }

    /// Answers `status.<command_id>`.
    ///
    /// An acceptance wins over a rejection (a resend whose first try was
    /// rejected may since have been accepted), and what this instance holds
    /// in memory is merged with the durable index, so every aggregate the id
    /// was accepted on is listed. Not found: once the index has seen every
    /// event stored before the question, `unknown` (after asking the
    /// peers); while it has not caught up within `index_wait`, `pending`.
    pub(crate) async fn status(&self, command_id: &str) -> FeedbackAnswer {
        if let Err(e) = jetsource_schemas::token::validate("command id", command_id) {
            return bad_query(e);
        }
        if let Some(answer) = self.accepted(command_id).await {
            return answer;
        }
        if let Some(notice) = self.errors.get(command_id) {
            return FeedbackAnswer::Rejected(notice);
        }
        let caught_up = self.wait_for_index(command_id).await;
        if let Some(answer) = self.accepted(command_id).await {
            return answer;
        }
        if self.peers_may_know() {
            if let Some(answer) = self.ask_peers(command_id).await {
                return answer;
            }
            if let Some(answer) = self.local(command_id) {
                return answer;
            }
        }
        match caught_up {
            true => FeedbackAnswer::unknown(command_id),
            false => FeedbackAnswer::Pending(Pending {
                command_id: command_id.to_string(),
                reason: format!(
                    "not indexed yet: the command index had not caught up with the event streams within {:?}; ask again",
                    self.config.index_wait
                ),
            }),
        }
    }

    /// The acceptance of `command_id` this instance holds in memory merged
    /// with the index's, if either knows one.
    async fn accepted(&self, command_id: &str) -> Option<FeedbackAnswer> {
        let mut found = self.accepted.get(command_id);
        if let Some(index) = self.index.get() {
            match index.get(command_id).await {
                Ok(Some(entry)) => {
                    let indexed = AcceptedStatus::from_index(command_id, entry);
                    match &mut found {
                        Some(held) => {
                            for part in indexed.parts() {
                                held.merge(part);
                            }
                        }
                        None => found = Some(indexed),
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "command index lookup failed"),
            }
        }
        found.map(FeedbackAnswer::Accepted)
    }

    /// Waits, up to `index_wait`, until the index has seen every event
    /// stored when it was called; returns whether it had. Without an index
    /// (or when it cannot be read), true: there is nothing to wait for.
    async fn wait_for_index(&self, command_id: &str) -> bool {
        let Some(index) = self.index.get() else {
            return true;
        };
        let marks = match index.marks().await {
            Ok(marks) => marks,
            Err(e) => {
                tracing::warn!(error = %e, command_id, "command index: cannot read the streams' ends");
                return true;
            }
        };
        let deadline = tokio::time::Instant::now() + self.config.index_wait;
        loop {
            match index.reached(&marks).await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, command_id, "command index: cannot read its position");
                    return true;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(INDEX_POLL).await;
        }
    }

    /// Answers `errors.list.<type>.<id>`: one page of this instance's
    /// rejections merged with its peers' while they may know more.
    pub(crate) async fn errors_list(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        page: &PageRequest,
    ) -> Result<RejectionList, PageError> {
        let after = match &page.after {
            Some(text) => Some(Cursor::parse(text).ok_or(PageError::Cursor)?),
            None => None,
        };
        let limit = page.limit_or(self.config.list_limit, MAX_LIST_LIMIT);
        let mut list = RejectionList {
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: aggregate_id.to_string(),
            rejections: Vec::new(),
            next: None,
        };
        // Building the peers' subject validates both ids; no cache entry
        // has an invalid one, so an invalid id lists nothing.
        let Ok(subject) = self
            .config
            .namespace
            .peer_list_subject(aggregate_type, aggregate_id)
        else {
            list.aggregate_type.clear();
            list.aggregate_id.clear();
            return Ok(list);
        };
        // One more than a page: whether it exists says whether a next does.
        let mut rejections =
            self.errors
                .list(aggregate_type, aggregate_id, after.as_ref(), limit + 1);
        if self.peers_may_know() {
            let asked = PageRequest {
                limit: Some(limit as u64 + 1),
                after: page.after.clone(),
            };
            rejections.extend(
                self.collect_peer_lists(subject, aggregate_type, aggregate_id, &asked)
                    .await,
            );
            rejections = newest_first(rejections, limit + 1);
        }
        let (rejections, more) = jetsource_schemas::page::fill(rejections, limit, self.budget());
        list.next = rejections
            .last()
            .filter(|_| more)
            .map(|last| Cursor::after(last).encode());
        list.rejections = rejections;
        Ok(list)
    }

    /// The bytes a list's items may take in one answer: the server's
    /// `max_payload`, less room for the rest of the answer.
    fn budget(&self) -> usize {
        self.client
            .server_info()
            .max_payload
            .saturating_sub(ANSWER_HEADROOM)
    }

    /// Every peer's list for one aggregate, gathered for the peer timeout.
    async fn collect_peer_lists(
        &self,
        subject: String,
        aggregate_type: &str,
        aggregate_id: &str,
        page: &PageRequest,
    ) -> Vec<RejectionNotice> {
        let Ok(body) = serde_json::to_vec(page) else {
            return Vec::new();
        };
        let inbox = self.client.new_inbox();
        let Ok(mut answers) = self.client.subscribe(inbox.clone()).await else {
            return Vec::new();
        };
        if self
            .client
            .publish_with_reply_and_headers(subject, inbox, self.instance_headers(), body.into())
            .await
            .is_err()
        {
            return Vec::new();
        }
        let mut found = Vec::new();
        let deadline = tokio::time::sleep(self.config.peer_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                answer = answers.next() => match answer {
                    Some(answer) => {
                        if let Ok(list) = serde_json::from_slice::<Vec<RejectionNotice>>(&answer.payload) {
                            found.extend(list.into_iter().filter(|n| {
                                n.validate().is_ok()
                                    && n.aggregate_type == aggregate_type
                                    && n.aggregate_id == aggregate_id
                            }));
                        }
                    }
                    None => break,
                },
            }
        }
        let _ = answers.unsubscribe().await;
        found
    }
}

/// The encoded answer; one that does not encode is still answered.
fn json<T: serde::Serialize>(value: &T) -> Option<Vec<u8>> {
    match serde_json::to_vec(value) {
        Ok(body) => Some(body),
        Err(e) => {
            tracing::error!(error = %e, "feedback answer not encoded");
            let unsent = jetsource_schemas::answer::Unsent::Unavailable {
                reason: format!("the answer does not encode: {e}"),
            };
            Some(unsent.to_bytes().to_vec())
        }
    }
}
