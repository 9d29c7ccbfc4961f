//! Untrusted input: every bad subject token, header and body gets a typed
//! rejection, nothing is written, and the runtime keeps serving.

mod common;

use async_nats::HeaderMap;
use common::*;
use jetsource::client::{SendErrorKind, SendOptions};
use jetsource::handlers::connect::ConnectErrorKind;
use jetsource::schemas::{CommandReply, RejectionCode};
use jetsource::RuntimeConfig;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const BAD_TOKENS: &[&str] = &["a.b", "*", ">", "a b", "a\r\nb", "a\nb", "", "é", "a\tb"];

#[tokio::test]
async fn the_client_refuses_bad_tokens_before_sending() {
    let server = NatsServer::new();
    let client = commands(&server.client_url()).await;
    let long = "x".repeat(129);
    for bad in BAD_TOKENS.iter().copied().chain([long.as_str()]) {
        let err = client
            .send("blogpost", bad, "create", "{}", &SendOptions::default())
            .await
            .expect_err("invalid id");
        assert_eq!(err.kind(), SendErrorKind::InvalidInput, "id {bad:?}");
        let err = client
            .send("blogpost", "p1", "create", "{}", &with_id(bad))
            .await
            .expect_err("invalid command id");
        assert_eq!(
            err.kind(),
            SendErrorKind::InvalidInput,
            "Command-Id {bad:?}"
        );
    }
}

/// Sends raw, unvalidated requests and returns the reply (or `None` when
/// NATS itself refused or nothing answered).
async fn raw(
    client: &async_nats::Client,
    subject: &str,
    headers: HeaderMap,
    body: &str,
) -> Option<CommandReply> {
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(body.to_string().into())
        .timeout(Some(Duration::from_secs(2)));
    let reply = client
        .send_request(subject.to_string(), request)
        .await
        .ok()?;
    Some(serde_json::from_slice(&reply.payload).expect("every reply is a command reply"))
}

fn header(name: &str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, value);
    h
}

