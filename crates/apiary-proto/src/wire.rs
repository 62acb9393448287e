//! The version-2 envelope and every message of HoneyBee protocol v2, decoded leniently and
//! encoded in the forms both node families accept.
//!
//! Decoding goes through `serde_json::Value` once per message: the envelope is small, and the
//! tolerance rules (unit variants as `"X"`, `{"X":{}}`, `{"X":null}`; two `NodeEvent` shapes;
//! two `PotEvent` shapes; empty `PotStatusUpdate.status`) are simpler and easier to audit on a
//! tree than as serde visitor code. Unknown fields are ignored everywhere.

use std::collections::BTreeMap;
use std::fmt;

use apiary_event::Timestamp;
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version apiary speaks and writes.
pub const PROTOCOL_VERSION: u64 = 2;

/// How a unit variant (`Restart`, `NodeDrop`, ...) is written.
///
/// No single form works for both node families: the Rust Core and serde-based nodes accept only
/// the bare string, the Go node and the docs only the empty object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitStyle {
    /// `{"Restart":{}}` (Go node, docs, seed page): the default.
    #[default]
    EmptyObject,
    /// `"Restart"` (serde-based nodes).
    BareString,
}

impl UnitStyle {
    /// The name used in configuration and storage (`empty_object`, `bare_string`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EmptyObject => "empty_object",
            Self::BareString => "bare_string",
        }
    }

    /// Parses [`UnitStyle::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "empty_object" => Some(Self::EmptyObject),
            "bare_string" => Some(Self::BareString),
            _ => None,
        }
    }
}

/// Why a framed message could not be understood. The connection goes on (only framing errors
/// close it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not JSON.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// JSON, but not `{"version":…,"message":…}`.
    #[error("not a protocol envelope: {0}")]
    Envelope(&'static str),
    /// A message variant this side does not know.
    #[error("unknown message type {0:?}")]
    UnknownMessage(String),
    /// A known variant with a missing or mistyped field.
    #[error("invalid {variant}: {reason}")]
    Invalid {
        /// The message variant.
        variant: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// A decoded message with what the envelope said around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound<M> {
    /// The envelope's `version` (2 expected; other values are still parsed, as HoneyBee does).
    pub version: Option<u64>,
    /// The message.
    pub message: M,
    /// The unit style the sender showed in this message, if it showed one (rule 17 of the
    /// interop rules: reply to serde-style nodes with bare strings).
    pub style_hint: Option<UnitStyle>,
}

// ---------------------------------------------------------------------------------------------
// Lenient unit enums.

/// The name of a unit variant written as `"X"`, `{"X":{}}`, `{"X":null}` or `{"X":true}`.
fn unit_name(v: &Value) -> Option<(&str, UnitStyle)> {
    match v {
        Value::String(s) => Some((s.as_str(), UnitStyle::BareString)),
        Value::Object(m) if m.len() == 1 => {
            let (k, inner) = m.iter().next()?;
            match inner {
                Value::Null | Value::Bool(true) => Some((k.as_str(), UnitStyle::EmptyObject)),
                Value::Object(o) if o.is_empty() => Some((k.as_str(), UnitStyle::EmptyObject)),
                _ => None,
            }
        }
        _ => None,
    }
}

macro_rules! lenient_unit_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this side does not know (kept, never rejected).
            Other(String),
        }

        impl $name {
            /// The wire name.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => stringify!($variant),)+
                    Self::Other(s) => s,
                }
            }

            /// The variant named `s`, or `Other`.
            pub fn from_name(s: &str) -> Self {
                match s {
                    $(stringify!($variant) => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }

            /// Whether this is a value of the protocol (not `Other`).
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Other(_))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = Value::deserialize(d)?;
                match unit_name(&v) {
                    Some((name, _)) => Ok(Self::from_name(name)),
                    None if v.is_null() => Ok(Self::Other(String::new())),
                    None => Err(de::Error::custom(concat!(
                        "expected a ", stringify!($name), " name"
                    ))),
                }
            }
        }
    };
}

lenient_unit_enum!(
    /// What kind of node registers: informational only.
    NodeType {
        /// Installs and runs pots and forwards events.
        Full,
        /// A status-only probe.
        Agent,
    }
);

