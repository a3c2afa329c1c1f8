//! Reads a request body with a size limit and a deadline.

use std::time::Duration;

use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;

#[derive(Debug)]
pub(super) enum BodyError {
    TooLarge,
    TimedOut,
    Broken(String),
}

/// Reads the whole body, stopping as soon as it passes `limit` bytes or `deadline`
/// passes, so that a large or slow body costs no more than that.
pub(super) async fn read_limited(
    payload: &mut Payload,
    limit: usize,
    deadline: Duration,
    expected_len: Option<usize>,
) -> Result<Bytes, BodyError> {
    let read = async {
        let mut body = BytesMut::with_capacity(expected_len.unwrap_or(8 * 1024).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
            if body.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}
