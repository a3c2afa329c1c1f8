//! Source checks: allowlist, trusted proxies, IPv6.

use serde_json::Value;

use crate::helpers::*;

fn forwarded(value: &str) -> (String, String) {
    ("x-forwarded-for".into(), value.into())
}

async fn assert_forbidden(app: &TestApp, extra: Vec<(String, String)>) {
    let body = update_body("u-src");
    let mut headers = SignatureBuilder::new(&body).headers();
    headers.extend(extra);
    let response = app.post(&body, &headers).await;
    assert_eq!(response.status().as_u16(), 403);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "forbidden");
    assert!(app.updates().is_empty());
}

#[tokio::test]
async fn a_source_outside_the_allowlist_is_forbidden_even_with_a_valid_signature() {
    let app =
        spawn_app_with(|s| s.ingest.allowed_sources = vec!["54.164.144.86/32".parse().unwrap()])
            .await;
    assert_forbidden(&app, vec![]).await;
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"forbidden\"")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app =
        spawn_app_with(|s| s.ingest.allowed_sources = vec!["54.164.144.86/32".parse().unwrap()])
            .await;
    assert_forbidden(&app, vec![forwarded("54.164.144.86")]).await;
    assert_forbidden(&app, vec![("forwarded".into(), "for=54.164.144.86".into())]).await;
}

#[tokio::test]
async fn behind_a_proxy_that_writes_forwarded_a_client_x_forwarded_for_is_ignored() {
    let app = spawn_app_with(|s| {
        s.ingest.allowed_sources = vec!["54.164.144.86/32".parse().unwrap()];
        s.ingest.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        s.ingest.forwarded_header = vizion_bridge::ingest::ForwardedHeader::Forwarded;
    })
    .await;
    // The client forged X-Forwarded-For; the proxy recorded the real client in Forwarded.
    assert_forbidden(
        &app,
        vec![
            forwarded("54.164.144.86"),
            ("forwarded".into(), "for=6.6.6.6".into()),
        ],
    )
    .await;
    let body = update_body("u-fwd");
    let mut headers = SignatureBuilder::new(&body).headers();
    headers.push(("forwarded".into(), "for=54.164.144.86;proto=https".into()));
    assert_eq!(app.post(&body, &headers).await.status().as_u16(), 200);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_checked() {
    let app = spawn_app_with(|s| {
        s.ingest.allowed_sources = vec!["54.164.144.86/32".parse().unwrap()];
        s.ingest.trusted_proxies = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
    })
    .await;

    let body = update_body("u-proxied");
    let mut headers = SignatureBuilder::new(&body).headers();
    // Vizion, then an inner proxy; the left-most entry is whatever the client claimed.
    headers.push(forwarded("6.6.6.6, 54.164.144.86, 10.2.3.4"));
    let response = app.post(&body, &headers).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(app.raw_records()[0]["client_ip"], "54.164.144.86");

    // The right-most untrusted hop is someone else: refused, whatever is further left.
    let mut app_updates = app.updates().len();
    assert_eq!(app_updates, 1);
    let body = update_body("u-proxied-2");
    let mut headers = SignatureBuilder::new(&body).headers();
    headers.push(forwarded("54.164.144.86, 6.6.6.6"));
    assert_eq!(app.post(&body, &headers).await.status().as_u16(), 403);

    // The proxy itself, with no forwarding header, is not an allowed source.
    let body = update_body("u-proxied-3");
    assert_eq!(app.post_signed(&body).await.status().as_u16(), 403);
    app_updates = app.updates().len();
    assert_eq!(app_updates, 1);
}

#[tokio::test]
async fn ipv6_clients_are_checked_against_ipv6_networks() {
    let app = spawn_app_with(|s| {
        s.server.listen = "[::1]:0".parse().unwrap();
        s.ingest.allowed_sources = vec!["::1/128".parse().unwrap()];
    })
    .await;
    let body = update_body("u-v6");
    let response = app.post_signed(&body).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(app.raw_records()[0]["client_ip"], "::1");

    let app = spawn_app_with(|s| {
        s.server.listen = "[::1]:0".parse().unwrap();
        s.ingest.allowed_sources = vec![
            "2001:db8::/32".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
    })
    .await;
    assert_forbidden(&app, vec![]).await;
}

#[tokio::test]
async fn an_allowlist_entry_written_as_ipv4_mapped_ipv6_admits_its_ipv4_client() {
    let app = spawn_app_with(|s| {
        s.ingest.allowed_sources = vec!["::ffff:127.0.0.1/128".parse().unwrap()];
    })
    .await;
    let body = update_body("u-mapped");
    let response = app.post_signed(&body).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(app.raw_records()[0]["client_ip"], "127.0.0.1");
}
