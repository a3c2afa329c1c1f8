//! Reads a request body with a size limit and a deadline.

use std::time::Duration;

use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::StreamExt;

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    TimedOut,
    Broken(String),
}

/// What is read in advance when the sender declares no length.
const UNDECLARED_CAPACITY: usize = 8 * 1024;

/// A body being received: it never holds more than its limit, whatever the sender
/// declared or sends.
pub struct LimitedBody {
    received: BytesMut,
    limit: usize,
}

impl LimitedBody {
    /// Room for `declared_len` bytes up front, but never more than `limit`: a declared
    /// length is only a claim.
    pub fn new(limit: usize, declared_len: Option<usize>) -> Self {
        let capacity = declared_len.unwrap_or(UNDECLARED_CAPACITY).min(limit);
        Self {
            received: BytesMut::with_capacity(capacity),
            limit,
        }
    }

    /// Adds a chunk, or refuses it, keeping nothing of it, when it would pass the limit.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), BodyError> {
        if chunk.len() > self.limit - self.received.len() {
            return Err(BodyError::TooLarge);
        }
        self.received.extend_from_slice(chunk);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.received.len()
    }

    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    pub fn finish(self) -> Bytes {
        self.received.freeze()
    }
}

/// Reads the whole body, stopping as soon as it passes `limit` bytes or `deadline`
/// passes, so that a large or slow body costs no more than that.
pub(super) async fn read_limited(
    payload: &mut Payload,
    limit: usize,
    deadline: Duration,
    declared_len: Option<usize>,
) -> Result<Bytes, BodyError> {
    let read = async {
        let mut body = LimitedBody::new(limit, declared_len);
        while let Some(chunk) = payload.next().await {
            body.push(&chunk.map_err(|e| BodyError::Broken(e.to_string()))?)?;
        }
        Ok(body.finish())
    };
    tokio::time::timeout(deadline, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_may_fill_its_limit_exactly_but_not_pass_it() {
        let mut body = LimitedBody::new(5, None);
        body.push(b"abc").unwrap();
        body.push(b"de").unwrap();
        assert_eq!(body.push(b"f"), Err(BodyError::TooLarge));
        assert_eq!(&body.finish()[..], b"abcde");
    }

    #[test]
    fn a_declared_length_beyond_the_limit_reserves_only_the_limit() {
        let body = LimitedBody::new(16, Some(usize::MAX));
        assert!(body.received.capacity() < 1024);
    }
}
