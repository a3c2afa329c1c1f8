//! docs/asyncapi.yaml, the contract downstream teams generate consumers from, names
//! exactly the Kafka topics, RabbitMQ routing keys, event types and headers that the
//! sinks produce, and its payloads point at the JSON Schemas in schemas/.
//!
//! What is produced comes from the code path the sinks use: fixture bodies through
//! `vizion::parse`, `events::normalize` (or the dead-letter and unsubscription events),
//! `sinks::messages`, `KafkaTopics::for_kind`, `rabbitmq::routing_key`,
//! `KafkaSink::headers` and `rabbitmq::properties`, all with the default configuration.

#[path = "fixtures/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use rdkafka::message::Headers as _;
use serde_json::Value;
use support::*;
use vizion_bridge::events::{
    self, BridgeEventKind, ChangeEvent, Content, DeliveryKind, DeliveryMode, Envelope,
    EventContext, MilestoneCode, MilestoneEvents, Provenance, Publish, Unsubscription,
};
use vizion_bridge::sinks::kafka::{KafkaConfig, KafkaSink};
use vizion_bridge::sinks::rabbitmq::{self, RabbitmqConfig};
use vizion_bridge::sinks::{messages, Message};
use vizion_bridge::vizion;

/// What a message carries instead of a CloudEvents type when it is the body as received.
const RAW_BODY: &str = "(body as received)";
const KAFKA: &str = "kafka";
const AMQP: &str = "amqp";

/// One kind of message on one channel: (protocol, address, event type or [`RAW_BODY`]).
type ChannelMessage = (String, String, String);

/// One message as a sink publishes it.
struct Produced {
    header_names: BTreeSet<String>,
    dataschema: Option<String>,
}

/// One message as the document describes it.
struct Documented {
    /// Where in the document, for failure messages.
    at: String,
    declared_headers: BTreeSet<String>,
    required_headers: BTreeSet<String>,
    dataschema_const: Option<String>,
    /// The payload's `$ref`, when it points into another file.
    payload_ref: Option<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn document() -> Value {
    let path = root().join("docs/asyncapi.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).expect("docs/asyncapi.yaml is YAML")
}

/// Follows a local `$ref` (`#/...`); other values are returned as they are.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with("#/") => {
            let target = doc
                .pointer(&r[1..])
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
            resolve(doc, target)
        }
        _ => value,
    }
}

/// The header schemas of a message, `allOf` flattened.
fn header_parts<'a>(doc: &'a Value, headers: &'a Value) -> Vec<&'a Value> {
    let headers = resolve(doc, headers);
    match headers.get("allOf").and_then(Value::as_array) {
        Some(parts) => parts.iter().flat_map(|p| header_parts(doc, p)).collect(),
        None => vec![headers],
    }
}

fn documented_messages(doc: &Value) -> BTreeMap<ChannelMessage, Documented> {
    let mut out = BTreeMap::new();
    for (channel_name, channel) in doc["channels"].as_object().expect("channels") {
        let servers = channel["servers"]
            .as_array()
            .expect("channel names its servers");
        assert_eq!(servers.len(), 1, "{channel_name}: one server per channel");
        let protocol = resolve(doc, &servers[0])["protocol"].as_str().unwrap();
        let address = channel["address"].as_str().expect("address").to_owned();
        for (message_name, message) in channel["messages"].as_object().expect("messages") {
            let message = resolve(doc, message);
            let parts = header_parts(doc, &message["headers"]);
            let mut declared_headers = BTreeSet::new();
            let mut required_headers = BTreeSet::new();
            let mut consts = BTreeMap::new();
            for part in parts {
                for (name, schema) in part["properties"].as_object().into_iter().flatten() {
                    declared_headers.insert(name.clone());
                    if let Some(value) = resolve(doc, schema).get("const") {
                        consts.insert(name.clone(), value.as_str().unwrap().to_owned());
                    }
                }
                for name in part["required"].as_array().into_iter().flatten() {
                    required_headers.insert(name.as_str().unwrap().to_owned());
                }
            }
            let prefix = if protocol == KAFKA {
                "ce_"
            } else {
                "cloudEvents:"
            };
            let event_type = consts
                .get(&format!("{prefix}type"))
                .cloned()
                .unwrap_or_else(|| RAW_BODY.into());
            let payload_ref = message["payload"]["$ref"]
                .as_str()
                .filter(|r| !r.starts_with('#'))
                .map(str::to_owned);
            let key = (protocol.to_owned(), address.clone(), event_type);
            let documented = Documented {
                at: format!("channels.{channel_name}.messages.{message_name}"),
                declared_headers,
                required_headers,
                dataschema_const: consts.get(&format!("{prefix}dataschema")).cloned(),
                payload_ref,
            };
            assert!(
                out.insert(key.clone(), documented).is_none(),
                "{key:?} is described twice"
            );
        }
    }
    out
}