// The enum comes from a macro shared with enums whose default is not a unit variant.
#[allow(clippy::derivable_impls)]
impl Default for NodeType {
    fn default() -> Self {
        Self::Full
    }
}

lenient_unit_enum!(
    /// A node's own status, sent as a heartbeat.
    NodeStatus {
        /// The Core's value right after registration.
        Connected,
        /// Installing pots.
        Deploying,
        /// Working.
        Running,
        /// Stopped.
        Stopped,
        /// Broken.
        Failed,
        /// Unknown.
        Unknown,
    }
);

lenient_unit_enum!(
    /// A pot's status. An empty or unknown value marks the Go node's forwarded attack events.
    PotStatus {
        /// Being installed.
        Installing,
        /// Running.
        Running,
        /// Stopped (also "installation complete").
        Stopped,
        /// Failed.
        Failed,
        /// Being removed (apiary and HoneyBee v4).
        Removing,
        /// Removed (apiary and HoneyBee v4).
        Removed,
    }
);

impl Default for PotStatus {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

// ---------------------------------------------------------------------------------------------
// Times.

/// A timestamp as nodes send it: Unix seconds (Go node, Rust Core) or RFC 3339 text (docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireTime {
    /// Whole (or fractional, truncated to microseconds) seconds since the epoch.
    Unix(Timestamp),
    /// An RFC 3339 string.
    Text(Timestamp),
}

impl WireTime {
    /// The instant.
    pub fn timestamp(self) -> Timestamp {
        match self {
            Self::Unix(t) | Self::Text(t) => t,
        }
    }
}

impl Serialize for WireTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Unix(t) if t.as_micros() % 1_000_000 == 0 => s.serialize_i64(t.as_secs()),
            Self::Unix(t) => s.serialize_f64(t.as_micros() as f64 / 1e6),
            Self::Text(t) => s.collect_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for WireTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Self::Unix(Timestamp::from_secs_micros(i, 0)))
                } else if let Some(u) = n.as_u64() {
                    Ok(Self::Unix(Timestamp::from_secs_micros(
                        i64::try_from(u).unwrap_or(i64::MAX),
                        0,
                    )))
                } else {
                    let f = n.as_f64().unwrap_or(0.0);
                    if !f.is_finite() || f.abs() > 1e15 {
                        return Err(de::Error::custom("timestamp out of range"));
                    }
                    // `as` saturates and the range was checked above.
                    Ok(Self::Unix(Timestamp::from_micros((f * 1e6) as i64)))
                }
            }
            Value::String(s) => {
                // Some senders stringify Unix seconds.
                if let Ok(i) = s.trim().parse::<i64>() {
                    return Ok(Self::Unix(Timestamp::from_secs_micros(i, 0)));
                }
                Timestamp::parse(&s).map(Self::Text).map_err(de::Error::custom)
            }
            _ => Err(de::Error::custom("expected Unix seconds or an RFC 3339 string")),
        }
    }
}

/// Deserialises a field that may be `null` as its default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Deserialises an optional string that some senders write as a number.
fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(_) => return Err(de::Error::custom("expected a string")),
    })
}

// ---------------------------------------------------------------------------------------------
// Node → Core.

/// The first message of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    /// The node's own id (HoneyBee nodes pick a random one per start; apiary's Core assigns its
    /// own and only uses this to refuse a node claiming another's id).
    pub node_id: u64,
    /// The node's name; the Core's enrollment key.
    pub node_name: String,
    /// The address the node reports (informational).
    #[serde(default, deserialize_with = "null_default")]
    pub address: String,
    /// The port the node reports (informational).
    #[serde(default, deserialize_with = "null_default")]
    pub port: u16,
    /// Full or Agent.
    #[serde(default, deserialize_with = "null_default")]
    pub node_type: NodeType,
    /// The current TOTP code, or a one-time enrollment token; absent, null or empty when the
    /// node has neither.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_string"
    )]
    pub totp_code: Option<String>,
}

impl NodeRegistration {
    /// The code, if one was sent and it is not empty.
    pub fn code(&self) -> Option<&str> {
        self.totp_code.as_deref().map(str::trim).filter(|c| !c.is_empty())
    }
}

