//! A minimal MaxMind DB writer for tests: an IPv4 search tree (24-bit records) over a few
//! networks, each pointing at a GeoIP2-style record (country ISO code and, for a "City"
//! database, a location), the data section and the metadata map, as the MaxMind DB format
//! specification lays them out. Enough for `maxminddb` to read; no database is shipped.

use std::net::Ipv4Addr;
use std::path::Path;

/// A value in the MaxMind DB data format (the subset we write).
pub(crate) enum Value {
    Str(String),
    Double(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    // Types above 7 are "extended": type bits 0, then a byte holding type - 7.
    let (first, ext) = if kind > 7 { (0u8, Some(kind - 7)) } else { (kind << 5, None) };
    let mut tail = Vec::new();
    let size_bits = if size < 29 {
        size as u8
    } else if size < 29 + 256 {
        tail.push((size - 29) as u8);
        29
    } else {
        let v = size - 285;
        tail.extend_from_slice(&[(v >> 8) as u8, v as u8]);
        30
    };
    out.push(first | size_bits);
    if let Some(e) = ext {
        out.push(e);
    }
    out.extend_from_slice(&tail);
}

fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Double(d) => {
            control(out, 3, 8);
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::U16(n) => uint(out, 5, u64::from(*n)),
        Value::U32(n) => uint(out, 6, u64::from(*n)),
        Value::U64(n) => uint(out, 9, *n),
        Value::Map(m) => {
            control(out, 7, m.len());
            for (k, v) in m {
                encode(out, &Value::Str(k.clone()));
                encode(out, v);
            }
        }
        Value::Array(a) => {
            control(out, 11, a.len());
            for v in a {
                encode(out, v);
            }
        }
    }
}

/// One network of the database and where it is.
pub(crate) struct Entry {
    pub(crate) net: Ipv4Addr,
    pub(crate) prefix: u8,
    pub(crate) country: &'static str,
    pub(crate) location: Option<(f64, f64)>,
}

fn record(e: &Entry) -> Value {
    let mut m = vec![(
        "country".to_owned(),
        Value::Map(vec![("iso_code".into(), Value::Str(e.country.into()))]),
    )];
    if let Some((lat, lon)) = e.location {
        m.push((
            "location".into(),
            Value::Map(vec![
                ("latitude".into(), Value::Double(lat)),
                ("longitude".into(), Value::Double(lon)),
            ]),
        ));
    }
    Value::Map(m)
}

/// Writes an IPv4 database of type `db_type` (`GeoLite2-City` or `GeoLite2-Country`).
pub(crate) fn write(path: &Path, db_type: &str, entries: &[Entry], build_epoch: u64) {
    // The data section: one record per entry.
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for e in entries {
        offsets.push(data.len());
        encode(&mut data, &record(e));
    }
    // The tree: node 0 is the root; a child is Node(i), Data(entry) or Empty.
    #[derive(Clone, Copy)]
    enum Child {
        Empty,
        Node(usize),
        Data(usize),
    }
    let mut nodes: Vec<[Child; 2]> = vec![[Child::Empty; 2]];
    for (i, e) in entries.iter().enumerate() {
        let bits = u32::from(e.net);
        let mut node = 0;
        for depth in 0..e.prefix {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == e.prefix {
                nodes[node][bit] = Child::Data(i);
            } else {
                node = match nodes[node][bit] {
                    Child::Node(n) => n,
                    _ => {
                        nodes.push([Child::Empty; 2]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = Child::Node(n);
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for n in &nodes {
        for c in n {
            let v = match *c {
                Child::Empty => count,
                Child::Node(i) => i,
                Child::Data(i) => count + 16 + offsets[i],
            };
            out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let meta = Value::Map(vec![
        ("binary_format_major_version".into(), Value::U16(2)),
        ("binary_format_minor_version".into(), Value::U16(0)),
        ("build_epoch".into(), Value::U64(build_epoch)),
        ("database_type".into(), Value::Str(db_type.into())),
        ("description".into(), Value::Map(vec![("en".into(), Value::Str("apiary test".into()))])),
        ("ip_version".into(), Value::U16(4)),
        ("languages".into(), Value::Array(vec![Value::Str("en".into())])),
        ("node_count".into(), Value::U32(count as u32)),
        ("record_size".into(), Value::U16(24)),
    ]);
    encode(&mut out, &meta);
    std::fs::write(path, out).unwrap();
}

/// The test world: three networks in three countries (City: with locations).
pub(crate) fn test_entries() -> Vec<Entry> {
    vec![
        Entry {
            net: Ipv4Addr::new(10, 1, 0, 0),
            prefix: 16,
            country: "DE",
            location: Some((52.52, 13.40)),
        },
        Entry {
            net: Ipv4Addr::new(10, 2, 0, 0),
            prefix: 16,
            country: "BR",
            location: Some((-23.55, -46.63)),
        },
        Entry {
            net: Ipv4Addr::new(10, 3, 0, 0),
            prefix: 24,
            country: "JP",
            location: Some((35.68, 139.69)),
        },
    ]
}

/// A wider test world for the dashboard's screenshots: one /16 per city.
pub(crate) fn world_entries() -> Vec<Entry> {
    let cities: [(&'static str, f64, f64); 12] = [
        ("DE", 52.52, 13.40),
        ("BR", -23.55, -46.63),
        ("JP", 35.68, 139.69),
        ("US", 40.71, -74.01),
        ("US", 37.77, -122.42),
        ("CN", 31.23, 121.47),
        ("IN", 19.08, 72.88),
        ("RU", 55.76, 37.62),
        ("NL", 52.37, 4.90),
        ("ZA", -26.20, 28.05),
        ("AU", -33.87, 151.21),
        ("VN", 10.82, 106.63),
    ];
    cities
        .iter()
        .enumerate()
        .map(|(i, &(country, lat, lon))| Entry {
            net: Ipv4Addr::new(10, 100 + i as u8, 0, 0),
            prefix: 16,
            country,
            location: Some((lat, lon)),
        })
        .collect()
}

/// `n` login attempts from the networks of `entries` over the last hour, skewed towards the
/// first ones.
pub(crate) fn located_events(entries: &[Entry], n: usize) -> Vec<apiary_core::StoredEvent> {
    use apiary_event::{Auth, AuthMethod, Event, Kind, Timestamp};
    let now = Timestamp::now().as_micros();
    (0..n)
        .map(|i| {
            let e = &entries[(i * i + i / 3) % (entries.len() * 2) % entries.len()];
            let [a, b, ..] = e.net.octets();
            let mut ev = Event::at(
                Kind::AUTH_ATTEMPT,
                std::sync::Arc::from("sensor"),
                Timestamp::from_micros(now - 3_000_000_000 + i as i64 * 5_000_000),
                uuid::Uuid::now_v7(),
            );
            ev.src_ip = Some(format!("{a}.{b}.{}.{}", i % 7, 1 + i % 200).parse().unwrap());
            ev.service = Some(std::sync::Arc::from("ssh"));
            ev.auth = Some(Box::new(Auth {
                method: AuthMethod::Password,
                username: Some(["root", "admin", "ubuntu"][i % 3].into()),
                password: Some(["123456", "password", "admin"][i % 3].into()),
                success: false,
                extra: Default::default(),
            }));
            apiary_core::StoredEvent { node_id: None, event: ev }
        })
        .collect()
}
