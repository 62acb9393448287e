//! PokieStream's `packet_log` view of a flow event: exactly its ten keys, `None`/null where a
//! field does not apply, and its timestamp format (`YYYY-MM-DDTHH:MM:SS.ffffff`, no zone).
//!
//! Used for the sensor's `packet_log` JSON lines and to hand records to PokieStream plugins
//! unchanged (Python dict, Lua table).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{Event, Flow, FlowState, Timestamp, Transport};

/// The ten keys, in PokieStream's order.
pub const KEYS: [&str; 10] = [
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "protocol_num",
    "protocol_name",
    "state",
    "timestamp",
    "session_id",
    "payload",
];

/// PokieStream's protocol name for a transport.
pub fn protocol_name(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
        Transport::Icmp => "ICMP",
        Transport::Icmpv6 => "ICMPv6",
    }
}

/// PokieStream's state name.
pub fn state_name(s: FlowState) -> &'static str {
    match s {
        FlowState::New => "NEW",
        FlowState::Established => "ESTABLISHED",
        FlowState::Close => "CLOSE",
        FlowState::Abort => "ABORT",
        FlowState::Expired => "EXPIRED",
    }
}

/// PokieStream's timestamp text of `event` (UTC, microseconds, no zone suffix).
pub fn timestamp(event: &Event) -> String {
    let mut s = String::with_capacity(26);
    event.time.write_rfc3339(&mut s, "");
    s
}

/// One `packet_log` record in compact form: what PokieStream's ten keys say, typed, with
/// `None` where PokieStream has `None`/`nil`. It allocates nothing unless a payload filter
/// matched, so the sensor can hand millions a second to plugins; the text of each field is
/// produced only where it is written (JSON, a Lua string, the Python worker's batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketLog {
    /// `src_ip`.
    pub src_ip: Option<IpAddr>,
    /// `dst_ip`.
    pub dst_ip: Option<IpAddr>,
    /// `src_port` (`None` for ICMP).
    pub src_port: Option<u16>,
    /// `dst_port` (`None` for ICMP).
    pub dst_port: Option<u16>,
    /// `protocol_num`.
    pub protocol_num: u8,
    /// `protocol_name`, from the transport.
    pub transport: Option<Transport>,
    /// `state` (`None` for ICMP).
    pub state: Option<FlowState>,
    /// `timestamp`.
    pub time: Timestamp,
    /// `session_id` (`None` for ICMP).
    pub session_id: Option<Uuid>,
    /// `payload`: filter name to extracted name; empty means `None`.
    pub payload: BTreeMap<String, String>,
}

impl PacketLog {
    /// The record of a flow event, or `None` when `event` has no `flow` block.
    pub fn from_event(event: &Event) -> Option<Self> {
        let flow = event.flow.as_deref()?;
        let mut rec = Self::without_payload(event, flow);
        rec.payload.clone_from(&flow.payload);
        Some(rec)
    }

    fn without_payload(event: &Event, flow: &Flow) -> Self {
        Self {
            src_ip: event.src_ip,
            dst_ip: event.dst_ip,
            src_port: event.src_port,
            dst_port: event.dst_port,
            protocol_num: flow.protocol_num,
            transport: event.transport,
            state: flow.state,
            time: event.time,
            session_id: event.session,
            payload: BTreeMap::new(),
        }
    }