/// A heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatusUpdate {
    /// The node's claimed id (the Core uses the connection's identity instead).
    #[serde(default, deserialize_with = "null_default")]
    pub node_id: u64,
    /// The status.
    pub status: NodeStatus,
}

/// The kind of a [`NodeEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NodeEventKind {
    /// The node (or its work) started.
    Started,
    /// The node stopped.
    Stopped,
    /// Something the operator should look at.
    Alarm,
    /// An error, including replies to commands the node does not implement.
    Error,
    /// A kind this side does not know.
    Other(String),
}

impl NodeEventKind {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Started => "Started",
            Self::Stopped => "Stopped",
            Self::Alarm => "Alarm",
            Self::Error => "Error",
            Self::Other(s) => s,
        }
    }

    fn from_name(s: &str) -> Self {
        match s {
            "Started" => Self::Started,
            "Stopped" => Self::Stopped,
            "Alarm" => Self::Alarm,
            "Error" => Self::Error,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A node life-cycle event, in either of its two wire shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// What happened.
    pub kind: NodeEventKind,
    /// The `message` text (Error's field in the serde shape).
    pub message: Option<String>,
    /// The `description` text (Alarm's field in the serde shape).
    pub description: Option<String>,
    /// Whether it arrived (or is to be written) in the flat docs/Go shape
    /// `{"type":…,"message":…,"description":…}` rather than the serde enum shape.
    pub flat: bool,
}

impl NodeEvent {
    /// The most useful text of the event.
    pub fn text(&self) -> Option<&str> {
        self.message.as_deref().or(self.description.as_deref())
    }

    fn from_value(v: &Value) -> Result<Self, String> {
        let s =
            |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        if let Some((name, _)) = unit_name(v) {
            return Ok(Self {
                kind: NodeEventKind::from_name(name),
                message: None,
                description: None,
                flat: false,
            });
        }
        let Value::Object(m) = v else { return Err("expected a string or an object".into()) };
        if let Some(t) = m.get("type").and_then(Value::as_str) {
            return Ok(Self {
                kind: NodeEventKind::from_name(t),
                message: s(m, "message"),
                description: s(m, "description"),
                flat: true,
            });
        }
        if m.len() == 1
            && let Some((k, Value::Object(inner))) = m.iter().next()
        {
            return Ok(Self {
                kind: NodeEventKind::from_name(k),
                message: s(inner, "message"),
                description: s(inner, "description"),
                flat: false,
            });
        }
        Err("expected a NodeEvent variant or {\"type\":…}".into())
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        if self.flat {
            m.insert("type".into(), self.kind.as_str().into());
            if let Some(x) = &self.message {
                m.insert("message".into(), x.clone().into());
            }
            if let Some(x) = &self.description {
                m.insert("description".into(), x.clone().into());
            }
            return Value::Object(m);
        }
        match self.kind {
            NodeEventKind::Alarm => {
                let mut inner = Map::new();
                inner.insert("description".into(), self.text().unwrap_or_default().into());
                m.insert("Alarm".into(), Value::Object(inner));
                Value::Object(m)
            }
            NodeEventKind::Error => {
                let mut inner = Map::new();
                inner.insert("message".into(), self.text().unwrap_or_default().into());
                m.insert("Error".into(), Value::Object(inner));
                Value::Object(m)
            }
            _ => Value::String(self.kind.as_str().to_owned()),
        }
    }
}

/// A pot's life-cycle report; also the reply to pot queries, and (with an empty or unknown
/// `status`) the Go node's carrier for forwarded attack events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PotStatusUpdate {
    /// The node's claimed id.
    #[serde(default, deserialize_with = "null_default")]
    pub node_id: u64,
    /// The pot.
    #[serde(default, deserialize_with = "null_default")]
    pub pot_id: String,
    /// The pot type (`cowrie`, ...).
    #[serde(default, deserialize_with = "null_default")]
    pub pot_type: String,
    /// The status; empty or unknown for forwarded events.
    #[serde(default, deserialize_with = "null_default")]
    pub status: PotStatus,
    /// A note.
    #[serde(default)]
    pub message: Option<String>,
}

