//! Made-up but plausible container journeys: empty out, full in, a first vessel, a
//! transshipment onto a second vessel, arrival, discharge, delivery and the empty
//! return. Each played step turns one milestone from planned into actual; the
//! estimates of the steps still to come drift between updates, as carriers' do.

use serde::Serialize;
use time::{Duration, OffsetDateTime, UtcOffset};

/// A small deterministic generator (SplitMix64): the same `--seed` plays the same
/// journeys, without a dependency for a few dice rolls.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A random (version 4 layout) UUID.
    pub fn uuid(&mut self) -> uuid::Uuid {
        let bytes = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        uuid::Builder::from_random_bytes(bytes.to_be_bytes()).into_uuid()
    }
}

#[derive(Debug)]
pub struct Port {
    pub unlocode: &'static str,
    pub name: &'static str,
    pub city: &'static str,
    pub state: Option<&'static str>,
    pub country: &'static str,
    pub terminal: &'static str,
    pub depot: &'static str,
    pub latitude: f64,
    pub longitude: f64,
    /// Local time offset in hours, for timestamps written in local time.
    pub utc_offset_hours: i8,
}

const ORIGINS: &[Port] = &[
    Port {
        unlocode: "BDCGP",
        name: "CHITTAGONG ,BANGLADESH",
        city: "Chattogram",
        state: None,
        country: "Bangladesh",
        terminal: "CHITTAGONG CONTAINER TERMINAL",
        depot: "NEMSAN CONTAINER LIMITED",
        latitude: 22.3005,
        longitude: 91.7945,
        utc_offset_hours: 6,
    },
    Port {
        unlocode: "CNSHA",
        name: "SHANGHAI, CHINA",
        city: "Shanghai",
        state: Some("Shanghai"),
        country: "China",
        terminal: "YANGSHAN DEEP WATER PORT PHASE IV",
        depot: "SHANGHAI PUDONG DEPOT",
        latitude: 30.6260,
        longitude: 122.0650,
        utc_offset_hours: 8,
    },
    Port {
        unlocode: "VNSGN",
        name: "HO CHI MINH CITY, VIETNAM",
        city: "Ho Chi Minh City",
        state: None,
        country: "Vietnam",
        terminal: "CAT LAI TERMINAL",
        depot: "TANAMEXCO DEPOT",
        latitude: 10.7600,
        longitude: 106.7900,
        utc_offset_hours: 7,
    },
    Port {
        unlocode: "INNSA",
        name: "NHAVA SHEVA, INDIA",
        city: "Navi Mumbai",
        state: Some("Maharashtra"),
        country: "India",
        terminal: "JAWAHARLAL NEHRU PORT CONTAINER TERMINAL",
        depot: "SPEEDY MULTIMODES CFS",
        latitude: 18.9490,
        longitude: 72.9510,
        utc_offset_hours: 5,
    },
];

const TRANSSHIPMENTS: &[Port] = &[
    Port {
        unlocode: "SGSIN",
        name: "SINGAPORE ,SINGAPORE",
        city: "Singapore",
        state: None,
        country: "Singapore",
        terminal: "PSA (PORT OF SINGAPORE AUTHORITY)",
        depot: "PSA DEPOT",
        latitude: 1.2720,
        longitude: 103.7683,
        utc_offset_hours: 8,
    },
    Port {
        unlocode: "LKCMB",
        name: "COLOMBO, SRI LANKA",
        city: "Colombo",
        state: None,
        country: "Sri Lanka",
        terminal: "COLOMBO INTERNATIONAL CONTAINER TERMINALS",
        depot: "COLOMBO DEPOT",
        latitude: 6.9497,
        longitude: 79.8428,
        utc_offset_hours: 5,
    },
    Port {
        unlocode: "KRPUS",
        name: "BUSAN, KOREA, REPUBLIC OF",
        city: "Busan",
        state: None,
        country: "Korea, Republic of",
        terminal: "BUSAN NEW CONTAINER TERMINAL",
        depot: "BUSAN DEPOT",
        latitude: 35.0796,
        longitude: 128.8350,
        utc_offset_hours: 9,
    },
];

