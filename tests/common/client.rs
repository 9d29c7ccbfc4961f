//! Sending commands as a client does, and reading the replies.

use jetsource::client::{CommandClient, SendOptions};
use jetsource::schemas::{Accepted, CommandReply, RejectionCode};

/// A command client on its own connection.
pub async fn commands(url: &str) -> CommandClient {
    CommandClient::new(async_nats::connect(url).await.expect("connect the client"))
}

/// Options naming the command's `Command-Id`.
pub fn with_id(id: &str) -> SendOptions {
    SendOptions {
        command_id: Some(id.to_string()),
        ..SendOptions::default()
    }
}

/// Sends `command` with `body` to aggregate `aggregate_type` `id` and
/// returns the reply.
pub async fn send_to(
    client: &CommandClient,
    aggregate_type: &str,
    id: &str,
    command: &str,
    body: impl Into<bytes::Bytes>,
    options: &SendOptions,
) -> CommandReply {
    client
        .send(aggregate_type, id, command, body, options)
        .await
        .expect("a reply")
}

/// Sends `command` with `body` to blog post `id` with `options`.
pub async fn send_with(
    client: &CommandClient,
    id: &str,
    command: &str,
    body: impl Into<bytes::Bytes>,
    options: &SendOptions,
) -> CommandReply {
    send_to(client, "blogpost", id, command, body, options).await
}

/// Sends `command` with `body` to account `id`, no headers.
pub async fn send_account(
    client: &CommandClient,
    id: &str,
    command: &str,
    body: impl Into<bytes::Bytes>,
) -> CommandReply {
    send_to(
        client,
        "account",
        id,
        command,
        body,
        &SendOptions::default(),
    )
    .await
}

/// Sends `command` with `body` to blog post `id`, no headers.
pub async fn send(
    client: &CommandClient,
    id: &str,
    command: &str,
    body: serde_json::Value,
) -> CommandReply {
    send_with(
        client,
        id,
        command,
        body.to_string(),
        &SendOptions::default(),
    )
    .await
}

/// The acceptance; fails the test on a rejection.
pub fn accepted(reply: CommandReply) -> Accepted {
    match reply {
        CommandReply::Accepted(a) => a,
        CommandReply::Rejected(r) => panic!("expected accepted, got {r:?}"),
    }
}

/// The rejection's code; fails the test on an acceptance.
pub fn rejected(reply: &CommandReply) -> RejectionCode {
    match reply {
        CommandReply::Rejected(r) => r.code,
        CommandReply::Accepted(a) => panic!("expected a rejection, got {a:?}"),
    }
}

/// Creates blog post `id` (title "Hello").
pub async fn create(client: &CommandClient, id: &str) -> Accepted {
    accepted(
        send(
            client,
            id,
            "create",
            serde_json::json!({"title": "Hello", "body": "text"}),
        )
        .await,
    )
}