impl PotStatusUpdate {
    /// Whether this carries a forwarded event rather than a pot status.
    pub fn is_event_carrier(&self) -> bool {
        !self.status.is_known()
    }
}

/// An attack event from a pot, in the docs shape (`event_type`, `data`, RFC 3339 `timestamp`)
/// or the Core/Go shape (`event`, `metadata`, Unix `timestamp`), or a mix.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PotEvent {
    /// The node's claimed id.
    #[serde(default, deserialize_with = "null_default")]
    pub node_id: u64,
    /// The pot.
    #[serde(default, deserialize_with = "null_default")]
    pub pot_id: String,
    /// The pot type (docs shape).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_string"
    )]
    pub pot_type: Option<String>,
    /// The event name (docs shape: `cowrie.login.success`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_string"
    )]
    pub event_type: Option<String>,
    /// The event name (Core/Go shape: Cowrie's `eventid`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_string"
    )]
    pub event: Option<String>,
    /// A note (Core/Go shape).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_string"
    )]
    pub message: Option<String>,
    /// When it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<WireTime>,
    /// Event details (docs shape).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_object")]
    pub data: Option<Map<String, Value>>,
    /// Event details as strings (Core/Go shape).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "opt_object")]
    pub metadata: Option<Map<String, Value>>,
}

fn opt_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Map<String, Value>>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(de::Error::custom("expected an object")),
    }
}

impl PotEvent {
    /// The event name from whichever shape carried it.
    pub fn name(&self) -> Option<&str> {
        self.event_type.as_deref().or(self.event.as_deref())
    }

    /// A detail field from `data` or `metadata`.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.data
            .as_ref()
            .and_then(|m| m.get(key))
            .or_else(|| self.metadata.as_ref().and_then(|m| m.get(key)))
    }
}

/// Every message a node sends.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NodeMessage {
    /// Registration (first message).
    NodeRegistration(NodeRegistration),
    /// Heartbeat.
    NodeStatusUpdate(NodeStatusUpdate),
    /// Life-cycle event.
    NodeEvent(NodeEvent),
    /// Graceful disconnect.
    NodeDrop,
    /// Pot status (or a forwarded event, see [`PotStatusUpdate::is_event_carrier`]).
    PotStatusUpdate(PotStatusUpdate),
    /// Attack event.
    PotEvent(PotEvent),
    /// apiary extension: a native event with its id, so forwarding is exactly-once in the
    /// store (deduplicated by id). Third-party nodes never send it.
    ApiaryEvent(Box<apiary_event::Event>),
    /// apiary extension: "answer when everything I sent before this is stored". The Core
    /// replies [`CoreMessage::ApiaryAck`] with the same `seq` once those events are committed,
    /// which is what makes forwarding at-least-once across a Core crash.
    ApiarySync(ApiarySync),
}

/// Body of [`NodeMessage::ApiarySync`]: `{"ApiarySync":{"seq":7}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiarySync {
    /// Chosen by the node, echoed in the ack.
    pub seq: u64,
}

/// Body of [`CoreMessage::ApiaryAck`]: `{"ApiaryAck":{"seq":7,"ok":true}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiaryAck {
    /// The `seq` of the [`ApiarySync`] answered.
    pub seq: u64,
    /// True when every event before the sync is stored; false when the store refused them
    /// (the node keeps them and sends them again).
    pub ok: bool,
}

impl NodeMessage {
    /// The variant name, for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NodeRegistration(_) => "NodeRegistration",
            Self::NodeStatusUpdate(_) => "NodeStatusUpdate",
            Self::NodeEvent(_) => "NodeEvent",
            Self::NodeDrop => "NodeDrop",
            Self::PotStatusUpdate(_) => "PotStatusUpdate",
            Self::PotEvent(_) => "PotEvent",
            Self::ApiaryEvent(_) => "ApiaryEvent",
            Self::ApiarySync(_) => "ApiarySync",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Core → Node.

/// The answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationAck {
    /// The Core-assigned node id (stable across reconnects); 0 when rejected before identity
    /// was known.
    #[serde(default, deserialize_with = "null_default")]
    pub node_id: u64,
    /// Whether the node may go on.
    pub accepted: bool,
    /// Why (always set by apiary).
    #[serde(default)]
    pub message: Option<String>,
    /// A TOTP secret (base32) the Core issues; only when it issues one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_opt_string"
    )]
    pub totp_key: Option<String>,
}

