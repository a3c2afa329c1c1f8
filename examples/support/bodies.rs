//! Update bodies like the load tool's: 3 to 15 milestones (about 2 to 10 KB), the
//! count and the references varying with `n`.

pub fn update_body(id: &str, n: u64) -> Vec<u8> {
    let milestones = 3 + (n % 13) as usize;
    let milestone = |i: usize| {
        serde_json::json!({
            "description": "Vessel departure from origin port",
            "raw_description": format!("Vessel departed, leg {i}"),
            "timestamp": "2021-07-05T18:30:00.000+06:00",
            "planned": i % 2 == 0,
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
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "status": "data_received",
        "reference_id": format!("ref-{}", n % 1000),
        "organization_id": "3670867f-3634-4dd2-9b27-3531b5affe64",
        "payload": {
            "container_id": format!("OOCU{:07}", n % 10_000_000),
            "carrier_scac": "OOLU",
            "milestones": (0..milestones).map(milestone).collect::<Vec<_>>()
        },
        "created_at": "2021-07-31T21:34:09.003Z",
        "updated_at": "2021-07-31T21:34:09.003Z",
        "parent_reference_id": null
    }))
    .expect("JSON encodes")
}