    /// `protocol_name`.
    pub fn protocol_name(&self) -> Option<&'static str> {
        self.transport.map(protocol_name)
    }

    /// `state` as PokieStream spells it.
    pub fn state_name(&self) -> Option<&'static str> {
        self.state.map(state_name)
    }

    /// The record as a JSON object with exactly the ten keys in order.
    pub fn to_value(&self) -> Value {
        let mut m = Map::with_capacity(KEYS.len());
        let text = |s: Option<String>| s.map_or(Value::Null, Value::String);
        let port = |p: Option<u16>| p.map_or(Value::Null, Value::from);
        m.insert(KEYS[0].into(), text(self.src_ip.map(|i| i.to_string())));
        m.insert(KEYS[1].into(), text(self.dst_ip.map(|i| i.to_string())));
        m.insert(KEYS[2].into(), port(self.src_port));
        m.insert(KEYS[3].into(), port(self.dst_port));
        m.insert(KEYS[4].into(), Value::from(self.protocol_num));
        m.insert(KEYS[5].into(), self.protocol_name().map_or(Value::Null, Value::from));
        m.insert(KEYS[6].into(), self.state_name().map_or(Value::Null, Value::from));
        let mut ts = String::with_capacity(26);
        self.time.write_rfc3339(&mut ts, "");
        m.insert(KEYS[7].into(), Value::String(ts));
        m.insert(KEYS[8].into(), text(self.session_id.map(|u| u.hyphenated().to_string())));
        let payload = if self.payload.is_empty() {
            Value::Null
        } else {
            Value::Object(
                self.payload.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect(),
            )
        };
        m.insert(KEYS[9].into(), payload);
        Value::Object(m)
    }

    /// Appends the JSON object with the ten keys in order (no newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_row::<true>(&self.payload, out);
    }

    /// Appends the ten JSON values in key order, separated by commas, without keys or
    /// brackets (the Python worker's compact batch rows).
    pub fn write_json_values(&self, out: &mut Vec<u8>) {
        self.write_row::<false>(&self.payload, out);
    }

    /// Writes the fields, with `payload` standing for `self.payload` (so `json_line` need not
    /// clone an event's map). Unrolled into a stack buffer, digits written in place: a `Vec`
    /// append per piece was a `memcpy` call each, most of the encoder's time.
    fn write_row<const KEYED: bool>(&self, payload: &BTreeMap<String, String>, out: &mut Vec<u8>) {
        let mut l = Text::<LINE_MAX>::new();
        macro_rules! field {
            ($key:literal, $i:literal) => {
                if KEYED {
                    l.put(if $i == 0 { b"{\"" } else { b",\"" });
                    l.put($key.as_bytes());
                    l.put(b"\":");
                } else if $i > 0 {
                    l.put(b",");
                }
                match self.field($i) {
                    Field::Null => l.put(b"null"),
                    Field::Int(n) => l.put_u32(n),
                    // Every text field (addresses, names, time, UUID) is plain ASCII without
                    // characters JSON escapes.
                    f => {
                        l.put(b"\"");
                        l.put_field(f);
                        l.put(b"\"");
                    }
                }
            };
        }
        field!("src_ip", 0);
        field!("dst_ip", 1);
        field!("src_port", 2);
        field!("dst_port", 3);
        field!("protocol_num", 4);
        field!("protocol_name", 5);
        field!("state", 6);
        field!("timestamp", 7);
        field!("session_id", 8);
        l.put(if KEYED { b",\"payload\":" } else { b"," });
        out.extend_from_slice(l.as_bytes());
        // A map of strings always serialises; null covers "no payload" and the impossible
        // error.
        if payload.is_empty() || serde_json::to_writer(&mut *out, payload).is_err() {
            out.extend_from_slice(b"null");
        }
        if KEYED {
            out.push(b'}');
        }
    }

    /// Field `i` of [`KEYS`] (0 to 8; the payload is read directly).
    pub fn field(&self, i: usize) -> Field {
        let port = |p: Option<u16>| p.map_or(Field::Null, |p| Field::Int(u32::from(p)));
        match i {
            0 => self.src_ip.map_or(Field::Null, Field::Ip),
            1 => self.dst_ip.map_or(Field::Null, Field::Ip),
            2 => port(self.src_port),
            3 => port(self.dst_port),
            4 => Field::Int(u32::from(self.protocol_num)),
            5 => self.protocol_name().map_or(Field::Null, Field::Name),
            6 => self.state_name().map_or(Field::Null, Field::Name),
            7 => Field::Time(self.time),
            8 => self.session_id.map_or(Field::Null, Field::Uuid),
            _ => Field::Null,
        }
    }
}

/// Longest keyed row without its payload: the key text (about 130 bytes) and nine values of
/// at most [`FIELD_TEXT_MAX`] bytes plus quotes.
const LINE_MAX: usize = 160 + 9 * (FIELD_TEXT_MAX + 2);

/// Longest text of one field value other than the payload: an IPv6 address with an embedded
/// IPv4 form (45 bytes) or a timestamp with a year beyond 9999 (at most 29) fits.
pub const FIELD_TEXT_MAX: usize = 64;

/// One scalar field of a [`PacketLog`], typed; [`Field::text`] gives the text of the
/// string-valued ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `None`/`nil`/`null`.
    Null,
    /// A port or protocol number.
    Int(u32),
    /// An address, written as text.
    Ip(IpAddr),
    /// `protocol_name` or `state`.
    Name(&'static str),
    /// The timestamp, written as PokieStream's text.
    Time(Timestamp),
    /// The session id, written hyphenated.
    Uuid(Uuid),
}

impl Field {
    /// The text of the field on the stack: a string field's text, an integer's digits, or
    /// nothing for `Null`.
    pub fn text(self) -> FieldText {
        let mut t = Text::new();
        t.put_field(self);
        t
    }

    /// Appends [`Field::text`] to `out`.
    pub fn write_text(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.text().as_bytes());
    }
}

/// The text of one [`Field`], held on the stack.
pub type FieldText = Text<FIELD_TEXT_MAX>;