/// The AMQP routing key with the document's parameter names in place of the values it
/// is built from, so that it reads as the channel address (`update.{carrierScac}`).
fn routing_key_template(message: &Message<'_>, delivery_kind: Option<&str>) -> String {
    let mut template = message.clone();
    template.carrier_scac = Some("{carrierScac}");
    if template.milestone.is_some() {
        template.milestone = Some(MilestoneCode {
            event_code: "{eventCode}",
            event_classifier: "{eventClassifier}",
        });
    }
    rabbitmq::routing_key(&template, delivery_kind)
}

fn add_messages(produced: &mut Vec<(ChannelMessage, Produced)>, record: &Envelope) {
    let topics = KafkaConfig::default().topics;
    for message in messages(record) {
        let event_type = message
            .event
            .map_or(RAW_BODY.to_owned(), |e| e.event_type().to_owned());
        let dataschema = message
            .event
            .and_then(|e| e.dataschema())
            .map(str::to_owned);
        let kafka_headers = KafkaSink::headers(&message)
            .iter()
            .map(|h| h.key.to_owned())
            .collect();
        produced.push((
            (
                KAFKA.into(),
                topics.for_kind(message.kind).to_owned(),
                event_type.clone(),
            ),
            Produced {
                header_names: kafka_headers,
                dataschema: dataschema.clone(),
            },
        ));
        let properties = rabbitmq::properties(&message, 0);
        let amqp_headers = properties
            .headers()
            .as_ref()
            .map(|table| table.inner().keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        produced.push((
            (
                AMQP.into(),
                routing_key_template(&message, record.kind_name()),
                event_type,
            ),
            Produced {
                header_names: amqp_headers,
                dataschema,
            },
        ));
    }
}

/// The change events of `update` against no state, and against a state that announced
/// other estimates, each with the code of the milestone it is about (its routing).
fn change_events(update: &vizion::Update, ctx: &EventContext) -> Vec<ChangeEvent> {
    let derive = |state: Option<&events::changes::MilestoneState>| {
        events::changes::derive(
            state,
            update,
            RECEIVED_AT,
            DeliveryMode::Webhook,
            ctx,
            events::changes::DEFAULT_ETA_CHANGE_THRESHOLD,
        )
    };
    let first = derive(None);
    // A first estimate is no change: against a state that announced other estimates,
    // the same update moves them.
    let mut announced = first.next_state.clone();
    for eta in [&mut announced.port_eta, &mut announced.inland_eta] {
        if eta.is_some() {
            *eta = Some("2000-01-01T00:00:00Z".into());
        }
    }
    first
        .events
        .into_iter()
        .chain(derive(Some(&announced)).events)
        .collect()
}

/// Every message the sinks publish for the fixture bodies, the dead-letter bodies and
/// an automatic unsubscription.
fn produced_messages() -> Vec<(ChannelMessage, Produced)> {
    let ctx = EventContext::default();
    let provenance = Provenance::Webhook {
        request_id: "req".into(),
        client_ip: Ipv4Addr::LOCALHOST.into(),
        key_id: None,
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    };
    let mut produced = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(fixtures().join("bodies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let body = body(&name);
        match vizion::parse(&body) {
            Ok(inbound) => {
                let batch =
                    events::normalize(&inbound, &body, RECEIVED_AT, DeliveryMode::Webhook, &ctx);
                // `events.milestones = "all"` publishes the milestones themselves,
                // `"changes"` (the default) what changed: every milestone is new to a
                // reference without a state, and its estimates move from those announced.
                let changes = match &inbound {
                    vizion::Inbound::Update(update) => {
                        MilestoneEvents::Changes(change_events(update, &ctx))
                    }
                    _ => MilestoneEvents::Snapshots,
                };
                for milestones in [MilestoneEvents::Snapshots, changes] {
                    let record = Envelope::new(
                        Content::Updates {
                            batch: Box::new(batch.clone()),
                            kind: DeliveryKind::of(&inbound),
                            delivery_id: inbound.dedup_key().map(str::to_owned),
                            publish: Publish {
                                milestones,
                                raw: true,
                            },
                        },
                        provenance.clone(),
                        RECEIVED_AT,
                    );
                    add_messages(&mut produced, &record);
                }
            }
            Err(dead) => {
                let event = events::dead_letter_event(
                    &dead,
                    &body,
                    RECEIVED_AT,
                    DeliveryMode::Webhook,
                    &ctx,
                );
                let record = Envelope::new(
                    Content::DeadLetter {
                        event,
                        reason: dead.reason.as_str(),
                    },
                    provenance.clone(),
                    RECEIVED_AT,
                );
                add_messages(&mut produced, &record);
            }
        }
    }
    let unsubscribed = events::reference_unsubscribed_event(
        &Unsubscription {
            reference_id: "ref-1",
            container_id: Some("MSCU1234567"),
            carrier_scac: Some("MSCU"),
            update_id: "upd-1",
            reason: "journey_complete",
            vizion_message: None,
        },
        RECEIVED_AT,
        &ctx,
    );
    let record = Envelope::new(
        Content::BridgeEvent {
            event: unsubscribed,
            kind: BridgeEventKind::ReferenceUnsubscribed,
        },
        provenance,
        RECEIVED_AT,
    );
    add_messages(&mut produced, &record);
    produced
}

#[test]
fn the_document_names_exactly_the_channels_and_event_types_produced() {
    let documented: BTreeSet<ChannelMessage> =
        documented_messages(&document()).into_keys().collect();
    let produced: BTreeSet<ChannelMessage> = produced_messages()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let undocumented: Vec<_> = produced.difference(&documented).collect();
    let never_produced: Vec<_> = documented.difference(&produced).collect();
    assert!(
        undocumented.is_empty() && never_produced.is_empty(),
        "docs/asyncapi.yaml is out of date.\nproduced but not described: {undocumented:#?}\n\
         described but never produced: {never_produced:#?}"
    );
}

#[test]
fn every_header_a_sink_sets_is_described_and_every_required_one_is_set() {
    let documented = documented_messages(&document());
    let mut problems = Vec::new();
    for (key, produced) in produced_messages() {
        let Some(doc) = documented.get(&key) else {
            continue; // reported by the test above
        };
        for name in produced.header_names.difference(&doc.declared_headers) {
            problems.push(format!(
                "{}: header `{name}` is set but not described",
                doc.at
            ));
        }
        for name in doc.required_headers.difference(&produced.header_names) {
            problems.push(format!("{}: required header `{name}` is not set", doc.at));
        }
        if produced.dataschema != doc.dataschema_const {
            problems.push(format!(
                "{}: dataschema is {:?}, described as {:?}",
                doc.at, produced.dataschema, doc.dataschema_const
            ));
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn payloads_point_at_the_schema_of_their_event_and_every_schema_is_used() {
    let docs_dir = root().join("docs");
    let documented = documented_messages(&document());
    let produced: BTreeMap<ChannelMessage, Option<String>> = produced_messages()
        .into_iter()
        .map(|(key, p)| (key, p.dataschema))
        .collect();
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (key, doc) in &documented {
        let Some(expected) = produced.get(key).cloned() else {
            continue; // reported by the_document_names_exactly_the_channels_and_event_types_produced
        };
        let Some(reference) = &doc.payload_ref else {
            if let Some(id) = expected {
                problems.push(format!("{}: payload should be the data of {id}", doc.at));
            }
            continue;
        };
        let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
        let path = docs_dir.join(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            problems.push(format!("{}: {reference} names no file", doc.at));
            continue;
        };
        let path = path.canonicalize().unwrap();
        if path.parent() != Some(&root().join("schemas").canonicalize().unwrap()) {
            problems.push(format!("{}: {reference} is not in schemas/", doc.at));
        }
        let schema: Value = serde_json::from_str(&text).unwrap();
        if schema.pointer(pointer).is_none() {
            problems.push(format!("{}: {reference}: no {pointer} in the file", doc.at));
        }
        if expected.as_deref() != schema["$id"].as_str() {
            problems.push(format!(
                "{}: {reference} has $id {}, the event's dataschema is {expected:?}",
                doc.at, schema["$id"]
            ));
        }
        used.insert(path);
    }
    for entry in std::fs::read_dir(root().join("schemas")).unwrap() {
        let path = entry.unwrap().path().canonicalize().unwrap();
        if !used.contains(&path) {
            problems.push(format!("{} is no message's payload", path.display()));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn servers_and_bindings_name_the_default_brokers_topics_and_exchange() {
    let doc = document();
    let kafka = KafkaConfig::default();
    let rabbitmq = RabbitmqConfig::default();
    assert_eq!(doc["servers"]["kafka"]["host"], kafka.brokers.as_str());
    let mut exchanges = Vec::new();
    for (name, channel) in doc["channels"].as_object().unwrap() {
        let bindings = resolve(&doc, &channel["bindings"]);
        if let Some(binding) = bindings.get("kafka") {
            assert_eq!(
                binding["topic"], channel["address"],
                "{name}: topic binding"
            );
        }
        if let Some(binding) = bindings.get("amqp") {
            assert_eq!(binding["is"], "routingKey", "{name}");
            exchanges.push(binding["exchange"].clone());
        }
    }
    assert!(!exchanges.is_empty(), "no RabbitMQ channel");
    assert!(
        exchanges.iter().all(|e| *e == exchanges[0]),
        "one exchange for every routing key"
    );
    assert_eq!(exchanges[0]["name"], rabbitmq.exchange.as_str());
    assert_eq!(exchanges[0]["type"], "topic");
    assert_eq!(exchanges[0]["durable"], true);
}

#[test]
fn milestone_routing_parameters_take_the_values_of_the_milestone_schema() {
    let doc = document();
    let path = root().join("schemas/milestone.v1.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let fields = &schema["$defs"]["data"]["properties"];
    let parameters = &doc["components"]["parameters"];
    assert_eq!(
        parameters["eventClassifier"]["enum"], fields["event_classifier"]["enum"],
        "eventClassifier lists every classifier"
    );
    let codes = fields["event_code"]["enum"].as_array().unwrap();
    for example in parameters["eventCode"]["examples"].as_array().unwrap() {
        assert!(codes.contains(example), "{example} is not an event code");
    }
}
