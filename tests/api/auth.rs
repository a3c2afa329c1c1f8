//! Authentication: one test per scheme and per rejection reason.

use serde_json::Value;
use vizion_bridge::auth::{KeyConfig, Mode, Scheme};
use vizion_bridge::secret::InlineSecret;

use crate::helpers::*;

/// Posts with the given headers and checks a 401 with `reason`, its metric, and that
/// nothing was written.
async fn assert_rejected(app: &TestApp, body: &[u8], headers: Vec<(String, String)>, reason: &str) {
    let before = app
        .metric(
            "vizion_bridge_auth_failures_total",
            &format!("reason=\"{reason}\",mode=\"enforce\""),
        )
        .await;
    let written_before = app.updates().len();
    let response = app.post(body, &headers).await;
    assert_eq!(response.status().as_u16(), 401, "expected 401 for {reason}");
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "unauthorized");
    assert!(
        answer["message"].as_str().unwrap().contains(reason),
        "message names the reason: {answer}"
    );
    let after = app
        .metric(
            "vizion_bridge_auth_failures_total",
            &format!("reason=\"{reason}\",mode=\"enforce\""),
        )
        .await;
    assert_eq!(after - before, 1.0, "auth failure counted for {reason}");
    assert_eq!(
        app.updates().len(),
        written_before,
        "nothing written for a rejected request"
    );
}

#[tokio::test]
async fn a_correctly_signed_update_is_accepted_and_written() {
    let app = spawn_app().await;
    let body = update_body("u-accept-1");
    let response = app.post_signed(&body).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"status": "accepted", "id": "u-accept-1"})
    );
    let updates = app.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["id"], "u-accept-1");
    assert_eq!(updates[0]["data"]["update_id"], "u-accept-1");
    assert_eq!(updates[0]["subject"], "OOCU7821056");
    let raw = app.raw_records();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0]["delivery_id"], "u-accept-1");
    assert_eq!(raw[0]["key_id"], KEY_ID);
    assert_eq!(
        decode_base64(&raw[0]["body_base64"]),
        body,
        "kept byte for byte"
    );
    assert_eq!(
        app.metric("vizion_bridge_webhooks_total", "outcome=\"accepted\"")
            .await,
        1.0
    );
}

#[tokio::test]
async fn the_vizion_samples_are_accepted() {
    let app = spawn_app().await;
    for name in [
        "mid-journey-transshipment.json",
        "bol-child-journey-complete.json",
        "sparse-early-with-nulls.json",
    ] {
        let body = sample(name);
        let response = app.post_signed(&body).await;
        assert_eq!(response.status().as_u16(), 200, "{name}");
    }
    assert_eq!(app.updates().len(), 3);
}

#[tokio::test]
async fn a_missing_signature_is_rejected() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let headers = vec![("digest".into(), SignatureBuilder::new(&body).digest_value())];
    assert_rejected(&app, &body, headers, "missing_signature").await;
}

#[tokio::test]
async fn a_malformed_signature_is_rejected() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let builder = SignatureBuilder::new(&body);
    for broken in [
        "keyId=\"k1\",signature=\"zz-not-hex\"".to_string(),
        "this is not a parameter list".to_string(),
        builder
            .signature_header()
            .replace("created=", "created=soon"),
    ] {
        let headers = vec![
            ("x-vizion-signature".into(), broken),
            ("digest".into(), builder.digest_value()),
        ];
        assert_rejected(&app, &body, headers, "malformed_signature").await;
    }
}

#[tokio::test]
async fn a_tampered_body_fails_the_digest() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let headers = SignatureBuilder::new(&body).headers();
    let tampered = update_body("u2");
    assert_rejected(&app, &tampered, headers, "bad_digest").await;
}

#[tokio::test]
async fn a_digest_that_cannot_be_read_is_rejected() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let mut builder = SignatureBuilder::new(&body);
    builder.digest_override = Some("SHA-256=not-a-digest".into());
    assert_rejected(&app, &body, builder.headers(), "malformed_digest").await;
}

#[tokio::test]
async fn a_second_digest_header_is_rejected() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let mut headers = SignatureBuilder::new(&body).headers();
    let (name, value) = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("digest"))
        .cloned()
        .expect("the signature covers a digest");
    // Both name the same body: the one checked must be all that is signed.
    headers.push((name, value));
    assert_rejected(&app, &body, headers, "malformed_digest").await;
}

#[tokio::test]
async fn a_signed_digest_must_be_present() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let mut builder = SignatureBuilder::new(&body);
    builder.with_digest = false;
    assert_rejected(&app, &body, builder.headers(), "missing_digest").await;
}

#[tokio::test]
async fn a_signature_that_does_not_cover_the_digest_is_rejected() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let mut builder = SignatureBuilder::new(&body);
    builder.covered = "(request-target) (created) (expires)".into();
    assert_rejected(&app, &body, builder.headers(), "unsigned_header").await;
}