/// `InstallPot`'s parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallPot {
    /// The pot id to create.
    pub pot_id: String,
    /// The pot type (`cowrie`, `honeypot`, ...).
    pub honeypot_type: String,
    /// Where to clone from (null: the catalogue).
    #[serde(default)]
    pub git_url: Option<String>,
    /// Which branch (null: `main`).
    #[serde(default)]
    pub git_branch: Option<String>,
    /// Settings (`ssh_port`, `hostname`, ...).
    #[serde(default)]
    pub config: Option<BTreeMap<String, String>>,
    /// Start after installing.
    #[serde(default, deserialize_with = "null_default")]
    pub auto_start: bool,
}

/// Every command (HoneyBee's `NodeCommandType`, plus `RemovePot`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeCommandType {
    /// Restart the node.
    Restart,
    /// Reload configuration.
    UpdateConfig,
    /// Install a pot.
    InstallPot(InstallPot),
    /// Start a pot.
    DeployPot(String),
    /// Stop a pot.
    StopPot(String),
    /// Restart a pot.
    RestartPot(String),
    /// Remove a pot (apiary extension; HoneyBee v2 nodes answer "Unknown command").
    RemovePot(String),
    /// Ask for a pot's status.
    GetPotStatus(String),
    /// Ask for a pot's details.
    GetPotInfo(String),
    /// Ask for a pot's logs.
    GetPotLogs(String),
    /// Ask for a pot's metrics.
    GetPotMetrics(String),
    /// Ask for one status update per installed pot.
    GetInstalledPots,
}

impl NodeCommandType {
    /// The variant name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Restart => "Restart",
            Self::UpdateConfig => "UpdateConfig",
            Self::InstallPot(_) => "InstallPot",
            Self::DeployPot(_) => "DeployPot",
            Self::StopPot(_) => "StopPot",
            Self::RestartPot(_) => "RestartPot",
            Self::RemovePot(_) => "RemovePot",
            Self::GetPotStatus(_) => "GetPotStatus",
            Self::GetPotInfo(_) => "GetPotInfo",
            Self::GetPotLogs(_) => "GetPotLogs",
            Self::GetPotMetrics(_) => "GetPotMetrics",
            Self::GetInstalledPots => "GetInstalledPots",
        }
    }

    /// The pot a command is about, if any.
    pub fn pot_id(&self) -> Option<&str> {
        match self {
            Self::InstallPot(p) => Some(&p.pot_id),
            Self::DeployPot(p)
            | Self::StopPot(p)
            | Self::RestartPot(p)
            | Self::RemovePot(p)
            | Self::GetPotStatus(p)
            | Self::GetPotInfo(p)
            | Self::GetPotLogs(p)
            | Self::GetPotMetrics(p) => Some(p),
            Self::Restart | Self::UpdateConfig | Self::GetInstalledPots => None,
        }
    }

    /// The wire value in `style`.
    pub fn to_value(&self, style: UnitStyle) -> Value {
        let unit = |name: &str| match style {
            UnitStyle::BareString => Value::String(name.to_owned()),
            UnitStyle::EmptyObject => {
                let mut m = Map::new();
                m.insert(name.to_owned(), Value::Object(Map::new()));
                Value::Object(m)
            }
        };
        let newtype = |name: &str, v: Value| {
            let mut m = Map::new();
            m.insert(name.to_owned(), v);
            Value::Object(m)
        };
        match self {
            Self::Restart | Self::UpdateConfig | Self::GetInstalledPots => unit(self.name()),
            Self::InstallPot(p) => {
                newtype(self.name(), serde_json::to_value(p).unwrap_or(Value::Null))
            }
            other => newtype(other.name(), other.pot_id().unwrap_or_default().into()),
        }
    }

    /// Parses any accepted form.
    pub fn from_value(v: &Value) -> Result<Self, String> {
        if let Some((name, _)) = unit_name(v) {
            return match name {
                "Restart" => Ok(Self::Restart),
                "UpdateConfig" => Ok(Self::UpdateConfig),
                "GetInstalledPots" => Ok(Self::GetInstalledPots),
                other => Err(format!("unknown or malformed command {other:?}")),
            };
        }
        let Value::Object(m) = v else { return Err("expected a command".into()) };
        let Some((name, body)) = m.iter().next().filter(|_| m.len() == 1) else {
            return Err("expected exactly one command".into());
        };
        let pot = || -> Result<String, String> {
            body.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{name} expects a pot id string"))
        };
        Ok(match name.as_str() {
            "InstallPot" => Self::InstallPot(
                serde_json::from_value(body.clone()).map_err(|e| format!("InstallPot: {e}"))?,
            ),
            "DeployPot" => Self::DeployPot(pot()?),
            "StopPot" => Self::StopPot(pot()?),
            "RestartPot" => Self::RestartPot(pot()?),
            "RemovePot" => Self::RemovePot(pot()?),
            "GetPotStatus" => Self::GetPotStatus(pot()?),
            "GetPotInfo" => Self::GetPotInfo(pot()?),
            "GetPotLogs" => Self::GetPotLogs(pot()?),
            "GetPotMetrics" => Self::GetPotMetrics(pot()?),
            other => return Err(format!("unknown command {other:?}")),
        })
    }
}

