//! `jetsource demo`: the Rewind post's story, end to end, on the embedded
//! default (or on the server a running `jetsource run` recorded).

use jetsource::app::{App, Nats};
use jetsource::config::Config;
use jetsource::embedded;
use jetsource::projector::document::InMemory;
use jetsource_client::{CommandClient, SendOptions};
use jetsource_feedback::Feedback;
use jetsource_reference::account::Account;
use jetsource_reference::blog::BlogPost;
use jetsource_reference::blogposts::BlogPosts;
use jetsource_reference::payments::Payments;
use jetsource_reference::publishing::ScheduledPublishing;
use jetsource_schemas::feedback::FeedbackAnswer;
use jetsource_schemas::{CommandReply, Namespace};
use std::io::Write;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    /// Setting up failed.
    #[error(transparent)]
    Run(#[from] jetsource::app::RunError),
    /// A command could not be sent.
    #[error(transparent)]
    Send(#[from] jetsource_client::SendError),
    /// Reading events back failed.
    #[error(transparent)]
    Load(#[from] jetsource_handlers::store::LoadError),
    /// The story did not go as told: a bug.
    #[error("unexpected: {0}")]
    Unexpected(String),
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Querying the projection failed.
    #[error("query: {0}")]
    Query(String),
}

struct Tour<'a, W: Write> {
    client: CommandClient,
    namespace: Namespace,
    out: &'a mut W,
    step: u32,
}

impl<W: Write> Tour<'_, W> {
    fn say(&mut self, text: &str) -> std::io::Result<()> {
        self.step += 1;
        writeln!(self.out, "\n{}. {text}", self.step)
    }

    async fn send(
        &mut self,
        id: &str,
        command: &str,
        body: serde_json::Value,
        options: SendOptions,
    ) -> Result<CommandReply, DemoError> {
        self.send_to(BlogPost::TYPE, id, command, body, options)
            .await
    }

    async fn send_to(
        &mut self,
        aggregate_type: &str,
        id: &str,
        command: &str,
        body: serde_json::Value,
        options: SendOptions,
    ) -> Result<CommandReply, DemoError> {
        let subject = self
            .namespace
            .command_subject(aggregate_type, id, command)
            .map_err(|e| DemoError::Unexpected(e.to_string()))?;
        let id_note = options
            .command_id
            .as_deref()
            .map(|c| format!("  [Command-Id: {c}]"))
            .unwrap_or_default();
        writeln!(self.out, "   -> {subject} {body}{id_note}")?;
        let reply = self
            .client
            .send(aggregate_type, id, command, body.to_string(), &options)
            .await?;
        writeln!(
            self.out,
            "   <- {}",
            serde_json::to_string(&reply).unwrap_or_default()
        )?;
        Ok(reply)
    }
}

use jetsource_handlers::Aggregate;

