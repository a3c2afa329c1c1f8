//! The body reader must never hold more than its limit, whatever length the sender
//! declares and however it cuts the body into chunks, and must keep exactly the bytes
//! it accepted, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vizion_bridge::ingest::body::{BodyError, LimitedBody};

// Input: 2 bytes of limit, 1 flag byte and 8 bytes of declared length, then chunks,
// each one length byte followed by up to that many bytes.
fuzz_target!(|input: &[u8]| {
    if input.len() < 11 {
        return;
    }
    let limit = usize::from(u16::from_le_bytes([input[0], input[1]]));
    let declared = (input[2] & 1 == 1).then(|| {
        let bytes: [u8; 8] = input[3..11].try_into().unwrap();
        u64::from_le_bytes(bytes) as usize
    });
    let mut body = LimitedBody::new(limit, declared);
    let mut accepted = Vec::new();
    let mut rest = &input[11..];
    while let Some((&len, tail)) = rest.split_first() {
        let chunk = &tail[..usize::from(len).min(tail.len())];
        rest = &tail[chunk.len()..];
        match body.push(chunk) {
            Ok(()) => accepted.extend_from_slice(chunk),
            Err(BodyError::TooLarge) => {
                assert!(accepted.len() + chunk.len() > limit);
                break;
            }
            Err(other) => panic!("pushing a chunk can only be refused as too large: {other:?}"),
        }
        assert!(body.len() <= limit);
    }
    let received = body.finish();
    assert!(received.len() <= limit);
    assert_eq!(&received[..], &accepted[..]);
});