/// Stored and compared in the Go/docs form; decoded from any form.
impl Serialize for NodeCommandType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value(UnitStyle::EmptyObject).serialize(s)
    }
}

impl<'de> Deserialize<'de> for NodeCommandType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Self::from_value(&v).map_err(de::Error::custom)
    }
}

/// A command for a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCommand {
    /// The target node (always the target, even for broadcasts).
    #[serde(default, deserialize_with = "null_default")]
    pub node_id: u64,
    /// What to do.
    pub command: NodeCommandType,
}

/// Every message the Core sends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreMessage {
    /// The answer to a registration.
    RegistrationAck(RegistrationAck),
    /// A command.
    NodeCommand(NodeCommand),
    /// apiary extension: the answer to a node's [`NodeMessage::ApiarySync`].
    ApiaryAck(ApiaryAck),
}

// ---------------------------------------------------------------------------------------------
// Envelope, decode and encode.

#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
}

/// Splits an envelope into (version, variant name, body, unit style if a unit variant).
fn open(bytes: &[u8]) -> Result<(Option<u64>, String, Value, Option<UnitStyle>), DecodeError> {
    let env: RawEnvelope = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            DecodeError::Envelope("expected an object with \"version\" and \"message\"")
        } else {
            DecodeError::Json(e.to_string())
        }
    })?;
    let version = env
        .version
        .as_ref()
        .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())));
    let message = env.message.ok_or(DecodeError::Envelope("missing \"message\""))?;
    match message {
        Value::String(name) => Ok((version, name, Value::Null, Some(UnitStyle::BareString))),
        Value::Object(mut m) if m.len() == 1 => {
            let Some(name) = m.keys().next().cloned() else {
                return Err(DecodeError::Envelope("empty \"message\""));
            };
            let body = m.remove(&name).unwrap_or(Value::Null);
            let style = match &body {
                Value::Object(o) if o.is_empty() => Some(UnitStyle::EmptyObject),
                _ => None,
            };
            Ok((version, name, body, style))
        }
        _ => Err(DecodeError::Envelope("\"message\" must be a variant name or a one-key object")),
    }
}

fn body<T: DeserializeOwned>(variant: &'static str, v: Value) -> Result<T, DecodeError> {
    serde_json::from_value(v).map_err(|e| DecodeError::Invalid { variant, reason: e.to_string() })
}

fn invalid(variant: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Invalid { variant, reason: reason.into() }
}

/// How [`encode_apiary_event`] starts every line; [`decode_node_message`] recognises it and
/// parses the event straight from the bytes instead of through a `Value` tree.
const APIARY_EVENT_PREFIX: &[u8] = b"{\"version\":2,\"message\":{\"ApiaryEvent\":";