/// Text built on the stack (at most `N` bytes; a piece that does not fit is left out, which
/// the sizes above rule out).
#[derive(Clone, Copy)]
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    fn new() -> Self {
        Self { buf: [0; N], len: 0 }
    }

    /// The text's bytes (ASCII).
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    /// Appends `s` when it fits (every row and field does; see the sizes above). Not clamped,
    /// so a literal's length stays a constant and the copy compiles to moves.
    #[inline(always)]
    fn put(&mut self, s: &[u8]) {
        if let Some(d) = self.buf.get_mut(self.len..self.len + s.len()) {
            d.copy_from_slice(s);
            self.len += s.len();
        }
    }

    /// Decimal digits written in place, without the formatting machinery.
    #[inline]
    fn put_u32(&mut self, n: u32) {
        self.put_digits(n, count(n));
    }

    /// The last `width` decimal digits of `n`, zero-padded; two digits at a time from a table,
    /// which halves the divisions of the sensor's hottest formatting (addresses, times).
    #[inline]
    fn put_digits(&mut self, mut n: u32, width: usize) {
        let end = self.len + width;
        if let Some(d) = self.buf.get_mut(self.len..end) {
            let mut pairs = d.rchunks_exact_mut(2);
            for pair in &mut pairs {
                pair.copy_from_slice(DIGIT_PAIRS.get((n % 100) as usize).unwrap_or(&[b'0'; 2]));
                n /= 100;
            }
            if let [b] = pairs.into_remainder() {
                *b = b'0' + (n % 10) as u8;
            }
            self.len = end;
        }
    }

    fn put_field(&mut self, f: Field) {
        match f {
            Field::Null => {}
            Field::Int(n) => self.put_u32(n),
            Field::Ip(IpAddr::V4(a)) => {
                let [a, b, c, d] = a.octets();
                self.put_u32(u32::from(a));
                self.put(b".");
                self.put_u32(u32::from(b));
                self.put(b".");
                self.put_u32(u32::from(c));
                self.put(b".");
                self.put_u32(u32::from(d));
            }
            // IPv6 through `Display`: its zero compression is not worth repeating.
            Field::Ip(IpAddr::V6(a)) => {
                let _ = std::fmt::Write::write_fmt(self, format_args!("{a}"));
            }
            Field::Name(s) => self.put(s.as_bytes()),
            Field::Time(time) => self.put_time(time),
            Field::Uuid(u) => {
                let end = self.len + 36;
                if let Some(d) = self.buf.get_mut(self.len..end) {
                    u.hyphenated().encode_lower(d);
                    self.len = end;
                }
            }
        }
    }

    /// PokieStream's timestamp text (`YYYY-MM-DDTHH:MM:SS.ffffff`).
    fn put_time(&mut self, time: Timestamp) {
        let us = time.as_micros();
        let (sec, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000) as u32);
        let cached = SECOND.with(|c| {
            let (s, p) = c.get();
            (s == sec).then_some(p)
        });
        let prefix = match cached {
            Some(p) => p,
            None => {
                let mut s = String::with_capacity(26);
                time.write_rfc3339(&mut s, "");
                let mut p = [0u8; 20];
                match s.as_bytes().get(..20) {
                    // Only the four-digit-year form has its fraction at byte 20.
                    Some(head) if s.len() == 26 => p.copy_from_slice(head),
                    _ => {
                        self.put(s.as_bytes());
                        return;
                    }
                }
                SECOND.with(|c| c.set((sec, p)));
                p
            }
        };
        self.put(&prefix);
        self.put_digits(frac, 6);
    }
}

/// `00` to `99`: the two decimal digits of every number below 100.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut t = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        t[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    t
};

/// Number of decimal digits of `n`.
#[inline]
fn count(n: u32) -> usize {
    match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        10_000..=99_999 => 5,
        _ => n.checked_ilog10().map_or(1, |l| l as usize + 1),
    }
}

impl<const N: usize> std::fmt::Write for Text<N> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.put(s.as_bytes());
        Ok(())
    }
}

thread_local! {
    /// The last second formatted (`YYYY-MM-DDTHH:MM:SS.`): records come in time order, so most
    /// timestamps only need their six fraction digits.
    static SECOND: std::cell::Cell<(i64, [u8; 20])> =
        const { std::cell::Cell::new((i64::MIN, [0; 20])) };
}

/// The record as a JSON object with exactly the ten keys, or `None` when `event` is not a
/// flow record (no `flow` block).
pub fn to_value(event: &Event) -> Option<Value> {
    PacketLog::from_event(event).map(|r| r.to_value())
}