#[tokio::test]
async fn a_covered_header_that_is_absent_is_rejected() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let builder = SignatureBuilder::new(&body);
    // Claims to cover `host-alias`, a header the request does not carry.
    let header = builder.signature_header().replace(
        "headers=\"(request-target) (created) (expires) digest\"",
        "headers=\"(request-target) (created) (expires) digest x-missing\"",
    );
    let headers = vec![
        ("x-vizion-signature".into(), header),
        ("digest".into(), builder.digest_value()),
    ];
    assert_rejected(&app, &body, headers, "missing_signed_header").await;
}

#[tokio::test]
async fn a_wrong_secret_is_rejected() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let mut builder = SignatureBuilder::new(&body);
    builder.secret = "not-the-secret".into();
    assert_rejected(&app, &body, builder.headers(), "bad_signature").await;
}

#[tokio::test]
async fn a_signature_for_another_path_is_rejected() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let mut builder = SignatureBuilder::new(&body);
    builder.target = "post /somewhere/else".into();
    assert_rejected(&app, &body, builder.headers(), "bad_signature").await;
}

#[tokio::test]
async fn an_unknown_algorithm_is_rejected() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let mut builder = SignatureBuilder::new(&body);
    builder.algorithm = Some("rsa-sha256".into());
    assert_rejected(&app, &body, builder.headers(), "unknown_algorithm").await;
}

#[tokio::test]
async fn hs2019_is_accepted_as_an_algorithm_name() {
    let app = spawn_app().await;
    let body = update_body("u-hs2019");
    let mut builder = SignatureBuilder::new(&body);
    builder.algorithm = Some("hs2019".into());
    assert_eq!(
        app.post(&body, &builder.headers()).await.status().as_u16(),
        200
    );
}

#[tokio::test]
async fn an_expired_signature_is_rejected_beyond_the_clock_skew() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let mut builder = SignatureBuilder::new(&body);
    builder.created = Some(unix_now() - 3600);
    builder.expires = Some(unix_now() - 301);
    assert_rejected(&app, &body, builder.headers(), "expired").await;

    // Within the default skew of 300 s it still counts.
    let body = update_body("u-skew");
    let mut builder = SignatureBuilder::new(&body);
    builder.created = Some(unix_now() - 600);
    builder.expires = Some(unix_now() - 200);
    assert_eq!(
        app.post(&body, &builder.headers()).await.status().as_u16(),
        200
    );
}

#[tokio::test]
async fn a_signature_created_in_the_future_is_rejected() {
    let app = spawn_app().await;
    let body = update_body("u1");
    let mut builder = SignatureBuilder::new(&body);
    builder.created = Some(unix_now() + 3600);
    builder.expires = Some(unix_now() + 4000);
    assert_rejected(&app, &body, builder.headers(), "not_yet_valid").await;
}

