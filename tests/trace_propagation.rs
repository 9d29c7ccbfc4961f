//! One trace from a client's command to the read model and the saga steps
//! it leads to: `jetsource run` (every role, in this process) with an
//! OpenTelemetry layer recording into memory. A command sent with a W3C
//! `traceparent` is handled in a span of that trace, its events carry the
//! handler's span as their `traceparent`, and the projection applying them
//! and the process manager reacting to them continue it; the command the
//! process manager sends is handled in the same trace again.

mod common;

use common::*;
use jetsource::client::SendOptions;
use jetsource::config::Config;
use jetsource::schemas::trace::TraceParent;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The spans finished so far named `name` in trace `trace`.
fn spans(exporter: &InMemorySpanExporter, trace: TraceId, name: &str) -> Vec<SpanData> {
    exporter
        .get_finished_spans()
        .expect("the finished spans")
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace && s.name == name)
        .collect()
}

async fn stored_traceparent(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
) -> Option<TraceParent> {
    let stream = js.get_stream(stream).await.expect("the stream");
    let message = stream
        .direct_get_last_for_subject(subject)
        .await
        .expect("the event");
    let value = message.headers.get("traceparent")?.as_str().to_string();
    TraceParent::parse(&value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_s_trace_runs_through_its_handler_projection_and_saga() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(jetsource::telemetry::span_layer(&provider))
        .init();

    let server = NatsServer::new();
    let url = server.client_url();
    let serving = InProcessRun::spawn(reference_app(), Config::default(), Some(&url));
    let client = commands(&url).await;
    let nats = connect(&url).await;
    let js = async_nats::jetstream::new(nats.clone());
    eventually("jetsource serving", DEADLINE, || async {
        let reply = client
            .send("account", "probe", "deposit", "{}", &SendOptions::default())
            .await;
        reply.ok().map(|_| ())
    })
    .await;

    // A blog post created in a trace of the client's.
    let sent = TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .expect("a trace parent");
    let trace = TraceId::from_bytes(sent.trace_id);
    let options = SendOptions {
        traceparent: Some(sent),
        ..SendOptions::default()
    };
    let reply = client
        .send(
            "blogpost",
            "traced",
            "create",
            r#"{"title":"Traced","body":"…"}"#,
            &options,
        )
        .await
        .expect("a reply");
    let seq = accepted(reply).events[0].seq;

    let command = eventually("the command's span", DEADLINE, || async {
        spans(&exporter, trace, "command").pop()
    })
    .await;
    assert_eq!(
        command.parent_span_id,
        SpanId::from_bytes(sent.parent_id),
        "the handler's span is the client's span's child"
    );
    assert_eq!(
        attribute(&command, "aggregate_id").as_deref(),
        Some("traced")
    );
    let stored = stored_traceparent(&js, "EVT_BLOGPOST", "evt.blogpost.traced.BlogPostCreated")
        .await
        .expect("the event carries a traceparent");
    assert_eq!(stored.trace_id, sent.trace_id);
    assert_eq!(
        SpanId::from_bytes(stored.parent_id),
        command.span_context.span_id(),
        "the event names the handler's span"
    );

    // The blogposts projection applies it in the same trace.
    let answer = query(&nats, "query.blogposts.get.traced", Some(&seq.to_string())).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let applied = eventually("the projection's span", DEADLINE, || async {
        spans(&exporter, trace, "apply")
            .into_iter()
            .find(|s| attribute(s, "projection").as_deref() == Some("blogposts"))
    })
    .await;
    assert_eq!(applied.parent_span_id, command.span_context.span_id());
    assert_eq!(attribute(&applied, "seq"), Some(seq.to_string()));
    // And scheduled publishing reacts to it in the same trace.
    let reacted = eventually("the process manager's span", DEADLINE, || async {
        spans(&exporter, trace, "react").pop()
    })
    .await;
    assert_eq!(reacted.parent_span_id, command.span_context.span_id());

    // A payment: the payments saga sends the payee's `present_payment`,
    // which is handled in the payer's command's trace.
    for (id, command, body) in [
        ("ana", "open", r#"{"owner":"Ana"}"#),
        ("ana", "deposit", r#"{"amount":10}"#),
        ("ben", "open", r#"{"owner":"Ben"}"#),
    ] {
        accepted(send_account(&client, id, command, body).await);
    }
    let paid = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .expect("a trace parent");
    let payment_trace = TraceId::from_bytes(paid.trace_id);
    let options = SendOptions {
        traceparent: Some(paid),
        ..SendOptions::default()
    };
    let reply = client
        .send(
            "account",
            "ana",
            "offer_payment",
            r#"{"payment":"p1","to":"ben","amount":4,"accept_within_secs":60}"#,
            &options,
        )
        .await
        .expect("a reply");
    accepted(reply);
    let presented = eventually("the saga's command in the trace", DEADLINE, || async {
        spans(&exporter, payment_trace, "command")
            .into_iter()
            .find(|s| attribute(s, "command").as_deref() == Some("present_payment"))
    })
    .await;
    assert_eq!(
        attribute(&presented, "aggregate_id").as_deref(),
        Some("ben")
    );
    let reaction = spans(&exporter, payment_trace, "react")
        .into_iter()
        .find(|s| s.span_context.span_id() == presented.parent_span_id)
        .expect("the saga step's command is the reaction's child");
    assert_eq!(attribute(&reaction, "manager").as_deref(), Some("payments"));
    let stored = stored_traceparent(&js, "EVT_ACCOUNT", "evt.account.ben.PaymentPresented")
        .await
        .expect("the saga's event carries a traceparent");
    assert_eq!(stored.trace_id, paid.trace_id);

    // Untraced commands start traces of their own, never the last one's.
    accepted(send_account(&client, "ana", "deposit", r#"{"amount":1}"#).await);
    let own = stored_traceparent(&js, "EVT_ACCOUNT", "evt.account.ana.MoneyDeposited")
        .await
        .expect("a recorded handler span names itself");
    assert_ne!(own.trace_id, paid.trace_id);
    assert_ne!(own.trace_id, sent.trace_id);

    serving.stop().await.expect("a clean stop");
}

/// What a collector received: every request body posted to `/v1/traces`.
type Received = std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// A stand-in OpenTelemetry collector on a free port: it answers every
/// OTLP/HTTP export with 200 and keeps the bodies (protobuf, not decoded:
/// a trace id is 16 raw bytes in them).
async fn collector() -> (String, Received) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
    let received = Received::default();
    let kept = received.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    // One request at a time on a kept-alive connection.
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buffer.len() < head_end + length {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    if head.starts_with("post /v1/traces ") {
                        let body = buffer[head_end..head_end + length].to_vec();
                        kept.lock().expect("the bodies").push(body);
                    }
                    buffer.drain(..head_end + length);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if socket.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetsource_run_exports_a_command_s_spans_to_the_configured_collector() {
    let (endpoint, received) = collector().await;
    let server = NatsServer::new();
    let url = server.client_url();
    let dir = tempfile::tempdir().expect("a directory");
    let run = tokio::task::block_in_place(|| {
        JetsourceProcess::spawn(
            dir.path(),
            &["run", "--nats-url", &url],
            &[("JETSOURCE_OTLP_ENDPOINT", &endpoint), ("RUST_LOG", "info")],
        )
    });
    let client = commands(&url).await;
    let sent = TraceParent::parse("00-5ce0e9a56015fec5aadfa328ae398115-ab13ed0a1c2c1a37-01")
        .expect("a trace parent");
    let options = SendOptions {
        traceparent: Some(sent),
        ..SendOptions::default()
    };
    let reply = client
        .send(
            "blogpost",
            "exported",
            "create",
            r#"{"title":"Exported","body":"…"}"#,
            &options,
        )
        .await
        .expect("a reply");
    let seq = accepted(reply).events[0].seq;
    let nats = connect(&url).await;
    let answer = query(
        &nats,
        "query.blogposts.get.exported",
        Some(&seq.to_string()),
    )
    .await;
    assert_eq!(answer["status"], "ok", "{answer}");
    // A clean stop sends what the exporter still holds.
    let status = tokio::task::block_in_place(|| run.terminate());
    assert!(status.success(), "{status:?}");
    let bodies = received.lock().expect("the bodies").clone();
    let exported: Vec<&Vec<u8>> = bodies
        .iter()
        .filter(|body| body.windows(16).any(|w| w == sent.trace_id))
        .collect();
    assert!(
        !exported.is_empty(),
        "{} exports, none with the trace",
        bodies.len()
    );
    let names = |name: &[u8]| {
        exported
            .iter()
            .any(|b| b.windows(name.len()).any(|w| w == name))
    };
    assert!(names(b"command"), "the handler's span");
    assert!(names(b"apply"), "the projection's span");
    assert!(names(b"jetsource"), "the service's name");
}