/// Appends the record as one JSON line with the ten keys in order; writes nothing for an
/// event without a `flow` block. Hand-written (no `Value`, no formatting machinery) because
/// the sensor writes millions a second.
pub fn json_line(event: &Event, out: &mut Vec<u8>) {
    let Some(flow) = event.flow.as_deref() else { return };
    // The payload is written from the event's map rather than cloned into the record.
    let rec = PacketLog::without_payload(event, flow);
    rec.write_row::<true>(&flow.payload, out);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Flow, Kind, Timestamp};
    use std::sync::Arc;

    fn flow_event() -> Event {
        let t = Timestamp::from_micros(1_700_000_000_123_456);
        let mut e = Event::at(Kind::FLOW_NEW, Arc::from("n"), t, crate::new_id_at(t, [1; 10]));
        e.transport = Some(Transport::Udp);
        e.src_ip = Some("203.0.113.7".parse().unwrap());
        e.src_port = Some(51000);
        e.dst_ip = Some("2001:db8::1".parse().unwrap());
        e.dst_port = Some(53);
        e.session = Some(crate::new_id_at(t, [2; 10]));
        let mut flow = Flow { state: Some(FlowState::New), protocol_num: 17, ..Flow::default() };
        flow.payload.insert("dns".into(), "ex\"ample.com".into());
        e.flow = Some(Box::new(flow));
        e
    }

    #[test]
    fn line_and_value_agree_and_have_ten_keys() {
        let e = flow_event();
        let mut line = Vec::new();
        json_line(&e, &mut line);
        let text = std::str::from_utf8(&line).unwrap();
        assert_eq!(
            text,
            "{\"src_ip\":\"203.0.113.7\",\"dst_ip\":\"2001:db8::1\",\"src_port\":51000,\"dst_port\":53,\
             \"protocol_num\":17,\"protocol_name\":\"UDP\",\"state\":\"NEW\",\
             \"timestamp\":\"2023-11-14T22:13:20.123456\",\
             \"session_id\":\"018bcfe5-687b-7202-8202-020202020202\",\"payload\":{\"dns\":\"ex\\\"ample.com\"}}\n"
        );
        let parsed: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(Some(parsed.clone()), to_value(&e));
        let keys: Vec<&String> = parsed.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 10);
    }

    #[test]
    fn icmp_has_nulls_and_non_flow_events_write_nothing() {
        let mut e = flow_event();
        e.src_port = None;
        e.dst_port = None;
        e.session = None;
        e.transport = Some(Transport::Icmp);
        e.flow = Some(Box::new(Flow { protocol_num: 1, ..Flow::default() }));
        let v = to_value(&e).unwrap();
        for k in ["src_port", "dst_port", "state", "session_id", "payload"] {
            assert!(v[k].is_null(), "{k}");
        }
        assert_eq!(v["protocol_name"], "ICMP");
        e.flow = None;
        let mut out = Vec::new();
        json_line(&e, &mut out);
        assert!(out.is_empty());
        assert!(to_value(&e).is_none());
    }

    #[test]
    fn record_rows_match_the_line_and_the_value() {
        let e = flow_event();
        let rec = PacketLog::from_event(&e).unwrap();
        let mut line = Vec::new();
        json_line(&e, &mut line);
        let mut obj = Vec::new();
        rec.write_json(&mut obj);
        obj.push(b'\n');
        assert_eq!(obj, line);
        let mut row = b"[".to_vec();
        rec.write_json_values(&mut row);
        row.push(b']');
        let row: Vec<Value> = serde_json::from_slice(&row).unwrap();
        let v = rec.to_value();
        let by_key: Vec<Value> = KEYS.iter().map(|k| v[*k].clone()).collect();
        assert_eq!(row, by_key);
    }

    #[test]
    fn field_text_matches_std_formatting() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.20.3.4", "2001:db8::1", "::ffff:1.2.3.4"] {
            let a: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(Field::Ip(a).text().as_bytes(), a.to_string().as_bytes());
        }
        for n in [0u32, 9, 10, 99, 100, 65535, 99_999, 100_000, u32::MAX] {
            assert_eq!(Field::Int(n).text().as_bytes(), n.to_string().as_bytes());
        }
        // Consecutive times in and across seconds (the cached prefix), before 1970, and a
        // year without a four-digit form.
        for us in [
            1_700_000_000_000_000i64,
            1_700_000_000_999_999,
            1_700_000_001_000_000,
            1_700_000_000_000_001,
            -1,
            -1_000_001,
            0,
            300_000_000_000_000_000,
        ] {
            let t = Timestamp::from_micros(us);
            let mut want = String::new();
            t.write_rfc3339(&mut want, "");
            assert_eq!(Field::Time(t).text().as_bytes(), want.as_bytes(), "{us}");
        }
    }
}