#[tokio::test]
async fn the_runtime_rejects_bad_input_with_bad_request() {
    let server = NatsServer::new();
    let config = RuntimeConfig {
        max_body_bytes: 4096,
        ..RuntimeConfig::default()
    };
    let js = start_all(&server.client_url(), config).await;
    let client = async_nats::ConnectOptions::new()
        .skip_subject_validation(true)
        .connect(server.client_url())
        .await
        .expect("connect");
    let create = r#"{"title":"t","body":"b"}"#;
    let nested = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let huge = format!(r#"{{"title":"t","body":"{}"}}"#, "x".repeat(5000));
    let long_id = "x".repeat(129);
    let over_long_subject = format!("cmd.blogpost.{long_id}.create");
    let over_long_command = format!("cmd.blogpost.p1.{long_id}");
    let over_long_type = format!("cmd.{long_id}.p1.create");
    let cases: Vec<(&str, &str, HeaderMap, String)> = vec![
        (
            "too many tokens",
            "cmd.blogpost.a.b.create",
            HeaderMap::new(),
            create.into(),
        ),
        (
            "too few tokens",
            "cmd.blogpost.create",
            HeaderMap::new(),
            create.into(),
        ),
        (
            "wildcard id",
            "cmd.blogpost.*.create",
            HeaderMap::new(),
            create.into(),
        ),
        (
            "wildcard command",
            "cmd.blogpost.p1.*",
            HeaderMap::new(),
            create.into(),
        ),
        (
            "non-ascii id",
            "cmd.blogpost.pé.create",
            HeaderMap::new(),
            create.into(),
        ),
        (
            "over-long id",
            &over_long_subject,
            HeaderMap::new(),
            create.into(),
        ),
        (
            "unknown aggregate type",
            "cmd.invoice.i1.create",
            HeaderMap::new(),
            create.into(),
        ),
        (
            "unknown command",
            "cmd.blogpost.p1.delete",
            HeaderMap::new(),
            "{}".into(),
        ),
        (
            "command id with a dot",
            "cmd.blogpost.p1.create",
            header("Command-Id", "a.b"),
            create.into(),
        ),
        (
            "command id with a space",
            "cmd.blogpost.p1.create",
            header("Command-Id", "a b"),
            create.into(),
        ),
        (
            "command id wildcard",
            "cmd.blogpost.p1.create",
            header("Command-Id", ">"),
            create.into(),
        ),
        (
            "over-long command id",
            "cmd.blogpost.p1.create",
            header("Command-Id", &long_id),
            create.into(),
        ),
        (
            "non-ascii command id",
            "cmd.blogpost.p1.create",
            header("Command-Id", "ü"),
            create.into(),
        ),
        (
            "bad correlation id",
            "cmd.blogpost.p1.create",
            header("Correlation-Id", "a*b"),
            create.into(),
        ),
        (
            "bad causation id",
            "cmd.blogpost.p1.create",
            header("Causation-Id", "x y"),
            create.into(),
        ),
        (
            "non-numeric Expected-Seq",
            "cmd.blogpost.p1.create",
            header("Expected-Seq", "abc"),
            create.into(),
        ),
        (
            "negative Expected-Seq",
            "cmd.blogpost.p1.create",
            header("Expected-Seq", "-1"),
            create.into(),
        ),
        (
            "fractional Expected-Seq",
            "cmd.blogpost.p1.create",
            header("Expected-Seq", "1.5"),
            create.into(),
        ),
        (
            "malformed JSON",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            "{\"title\":".into(),
        ),
        (
            "deeply nested JSON",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            nested,
        ),
        (
            "wrong field type",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            r#"{"title":5,"body":"b"}"#.into(),
        ),
        (
            "unknown field",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            r#"{"title":"t","body":"b","x":1}"#.into(),
        ),
        (
            "empty body for create",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            String::new(),
        ),
        (
            "a JSON array",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            "[]".into(),
        ),
        (
            "trailing garbage",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            format!("{create} x"),
        ),
        (
            "body over the maximum",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            huge,
        ),
        (
            "body not UTF-8 JSON",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            "\u{0}".into(),
        ),
        (
            "empty id token",
            "cmd.blogpost..create",
            HeaderMap::new(),
            create.into(),
        ),
        (
            "over-long command name",
            &over_long_command,
            HeaderMap::new(),
            create.into(),
        ),
        (
            "over-long aggregate type",
            &over_long_type,
            HeaderMap::new(),
            create.into(),
        ),
        (
            "non-ascii command name",
            "cmd.blogpost.p1.créer",
            HeaderMap::new(),
            create.into(),
        ),
        (
            "non-ascii aggregate type",
            "cmd.blögpost.p1.create",
            HeaderMap::new(),
            create.into(),
        ),
        (
            "Expected-Seq beyond u64",
            "cmd.blogpost.p1.create",
            header("Expected-Seq", "99999999999999999999"),
            create.into(),
        ),
        (
            "empty Expected-Seq",
            "cmd.blogpost.p1.create",
            header("Expected-Seq", ""),
            create.into(),
        ),
        (
            "JSON body with a byte order mark",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            format!("\u{feff}{create}"),
        ),
        (
            "body a JSON string",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            r#""create""#.into(),
        ),
        (
            "fields by position",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            r#"["t","b"]"#.into(),
        ),
        (
            "an amount by position",
            "cmd.account.a1.deposit",
            HeaderMap::new(),
            "[5]".into(),
        ),
        (
            "body JSON null",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            "null".into(),
        ),
        (
            "missing field",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            r#"{"title":"t"}"#.into(),
        ),
        (
            "duplicate field",
            "cmd.blogpost.p1.create",
            HeaderMap::new(),
            r#"{"title":"t","title":"u","body":"b"}"#.into(),
        ),
        (
            "fields for a command without fields",
            "cmd.blogpost.p1.publish",
            HeaderMap::new(),
            r#"{"now":true}"#.into(),
        ),
        (
            "withdraw a negative amount",
            "cmd.account.a1.withdraw",
            HeaderMap::new(),
            r#"{"amount":-5}"#.into(),
        ),
        (
            "withdraw a fractional amount",
            "cmd.account.a1.withdraw",
            HeaderMap::new(),
            r#"{"amount":1.5}"#.into(),
        ),
        (
            "withdraw an amount as a string",
            "cmd.account.a1.withdraw",
            HeaderMap::new(),
            r#"{"amount":"5"}"#.into(),
        ),
        (
            "deposit an amount beyond u64",
            "cmd.account.a1.deposit",
            HeaderMap::new(),
            r#"{"amount":18446744073709551616}"#.into(),
        ),
        (
            "deposit without an amount",
            "cmd.account.a1.deposit",
            HeaderMap::new(),
            "{}".into(),
        ),
        (
            "open with an unknown field",
            "cmd.account.a1.open",
            HeaderMap::new(),
            r#"{"owner":"ada","overdraft":1000}"#.into(),
        ),
        (
            "unknown aggregate type with a valid shape",
            "cmd.ledger.l1.open",
            HeaderMap::new(),
            r#"{"owner":"ada"}"#.into(),
        ),
        (
            "another aggregate's command",
            "cmd.account.a1.publish",
            HeaderMap::new(),
            "{}".into(),
        ),
    ];
    let tried = cases.len();
    let mut answered = 0;
    for (name, subject, headers, body) in cases {
        match raw(&client, subject, headers, &body).await {
            Some(reply) => {
                answered += 1;
                assert_eq!(
                    reply.code(),
                    Some(RejectionCode::BadRequest),
                    "{name}: {reply:?}"
                );
            }
            // NATS itself may refuse a subject before any handler sees it;
            // that is a rejection too, as long as nothing was written.
            None => assert!(
                name.contains("token") || name.contains("wildcard"),
                "{name}: no answer"
            ),
        }
    }
    eprintln!("bad input: {tried} server-side cases tried, {answered} answered bad_request, the rest refused by NATS, 0 written");
    assert!(answered >= 30, "only {answered} cases reached the handler");
    for stream in ["EVT_BLOGPOST", "EVT_ACCOUNT"] {
        let (messages, _) = stream_state(&js.client, stream).await;
        assert_eq!(messages, 0, "bad input wrote nothing to {stream}");
    }
    // And the runtime keeps serving.
    let good = commands(&server.client_url()).await;
    common::create(&good, "p1").await;
    let open = send_account(&good, "a1", "open", r#"{"owner":"ada"}"#).await;
    assert!(open.is_accepted(), "{open:?}");
    js.stop().await;
}

/// `Expected-Seq` is a stream sequence in decimal digits; a sign, a radix
/// or an exponent is not one, and a lenient parse would accept what a client in
/// another language may mean differently.
#[tokio::test]
async fn expected_seq_is_digits_only() {
    let server = NatsServer::new();
    let js = Jetsource::start(&server.client_url()).await;
    let client = async_nats::connect(server.client_url())
        .await
        .expect("connect");
    // (Whitespace around a header value is part of the header syntax and
    // never reaches the runtime, so " 0 " is simply 0.)
    for value in ["+0", "0x10", "1e3", "0 1", "\u{661}"] {
        let reply = raw(
            &client,
            "cmd.blogpost.p1.create",
            header("Expected-Seq", value),
            r#"{"title":"t","body":"b"}"#,
        )
        .await
        .expect("an answer");
        assert_eq!(
            reply.code(),
            Some(RejectionCode::BadRequest),
            "{value:?}: {reply:?}"
        );
    }
    let (messages, _) = stream_state(&js.client, "EVT_BLOGPOST").await;
    assert_eq!(messages, 0);
    js.stop().await;
}

#[tokio::test]
async fn a_server_older_than_2_12_3_is_refused_at_connect() {
    // A minimal NATS protocol peer announcing an old version.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let info = format!(
                    "INFO {{\"server_id\":\"old\",\"server_name\":\"old\",\"version\":\"2.9.10\",\"go\":\"go1.19\",\"host\":\"127.0.0.1\",\"port\":{port},\"headers\":true,\"max_payload\":1048576,\"proto\":1}}\r\n"
                );
                if write.write_all(info.as_bytes()).await.is_err() {
                    return;
                }
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("PING") && write.write_all(b"PONG\r\n").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let err = jetsource::connect(&format!("nats://127.0.0.1:{port}"))
        .await
        .expect_err("an old server is refused");
    assert_eq!(err.kind(), ConnectErrorKind::UnsupportedServer);
    assert!(
        err.to_string().contains("2.12.3"),
        "the message names the minimum: {err}"
    );
}

/// A raw NATS client: sends `HPUB <subject> <inbox>` with `header` as the
/// header block's bytes after `NATS/1.0\r\n`, exactly as given (no client
/// library would send them), and returns the reply's body, or `None` when
/// none came.
async fn raw_hpub(url: &str, subject: &str, header: &[u8], body: &[u8]) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let address = url.trim_start_matches("nats://");
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.expect("INFO");
    assert!(line.starts_with("INFO"), "{line}");
    let mut block = b"NATS/1.0\r\n".to_vec();
    block.extend_from_slice(header);
    block.extend_from_slice(b"\r\n\r\n");
    let mut out = Vec::new();
    out.extend_from_slice(b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\nSUB raw.inbox 1\r\n");
    out.extend_from_slice(
        format!(
            "HPUB {subject} raw.inbox {} {}\r\n",
            block.len(),
            block.len() + body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&block);
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\nPING\r\n");
    write.write_all(&out).await.expect("send");
    let answer = async {
        loop {
            line.clear();
            if read.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            // MSG raw.inbox 1 <n>, or HMSG raw.inbox 1 <h> <n> (no responders).
            let parts: Vec<&str> = line.split_whitespace().collect();
            let length = match parts.first() {
                Some(&"MSG") => parts.get(3)?.parse::<usize>().ok()?,
                Some(&"HMSG") => return None,
                _ => continue,
            };
            let mut payload = vec![0; length + 2];
            read.read_exact(&mut payload).await.ok()?;
            payload.truncate(length);
            return Some(payload);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn malformed_header_bytes_are_bad_request_and_the_runtime_keeps_serving() {
    let server = NatsServer::new();
    let url = server.client_url();
    let jetsource = Jetsource::start(&url).await;
    let client = commands(&url).await;
    // (what, header bytes, whether the command names a malformed Command-Id)
    let cases: [(&str, &[u8], bool); 5] = [
        ("a lone CR in a value", b"Command-Id: a\rb", true),
        ("a lone LF in a value", b"Command-Id: a\nb", true),
        ("a line without a colon", b"Command-Id", true),
        (
            "a header block that is not UTF-8",
            b"Command-Id: a\xffb",
            true,
        ),
        // A name no header may have is left out: it cannot be one of
        // jetsource's, so the command is decided without it.
        ("a name that is no header name", b"Comm and: x", false),
    ];
    for (n, (what, header, refused)) in cases.into_iter().enumerate() {
        let subject = format!("cmd.blogpost.raw{n}.create");
        let reply = raw_hpub(&url, &subject, header, br#"{"title":"T","body":"b"}"#)
            .await
            .unwrap_or_else(|| panic!("{what}: no reply"));
        let reply: CommandReply = serde_json::from_slice(&reply).expect("a command reply");
        let want = refused.then_some(RejectionCode::BadRequest);
        assert_eq!(reply.code(), want, "{what}: {reply:?}");
        // And the runtime goes on serving.
        create(&client, &format!("after-{n}")).await;
    }
    jetsource.stop().await;
}

#[tokio::test]
async fn a_header_of_jetsources_in_another_case_or_twice_is_bad_request() {
    let server = NatsServer::new();
    let url = server.client_url();
    let jetsource = Jetsource::start(&url).await;
    let client = connect(&url).await;
    let body = r#"{"title":"T","body":"b"}"#;
    for name in ["command-id", "COMMAND-ID", "expected-seq", "Correlation-ID"] {
        let reply = raw(
            &client,
            "cmd.blogpost.cased.create",
            header(name, "x1"),
            body,
        )
        .await
        .unwrap_or_else(|| panic!("{name}: no reply"));
        assert_eq!(
            reply.code(),
            Some(RejectionCode::BadRequest),
            "{name}: {reply:?}"
        );
    }
    for name in ["Command-Id", "Expected-Seq", "Causation-Id"] {
        let mut twice = HeaderMap::new();
        twice.append(name, "1");
        twice.append(name, "2");
        let reply = raw(&client, "cmd.blogpost.twice.create", twice, body)
            .await
            .unwrap_or_else(|| panic!("{name}: no reply"));
        assert_eq!(
            reply.code(),
            Some(RejectionCode::BadRequest),
            "{name} twice: {reply:?}"
        );
    }
    // Nothing was written for either post, and other headers pass.
    let events =
        jetsource.events_of("cased").await.len() + jetsource.events_of("twice").await.len();
    assert_eq!(events, 0);
    let reply = raw(
        &client,
        "cmd.blogpost.fine.create",
        header("X-Trace", "t"),
        body,
    )
    .await
    .expect("a reply");
    assert!(reply.is_accepted(), "{reply:?}");
    jetsource.stop().await;
}