/// Asks a feedback query until it is answered with something other than
/// `unknown` (a fire-and-forget command is handled after the send returns),
/// for at most ten seconds.
async fn lookup(
    client: &async_nats::Client,
    subject: Result<String, jetsource_schemas::TokenError>,
) -> Result<FeedbackAnswer, DemoError> {
    let subject = subject.map_err(|e| DemoError::Unexpected(e.to_string()))?;
    let started = std::time::Instant::now();
    loop {
        let answer = client
            .request(subject.clone(), bytes::Bytes::new())
            .await
            .map_err(|e| DemoError::Unexpected(format!("no answer on {subject}: {e}")))?;
        let answer: FeedbackAnswer = serde_json::from_slice(&answer.payload)
            .map_err(|e| DemoError::Unexpected(format!("answer on {subject}: {e}")))?;
        if answer.status() != "unknown" || started.elapsed() > std::time::Duration::from_secs(10) {
            return Ok(answer);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Post `id`'s `BlogPostPublished`, once stored (within 15 s).
async fn wait_published(
    store: &jetsource::handlers::store::EventStore,
    id: &str,
) -> Result<jetsource::handlers::store::StoredEvent, DemoError> {
    wait_for_event(store, BlogPost::TYPE, id, "BlogPostPublished").await
}

/// The first event of `event_type` on aggregate `id`, which a process
/// manager is to cause, waited for at most 15 s.
async fn wait_for_event(
    store: &jetsource::handlers::store::EventStore,
    aggregate_type: &str,
    id: &str,
    event_type: &str,
) -> Result<jetsource::handlers::store::StoredEvent, DemoError> {
    let started = std::time::Instant::now();
    loop {
        let events = store.load(aggregate_type, id, 0).await?;
        if let Some(found) = events.into_iter().find(|e| e.event_type() == event_type) {
            return Ok(found);
        }
        if started.elapsed() > std::time::Duration::from_secs(15) {
            return Err(DemoError::Unexpected(format!(
                "no {event_type} on {id} in time"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn expect(ok: bool, what: &str) -> Result<(), DemoError> {
    if ok {
        Ok(())
    } else {
        Err(DemoError::Unexpected(what.to_string()))
    }
}

/// Plays the story, writing to `out`.
pub(crate) async fn run(
    config: &Config,
    nats_url: Option<&str>,
    out: &mut impl Write,
) -> Result<(), DemoError> {
    let runtime_config = config.runtime().map_err(jetsource::app::RunError::from)?;
    let namespace = runtime_config.namespace.clone();
    // The sagas read account events, whose owners are personal data.
    let master_key = runtime_config.master_key.clone();
    let feedback_config = config.feedback().map_err(jetsource::app::RunError::from)?;
    let recorded = config
        .nats_url(nats_url)
        .or_else(|| embedded::recorded_url(&config.embedded));
    let nats =
        Nats::resolve(config, recorded.as_deref()).map_err(jetsource::app::RunError::from)?;
    let client = jetsource::auth::connect(config, &nats.url)
        .await
        .map_err(jetsource::app::RunError::from)?;
    jetsource::app::check_max_body(&runtime_config, &client)
        .map_err(jetsource::app::RunError::from)?;
    // The tour shows case 4, so the feedback role runs whatever the settings say.
    let mut feedback = Feedback::new(client.clone(), feedback_config);
    let app = App::new()
        .aggregate::<BlogPost>()
        .aggregate::<Account>()
        // In memory: the tour's own process leaves nothing stored behind.
        .projector(|| InMemory::new(BlogPosts));
    let runtime = app
        .runtime_builder(client.clone())
        .config(runtime_config)
        .observe(feedback.observer())
        .build()
        .await
        .map_err(jetsource::app::RunError::from)?;
    feedback
        .start(&runtime.aggregate_types())
        .await
        .map_err(jetsource::app::RunError::from)?;
    let store = runtime.store().clone();
    let serving = runtime
        .start()
        .await
        .map_err(jetsource::app::RunError::from)?;
    let projectors = app
        .projector_builder(client.clone())
        .config(
            config
                .projectors()
                .map_err(jetsource::app::RunError::from)?,
        )
        .build()
        .await
        .map_err(jetsource::app::RunError::from)?
        .start()
        .await
        .map_err(jetsource::app::RunError::from)?;

    let publishing = jetsource::process::start(
        client.clone(),
        jetsource::process::ProcessConfig {
            namespace: namespace.clone(),
            master_key: master_key.clone(),
            ..Default::default()
        },
        ScheduledPublishing,
    )
    .await
    .map_err(|e| DemoError::Unexpected(e.to_string()))?;
    let payments = jetsource::process::start(
        client.clone(),
        jetsource::process::ProcessConfig {
            namespace: namespace.clone(),
            master_key: master_key.clone(),
            ..Default::default()
        },
        Payments,
    )
    .await
    .map_err(|e| DemoError::Unexpected(e.to_string()))?;

    writeln!(
        out,
        "jetsource demo on {} (nats-server {}{})",
        jetsource::auth::redact_url(&nats.url),
        client.server_info().version,
        if nats.embedded.is_some() {
            ", embedded"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "Commands go to {}.<aggregate_type>.<aggregate_id>.<command>; replies come back at once (case 1).",
        namespace.command_root()
    )?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let post = format!("post-{}", &run_id[..8]);
    let other = format!("post-{}", &run_id[8..16]);
    let mut tour = Tour {
        client: CommandClient::new(client.clone()).with_namespace(namespace.clone()),
        namespace: namespace.clone(),
        out,
        step: 0,
    };

    tour.say("Create a blog post. The handler validates it, appends BlogPostCreated with an expected-sequence check, and replies with the stream sequence.")?;
    let reply = tour
        .send(&post, "create", serde_json::json!({"title": "Rewind, a CQRS event store", "body": "Commands in, events out."}), SendOptions::default())
        .await?;
    expect(reply.is_accepted(), "create was not accepted")?;

    tour.say("Change its title. State comes only from confirmed events (case 2b).")?;
    let reply = tour
        .send(
            &post,
            "change_title",
            serde_json::json!({"title": "Rewind: feedback loops in CQRS"}),
            SendOptions::default(),
        )
        .await?;
    expect(reply.is_accepted(), "change_title was not accepted")?;

    tour.say("A command that breaks a rule is rejected with a code and a reason, and nothing enters the event log.")?;
    let reply = tour
        .send(
            &post,
            "change_title",
            serde_json::json!({"title": "   "}),
            SendOptions::default(),
        )
        .await?;
    expect(
        reply.code() == Some(jetsource_schemas::RejectionCode::Validation),
        "the empty title was not a validation error",
    )?;
    let reply = tour
        .send(
            &format!("{other}-missing"),
            "publish",
            serde_json::json!({}),
            SendOptions::default(),
        )
        .await?;
    expect(
        reply.code() == Some(jetsource_schemas::RejectionCode::NotFound),
        "publishing a missing post was not not_found",
    )?;

    tour.say("The same Command-Id sent twice: the second is answered from the first, nothing is appended again.")?;
    let command_id = format!("publish-{}", &run_id[16..24]);
    let once = SendOptions {
        command_id: Some(command_id.clone()),
        ..SendOptions::default()
    };
    let first = tour
        .send(&post, "publish", serde_json::json!({}), once.clone())
        .await?;
    let second = tour
        .send(&post, "publish", serde_json::json!({}), once)
        .await?;
    match (&first, &second) {
        (CommandReply::Accepted(a), CommandReply::Accepted(b)) => expect(
            !a.duplicate && b.duplicate && a.events == b.events,
            "the resend was not a duplicate of the first",
        )?,
        _ => return Err(DemoError::Unexpected("publish was not accepted".into())),
    }

    tour.say("Create and publish another post in one command: two events in one atomic append.")?;
    let reply = tour
        .send(&other, "create", serde_json::json!({"title": "Atomic batches", "body": "All or nothing.", "publish": true}), SendOptions::default())
        .await?;
    match &reply {
        CommandReply::Accepted(a) => expect(
            a.events.len() == 2 && a.events[1].seq == a.events[0].seq + 1,
            "the two events are not contiguous",
        )?,
        CommandReply::Rejected(_) => {
            return Err(DemoError::Unexpected("create+publish was rejected".into()))
        }
    }

    tour.say(&format!(
        "The events stored, read back from JetStream (stream {}, one subject per post):",
        namespace.stream_name(BlogPost::TYPE)
    ))?;
    for id in [&post, &other] {
        for event in store.load(BlogPost::TYPE, id, 0).await? {
            writeln!(
                tour.out,
                "   #{:<5} {}  {}  [Command-Id: {}]",
                event.seq,
                event.subject,
                String::from_utf8_lossy(&event.payload),
                event.command_id().unwrap_or("-")
            )?;
        }
    }
    tour.say("Fire-and-forget (case 2): a command sent without waiting for a reply. It fails; its rejection went out as a notice on core NATS and is found afterwards in the error cache (case 4), by id.")?;
    let lost = format!("ff-{}", &run_id[24..32]);
    let subject = namespace
        .command_subject(BlogPost::TYPE, &format!("{other}-missing"), "publish")
        .map_err(|e| DemoError::Unexpected(e.to_string()))?;
    writeln!(
        tour.out,
        "   -> {subject} {{}}  [Command-Id: {lost}] (no reply awaited)"
    )?;
    tour.client
        .publish(
            BlogPost::TYPE,
            &format!("{other}-missing"),
            "publish",
            "{}",
            &SendOptions {
                command_id: Some(lost.clone()),
                ..SendOptions::default()
            },
        )
        .await?;
    let errors_get = namespace.errors_get_subject(&lost);
    let found = lookup(&client, errors_get.clone()).await?;
    writeln!(
        tour.out,
        "   {}\n   <- {}",
        errors_get.unwrap_or_default(),
        serde_json::to_string(&found).unwrap_or_default()
    )?;
    expect(
        found.status() == "rejected",
        "the fire-and-forget rejection was not found",
    )?;

    tour.say("Status by id: the accepted publish command, with its stream sequence (from memory, or from the durable command index after a restart).")?;
    let status_subject = namespace.status_subject(&command_id);
    let status = lookup(&client, status_subject.clone()).await?;
    writeln!(
        tour.out,
        "   {}\n   <- {}",
        status_subject.unwrap_or_default(),
        serde_json::to_string(&status).unwrap_or_default()
    )?;
    expect(
        status.status() == "accepted",
        "the accepted command's status was not accepted",
    )?;

    writeln!(
        tour.out,
        "\nThe rejected commands left no trace in the stream."
    )?;

    tour.say("Read your write: change the title, then ask the blogposts projection for the post with After-Seq set to the reply's seq. It answers only once it has applied that event.")?;
    let reply = tour
        .send(
            &post,
            "change_title",
            serde_json::json!({"title": "Rewind: read your writes"}),
            SendOptions::default(),
        )
        .await?;
    let seq = match &reply {
        CommandReply::Accepted(a) => a.events.last().map(|e| e.seq),
        CommandReply::Rejected(_) => None,
    }
    .ok_or_else(|| DemoError::Unexpected("change_title appended nothing".into()))?;
    let subject = namespace.subject(format_args!("query.{}.get.{post}", BlogPosts::NAME));
    writeln!(tour.out, "   -> {subject}  [After-Seq: {seq}]")?;
    let mut h = async_nats::HeaderMap::new();
    h.insert(
        jetsource_schemas::headers::AFTER_SEQ,
        seq.to_string().as_str(),
    );
    let answer = client
        .send_request(subject, async_nats::Request::new().headers(h))
        .await
        .map_err(|e| DemoError::Query(e.to_string()))?;
    let answer: serde_json::Value =
        serde_json::from_slice(&answer.payload).map_err(|e| DemoError::Query(e.to_string()))?;
    writeln!(tour.out, "   <- {answer}")?;
    expect(
        answer["result"]["title"] == "Rewind: read your writes"
            && answer["result"]["last_seq"] == seq,
        "the projection did not answer with the write",
    )?;
    tour.say("Schedule a publication two seconds ahead. The process manager `publishing` sets a durable deadline (a JetStream message schedule, kept by nats-server through restarts) and, when it comes, sends `publish` under a Command-Id derived from the deadline, so it is published once.")?;
    let scheduled = format!("post-{}", &run_id[16..24]);
    let reply = tour
        .send(
            &scheduled,
            "create",
            serde_json::json!({"title": "Published later", "body": "By a process manager."}),
            SendOptions::default(),
        )
        .await?;
    expect(reply.is_accepted(), "create was not accepted")?;
    let at = (time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(2))
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| DemoError::Unexpected(e.to_string()))?;
    let reply = tour
        .send(
            &scheduled,
            "schedule_publish",
            serde_json::json!({ "at": at }),
            SendOptions::default(),
        )
        .await?;
    expect(reply.is_accepted(), "schedule_publish was not accepted")?;
    let published = wait_published(&store, &scheduled).await?;
    writeln!(
        tour.out,
        "   #{:<5} {}  [Command-Id: {}]",
        published.seq,
        published.subject,
        published.command_id().unwrap_or("-")
    )?;
    tour.say("A payment is a saga over two accounts, with compensation: the payer's money is held, the `payments` process manager presents it to the payee, and refunds it when the payee does not exist, declines, or does not accept in time. Here the payee never answers: after one second the payment expires on the payee, whose account decides whether it came before an acceptance, and the payer gets the money back.")?;
    let payer = format!("ada-{}", &run_id[..8]);
    let payee = format!("bob-{}", &run_id[..8]);
    let payment = format!("pay-{}", &run_id[8..16]);
    for (account, owner) in [(&payer, "Ada"), (&payee, "Bob")] {
        let reply = tour
            .send_to(
                Account::TYPE,
                account,
                "open",
                serde_json::json!({ "owner": owner }),
                SendOptions::default(),
            )
            .await?;
        expect(reply.is_accepted(), "open was not accepted")?;
    }
    let reply = tour
        .send_to(
            Account::TYPE,
            &payer,
            "deposit",
            serde_json::json!({"amount": 100}),
            SendOptions::default(),
        )
        .await?;
    expect(reply.is_accepted(), "deposit was not accepted")?;
    let reply = tour
        .send_to(
            Account::TYPE,
            &payer,
            "offer_payment",
            serde_json::json!({"payment": payment, "to": payee, "amount": 40, "accept_within_secs": 1}),
            SendOptions::default(),
        )
        .await?;
    expect(reply.is_accepted(), "offer_payment was not accepted")?;
    let refund = wait_for_event(&store, Account::TYPE, &payer, "PaymentRefunded").await?;
    for account in [&payee, &payer] {
        for event in store.load(Account::TYPE, account, 0).await? {
            if event.event_type().starts_with("Payment") {
                writeln!(
                    tour.out,
                    "   #{:<5} {} {}  [Command-Id: {}]",
                    event.seq,
                    event.subject,
                    String::from_utf8_lossy(&event.payload),
                    event.command_id().unwrap_or("-")
                )?;
            }
        }
    }
    expect(
        refund.command_id().is_some_and(|id| id.starts_with("pm-")),
        "the refund was not the process manager's",
    )?;
    writeln!(tour.out, "\nRun `jetsource demo` again: it uses fresh ids.")?;

    payments.stop().await;
    publishing.stop().await;
    let stopped = projectors.stop().await;
    let served = serving.shutdown().await;
    feedback.shutdown().await;
    stopped.map_err(jetsource::app::RunError::from)?;
    served.map_err(jetsource::app::RunError::from)?;
    drop(nats);
    Ok(())
}
