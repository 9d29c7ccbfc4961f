//! Who the console answers: on loopback without a token, requests
//! addressed to a loopback host; with a token, requests carrying it (header
//! or the sign-in's cookie); actions only as JSON.

mod common;

use common::*;
use jetsource::config::Config;

async fn console(server: &NatsServer, token: Option<&str>) -> (InProcessRun, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut config = Config::default();
    config.console.addr = addr.clone();
    config.console.token = token.map(jetsource::auth::Secret::new);
    let serving = InProcessRun::spawn(reference_app(), config, Some(&server.client_url()));
    eventually("the console listening", DEADLINE, || async {
        tokio::net::TcpStream::connect(&addr).await.ok()
    })
    .await;
    (serving, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_only_loopback_hosts_and_json_actions_are_answered() {
    let server = NatsServer::new();
    let (serving, addr) = console(&server, None).await;
    let get = |host: &'static str| {
        let addr = addr.clone();
        async move {
            http_raw(
                &addr,
                &format!("GET /api/streams HTTP/1.1\r\nHost: {host}"),
                "",
            )
            .await
            .0
        }
    };
    assert_eq!(get("127.0.0.1").await, 200);
    assert_eq!(get("localhost:9465").await, 200);
    // A name that resolves to loopback only for the attacker's page.
    assert_eq!(get("rebound.example:9465").await, 403);
    let post = |content_type: &'static str| {
        let addr = addr.clone();
        async move {
            http_raw(
                &addr,
                &format!("POST /api/replay-parked/blogposts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}"),
                "{}",
            )
            .await
            .0
        }
    };
    // What a form on another site can send is refused before it acts.
    assert_eq!(post("text/plain").await, 415);
    assert_eq!(post("application/x-www-form-urlencoded").await, 415);
    let (status, sent) = http_raw(
        &addr,
        "POST /api/send/blogpost/a1/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json",
        r#"{"body":{"title":"T","body":"B"}}"#,
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert!(sent.contains(r#""status":"accepted""#), "{sent}");
    // A bad id is refused as the CLI refuses it, before any subject is built.
    let (status, refused) = http_raw(
        &addr,
        "POST /api/send/blogpost/a.b/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json",
        r#"{"body":{}}"#,
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    serving.stop().await.expect("a clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_request_carries_it() {
    let server = NatsServer::new();
    let (serving, addr) = console(&server, Some("s3cret-token")).await;
    let get = |auth: &'static str| {
        let addr = addr.clone();
        async move {
            http_raw(
                &addr,
                &format!("GET /api/streams HTTP/1.1\r\nHost: console.example{auth}"),
                "",
            )
            .await
            .0
        }
    };
    assert_eq!(get("").await, 401);
    assert_eq!(get("\r\nAuthorization: Bearer wrong-token").await, 401);
    assert_eq!(get("\r\nAuthorization: Bearer s3cret-token").await, 200);
    // The page itself holds nothing and asks for the token.
    assert_eq!(
        http_raw(&addr, "GET / HTTP/1.1\r\nHost: console.example", "")
            .await
            .0,
        200
    );
    let sign_in = |token: &'static str| {
        let addr = addr.clone();
        async move {
            http_raw(
                &addr,
                "POST /api/signin HTTP/1.1\r\nHost: console.example\r\nContent-Type: application/json",
                &format!(r#"{{"token":"{token}"}}"#),
            )
            .await
        }
    };
    assert_eq!(sign_in("wrong").await.0, 401);
    let (status, signed_in) = sign_in("s3cret-token").await;
    assert_eq!(status, 204, "{signed_in}");
    let cookie = signed_in
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    assert!(
        signed_in.contains("HttpOnly") && signed_in.contains("SameSite=Strict"),
        "{signed_in}"
    );
    let (status, _) = http_raw(
        &addr,
        &format!("GET /api/streams HTTP/1.1\r\nHost: console.example\r\nCookie: {cookie}"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    serving.stop().await.expect("a clean shutdown");
}
