//! Who may use the console: with a token configured, requests carrying it;
//! without one (loopback only), requests addressed to loopback.

use super::Console;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// The cookie the sign-in sets, so that the page's event streams (which
/// cannot send headers) carry the token too.
const COOKIE: &str = "jetsource_console";

/// Equal, in time that depends on the lengths only: how long a wrong
/// guess takes says nothing of how much of it was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                pair.trim()
                    .strip_prefix(&format!("{COOKIE}="))
                    .map(str::to_string)
            })
    })
}

/// True when `host` (a `Host` header) names a loopback address.
fn loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Lets a request through, or answers 401 (token) or 403 (host).
pub(super) async fn check(
    State(console): State<Arc<Console>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    // The page and its assets hold nothing; the page asks for the token.
    let open = matches!(path, "/" | "/console.js" | "/console.css" | "/api/signin");
    match &console.token {
        Some(token) if !open => match presented(request.headers()) {
            Some(given) if same(given.as_bytes(), token.expose().trim().as_bytes()) => {}
            _ => {
                return (StatusCode::UNAUTHORIZED, "a console token is required\n").into_response()
            }
        },
        Some(_) => {}
        None => {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !loopback_host(host) {
                return (
                    StatusCode::FORBIDDEN,
                    "the console answers loopback hosts only\n",
                )
                    .into_response();
            }
        }
    }
    // Another site's page can make a browser post forms and plain text
    // here, never JSON without asking first (CORS): an action must be JSON.
    if request.method() != Method::GET
        && request.method() != Method::HEAD
        && !json(request.headers())
    {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "actions take application/json\n",
        )
            .into_response();
    }
    next.run(request).await
}

fn json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

/// The sign-in form's body.
#[derive(serde::Deserialize)]
pub(super) struct SignIn {
    token: String,
}

/// Sets the token cookie when the token is right.
pub(super) async fn sign_in(
    State(console): State<Arc<Console>>,
    Json(sign_in): Json<SignIn>,
) -> Response {
    let Some(token) = &console.token else {
        return StatusCode::NO_CONTENT.into_response();
    };
    if !same(sign_in.token.as_bytes(), token.expose().trim().as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "wrong token\n").into_response();
    }
    // A token is a printable string; anything else cannot be a cookie value.
    if !sign_in
        .token
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b';')
    {
        return (
            StatusCode::BAD_REQUEST,
            "the token cannot be kept in a cookie\n",
        )
            .into_response();
    }
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
        sign_in.token
    );
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn only_loopback_hosts_are_loopback() {
        for host in [
            "127.0.0.1:9465",
            "localhost:9465",
            "[::1]:9465",
            "localhost",
            "127.0.0.2",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:9465",
            "10.0.0.1:9465",
            "",
            "localhost.evil.example",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn the_token_is_read_from_the_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=b; jetsource_console=t0k".parse().expect("header"),
        );
        assert_eq!(presented(&headers).as_deref(), Some("t0k"));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer other".parse().expect("header"),
        );
        assert_eq!(presented(&headers).as_deref(), Some("other"));
    }
}
