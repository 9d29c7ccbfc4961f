//! `jetsource send`: one command, its reply, and the exit code that says
//! what became of it.

use crate::config::Config;
use jetsource_client::{CommandClient, SendOptions};
use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use super::client::{client_connection, namespace, print_json};

/// What `send` was asked.
pub(crate) struct SendArgs {
    pub(crate) aggregate_type: String,
    pub(crate) aggregate_id: String,
    pub(crate) command: String,
    pub(crate) json: Option<String>,
    pub(crate) nats_url: Option<String>,
    pub(crate) command_id: Option<String>,
    pub(crate) expected_seq: Option<u64>,
    pub(crate) timeout: u64,
    pub(crate) no_wait: bool,
}

/// One command, as `send` and the console send it.
pub(crate) struct Outgoing<'a> {
    pub(crate) aggregate_type: &'a str,
    pub(crate) aggregate_id: &'a str,
    pub(crate) command: &'a str,
    pub(crate) body: String,
    pub(crate) command_id: Option<String>,
    pub(crate) expected_seq: Option<u64>,
    pub(crate) timeout: std::time::Duration,
}

/// Sends `outgoing` under `namespace` and waits for its reply.
pub(crate) async fn send_one(
    client: async_nats::Client,
    namespace: jetsource_schemas::Namespace,
    outgoing: Outgoing<'_>,
) -> Result<jetsource_schemas::CommandReply, jetsource_client::SendError> {
    let options = SendOptions {
        command_id: outgoing.command_id,
        expected_seq: outgoing.expected_seq,
        ..SendOptions::default()
    };
    CommandClient::new(client)
        .with_namespace(namespace)
        .with_timeout(outgoing.timeout)
        .send(
            outgoing.aggregate_type,
            outgoing.aggregate_id,
            outgoing.command,
            outgoing.body,
            &options,
        )
        .await
}

/// Sends one command. Exit 0 accepted (or sent, with `--no-wait`), 1
/// rejected, 2 invalid input, 3 NATS unreachable or no reply.
pub(crate) async fn send(config: &Config, args: SendArgs) -> ExitCode {
    let SendArgs {
        aggregate_type,
        aggregate_id,
        command,
        json,
        nats_url,
        command_id,
        expected_seq,
        timeout,
        no_wait,
    } = args;
    let body = match json {
        Some(json) => json,
        None if std::io::stdin().is_terminal() => "{}".to_string(),
        None => {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                eprintln!("jetsource send: reading stdin: {e}");
                return ExitCode::from(2);
            }
            text
        }
    };
    let namespace = match namespace(config, "send") {
        Ok(namespace) => namespace,
        Err(code) => return code,
    };
    let client = match client_connection(config, nats_url.as_deref(), "send").await {
        Ok(client) => client,
        Err(code) => return code,
    };
    // Fire-and-forget needs an id to look the outcome up by.
    let command_id = match (no_wait, command_id) {
        (true, None) => Some(uuid::Uuid::now_v7().to_string()),
        (_, id) => id,
    };
    let options = SendOptions {
        command_id,
        expected_seq,
        ..SendOptions::default()
    };
    if no_wait {
        let sender = CommandClient::new(client)
            .with_namespace(namespace)
            .with_timeout(std::time::Duration::from_secs(timeout));
        return match sender
            .publish(&aggregate_type, &aggregate_id, &command, body, &options)
            .await
        {
            Ok(()) => {
                print_json(&serde_json::json!({
                    "status": "sent",
                    "command_id": options.command_id.unwrap_or_default(),
                }));
                ExitCode::SUCCESS
            }
            Err(e) if e.kind() == jetsource_client::SendErrorKind::InvalidInput => {
                eprintln!("jetsource send: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("jetsource send: {e}");
                ExitCode::from(3)
            }
        };
    }
    let outgoing = Outgoing {
        aggregate_type: &aggregate_type,
        aggregate_id: &aggregate_id,
        command: &command,
        body,
        command_id: options.command_id,
        expected_seq,
        timeout: std::time::Duration::from_secs(timeout),
    };
    match send_one(client, namespace, outgoing).await {
        Ok(reply) => {
            print_json(&reply);
            if reply.is_accepted() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) if e.kind() == jetsource_client::SendErrorKind::InvalidInput => {
            eprintln!("jetsource send: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("jetsource send: {e}");
            ExitCode::from(3)
        }
    }
}
