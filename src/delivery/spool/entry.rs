//! What one spool entry holds: a sink [`Record`] with everything it refers to, so that
//! the forwarder re-creates exactly the record the webhook produced (same event ids,
//! attributes, data, headers and trace context).
//!
//! The encoding is a version byte, then fields in a fixed order: integers little
//! endian, byte strings as a `u32` length and the bytes, options as a 0/1 byte before
//! the value, lists as a `u32` count.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use time::OffsetDateTime;

use crate::events::{BatchKeys, CloudEvent, MilestoneCode, NormalizedBatch};
use crate::sinks::{Receipt, Record};

const VERSION: u8 = 1;
const EVENTS: u8 = 1;
const DEAD_LETTER: u8 = 2;
const BRIDGE_EVENT: u8 = 3;

/// A record read back from the spool, owning what it refers to.
#[derive(Debug, Clone)]
pub enum StoredRecord {
    Events {
        batch: Box<NormalizedBatch>,
        kind: &'static str,
        delivery_id: Option<String>,
        receipt: Receipt,
    },
    DeadLetter {
        event: CloudEvent,
        reason: &'static str,
        receipt: Receipt,
    },
    BridgeEvent {
        event: CloudEvent,
        kind: &'static str,
        receipt: Receipt,
    },
}

impl StoredRecord {
    pub fn record(&self) -> Record<'_> {
        match self {
            StoredRecord::Events {
                batch,
                kind,
                delivery_id,
                receipt,
            } => Record::Events {
                batch,
                kind,
                delivery_id: delivery_id.as_deref(),
                receipt,
            },
            StoredRecord::DeadLetter {
                event,
                reason,
                receipt,
            } => Record::DeadLetter {
                event,
                reason,
                receipt,
            },
            StoredRecord::BridgeEvent {
                event,
                kind,
                receipt,
            } => Record::BridgeEvent {
                event,
                kind,
                receipt,
            },
        }
    }
}

