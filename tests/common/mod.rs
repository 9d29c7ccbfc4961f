//! Shared set-up for the integration tests: a real nats-server per test and
//! a jetsource runtime in this process.
#![allow(dead_code, unreachable_pub)]

use jetsource::client::{CommandClient, SendOptions};
use jetsource::handlers::runtime::RunningRuntime;
use jetsource::handlers::store::EventStore;
use jetsource::schemas::{Accepted, CommandReply, RejectionCode};
use jetsource::{App, RuntimeConfig};
use jetsource_reference::blog::BlogPost;
pub use jetsource_test_server::NatsServer;

/// The application the `jetsource` binary hosts: the blog and account
/// aggregates and the `blogposts` projection.
pub fn reference_app() -> App {
    App::new()
        .aggregate::<BlogPost>()
        .aggregate::<jetsource_reference::account::Account>()
        .projector(jetsource_reference::blogposts::BlogPosts::default)
}

/// A jetsource runtime serving the blog aggregate.
pub struct Jetsource {
    running: RunningRuntime,
    pub store: EventStore,
    pub client: async_nats::Client,
}

impl Jetsource {
    pub async fn start(url: &str) -> Self {
        Self::start_with(url, RuntimeConfig::default()).await
    }

    pub async fn start_with(url: &str, config: RuntimeConfig) -> Self {
        let client = jetsource::connect(url).await.expect("connect");
        let runtime = App::new()
            .aggregate::<BlogPost>()
            .runtime_builder(client.clone())
            .config(config)
            .build()
            .await
            .expect("build the runtime");
        let store = runtime.store().clone();
        let running = runtime.start().await.expect("start the runtime");
        Jetsource {
            running,
            store,
            client,
        }
    }

    pub async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
    }
}

/// A command client on its own connection.
pub async fn commands(url: &str) -> CommandClient {
    CommandClient::new(async_nats::connect(url).await.expect("connect the client"))
}

pub fn with_id(id: &str) -> SendOptions {
    SendOptions {
        command_id: Some(id.to_string()),
        ..SendOptions::default()
    }
}

pub async fn send(
    client: &CommandClient,
    id: &str,
    command: &str,
    body: serde_json::Value,
) -> CommandReply {
    client
        .send(
            "blogpost",
            id,
            command,
            body.to_string(),
            &SendOptions::default(),
        )
        .await
        .expect("a reply")
}

pub fn accepted(reply: CommandReply) -> Accepted {
    match reply {
        CommandReply::Accepted(a) => a,
        CommandReply::Rejected(r) => panic!("expected accepted, got {r:?}"),
    }
}

pub fn rejected(reply: &CommandReply) -> RejectionCode {
    match reply {
        CommandReply::Rejected(r) => r.code,
        CommandReply::Accepted(a) => panic!("expected a rejection, got {a:?}"),
    }
}

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

/// Messages and bytes in a stream.
pub async fn stream_state(client: &async_nats::Client, stream: &str) -> (u64, u64) {
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    let info = stream.info().await.expect("stream info");
    (info.state.messages, info.state.bytes)
}

/// Builds and starts a runtime hosting the reference aggregates, retrying
/// while JetStream is still electing its leaders (clusters).
pub async fn start_all(url: &str, config: RuntimeConfig) -> Jetsource {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let client = jetsource::connect(url).await.expect("connect");
        let built = App::new()
            .aggregate::<BlogPost>()
            .aggregate::<jetsource_reference::account::Account>()
            .runtime_builder(client.clone())
            .config(config.clone())
            .build()
            .await;
        match built {
            Ok(runtime) => {
                let store = runtime.store().clone();
                let running = runtime.start().await.expect("start the runtime");
                return Jetsource {
                    running,
                    store,
                    client,
                };
            }
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("runtime not ready yet: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => panic!("the runtime never started: {e}"),
        }
    }
}

/// A `jetsource run` child process, killed on drop.
pub struct JetsourceProcess {
    child: std::process::Child,
}

impl JetsourceProcess {
    /// Starts `jetsource run --nats-url <url>` and waits for its ready line.
    pub fn start(url: &str, dir: &std::path::Path) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jetsource"))
            .args(["run", "--nats-url", url])
            .current_dir(dir)
            .env_remove("JETSOURCE_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn jetsource run");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("jetsource ready") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("jetsource run became ready");
        JetsourceProcess { child }
    }

    /// SIGKILL: no clean shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for JetsourceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates streams by hand, as another application or tool sharing the
/// server would: `(name, subject)` pairs, with `metadata` on each. For the
/// tests that drive the binary and have no async runtime of their own.
pub fn streams_by_hand(
    url: &str,
    streams: &[(&str, &str)],
    metadata: &std::collections::HashMap<String, String>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        for (name, subject) in streams {
            js.create_stream(async_nats::jetstream::stream::Config {
                name: name.to_string(),
                subjects: vec![subject.to_string()],
                metadata: metadata.clone(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
        }
    });
}
