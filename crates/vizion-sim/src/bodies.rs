//! The update bodies `vizion-sim load` sends: full snapshots of 3 to 15 milestones
//! (about 2 to 10 KB), pre-encoded once per size around the places where the update
//! id and container number go, so that a client spends little CPU per request.
//!
//! `examples/broker_ceiling.rs` includes this file too, so that the broker ceiling
//! publishes what the bridge makes of exactly these bodies.

pub struct BodyTemplates {
    templates: Vec<[String; 3]>,
}

const ID_MARK: &str = "@@ID@@";
const CONTAINER_MARK: &str = "@@CONTAINER@@";

impl BodyTemplates {
    pub fn new(min_milestones: usize, max_milestones: usize) -> Self {
        let templates = (min_milestones..=max_milestones)
            .map(|n| {
                let text = template(n);
                let (head, rest) = text.split_once(ID_MARK).expect("id mark");
                let (middle, tail) = rest.split_once(CONTAINER_MARK).expect("container mark");
                [head.to_owned(), middle.to_owned(), tail.to_owned()]
            })
            .collect();
        Self { templates }
    }

    /// The `n`th body (sizes taken in turn) with update id `id`.
    pub fn render(&self, n: u64, id: &str) -> Vec<u8> {
        let [head, middle, tail] = &self.templates[n as usize % self.templates.len()];
        let container = format!("OOCU{:07}", n % 10_000_000);
        let mut body = String::with_capacity(head.len() + middle.len() + tail.len() + 64);
        body.push_str(head);
        body.push_str(id);
        body.push_str(middle);
        body.push_str(&container);
        body.push_str(tail);
        body.into_bytes()
    }
}

/// A full-snapshot update with `milestones` milestones, in the shape Vizion sends.
fn template(milestones: usize) -> String {
    let milestone = |n: usize| {
        serde_json::json!({
            "description": "Vessel departure from origin port",
            "raw_description": format!("Vessel departed, leg {n}"),
            "timestamp": "2021-07-05T18:30:00.000+06:00",
            "planned": n.is_multiple_of(2),
            "location": {
                "name": "Chittagong Port Authority,Chittagong,Chittagong,Bangladesh",
                "city": "Chattogram", "state": null, "country": "Bangladesh",
                "unlocode": "BDCGP", "facility": "Chittagong Port Authority",
                "geolocation": {"latitude": 22.356851, "longitude": 91.7831819}
            },
            "vessel": "EDISON", "vessel_imo": "9189251", "vessel_mmsi": "244750455",
            "voyage": "0TUINE1MA", "mode": "Vessel", "source": "carrier"
        })
    };
    serde_json::to_string(&serde_json::json!({
        "id": ID_MARK,
        "status": "data_received",
        "reference_id": "7a1e5c1e-0c55-4e1f-9d4b-5f0c2f6b8a11",
        "organization_id": "3670867f-3634-4dd2-9b27-3531b5affe64",
        "payload": {
            "container_id": CONTAINER_MARK,
            "carrier_scac": "OOLU",
            "milestones": (0..milestones).map(milestone).collect::<Vec<_>>()
        },
        "created_at": "2021-07-31T21:34:09.003Z",
        "updated_at": "2021-07-31T21:34:09.003Z",
        "parent_reference_id": null
    }))
    .expect("JSON encodes")
}