/// What keeps entries in order: entries with the same key are forwarded one after the
/// other; the container (or else the reference) of an update, the id of a dead letter,
/// and the subject (the container) of an event of the bridge's own, so that a
/// `reference.unsubscribed` follows the update that completed the journey.
pub fn order_key(record: &Record<'_>) -> String {
    match record {
        Record::Events {
            batch, delivery_id, ..
        } => {
            let keys = batch.keys();
            // With nothing to order by, the record's own first event id: it then waits
            // for nobody, rather than for every other record without a key.
            keys.container_id
                .as_deref()
                .or(keys.reference_id.as_deref())
                .or(*delivery_id)
                .or_else(|| batch.events().next().map(|event| event.id()))
                .unwrap_or_default()
                .to_owned()
        }
        Record::DeadLetter { event, .. } => event.id().to_owned(),
        Record::BridgeEvent { event, .. } => event.subject().unwrap_or(event.id()).to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("spool entry cannot be decoded: {0}")]
pub struct DecodeError(&'static str);

pub fn encode(record: &Record<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.push(VERSION);
    match record {
        Record::Events {
            batch,
            kind,
            delivery_id,
            receipt,
        } => {
            out.push(EVENTS);
            put_receipt(&mut out, receipt);
            put_str(&mut out, kind);
            put_opt(&mut out, *delivery_id);
            put_opt_event(&mut out, batch.tracking_update());
            put_u32(&mut out, batch.milestones().len() as u32);
            for event in batch.milestones() {
                put_event(&mut out, event);
            }
            put_opt_event(&mut out, batch.pass_through());
            put_bytes(&mut out, batch.raw_body());
            put_u32(&mut out, batch.unknown_descriptions() as u32);
            let keys = batch.keys();
            put_opt(&mut out, keys.reference_id.as_deref());
            put_opt(&mut out, keys.container_id.as_deref());
            put_opt(&mut out, keys.carrier_scac.as_deref());
            put_u32(&mut out, batch.milestone_codes().len() as u32);
            for code in batch.milestone_codes() {
                put_str(&mut out, code.event_code);
                put_str(&mut out, code.event_classifier);
            }
            out.push(u8::from(batch.journey_complete()));
        }
        Record::DeadLetter {
            event,
            reason,
            receipt,
        } => {
            out.push(DEAD_LETTER);
            put_receipt(&mut out, receipt);
            put_str(&mut out, reason);
            put_event(&mut out, event);
        }
        Record::BridgeEvent {
            event,
            kind,
            receipt,
        } => {
            out.push(BRIDGE_EVENT);
            put_receipt(&mut out, receipt);
            put_str(&mut out, kind);
            put_event(&mut out, event);
        }
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<StoredRecord, DecodeError> {
    let mut input = Input(bytes);
    if input.u8()? != VERSION {
        return Err(DecodeError("unknown version"));
    }
    let tag = input.u8()?;
    let receipt = input.receipt()?;
    let record = match tag {
        EVENTS => {
            let kind = intern(input.str()?);
            let delivery_id = input.opt_string()?;
            let tracking_update = input.opt_event()?;
            let milestones = (0..input.u32()?)
                .map(|_| input.event())
                .collect::<Result<_, _>>()?;
            let pass_through = input.opt_event()?;
            let raw = input.bytes()?.to_vec();
            let unknown = input.u32()? as usize;
            let keys = BatchKeys {
                reference_id: input.opt_string()?,
                container_id: input.opt_string()?,
                carrier_scac: input.opt_string()?,
            };
            let codes = (0..input.u32()?)
                .map(|_| {
                    Ok(MilestoneCode {
                        event_code: intern(input.str()?),
                        event_classifier: intern(input.str()?),
                    })
                })
                .collect::<Result<_, DecodeError>>()?;
            let journey_complete = match input.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError("bad journey_complete flag")),
            };
            StoredRecord::Events {
                batch: Box::new(NormalizedBatch::from_parts(
                    tracking_update,
                    milestones,
                    pass_through,
                    raw,
                    unknown,
                    keys,
                    codes,
                    journey_complete,
                )),
                kind,
                delivery_id,
                receipt,
            }
        }
        DEAD_LETTER => {
            let reason = intern(input.str()?);
            let event = input.event()?;
            StoredRecord::DeadLetter {
                event,
                reason,
                receipt,
            }
        }
        BRIDGE_EVENT => {
            let kind = intern(input.str()?);
            let event = input.event()?;
            StoredRecord::BridgeEvent {
                event,
                kind,
                receipt,
            }
        }
        _ => return Err(DecodeError("unknown record kind")),
    };
    if !input.0.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(record)
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

fn put_receipt(out: &mut Vec<u8>, receipt: &Receipt) {
    put_str(out, &receipt.request_id);
    out.extend_from_slice(&receipt.received_at.unix_timestamp_nanos().to_le_bytes());
    put_str(out, &receipt.client_ip.to_string());
    put_opt(out, receipt.key_id.as_deref());
    put_opt(out, receipt.traceparent.as_deref());
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

    fn receipt(&mut self) -> Result<Receipt, DecodeError> {
        let request_id = self.str()?.to_owned();
        let nanos = i128::from_le_bytes(self.take(16)?.try_into().expect("16 bytes"));
        let received_at = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .map_err(|_| DecodeError("time out of range"))?;
        let client_ip: IpAddr = self
            .str()?
            .parse()
            .map_err(|_| DecodeError("bad client address"))?;
        Ok(Receipt {
            request_id,
            received_at,
            client_ip,
            key_id: self.opt_string()?,
            traceparent: self.opt_string()?,
        })
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

/// The `&'static str` that events and records use for names fixed by the code (schema
/// ids, extension names, milestone codes, kinds, reasons). Each distinct text is
/// allocated once for the life of the process; there are a few dozen.
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
    use crate::events::{self, EventContext};
    use crate::vizion;

    const BODY: &str = r#"{"id":"u1","reference_id":"r1","payload":{"container_id":"MSCU1234567","carrier_scac":"MSCU","milestones":[
        {"description":"Gate out empty","timestamp":"2024-01-01T00:00:00Z","planned":false},
        {"description":"Vessel arrived at destination port","timestamp":"2024-02-01T00:00:00Z","planned":true}]}}"#;

    fn receipt() -> Receipt {
        Receipt {
            request_id: "req-1".into(),
            received_at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
                .unwrap(),
            client_ip: Ipv4Addr::new(10, 1, 2, 3).into(),
            key_id: Some("k1".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        }
    }

    #[test]
    fn an_update_comes_back_as_the_same_record_and_messages() {
        let inbound = vizion::parse(BODY.as_bytes()).unwrap();
        let receipt = receipt();
        let batch = events::normalize(
            &inbound,
            BODY.as_bytes(),
            receipt.received_at,
            &EventContext::default(),
        );
        let record = Record::Events {
            batch: &batch,
            kind: inbound.kind(),
            delivery_id: inbound.dedup_key(),
            receipt: &receipt,
        };
        let stored = decode(&encode(&record)).unwrap();
        let StoredRecord::Events {
            batch: back,
            kind,
            delivery_id,
            receipt: back_receipt,
        } = &stored
        else {
            panic!("events expected");
        };
        assert_eq!(**back, batch);
        assert_eq!(*kind, "update");
        assert_eq!(delivery_id.as_deref(), Some("u1"));
        assert_eq!(back_receipt.received_at, receipt.received_at);
        assert_eq!(back_receipt.traceparent, receipt.traceparent);
        let before: Vec<_> = record.messages().iter().map(|m| format!("{m:?}")).collect();
        let after: Vec<_> = stored
            .record()
            .messages()
            .iter()
            .map(|m| format!("{m:?}"))
            .collect();
        assert_eq!(before, after);
        assert_eq!(order_key(&stored.record()), "MSCU1234567");
    }

    #[test]
    fn a_dead_letter_comes_back_whole_and_damage_is_an_error() {
        let body = b"{not json";
        let dead = vizion::parse(body).unwrap_err();
        let receipt = receipt();
        let event =
            events::dead_letter_event(&dead, body, receipt.received_at, &EventContext::default());
        let record = Record::DeadLetter {
            event: &event,
            reason: dead.reason.as_str(),
            receipt: &receipt,
        };
        let bytes = encode(&record);
        let stored = decode(&bytes).unwrap();
        assert_eq!(format!("{:?}", stored.record()), format!("{record:?}"));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
    }
}

#[cfg(test)]
mod fixture_gen {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::events::{self, DeliveryMode, EventContext, Unsubscription};
    use crate::vizion;

    const BODY: &str = r#"{"id":"u1","reference_id":"r1","payload":{"container_id":"MSCU1234567","carrier_scac":"MSCU","milestones":[
        {"description":"Gate out empty","timestamp":"2024-01-01T00:00:00Z","planned":false},
        {"description":"Vessel arrived at destination port","timestamp":"2024-02-01T00:00:00Z","planned":true}]}}"#;

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap()
    }

    #[test]
    #[ignore]
    fn write_v1_fixtures() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/events/envelope/fixtures");
        std::fs::create_dir_all(&dir).unwrap();
        let ctx = EventContext::default();
        let webhook = Receipt {
            request_id: "req-1".into(),
            received_at: at(),
            client_ip: Ipv4Addr::new(10, 1, 2, 3).into(),
            key_id: Some("k1".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        };
        let inbound = vizion::parse(BODY.as_bytes()).unwrap();
        let batch = events::normalize(&inbound, BODY.as_bytes(), at(), &ctx);
        let record = Record::Events { batch: &batch, kind: inbound.kind(), delivery_id: inbound.dedup_key(), receipt: &webhook };
        std::fs::write(dir.join("v1_webhook_update.bin"), encode(&record)).unwrap();
        dump(&dir, "v1_webhook_update", &record);

        let poll = Receipt {
            request_id: "poll-1".into(),
            received_at: at(),
            client_ip: Ipv4Addr::new(192, 0, 2, 7).into(),
            key_id: None,
            traceparent: None,
        };
        let mut polled = batch.clone();
        polled.set_delivery_mode(DeliveryMode::Poll);
        let record = Record::Events { batch: &polled, kind: inbound.kind(), delivery_id: inbound.dedup_key(), receipt: &poll };
        std::fs::write(dir.join("v1_poll_update.bin"), encode(&record)).unwrap();
        dump(&dir, "v1_poll_update", &record);

        let alert = br#"{"id":"a1","reference_id":"r1","event_type":"exception_alert","payload":{"x":1}}"#;
        if let Ok(inbound) = vizion::parse(alert) {
            let batch = events::normalize(&inbound, alert, at(), &ctx);
            let record = Record::Events { batch: &batch, kind: inbound.kind(), delivery_id: inbound.dedup_key(), receipt: &webhook };
            std::fs::write(dir.join("v1_webhook_pass_through.bin"), encode(&record)).unwrap();
        dump(&dir, "v1_webhook_pass_through", &record);
        }

        let body = b"{not json";
        let dead = vizion::parse(body).unwrap_err();
        let event = events::dead_letter_event(&dead, body, at(), &ctx);
        let record = Record::DeadLetter { event: &event, reason: dead.reason.as_str(), receipt: &webhook };
        std::fs::write(dir.join("v1_webhook_dead_letter.bin"), encode(&record)).unwrap();
        dump(&dir, "v1_webhook_dead_letter", &record);

        let bridge = Receipt {
            request_id: "unsubscribe-1".into(),
            received_at: at(),
            client_ip: std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            key_id: None,
            traceparent: None,
        };
        let event = events::reference_unsubscribed_event(
            &Unsubscription {
                reference_id: "r1",
                container_id: Some("MSCU1234567"),
                carrier_scac: Some("MSCU"),
                update_id: "u1",
                reason: "journey_complete",
                vizion_message: Some("ok"),
            },
            at(),
            &ctx,
        );
        let record = Record::BridgeEvent { event: &event, kind: "reference_unsubscribed", receipt: &bridge };
        std::fs::write(dir.join("v1_bridge_event.bin"), encode(&record)).unwrap();
        dump(&dir, "v1_bridge_event", &record);
    }

    fn dump(dir: &std::path::Path, name: &str, record: &Record<'_>) {
        let mut out = String::new();
        for m in record.messages() {
            out.push_str(&format!("{:?} id={} key={:?} ct={} scac={:?} ms={:?}\n", m.kind, m.id, m.key, m.content_type, m.carrier_scac, m.milestone.map(|c| (c.event_code, c.event_classifier))));
            out.push_str(&format!("  payload={}\n", String::from_utf8_lossy(m.payload)));
            if let Some(e) = m.event {
                for (n, v) in e.kafka_headers() { out.push_str(&format!("  kafka {n}={v}\n")); }
                for (n, v) in e.amqp_application_properties() { out.push_str(&format!("  amqp {n}={v}\n")); }
                out.push_str(&format!("  structured={}\n", String::from_utf8_lossy(&e.to_structured_json())));
            }
            for (n, v) in &m.headers { out.push_str(&format!("  header {n}={v}\n")); }
        }
        std::fs::write(dir.join(format!("{name}.messages.txt")), out).unwrap();
    }
}