#[tokio::test]
async fn keys_rotate_side_by_side_and_key_ids_select_the_secret() {
    let app = spawn_app_with(|s| {
        s.auth.secrets = vec![
            KeyConfig {
                key_id: Some("old".into()),
                secret: Some(InlineSecret::new("old-secret")),
                ..Default::default()
            },
            KeyConfig {
                key_id: Some("new".into()),
                secret: Some(InlineSecret::new("new-secret")),
                ..Default::default()
            },
        ];
    })
    .await;
    for (n, (key_id, secret)) in [
        (Some("old"), "old-secret"),
        (Some("new"), "new-secret"),
        // No key id, or one we do not know: every secret is tried.
        (None, "new-secret"),
        (Some("unknown"), "old-secret"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = update_body(&format!("u-rotate-{n}"));
        let mut builder = SignatureBuilder::new(&body);
        builder.key_id = key_id.map(str::to_owned);
        builder.secret = secret.into();
        let response = app.post(&body, &builder.headers()).await;
        assert_eq!(response.status().as_u16(), 200, "key {key_id:?}");
    }
    // A key id that names one secret is checked against that secret only.
    let body = update_body("u-rotate-wrong");
    let mut builder = SignatureBuilder::new(&body);
    builder.key_id = Some("old".into());
    builder.secret = "new-secret".into();
    assert_rejected(&app, &body, builder.headers(), "bad_signature").await;
    let written: Vec<String> = app
        .raw_records()
        .iter()
        .map(|u| u["key_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(written, ["old", "new", "new", "old"]);
}

#[tokio::test]
async fn shadow_mode_accepts_but_counts_failures() {
    let app = spawn_app_with(|s| s.auth.mode = Mode::Shadow).await;
    let body = update_body("u-shadow");
    let mut builder = SignatureBuilder::new(&body);
    builder.secret = "wrong".into();
    let response = app.post(&body, &builder.headers()).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        app.metric(
            "vizion_bridge_auth_failures_total",
            "reason=\"bad_signature\",mode=\"shadow\""
        )
        .await,
        1.0
    );
    assert_eq!(app.updates().len(), 1);
}

#[tokio::test]
async fn mode_off_and_scheme_none_do_not_check() {
    for configure in [
        (|s: &mut vizion_bridge::settings::Settings| s.auth.mode = Mode::Off) as fn(&mut _),
        |s| {
            s.auth.scheme = Scheme::None;
            s.auth.secrets.clear();
        },
    ] {
        let app = spawn_app_with(configure).await;
        let response = app.post(&update_body("u-unchecked"), &[]).await;
        assert_eq!(response.status().as_u16(), 200);
    }
}

#[tokio::test]
async fn body_hmac_accepts_hex_and_base64_with_a_prefix() {
    let app = spawn_app_with(|s| {
        s.auth.scheme = Scheme::BodyHmac;
        s.auth.body_hmac.prefix = Some("sha256=".into());
    })
    .await;
    let body = update_body("u-bh-1");
    let headers = vec![(
        "x-vizion-signature".into(),
        format!("sha256={}", body_hmac_hex(SECRET, &body)),
    )];
    assert_eq!(app.post(&body, &headers).await.status().as_u16(), 200);
    let body = update_body("u-bh-2");
    let headers = vec![(
        "x-vizion-signature".into(),
        format!("sha256={}", body_hmac_base64(SECRET, &body)),
    )];
    assert_eq!(app.post(&body, &headers).await.status().as_u16(), 200);

    let body = update_body("u-bh-3");
    let headers = vec![(
        "x-vizion-signature".into(),
        format!("sha256={}", body_hmac_hex("wrong", &body)),
    )];
    assert_rejected(&app, &body, headers, "bad_signature").await;
    let headers = vec![("x-vizion-signature".into(), body_hmac_hex(SECRET, &body))];
    assert_rejected(&app, &body, headers, "malformed_signature").await;
}

#[tokio::test]
async fn auto_picks_the_reading_from_the_header() {
    let app = spawn_app_with(|s| s.auth.scheme = Scheme::Auto).await;
    let body = update_body("u-auto-1");
    assert_eq!(app.post_signed(&body).await.status().as_u16(), 200);
    let body = update_body("u-auto-2");
    let headers = vec![("x-vizion-signature".into(), body_hmac_hex(SECRET, &body))];
    assert_eq!(app.post(&body, &headers).await.status().as_u16(), 200);
    let body = update_body("u-auto-3");
    let headers = vec![("x-vizion-signature".into(), body_hmac_hex("wrong", &body))];
    assert_rejected(&app, &body, headers, "bad_signature").await;
}

#[tokio::test]
async fn auto_does_not_accept_a_signing_string_replayed_as_a_body_hmac() {
    let app = spawn_app_with(|s| s.auth.scheme = Scheme::Auto).await;
    // A captured delivery: its signing string and MAC are known to an eavesdropper.
    let captured = SignatureBuilder::new(&update_body("u-captured"));
    let forged_body = captured.signing_string().into_bytes();
    let headers = vec![("x-vizion-signature".into(), captured.signature_hex())];
    assert_rejected(&app, &forged_body, headers, "bad_signature").await;
    assert!(
        app.dead_letters().is_empty(),
        "nothing kept for a forged body"
    );
}

#[tokio::test]
async fn static_header_compares_the_whole_value() {
    let app = spawn_app_with(|s| {
        s.auth.scheme = Scheme::StaticHeader;
        s.auth.static_header.name = "x-api-key".into();
        s.auth.secrets = vec![KeyConfig {
            secret: Some(InlineSecret::new("static-token-123")),
            ..Default::default()
        }];
    })
    .await;
    let body = update_body("u-static");
    let good = vec![("x-api-key".to_string(), "static-token-123".to_string())];
    assert_eq!(app.post(&body, &good).await.status().as_u16(), 200);
    let bad = vec![("x-api-key".to_string(), "static-token-12".to_string())];
    assert_rejected(&app, &body, bad, "bad_token").await;
    assert_eq!(app.updates().len(), 1);
    let app = spawn_app_with(|s| {
        s.auth.scheme = Scheme::StaticHeader;
        s.auth.secrets = vec![KeyConfig {
            secret: Some(InlineSecret::new("Bearer abc")),
            ..Default::default()
        }];
    })
    .await;
    assert_rejected(&app, &body, vec![], "missing_token").await;
}

#[tokio::test]
async fn query_token_reads_the_callback_url() {
    let app = spawn_app_with(|s| {
        s.auth.scheme = Scheme::QueryToken;
        s.auth.secrets = vec![KeyConfig {
            secret: Some(InlineSecret::new("tok/en+1")),
            ..Default::default()
        }];
    })
    .await;
    let body = update_body("u-query");
    let good = format!("{}?customer=a&token=tok%2Fen%2B1", app.webhook_url());
    assert_eq!(app.post_to(&good, &body, &[]).await.status().as_u16(), 200);

    for (url, reason) in [
        (format!("{}?token=nope", app.webhook_url()), "bad_token"),
        (app.webhook_url(), "missing_token"),
    ] {
        let response = app.post_to(&url, &update_body("u-query-2"), &[]).await;
        assert_eq!(response.status().as_u16(), 401);
        let answer: Value = response.json().await.unwrap();
        assert!(answer["message"].as_str().unwrap().contains(reason));
    }
    assert_eq!(app.updates().len(), 1);
}