const DESTINATIONS: &[Port] = &[
    Port {
        unlocode: "USLAX",
        name: "LOS ANGELES, CA ,UNITED STATES",
        city: "Los Angeles",
        state: Some("California"),
        country: "United States",
        terminal: "TRAPAC LOS ANGELES",
        depot: "LOS ANGELES EMPTY DEPOT",
        latitude: 34.0522,
        longitude: -118.2437,
        utc_offset_hours: -7,
    },
    Port {
        unlocode: "USLGB",
        name: "LONG BEACH",
        city: "Long Beach",
        state: Some("California"),
        country: "United States",
        terminal: "LONG BEACH CONTAINER TERMINAL",
        depot: "LONG BEACH EMPTY YARD",
        latitude: 33.7667,
        longitude: -118.1833,
        utc_offset_hours: -7,
    },
    Port {
        unlocode: "NLRTM",
        name: "ROTTERDAM, NETHERLANDS",
        city: "Rotterdam",
        state: Some("Zuid-Holland"),
        country: "Netherlands",
        terminal: "ECT DELTA TERMINAL",
        depot: "ROTTERDAM EMPTY DEPOT",
        latitude: 51.9490,
        longitude: 4.1450,
        utc_offset_hours: 2,
    },
    Port {
        unlocode: "DEHAM",
        name: "HAMBURG, GERMANY",
        city: "Hamburg",
        state: Some("Hamburg"),
        country: "Germany",
        terminal: "CONTAINER TERMINAL BURCHARDKAI",
        depot: "HAMBURG EMPTY DEPOT",
        latitude: 53.5460,
        longitude: 9.9660,
        utc_offset_hours: 2,
    },
];

#[derive(Debug)]
pub struct Vessel {
    pub name: &'static str,
    pub imo: &'static str,
    pub mmsi: &'static str,
}

const FEEDERS: &[Vessel] = &[
    Vessel {
        name: "SOL HIND",
        imo: "9232577",
        mmsi: "563004700",
    },
    Vessel {
        name: "SAHARE",
        imo: "9301483",
        mmsi: "636015877",
    },
    Vessel {
        name: "KOTA NABIL",
        imo: "9294800",
        mmsi: "563054300",
    },
];

const MAINLINERS: &[Vessel] = &[
    Vessel {
        name: "ONE CONTINUITY",
        imo: "9388352",
        mmsi: "370407000",
    },
    Vessel {
        name: "MSC CLORINDA",
        imo: "9837054",
        mmsi: "352890000",
    },
    Vessel {
        name: "EVER GIVEN",
        imo: "9811000",
        mmsi: "353136000",
    },
    Vessel {
        name: "MAERSK ESSEN",
        imo: "9456783",
        mmsi: "219018271",
    },
];

#[derive(Debug)]
pub struct Carrier {
    pub scac: &'static str,
    pub name: &'static str,
    /// Container owner codes this carrier uses, for auto carrier identification and
    /// for the containers of a bill of lading.
    pub owner_codes: &'static [&'static str],
}

pub const CARRIERS: &[Carrier] = &[
    Carrier {
        scac: "MAEU",
        name: "Maersk",
        owner_codes: &["MRKU", "MSKU", "MAEU"],
    },
    Carrier {
        scac: "MSCU",
        name: "MSC",
        owner_codes: &["MSCU", "MEDU", "CAIU"],
    },
    Carrier {
        scac: "ONEY",
        name: "Ocean Network Express",
        owner_codes: &["ONEU", "KKTU", "TCLU"],
    },
    Carrier {
        scac: "OOLU",
        name: "OOCL",
        owner_codes: &["OOCU", "OOLU"],
    },
    Carrier {
        scac: "EGLV",
        name: "Evergreen",
        owner_codes: &["EGHU", "EISU", "EMCU"],
    },
    Carrier {
        scac: "CMDU",
        name: "CMA CGM",
        owner_codes: &["CMAU", "ECMU", "APZU"],
    },
];

pub fn carrier_by_code(code: &str) -> Option<&'static Carrier> {
    CARRIERS.iter().find(|c| c.scac.eq_ignore_ascii_case(code))
}

/// The carrier auto carrier identification finds for a container: the one using its
/// owner code, or none.
pub fn carrier_for_container(container_id: &str) -> Option<&'static Carrier> {
    let owner = container_id.get(..4)?;
    CARRIERS
        .iter()
        .find(|c| c.owner_codes.iter().any(|o| o.eq_ignore_ascii_case(owner)))
}

/// The ISO 6346 check digit of the first ten characters of a container number.
pub fn check_digit(first_ten: &str) -> Option<u32> {
    let mut sum = 0u32;
    for (i, ch) in first_ten.chars().enumerate() {
        let value = match ch {
            '0'..='9' => ch as u32 - '0' as u32,
            'A'..='Z' => {
                // A=10, then skipping every multiple of 11.
                let mut v = 10;
                for _ in 'A'..ch {
                    v += 1;
                    if v % 11 == 0 {
                        v += 1;
                    }
                }
                v
            }
            _ => return None,
        };
        sum += value << i;
    }
    Some(sum % 11 % 10)
}

