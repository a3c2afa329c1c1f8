//! The bytes an [`Envelope`] is stored as in the spool, and back.
//!
//! An entry is a version byte, then fields in a fixed order: integers little endian,
//! byte strings as a `u32` length and the bytes, options as a 0/1 byte before the value,
//! lists as a `u32` count. Version 2 stores the provenance as such; version 1 (written
//! by earlier releases) stored a webhook-shaped receipt for every record, and is still
//! read so that a spool survives an upgrade. A replayed envelope has a provenance tag
//! of its own within version 2: records written before it existed read as they did.
//! Version 3 adds to an update which of its events are published (the change events in
//! place of the milestone events, whether the raw body goes to the brokers); a version
//! 2 record publishes what it did when it was written: every milestone event and the
//! raw body.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use time::OffsetDateTime;

use super::{
    BridgeEventKind, ChangeEvent, Content, DeliveryKind, Envelope, MilestoneEvents, Provenance,
    Publish,
};
use crate::events::{
    BatchKeys, CloudEvent, DeliveryMode, MilestoneCode, NormalizedBatch, DELIVERY_MODE_ATTRIBUTE,
};

/// The version this release writes.
const VERSION: u8 = 3;
/// Records of releases that did not say which events of an update are published.
const VERSION_ALL_PUBLISHED: u8 = 2;
/// Records of releases that stored a receipt in place of the provenance.
const VERSION_RECEIPT: u8 = 1;

const UPDATES: u8 = 1;
const DEAD_LETTER: u8 = 2;
const BRIDGE_EVENT: u8 = 3;

const SNAPSHOTS: u8 = 0;
const CHANGES: u8 = 1;

const WEBHOOK: u8 = 1;
const POLL: u8 = 2;
const BRIDGE: u8 = 3;
const REPLAY: u8 = 4;

