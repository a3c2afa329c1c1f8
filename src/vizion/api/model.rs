//! What the Vizion REST API takes and answers. Fields the bridge does not use are kept
//! in `extra`, so that `--json` output shows Vizion's answer whole.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A reference (Vizion's word for one tracking subscription).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Reference {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_of_lading: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_number: Option<String>,
    /// The carrier code; see [`Reference::carrier`] for older names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier_scac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_attempted_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivate_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_reference_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Everything else Vizion sent, as sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Reference {
    /// The carrier code, under whichever name Vizion used (`carrier_code`,
    /// `carrier_scac`, or the older `scac`).
    pub fn carrier(&self) -> Option<&str> {
        self.carrier_code
            .as_deref()
            .or(self.carrier_scac.as_deref())
            .or_else(|| self.extra.get("scac").and_then(Value::as_str))
    }

    /// True unless Vizion says the reference is inactive.
    pub fn is_active(&self) -> bool {
        self.active != Some(false)
    }

    /// Whether Vizion posts this reference's updates somewhere.
    pub fn has_callback(&self) -> bool {
        self.callback_url
            .as_deref()
            .is_some_and(|url| !url.trim().is_empty())
    }
}

/// What to track: one of the three ways Vizion accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscribe {
    /// A container with a known carrier.
    Container {
        container_id: String,
        carrier_code: String,
    },
    /// Every container on a bill of lading (Vizion creates one child reference per
    /// container); with `container_id`, only that one.
    BillOfLading {
        bill_of_lading: String,
        carrier_code: String,
        container_id: Option<String>,
    },
    /// A container whose carrier Vizion identifies itself (billable even if it fails).
    AutoCarrier { container_id: String },
}

/// The body of `POST /references`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewReference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bill_of_lading: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

impl NewReference {
    pub fn new(what: Subscribe, callback_url: Option<String>) -> Self {
        let (container_id, bill_of_lading, carrier_code) = match what {
            Subscribe::Container {
                container_id,
                carrier_code,
            } => (Some(container_id), None, Some(carrier_code)),
            Subscribe::BillOfLading {
                bill_of_lading,
                carrier_code,
                container_id,
            } => (container_id, Some(bill_of_lading), Some(carrier_code)),
            Subscribe::AutoCarrier { container_id } => (Some(container_id), None, None),
        };
        Self {
            container_id,
            bill_of_lading,
            carrier_code,
            callback_url,
        }
    }
}

/// The answer to `POST /references`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Created {
    #[serde(default)]
    pub message: Option<String>,
    pub reference: Reference,
}

/// The answer to `DELETE /references/{id}`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Unsubscribed {
    #[serde(default)]
    pub message: Option<String>,
}

/// Filters of `GET /references`; unset fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReferenceFilter {
    /// `Some(false)` lists inactive references; Vizion's default is active only.
    pub active: Option<bool>,
    pub container_id: Option<String>,
    pub bill_of_lading: Option<String>,
    pub booking_number: Option<String>,
    pub carrier_code: Option<String>,
    /// Up to five callback URLs.
    pub callback_urls: Vec<String>,
    pub last_update_status: Option<String>,
    pub deactivate_reasons: Vec<String>,
}

impl ReferenceFilter {
    /// The query parameters, without pagination.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(active) = self.active {
            query.push(("active", active.to_string()));
        }
        let mut one = |name, value: &Option<String>| {
            if let Some(value) = value {
                query.push((name, value.clone()));
            }
        };
        one("container_id", &self.container_id);
        one("bill_of_lading", &self.bill_of_lading);
        one("booking_number", &self.booking_number);
        one("carrier_code", &self.carrier_code);
        one("last_update_status", &self.last_update_status);
        for url in &self.callback_urls {
            query.push(("callback_urls", url.clone()));
        }
        for reason in &self.deactivate_reasons {
            query.push(("deactivate_reason", reason.clone()));
        }
        query
    }
}

/// Pagination facts of a listing (`include_metadata=true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PageInfo {
    #[serde(default)]
    pub page: u64,
    #[serde(default)]
    pub page_count: u64,
    #[serde(default)]
    pub per_page: u64,
    #[serde(default)]
    pub item_count: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Absent when Vizion answered with a bare array.
    pub info: Option<PageInfo>,
}

impl<T> Page<T> {
    /// Whether a page after this one exists.
    pub fn has_next(&self, limit: u32) -> bool {
        match self.info {
            Some(info) if info.page_count > 0 => info.page < info.page_count,
            // Without metadata, a full page may be followed by another.
            _ => !self.items.is_empty() && self.items.len() >= limit as usize,
        }
    }
}

/// A listing answer: a bare array, or `{"data": [...], "metadata": {...}}`. Told apart
/// by the first byte rather than by trying both (serde's untagged enums buffer the
/// input, which loses the exact bytes of each update).
pub(crate) fn parse_listing<T: DeserializeOwned>(body: &[u8]) -> serde_json::Result<Page<T>> {
    #[derive(Deserialize)]
    struct WithMetadata<T> {
        data: Vec<T>,
        #[serde(default)]
        metadata: Option<PageInfo>,
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items = serde_json::from_slice(body)?;
        return Ok(Page { items, info: None });
    }
    let listing: WithMetadata<T> = serde_json::from_slice(body)?;
    Ok(Page {
        items: listing.data,
        info: listing.metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_keeps_unknown_fields_and_reads_old_carrier_names() {
        let reference: Reference =
            serde_json::from_str(r#"{"id":"r1","scac":"MAEU","active":false,"retry_count":2}"#)
                .unwrap();
        assert_eq!(reference.carrier(), Some("MAEU"));
        let both: Reference =
            serde_json::from_str(r#"{"id":"r2","carrier_code":"MAEU","carrier_scac":"MAEU"}"#)
                .unwrap();
        assert_eq!(both.carrier(), Some("MAEU"));
        assert!(!reference.is_active());
        assert_eq!(reference.extra["retry_count"], 2);
        let back = serde_json::to_value(&reference).unwrap();
        assert_eq!(back["retry_count"], 2);
    }

    #[test]
    fn each_way_to_subscribe_sends_its_fields() {
        let body = |what| {
            serde_json::to_value(NewReference::new(what, Some("https://cb".into()))).unwrap()
        };
        assert_eq!(
            body(Subscribe::AutoCarrier {
                container_id: "MRKU0090522".into()
            }),
            serde_json::json!({"container_id":"MRKU0090522","callback_url":"https://cb"})
        );
        assert_eq!(
            body(Subscribe::BillOfLading {
                bill_of_lading: "MAEU255221188".into(),
                carrier_code: "MAEU".into(),
                container_id: None
            }),
            serde_json::json!({"bill_of_lading":"MAEU255221188","carrier_code":"MAEU","callback_url":"https://cb"})
        );
    }

    #[test]
    fn listings_come_bare_or_with_metadata() {
        let bare: Page<Reference> = parse_listing(br#"[{"id":"a"}]"#).unwrap();
        assert!(bare.info.is_none());
        assert!(bare.has_next(1));
        assert!(!bare.has_next(2));
        let paged: Page<Box<serde_json::value::RawValue>> = parse_listing(
            br#"{"data":[{"id": "a",  "x":1}],"metadata":{"page":1,"page_count":2,"per_page":1,"item_count":2}}"#,
        )
        .unwrap();
        assert!(paged.has_next(1));
        assert_eq!(
            paged.items[0].get(),
            r#"{"id": "a",  "x":1}"#,
            "kept byte for byte"
        );
    }
}