/// Four letters (the last one `U`, `J` or `Z`) and seven digits.
pub fn is_container_number(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 11
        && bytes[..3].iter().all(u8::is_ascii_uppercase)
        && matches!(bytes[3], b'U' | b'J' | b'Z')
        && bytes[4..].iter().all(u8::is_ascii_digit)
}

/// A container number with a correct check digit and one of the carrier's owner codes.
pub fn container_number(rng: &mut Rng, carrier: &Carrier) -> String {
    let owner = rng.pick(carrier.owner_codes);
    let serial = rng.below(1_000_000);
    let first_ten = format!("{owner}{serial:06}");
    let digit = check_digit(&first_ten).expect("letters and digits");
    format!("{first_ten}{digit}")
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Geolocation {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Location {
    pub name: String,
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub unlocode: Option<String>,
    pub facility: Option<String>,
    pub geolocation: Option<Geolocation>,
}

impl Location {
    fn of(port: &Port, facility: Option<&str>) -> Self {
        Self {
            name: port.name.into(),
            city: Some(port.city.into()),
            state: port.state.map(Into::into),
            country: Some(port.country.into()),
            unlocode: Some(port.unlocode.into()),
            facility: facility.map(Into::into),
            geolocation: Some(Geolocation {
                latitude: port.latitude,
                longitude: port.longitude,
            }),
        }
    }
}

/// One element of `payload.milestones`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Milestone {
    pub description: String,
    pub raw_description: String,
    pub timestamp: Option<String>,
    pub planned: Option<bool>,
    pub location: Option<Location>,
    pub vessel: Option<String>,
    pub vessel_imo: Option<String>,
    pub vessel_mmsi: Option<String>,
    pub voyage: Option<String>,
    pub mode: Option<String>,
    pub source: String,
}

/// The fixed facts of a journey, chosen once when the reference is created.
#[derive(Debug, Clone)]
pub struct Journey {
    pub origin: Location,
    pub destination: Location,
    pub container_iso: &'static str,
    steps: Vec<Step>,
    /// Where the planned dates stand now relative to the original schedule, in minutes.
    drift_minutes: i64,
    /// The actual time of each step already played.
    actual: Vec<OffsetDateTime>,
}

#[derive(Debug, Clone)]
struct Step {
    description: &'static str,
    raw_description: String,
    location: Location,
    utc_offset_hours: i8,
    vessel: Option<(&'static str, &'static str, &'static str)>,
    voyage: Option<String>,
    mode: Option<&'static str>,
    source: &'static str,
    /// When the original schedule has this step.
    scheduled: OffsetDateTime,
    /// Whether carriers publish an estimate for it before it happens.
    estimated: bool,
}

/// The description of the last step of every journey.
pub const FINAL_DESCRIPTION: &str = "Gate in empty return";

impl Journey {
    /// A journey whose first step is scheduled at `start`.
    pub fn generate(rng: &mut Rng, start: OffsetDateTime) -> Self {
        let origin = rng.pick(ORIGINS);
        let via = rng.pick(TRANSSHIPMENTS);
        let destination = rng.pick(DESTINATIONS);
        let feeder = rng.pick(FEEDERS);
        let mainliner = rng.pick(MAINLINERS);
        let voyage_one = format!("{:03}{}", rng.below(1000), rng.pick(&["E", "W", "S", "N"]));
        let voyage_two = format!("{:03}{}", rng.below(1000), rng.pick(&["E", "W", "S", "N"]));
        let container_iso = *rng.pick(&["22G1", "42G1", "45G1", "45R1"]);

        // Days after `start` for each step, with a few hours of randomness.
        let mut at = start;
        let mut next = |rng: &mut Rng, days: i64| {
            at += Duration::days(days) + Duration::minutes(rng.between(0, 600));
            at
        };
        let feeder_vessel = Some((feeder.name, feeder.imo, feeder.mmsi));
        let main_vessel = Some((mainliner.name, mainliner.imo, mainliner.mmsi));
        let step = |description, raw: String, port: &Port, facility: &str| Step {
            description,
            raw_description: raw,
            location: Location::of(port, Some(facility)),
            utc_offset_hours: port.utc_offset_hours,
            vessel: None,
            voyage: None,
            mode: None,
            source: "carrier",
            scheduled: start,
            estimated: false,
        };
        let on = |s: Step,
                  vessel: Option<(&'static str, &'static str, &'static str)>,
                  voyage: &str| Step {
            vessel,
            voyage: Some(voyage.to_owned()),
            mode: Some("Vessel"),
            ..s
        };
        let mut steps = vec![
            Step {
                mode: Some("Truck"),
                ..step(
                    "Gate out empty",
                    "Empty Container Release to Shipper".into(),
                    origin,
                    origin.depot,
                )
            },
            step(
                "Gate in full",
                "Gate In Full".into(),
                origin,
                origin.terminal,
            ),
            Step {
                estimated: true,
                ..on(
                    step(
                        "Loaded on vessel at origin port",
                        format!(
                            "Loaded on '{} {}' at Port of Loading",
                            feeder.name, voyage_one
                        ),
                        origin,
                        origin.terminal,
                    ),
                    feeder_vessel,
                    &voyage_one,
                )
            },
            Step {
                estimated: true,
                ..on(
                    step(
                        "Vessel departure from origin port",
                        format!(
                            "'{} {}' Departure from Port of Loading",
                            feeder.name, voyage_one
                        ),
                        origin,
                        origin.terminal,
                    ),
                    feeder_vessel,
                    &voyage_one,
                )
            },
            Step {
                estimated: true,
                source: "ais",
                ..on(
                    step(
                        "Vessel arrival at transshipment port",
                        format!(
                            "'{} {}' Arrival at Transhipment Port",
                            feeder.name, voyage_one
                        ),
                        via,
                        via.terminal,
                    ),
                    feeder_vessel,
                    &voyage_one,
                )
            },
            on(
                step(
                    "Discharged from vessel at transshipment port",
                    format!(
                        "Unloaded from '{} {}' at Transhipment Port",
                        feeder.name, voyage_one
                    ),
                    via,
                    via.terminal,
                ),
                feeder_vessel,
                &voyage_one,
            ),
            on(
                step(
                    "Loaded on vessel at transshipment port",
                    format!(
                        "Loaded on '{} {}' at Transhipment Port",
                        mainliner.name, voyage_two
                    ),
                    via,
                    via.terminal,
                ),
                main_vessel,
                &voyage_two,
            ),
            Step {
                estimated: true,
                ..on(
                    step(
                        "Vessel departure from transshipment port",
                        format!(
                            "'{} {}' Departure from Transhipment Port",
                            mainliner.name, voyage_two
                        ),
                        via,
                        via.terminal,
                    ),
                    main_vessel,
                    &voyage_two,
                )
            },
            Step {
                estimated: true,
                source: "ais",
                ..on(
                    step(
                        "Vessel arrived at destination port",
                        format!(
                            "'{} {}' Arrival at Port of Discharging",
                            mainliner.name, voyage_two
                        ),
                        destination,
                        destination.terminal,
                    ),
                    main_vessel,
                    &voyage_two,
                )
            },
            Step {
                source: "terminal",
                ..on(
                    step(
                        "Discharged from vessel at destination port",
                        format!(
                            "Unloaded from '{} {}' at Port of Discharging",
                            mainliner.name, voyage_two
                        ),
                        destination,
                        destination.terminal,
                    ),
                    main_vessel,
                    &voyage_two,
                )
            },
            Step {
                mode: Some("Truck"),
                source: "terminal",
                ..step(
                    "Gate out from destination port",
                    "Gate Out Full".into(),
                    destination,
                    destination.terminal,
                )
            },
            step(
                FINAL_DESCRIPTION,
                "Empty Container Returned".into(),
                destination,
                destination.depot,
            ),
        ];
        let gaps = [0, 2, 3, 0, 9, 0, 3, 0, 14, 1, 3, 4];
        for (step, gap) in steps.iter_mut().zip(gaps) {
            step.scheduled = next(rng, gap);
        }
        Self {
            origin: Location::of(origin, None),
            destination: Location::of(destination, None),
            container_iso,
            steps,
            drift_minutes: 0,
            actual: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn played(&self) -> usize {
        self.actual.len()
    }

    pub fn is_complete(&self) -> bool {
        self.played() == self.len()
    }

    /// Plays the next step: it becomes actual, and the estimates of the later steps
    /// move. Returns false when the journey is already complete.
    pub fn advance(&mut self, rng: &mut Rng) -> bool {
        if self.is_complete() {
            return false;
        }
        let step = &self.steps[self.played()];
        let mut when =
            step.scheduled + Duration::minutes(self.drift_minutes + rng.between(-90, 90));
        if let Some(previous) = self.actual.last() {
            when = when.max(*previous + Duration::minutes(30));
        }
        self.actual.push(when);
        // Mostly delays, sometimes a gain, never more than half a day at a time.
        self.drift_minutes += rng.between(-180, 720);
        true
    }

    /// The full milestone list as it stands: the played steps (actual), then an
    /// estimate for each later step carriers announce in advance.
    pub fn milestones(&self) -> Vec<Milestone> {
        let played = self.played();
        let mut latest = self.actual.last().copied();
        self.steps
            .iter()
            .enumerate()
            .filter(|(i, step)| *i < played || step.estimated)
            .map(|(i, step)| {
                let (when, planned) = if i < played {
                    (self.actual[i], false)
                } else {
                    let mut when = step.scheduled + Duration::minutes(self.drift_minutes);
                    // An estimate never lies before what has already happened.
                    if let Some(before) = latest {
                        when = when.max(before + Duration::hours(6));
                    }
                    latest = Some(when);
                    (when, true)
                };
                step.milestone(when, planned)
            })
            .collect()
    }

    /// The description of the most recently played step.
    pub fn last_played(&self) -> Option<&'static str> {
        self.played()
            .checked_sub(1)
            .map(|i| self.steps[i].description)
    }
}

impl Step {
    fn milestone(&self, when: OffsetDateTime, planned: bool) -> Milestone {
        let (vessel, imo, mmsi) = match self.vessel {
            Some((name, imo, mmsi)) => (Some(name.into()), Some(imo.into()), Some(mmsi.into())),
            None => (None, None, None),
        };
        Milestone {
            description: self.description.into(),
            raw_description: self.raw_description.clone(),
            timestamp: Some(local_timestamp(when, self.utc_offset_hours)),
            planned: Some(planned),
            location: Some(self.location.clone()),
            vessel,
            vessel_imo: imo,
            vessel_mmsi: mmsi,
            voyage: self.voyage.clone(),
            mode: self.mode.map(Into::into),
            source: self.source.into(),
        }
    }
}

/// `2021-07-01T14:30:00.000+06:00`: local time with its offset, milliseconds.
fn local_timestamp(at: OffsetDateTime, offset_hours: i8) -> String {
    let offset = UtcOffset::from_hms(offset_hours, 0, 0).unwrap_or(UtcOffset::UTC);
    let local = at.to_offset(offset);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory]:[offset_minute]"
    );
    local.format(format).expect("a formattable date")
}

/// `2023-01-16T21:01:01.547Z`: UTC with milliseconds, as on Vizion's envelopes.
pub fn utc_timestamp(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.to_offset(UtcOffset::UTC)
        .format(format)
        .expect("a formattable date")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_match_known_containers() {
        for id in ["MRKU0090522", "CAIU9339738", "KKTU7887918", "OOCU7821056"] {
            let digit = check_digit(&id[..10]).unwrap();
            assert_eq!(digit.to_string(), &id[10..], "{id}");
        }
    }

    #[test]
    fn a_journey_plays_to_the_empty_return_with_actuals_in_order() {
        let mut rng = Rng::new(7);
        let mut journey = Journey::generate(&mut rng, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            journey
                .milestones()
                .iter()
                .filter(|m| m.planned == Some(false))
                .count(),
            0
        );
        while journey.advance(&mut rng) {}
        let milestones = journey.milestones();
        assert_eq!(milestones.len(), journey.len());
        assert!(milestones.iter().all(|m| m.planned == Some(false)));
        assert_eq!(milestones.last().unwrap().description, FINAL_DESCRIPTION);
        assert_eq!(journey.last_played(), Some(FINAL_DESCRIPTION));
        assert!(!journey.advance(&mut rng));
    }

    #[test]
    fn estimates_move_between_updates() {
        let mut rng = Rng::new(3);
        let mut journey = Journey::generate(&mut rng, OffsetDateTime::UNIX_EPOCH);
        let eta = |j: &Journey| {
            j.milestones()
                .into_iter()
                .find(|m| m.description == "Vessel arrived at destination port")
                .unwrap()
                .timestamp
        };
        let mut etas = vec![eta(&journey)];
        for _ in 0..4 {
            journey.advance(&mut rng);
            etas.push(eta(&journey));
        }
        etas.dedup();
        assert!(etas.len() > 1, "the ETA never moved: {etas:?}");
    }
}