#[derive(Debug, thiserror::Error)]
#[error("spool entry cannot be decoded: {0}")]
pub struct DecodeError(&'static str);

pub fn encode(envelope: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.push(VERSION);
    out.push(match envelope.content() {
        Content::Updates { .. } => UPDATES,
        Content::DeadLetter { .. } => DEAD_LETTER,
        Content::BridgeEvent { .. } => BRIDGE_EVENT,
    });
    match envelope.provenance() {
        Provenance::Webhook {
            request_id,
            client_ip,
            key_id,
            traceparent,
        } => {
            out.push(WEBHOOK);
            put_str(&mut out, request_id);
            put_str(&mut out, &client_ip.to_string());
            put_opt(&mut out, key_id.as_deref());
            put_opt(&mut out, traceparent.as_deref());
        }
        Provenance::Poll { request_id, peer } => {
            out.push(POLL);
            put_str(&mut out, request_id);
            put_opt(&mut out, peer.map(|p| p.to_string()).as_deref());
        }
        Provenance::Replay { request_id } => {
            out.push(REPLAY);
            put_str(&mut out, request_id);
        }
        Provenance::Bridge => out.push(BRIDGE),
    }
    put_time(&mut out, envelope.received_at());
    put_content(&mut out, envelope.content());
    out
}

fn put_content(out: &mut Vec<u8>, content: &Content) {
    match content {
        Content::Updates {
            batch,
            kind,
            delivery_id,
            publish,
        } => {
            put_str(out, kind.as_str());
            put_opt(out, delivery_id.as_deref());
            put_opt_event(out, batch.tracking_update.as_ref());
            put_u32(out, batch.milestones.len() as u32);
            for event in &batch.milestones {
                put_event(out, event);
            }
            put_opt_event(out, batch.pass_through.as_ref());
            put_bytes(out, &batch.raw);
            put_u32(out, batch.unknown_descriptions as u32);
            put_opt(out, batch.keys.reference_id.as_deref());
            put_opt(out, batch.keys.container_id.as_deref());
            put_opt(out, batch.keys.carrier_scac.as_deref());
            put_u32(out, batch.milestone_codes.len() as u32);
            for code in &batch.milestone_codes {
                put_str(out, code.event_code);
                put_str(out, code.event_classifier);
            }
            out.push(u8::from(batch.journey_complete));
            out.push(u8::from(publish.raw));
            match &publish.milestones {
                MilestoneEvents::Snapshots => out.push(SNAPSHOTS),
                MilestoneEvents::Changes(changes) => {
                    out.push(CHANGES);
                    put_u32(out, changes.len() as u32);
                    for change in changes {
                        put_event(out, &change.event);
                        match change.milestone {
                            Some(code) => {
                                out.push(1);
                                put_str(out, code.event_code);
                                put_str(out, code.event_classifier);
                            }
                            None => out.push(0),
                        }
                    }
                }
            }
        }
        Content::DeadLetter { event, reason } => {
            put_str(out, reason);
            put_event(out, event);
        }
        Content::BridgeEvent { event, kind } => {
            put_str(out, kind.as_str());
            put_event(out, event);
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let mut input = Input(bytes);
    let envelope = match input.u8()? {
        version @ (VERSION | VERSION_ALL_PUBLISHED) => {
            let tag = input.u8()?;
            let provenance = input.provenance()?;
            let received_at = input.time()?;
            let content = input.content(tag, version == VERSION)?;
            Envelope::new(content, provenance, received_at)
        }
        VERSION_RECEIPT => {
            let tag = input.u8()?;
            let receipt = input.receipt()?;
            let content = input.content(tag, false)?;
            let received_at = receipt.received_at;
            let provenance = receipt.provenance(&content);
            Envelope::new(content, provenance, received_at)
        }
        _ => return Err(DecodeError("unknown version")),
    };
    if !input.0.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(envelope)
}

/// What version 1 stored for every record, whatever its origin.
struct Receipt {
    request_id: String,
    received_at: OffsetDateTime,
    client_ip: IpAddr,
    key_id: Option<String>,
    traceparent: Option<String>,
}

impl Receipt {
    /// Version 1 told a polled update from a webhook only by the `deliverymode` of its
    /// events, and gave events of the bridge's own an unspecified address.
    fn provenance(self, content: &Content) -> Provenance {
        let event = match content {
            Content::Updates { batch, .. } => batch.events().next(),
            Content::DeadLetter { event, .. } => Some(event),
            Content::BridgeEvent { .. } => return Provenance::Bridge,
        };
        let polled = event.and_then(|e| e.extension(DELIVERY_MODE_ATTRIBUTE))
            == Some(DeliveryMode::Poll.as_str());
        if polled {
            Provenance::Poll {
                request_id: self.request_id,
                peer: (!self.client_ip.is_unspecified()).then_some(self.client_ip),
            }
        } else {
            Provenance::Webhook {
                request_id: self.request_id,
                client_ip: self.client_ip,
                key_id: self.key_id,
                traceparent: self.traceparent,
            }
        }
    }
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_time(out: &mut Vec<u8>, at: OffsetDateTime) {
    out.extend_from_slice(&at.unix_timestamp_nanos().to_le_bytes());
}

fn put_opt_event(out: &mut Vec<u8>, event: Option<&CloudEvent>) {
    match event {
        Some(event) => {
            out.push(1);
            put_event(out, event);
        }
        None => out.push(0),
    }
}

fn put_event(out: &mut Vec<u8>, event: &CloudEvent) {
    put_str(out, &event.id);
    put_str(out, &event.source);
    put_str(out, &event.event_type);
    put_opt(out, event.subject.as_deref());
    put_str(out, &event.time);
    put_opt(out, event.dataschema);
    put_u32(out, event.extensions.len() as u32);
    for (name, value) in &event.extensions {
        put_str(out, name);
        put_str(out, value);
    }
    put_bytes(out, &event.data);
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError("text is not UTF-8"))
    }

    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad option flag")),
        }
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, DecodeError> {
        if self.flag()? {
            Ok(Some(self.str()?))
        } else {
            Ok(None)
        }
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        Ok(self.opt_str()?.map(str::to_owned))
    }

    fn time(&mut self) -> Result<OffsetDateTime, DecodeError> {
        let nanos = i128::from_le_bytes(self.take(16)?.try_into().expect("16 bytes"));
        OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .map_err(|_| DecodeError("time out of range"))
    }

    fn ip(&mut self) -> Result<IpAddr, DecodeError> {
        self.str()?
            .parse()
            .map_err(|_| DecodeError("bad client address"))
    }

    fn provenance(&mut self) -> Result<Provenance, DecodeError> {
        Ok(match self.u8()? {
            WEBHOOK => Provenance::Webhook {
                request_id: self.str()?.to_owned(),
                client_ip: self.ip()?,
                key_id: self.opt_string()?,
                traceparent: self.opt_string()?,
            },
            POLL => Provenance::Poll {
                request_id: self.str()?.to_owned(),
                peer: if self.flag()? { Some(self.ip()?) } else { None },
            },
            REPLAY => Provenance::Replay {
                request_id: self.str()?.to_owned(),
            },
            BRIDGE => Provenance::Bridge,
            _ => return Err(DecodeError("unknown provenance")),
        })
    }

    fn receipt(&mut self) -> Result<Receipt, DecodeError> {
        Ok(Receipt {
            request_id: self.str()?.to_owned(),
            received_at: self.time()?,
            client_ip: self.ip()?,
            key_id: self.opt_string()?,
            traceparent: self.opt_string()?,
        })
    }

    /// `with_publish`: the record says which events of an update are published.
    fn content(&mut self, tag: u8, with_publish: bool) -> Result<Content, DecodeError> {
        Ok(match tag {
            UPDATES => {
                let kind = DeliveryKind::from_name(self.str()?)
                    .ok_or(DecodeError("unknown delivery kind"))?;
                let delivery_id = self.opt_string()?;
                let tracking_update = self.opt_event()?;
                let milestones = (0..self.u32()?)
                    .map(|_| self.event())
                    .collect::<Result<_, _>>()?;
                let pass_through = self.opt_event()?;
                let raw = self.bytes()?.to_vec();
                let unknown_descriptions = self.u32()? as usize;
                let keys = BatchKeys {
                    reference_id: self.opt_string()?,
                    container_id: self.opt_string()?,
                    carrier_scac: self.opt_string()?,
                };
                let milestone_codes = (0..self.u32()?)
                    .map(|_| {
                        Ok(MilestoneCode {
                            event_code: intern(self.str()?),
                            event_classifier: intern(self.str()?),
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?;
                let journey_complete = match self.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError("bad journey_complete flag")),
                };
                let publish = if with_publish {
                    self.publish()?
                } else {
                    Publish::default()
                };
                Content::Updates {
                    batch: Box::new(NormalizedBatch {
                        tracking_update,
                        milestones,
                        pass_through,
                        raw,
                        unknown_descriptions,
                        keys,
                        milestone_codes,
                        journey_complete,
                    }),
                    kind,
                    delivery_id,
                    publish,
                }
            }
            DEAD_LETTER => Content::DeadLetter {
                reason: intern(self.str()?),
                event: self.event()?,
            },
            BRIDGE_EVENT => Content::BridgeEvent {
                kind: BridgeEventKind::from_name(self.str()?)
                    .ok_or(DecodeError("unknown bridge event kind"))?,
                event: self.event()?,
            },
            _ => return Err(DecodeError("unknown record kind")),
        })
    }

    fn publish(&mut self) -> Result<Publish, DecodeError> {
        let raw = self.flag()?;
        let milestones = match self.u8()? {
            SNAPSHOTS => MilestoneEvents::Snapshots,
            CHANGES => MilestoneEvents::Changes(
                (0..self.u32()?)
                    .map(|_| {
                        let event = self.event()?;
                        let milestone = if self.flag()? {
                            Some(MilestoneCode {
                                event_code: intern(self.str()?),
                                event_classifier: intern(self.str()?),
                            })
                        } else {
                            None
                        };
                        Ok(ChangeEvent { event, milestone })
                    })
                    .collect::<Result<_, DecodeError>>()?,
            ),
            _ => return Err(DecodeError("unknown milestone events")),
        };
        Ok(Publish { milestones, raw })
    }

    fn opt_event(&mut self) -> Result<Option<CloudEvent>, DecodeError> {
        if self.flag()? {
            Ok(Some(self.event()?))
        } else {
            Ok(None)
        }
    }

    fn event(&mut self) -> Result<CloudEvent, DecodeError> {
        let id = self.str()?.to_owned();
        let source = shared(self.str()?);
        let event_type = shared(self.str()?);
        let subject = self.opt_string()?;
        let time = Arc::from(self.str()?);
        let dataschema = self.opt_str()?.map(intern);
        let extensions = (0..self.u32()?)
            .map(|_| Ok((intern(self.str()?), self.str()?.to_owned())))
            .collect::<Result<_, DecodeError>>()?;
        let data = self.bytes()?.to_vec();
        Ok(CloudEvent {
            id,
            source,
            event_type,
            subject,
            time,
            dataschema,
            extensions,
            data,
        })
    }
}

/// The `&'static str` that events use for names fixed by the code (schema ids,
/// extension names, milestone codes, reasons). Each distinct text is allocated once
/// for the life of the process; there are a few dozen.
fn intern(s: &str) -> &'static str {
    static INTERNED: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = INTERNED
        .get_or_init(Default::default)
        .lock()
        .expect("intern lock poisoned");
    if let Some(found) = set.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// One shared allocation per distinct CloudEvents source or type.
fn shared(s: &str) -> Arc<str> {
    static SHARED: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
    let mut set = SHARED
        .get_or_init(Default::default)
        .lock()
        .expect("shared lock poisoned");
    if let Some(found) = set.get(s) {
        return found.clone();
    }
    if set.len() >= 1024 {
        return Arc::from(s);
    }
    let value: Arc<str> = Arc::from(s);
    set.insert(value.clone());
    value
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// Entries as the releases before version 2 wrote them (fixtures made with that
    /// encoder): every one must still be read.
    const V1_WEBHOOK_UPDATE: &[u8] = include_bytes!("fixtures/v1_webhook_update.bin");
    const V1_POLL_UPDATE: &[u8] = include_bytes!("fixtures/v1_poll_update.bin");
    const V1_PASS_THROUGH: &[u8] = include_bytes!("fixtures/v1_webhook_pass_through.bin");
    const V1_DEAD_LETTER: &[u8] = include_bytes!("fixtures/v1_webhook_dead_letter.bin");
    const V1_BRIDGE_EVENT: &[u8] = include_bytes!("fixtures/v1_bridge_event.bin");

    fn received_at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap()
    }

    #[test]
    fn a_version_1_webhook_update_is_read_with_its_receipt() {
        let envelope = decode(V1_WEBHOOK_UPDATE).unwrap();
        assert_eq!(envelope.received_at(), received_at());
        assert_eq!(
            *envelope.provenance(),
            Provenance::Webhook {
                request_id: "req-1".into(),
                client_ip: Ipv4Addr::new(10, 1, 2, 3).into(),
                key_id: Some("k1".into()),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            }
        );
        assert_eq!(envelope.arrival(), Some(DeliveryMode::Webhook));
        let Content::Updates {
            batch,
            kind,
            delivery_id,
            ..
        } = envelope.content()
        else {
            panic!("an update batch expected");
        };
        assert_eq!(*kind, DeliveryKind::Update);
        assert_eq!(delivery_id.as_deref(), Some("u1"));
        assert_eq!(batch.milestones().len(), 2);
        assert_eq!(batch.keys().container_id.as_deref(), Some("MSCU1234567"));
        assert_eq!(envelope.order_key(), "MSCU1234567");
    }

    #[test]
    fn a_version_1_polled_update_is_told_by_its_delivery_mode() {
        let envelope = decode(V1_POLL_UPDATE).unwrap();
        assert_eq!(
            *envelope.provenance(),
            Provenance::Poll {
                request_id: "poll-1".into(),
                peer: Some(Ipv4Addr::new(192, 0, 2, 7).into()),
            }
        );
        assert_eq!(envelope.arrival(), Some(DeliveryMode::Poll));
    }

    #[test]
    fn version_1_pass_through_dead_letter_and_bridge_event_are_read() {
        let alert = decode(V1_PASS_THROUGH).unwrap();
        assert!(matches!(
            alert.content(),
            Content::Updates {
                kind: DeliveryKind::ExceptionAlert,
                ..
            }
        ));
        let dead = decode(V1_DEAD_LETTER).unwrap();
        let Content::DeadLetter { reason, event } = dead.content() else {
            panic!("a dead letter expected");
        };
        assert_eq!(*reason, "not_json");
        assert_eq!(dead.order_key(), event.id());
        assert_eq!(dead.arrival(), Some(DeliveryMode::Webhook));
        let bridge = decode(V1_BRIDGE_EVENT).unwrap();
        assert_eq!(*bridge.provenance(), Provenance::Bridge);
        assert!(matches!(
            bridge.content(),
            Content::BridgeEvent {
                kind: BridgeEventKind::ReferenceUnsubscribed,
                ..
            }
        ));
        assert_eq!(bridge.order_key(), "MSCU1234567");
    }

    #[test]
    fn every_envelope_comes_back_whole_from_version_2() {
        for v1 in [
            V1_WEBHOOK_UPDATE,
            V1_POLL_UPDATE,
            V1_PASS_THROUGH,
            V1_DEAD_LETTER,
            V1_BRIDGE_EVENT,
        ] {
            let envelope = decode(v1).unwrap();
            let bytes = encode(&envelope);
            assert_eq!(bytes[0], VERSION);
            assert_eq!(decode(&bytes).unwrap(), envelope);
        }
        let polled_without_peer = Envelope::new(
            decode(V1_POLL_UPDATE).unwrap().content().clone(),
            Provenance::Poll {
                request_id: "poll-2".into(),
                peer: None,
            },
            received_at(),
        );
        assert_eq!(
            decode(&encode(&polled_without_peer)).unwrap(),
            polled_without_peer
        );
        let replayed = Envelope::new(
            decode(V1_WEBHOOK_UPDATE).unwrap().content().clone(),
            Provenance::Replay {
                request_id: "req-1".into(),
            },
            received_at(),
        );
        let bytes = encode(&replayed);
        assert_eq!(bytes[0], VERSION);
        let back = decode(&bytes).unwrap();
        assert_eq!(back, replayed);
        assert_eq!(back.arrival(), Some(DeliveryMode::Replay));
    }

    #[test]
    fn what_an_update_publishes_comes_back_from_version_3() {
        let v1 = decode(V1_WEBHOOK_UPDATE).unwrap();
        let Content::Updates {
            batch,
            kind,
            delivery_id,
            publish,
        } = v1.content().clone()
        else {
            panic!("an update batch expected");
        };
        // Records of earlier releases publish every milestone and the raw body.
        assert_eq!(publish, Publish::default());
        let mut v2 = encode(&v1);
        // Version 2 ended where version 3 says what is published (raw flag, tag).
        assert_eq!(v2.split_off(v2.len() - 2), [1, SNAPSHOTS]);
        v2[0] = VERSION_ALL_PUBLISHED;
        assert_eq!(decode(&v2).unwrap(), v1);
        let change = batch.milestones()[0].clone();
        for publish in [
            Publish {
                milestones: MilestoneEvents::Changes(vec![
                    ChangeEvent {
                        event: change.clone(),
                        milestone: Some(batch.milestone_codes()[0]),
                    },
                    ChangeEvent {
                        event: change.clone(),
                        milestone: None,
                    },
                ]),
                raw: false,
            },
            Publish {
                milestones: MilestoneEvents::Changes(Vec::new()),
                raw: true,
            },
        ] {
            let envelope = Envelope::new(
                Content::Updates {
                    batch: batch.clone(),
                    kind,
                    delivery_id: delivery_id.clone(),
                    publish,
                },
                v1.provenance().clone(),
                v1.received_at(),
            );
            let bytes = encode(&envelope);
            assert_eq!(bytes[0], VERSION);
            assert_eq!(decode(&bytes).unwrap(), envelope);
        }
    }

    #[test]
    fn damage_is_an_error() {
        let bytes = encode(&decode(V1_DEAD_LETTER).unwrap());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut later = bytes;
        later[0] = VERSION + 1;
        assert!(decode(&later).is_err());
    }
}