/// Appends one `ApiaryEvent` envelope line for `event` without building a `Value` (the hot
/// path of forwarding).
pub fn encode_apiary_event(event: &apiary_event::Event, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(APIARY_EVENT_PREFIX);
    if serde_json::to_writer(&mut *out, event).is_ok() {
        out.extend_from_slice(b"}}\n");
    } else {
        out.truncate(start);
    }
}

/// How a compact version-2 `PotEvent` line starts (HoneyBee nodes and Cowrie forwarders write
/// them so); [`decode_node_message`] parses its body straight from the bytes too.
const POT_EVENT_PREFIX: &[u8] = b"{\"version\":2,\"message\":{\"PotEvent\":";

/// The body of a line that is exactly `prefix`, one JSON value and `}}`, parsed as `T`.
/// Anything else (other spacing, key order or extra keys, or a body `T` refuses) returns
/// `None` and takes the general path, which gives the same result or the precise error; this
/// one skips building the envelope's `Value` tree and converting it again.
fn fast_body<T: DeserializeOwned>(bytes: &[u8], prefix: &[u8]) -> Option<T> {
    let inner = bytes.strip_prefix(prefix)?.trim_ascii_end().strip_suffix(b"}}")?;
    // `from_slice` insists on exactly one value, so prefix + value + `}}` is the whole envelope.
    serde_json::from_slice(inner).ok()
}

/// Decodes one framed message from a node.
pub fn decode_node_message(bytes: &[u8]) -> Result<Inbound<NodeMessage>, DecodeError> {
    if let Some(e) = fast_body(bytes, APIARY_EVENT_PREFIX) {
        return Ok(Inbound {
            version: Some(PROTOCOL_VERSION),
            message: NodeMessage::ApiaryEvent(Box::new(e)),
            style_hint: None,
        });
    }
    if let Some(p) = fast_body(bytes, POT_EVENT_PREFIX) {
        return Ok(Inbound {
            version: Some(PROTOCOL_VERSION),
            message: NodeMessage::PotEvent(p),
            style_hint: None,
        });
    }
    let (version, name, v, unit_style) = open(bytes)?;
    let mut style_hint = None;
    let message = match name.as_str() {
        "NodeRegistration" => {
            let r: NodeRegistration = body("NodeRegistration", v)?;
            if r.node_id == 0 {
                return Err(invalid("NodeRegistration", "node_id must be non-zero"));
            }
            if r.node_name.trim().is_empty() {
                return Err(invalid("NodeRegistration", "node_name must not be empty"));
            }
            NodeMessage::NodeRegistration(r)
        }
        "NodeStatusUpdate" => NodeMessage::NodeStatusUpdate(body("NodeStatusUpdate", v)?),
        "NodeEvent" => {
            let e = NodeEvent::from_value(&v).map_err(|r| invalid("NodeEvent", r))?;
            style_hint = Some(if e.flat { UnitStyle::EmptyObject } else { UnitStyle::BareString });
            NodeMessage::NodeEvent(e)
        }
        "NodeDrop" => {
            // `"NodeDrop"`, `{"NodeDrop":{}}`, `{"NodeDrop":null}`, `{"NodeDrop":true}`.
            let ok = unit_style.is_some() || matches!(v, Value::Null | Value::Bool(true));
            if !ok {
                return Err(invalid("NodeDrop", "expected a unit variant"));
            }
            style_hint = unit_style;
            NodeMessage::NodeDrop
        }
        "PotStatusUpdate" => NodeMessage::PotStatusUpdate(body("PotStatusUpdate", v)?),
        "PotEvent" => NodeMessage::PotEvent(body("PotEvent", v)?),
        "ApiaryEvent" => NodeMessage::ApiaryEvent(Box::new(body("ApiaryEvent", v)?)),
        "ApiarySync" => NodeMessage::ApiarySync(body("ApiarySync", v)?),
        _ => return Err(DecodeError::UnknownMessage(name.chars().take(64).collect())),
    };
    Ok(Inbound { version, message, style_hint })
}

