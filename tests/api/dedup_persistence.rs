//! Update ids already written are remembered across a restart: in the storage
//! directory by default, in Redis when it is configured (shared by replicas).

use vizion_bridge::secret::InlineSecret;
use vizion_bridge::settings::Settings;

use crate::helpers::*;

async fn post_status(app: &TestApp, body: &[u8]) -> String {
    let answer: serde_json::Value = app.post_signed(body).await.json().await.unwrap();
    answer["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_restart_remembers_written_updates_in_the_storage_directory() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_from(test_settings(dir.path())).await;
    assert_eq!(post_status(&app, &update_body("u-kept")).await, "accepted");
    app.stop().await;

    let app = spawn_app_from(test_settings(dir.path())).await;
    assert_eq!(post_status(&app, &update_body("u-kept")).await, "duplicate");
    assert_eq!(post_status(&app, &update_body("u-new")).await, "accepted");
    assert_eq!(app.update_ids(), ["u-kept", "u-new"]);
    app.stop().await;

    // With persistence off, a restart forgets.
    let mut settings = test_settings(dir.path());
    settings.dedup.persist = false;
    let app = spawn_app_from(settings).await;
    assert_eq!(post_status(&app, &update_body("u-new")).await, "accepted");
    app.stop().await;
}

fn with_redis(dir: &std::path::Path, prefix: &str) -> Settings {
    let mut settings = test_settings(dir);
    settings.dedup.redis_url = Some(InlineSecret::new("redis://127.0.0.1:6379/0"));
    settings.dedup.redis_key_prefix = prefix.to_owned();
    settings
}

#[tokio::test]
async fn replicas_sharing_redis_remember_each_others_updates_across_restarts() {
    let prefix = format!("vizion-bridge-test:{}:", uuid::Uuid::new_v4());
    let (first_dir, second_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = spawn_app_from(with_redis(first_dir.path(), &prefix)).await;
    assert_eq!(
        post_status(&first, &update_body("u-redis")).await,
        "accepted"
    );
    first.stop().await;

    // Another replica, with its own disk, started after the first stopped.
    let second = spawn_app_from(with_redis(second_dir.path(), &prefix)).await;
    assert_eq!(
        post_status(&second, &update_body("u-redis")).await,
        "duplicate"
    );
    assert!(second.update_ids().is_empty());
    second.stop().await;

    // Another prefix is another deployment: nothing shared.
    let other = format!("vizion-bridge-test:{}:", uuid::Uuid::new_v4());
    let third = spawn_app_from(with_redis(second_dir.path(), &other)).await;
    assert_eq!(
        post_status(&third, &update_body("u-redis")).await,
        "accepted"
    );
    third.stop().await;
}