/// Decodes one framed message from the Core (for node implementations).
pub fn decode_core_message(bytes: &[u8]) -> Result<Inbound<CoreMessage>, DecodeError> {
    let (version, name, v, _) = open(bytes)?;
    let message = match name.as_str() {
        "RegistrationAck" => CoreMessage::RegistrationAck(body("RegistrationAck", v)?),
        "NodeCommand" => {
            let Value::Object(mut m) = v else {
                return Err(invalid("NodeCommand", "expected an object"));
            };
            let node_id = m.get("node_id").and_then(Value::as_u64).unwrap_or(0);
            let cmd =
                m.remove("command").ok_or_else(|| invalid("NodeCommand", "missing command"))?;
            let command = match &cmd {
                // The oldest free-text form: `"command":"restart"`.
                Value::String(s) if s.eq_ignore_ascii_case("restart") => NodeCommandType::Restart,
                _ => NodeCommandType::from_value(&cmd).map_err(|r| invalid("NodeCommand", r))?,
            };
            CoreMessage::NodeCommand(NodeCommand { node_id, command })
        }
        "ApiaryAck" => CoreMessage::ApiaryAck(body("ApiaryAck", v)?),
        _ => return Err(DecodeError::UnknownMessage(name.chars().take(64).collect())),
    };
    Ok(Inbound { version, message, style_hint: None })
}

/// Serialises `{"version":2,"message":…}` with `version` first, as every example shows.
struct Envelope<'a>(&'a Value);

impl Serialize for Envelope<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("version", &PROTOCOL_VERSION)?;
        m.serialize_entry("message", self.0)?;
        m.end()
    }
}

fn variant(name: &str, body: Value) -> Value {
    let mut m = Map::new();
    m.insert(name.to_owned(), body);
    Value::Object(m)
}

fn write_line(message: &Value, out: &mut Vec<u8>) {
    // Writing a Value into a Vec cannot fail (string keys, finite numbers only).
    if serde_json::to_writer(&mut *out, &Envelope(message)).is_ok() {
        out.push(b'\n');
    }
}

/// Appends one envelope line (terminated by `\n`) for a Core → node message.
pub fn encode_core_message(msg: &CoreMessage, style: UnitStyle, out: &mut Vec<u8>) {
    let v = match msg {
        CoreMessage::RegistrationAck(a) => {
            variant("RegistrationAck", serde_json::to_value(a).unwrap_or(Value::Null))
        }
        CoreMessage::NodeCommand(c) => {
            let mut m = Map::new();
            m.insert("node_id".into(), c.node_id.into());
            m.insert("command".into(), c.command.to_value(style));
            variant("NodeCommand", Value::Object(m))
        }
        CoreMessage::ApiaryAck(a) => {
            variant("ApiaryAck", serde_json::to_value(a).unwrap_or(Value::Null))
        }
    };
    write_line(&v, out);
}

/// Appends one envelope line for a node → Core message (for node implementations). Unit
/// variants use `style`.
pub fn encode_node_message(msg: &NodeMessage, style: UnitStyle, out: &mut Vec<u8>) {
    let to = |x: &dyn erased::ToValue| x.value();
    let v = match msg {
        NodeMessage::NodeRegistration(r) => variant("NodeRegistration", to(r)),
        NodeMessage::NodeStatusUpdate(s) => variant("NodeStatusUpdate", to(s)),
        NodeMessage::NodeEvent(e) => variant("NodeEvent", e.to_value()),
        NodeMessage::NodeDrop => match style {
            UnitStyle::BareString => Value::String("NodeDrop".into()),
            UnitStyle::EmptyObject => variant("NodeDrop", Value::Object(Map::new())),
        },
        NodeMessage::PotStatusUpdate(p) => variant("PotStatusUpdate", to(p)),
        NodeMessage::PotEvent(p) => variant("PotEvent", to(p)),
        NodeMessage::ApiaryEvent(e) => variant("ApiaryEvent", to(e.as_ref())),
        NodeMessage::ApiarySync(x) => variant("ApiarySync", to(x)),
    };
    write_line(&v, out);
}

mod erased {
    //! A tiny object-safe `Serialize` → `Value` shim so `encode_node_message` stays one match.
    use serde::Serialize;
    use serde_json::Value;

    pub(super) trait ToValue {
        fn value(&self) -> Value;
    }

    impl<T: Serialize> ToValue for T {
        fn value(&self) -> Value {
            serde_json::to_value(self).unwrap_or(Value::Null)
        }
    }
}
