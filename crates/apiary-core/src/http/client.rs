//! A typed client of the REST API, for `apiary ctl` and tests: nodes, pots, commands (send
//! and follow), event search and the live stream.

use std::time::Duration;

use apiary_event::Event;
use apiary_proto::NodeCommandType;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Largest SSE message the client buffers before giving up on a stream.
const MAX_SSE_BUFFER: usize = 64 << 20;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Network or protocol failure.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The API answered with an error.
    #[error("{status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's `error` text.
        message: String,
    },
    /// An answer could not be read.
    #[error("unreadable answer: {0}")]
    Decode(String),
    /// No node has that name or id.
    #[error("no node named {0:?}")]
    NoSuchNode(String),
}

/// A node as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Core-assigned id.
    pub id: i64,
    /// Enrollment name.
    pub name: String,
    /// Last reported status.
    pub status: String,
    /// Whether a connection is registered now.
    pub connected: bool,
    /// Last heard from (microseconds).
    pub last_seen: Option<i64>,
    /// Reported address.
    pub address: Option<String>,
    /// TCP peer of the last connection.
    pub peer: Option<String>,
    /// Enrolled at (microseconds).
    pub created: i64,
}

/// A pot as its node last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PotInfo {
    /// The node.
    pub node_id: i64,
    /// The pot id.
    pub pot_id: String,
    /// The pot type.
    pub pot_type: String,
    /// Last status.
    pub status: String,
    /// Last message.
    pub message: Option<String>,
    /// Updated at (microseconds).
    pub updated: i64,
}

/// A command and where it is in its life cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// Command id.
    pub id: i64,
    /// Target node.
    pub node_id: i64,
    /// The command in its wire form.
    pub command: Value,
    /// `pending`, `sent`, `done` or `failed`.
    pub status: String,
    /// Queued at (microseconds).
    pub created: i64,
    /// Answered at.
    pub done_at: Option<i64>,
    /// The node's answer.
    pub result: Option<String>,
    /// Times written to the node.
    pub attempts: i64,
}

impl CommandInfo {
    /// Whether the node answered (done or failed).
    pub fn finished(&self) -> bool {
        self.status == "done" || self.status == "failed"
    }
}

/// A node with its pots and recent commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDetail {
    /// The node.
    pub node: NodeInfo,
    /// Its pots.
    pub pots: Vec<PotInfo>,
    /// Its latest commands, newest first.
    pub commands: Vec<CommandInfo>,
}

/// A page of events.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EventsPage {
    /// Newest first.
    pub events: Vec<Event>,
    /// Cursor for the next page.
    pub next: Option<String>,
}

/// Event filters, as query parameters (times: RFC 3339 or a duration ago such as `15m`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventQuery {
    /// From.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Until.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<String>,
    /// Core node id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i64>,
    /// Event kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Service name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Text the event's JSON contains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Page cursor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Page size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Live-stream filters (server side).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StreamQuery {
    /// Event kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Source address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_ip: Option<String>,
    /// Service name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Node name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// What the live stream delivered.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// Events, in the order stored.
    Events(Vec<Event>),
    /// The client was too slow; this many events were skipped.
    Lagged(u64),
}

/// The API client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client of the API at `base_url` (`http://127.0.0.1:5100`) with an API token.
    pub fn new(base_url: &str, token: &str) -> Result<Self, ClientError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.trim().to_owned(),
        })
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}/api/v1{path}", self.base)).bearer_auth(&self.token)
    }

    async fn send<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T, ClientError> {
        let resp = rb.timeout(Duration::from_secs(120)).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
            return Err(ClientError::Api { status: status.as_u16(), message });
        }
        let body: &[u8] =
            if status == StatusCode::NO_CONTENT || body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Who the token belongs to: `{"name": ..., "role": ...}`.
    pub async fn me(&self) -> Result<Value, ClientError> {
        self.send(self.req(Method::GET, "/me")).await
    }

    /// Every node.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        self.send(self.req(Method::GET, "/nodes")).await
    }

    /// A node id from a name or a number.
    pub async fn resolve_node(&self, name_or_id: &str) -> Result<i64, ClientError> {
        let nodes = self.nodes().await?;
        nodes
            .iter()
            .find(|n| n.name == name_or_id)
            .or_else(|| nodes.iter().find(|n| n.id.to_string() == name_or_id))
            .map(|n| n.id)
            .ok_or_else(|| ClientError::NoSuchNode(name_or_id.to_owned()))
    }

    /// A node with its pots and latest commands.
    pub async fn node(&self, id: i64) -> Result<NodeDetail, ClientError> {
        self.send(self.req(Method::GET, &format!("/nodes/{id}"))).await
    }

    /// Enrolls a node (`kind`: `totp` or `token`); the answer holds the secret, the
    /// `otpauth://` URI, a QR code as SVG and the command to run on the node.
    pub async fn add_node(&self, name: &str, kind: &str) -> Result<Value, ClientError> {
        self.send(self.req(Method::POST, "/nodes").json(&json!({ "name": name, "kind": kind })))
            .await
    }

    /// Removes a node record (its events stay).
    pub async fn delete_node(&self, id: i64) -> Result<(), ClientError> {
        self.send::<Value>(self.req(Method::DELETE, &format!("/nodes/{id}"))).await.map(|_| ())
    }

    /// A node's pots.
    pub async fn pots(&self, node_id: i64) -> Result<Vec<PotInfo>, ClientError> {
        self.send(self.req(Method::GET, &format!("/nodes/{node_id}/pots"))).await
    }

    /// Every node's pots.
    pub async fn all_pots(&self) -> Result<Vec<PotInfo>, ClientError> {
        self.send(self.req(Method::GET, "/pots")).await
    }

    /// Queues a command for a node.
    pub async fn send_command(
        &self,
        node_id: i64,
        command: &NodeCommandType,
    ) -> Result<CommandInfo, ClientError> {
        let body = json!({ "command": command });
        self.send(self.req(Method::POST, &format!("/nodes/{node_id}/commands")).json(&body)).await
    }

    /// A command, waiting up to `wait` for the node's answer.
    pub async fn command(&self, id: i64, wait: Duration) -> Result<CommandInfo, ClientError> {
        let path = format!("/commands/{id}?wait={}", wait.as_secs_f64());
        self.send(self.req(Method::GET, &path)).await
    }

    /// Sends a command and follows it until the node answers or `wait` passes.
    pub async fn run_command(
        &self,
        node_id: i64,
        command: &NodeCommandType,
        wait: Duration,
    ) -> Result<CommandInfo, ClientError> {
        let sent = self.send_command(node_id, command).await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let c = self.command(sent.id, left.min(Duration::from_secs(25))).await?;
            if c.finished() || left.is_zero() {
                return Ok(c);
            }
        }
    }

    /// `DeployPot` and its result (`apiary ctl deploy NODE POT`).
    pub async fn deploy(
        &self,
        node_id: i64,
        pot: &str,
        wait: Duration,
    ) -> Result<CommandInfo, ClientError> {
        self.run_command(node_id, &NodeCommandType::DeployPot(pot.to_owned()), wait).await
    }

    /// One page of events.
    pub async fn events(&self, q: &EventQuery) -> Result<EventsPage, ClientError> {
        self.send(self.req(Method::GET, "/events").query(q)).await
    }

    /// The overview statistics (`since`: a duration ago or RFC 3339).
    pub async fn overview(&self, since: &str) -> Result<Value, ClientError> {
        self.send(self.req(Method::GET, "/stats/overview").query(&[("since", since)])).await
    }

    /// The statistics of a range (`since`/`until`: a duration ago or RFC 3339; `until`
    /// `None` is now), with `top` entries per list.
    pub async fn overview_range(
        &self,
        since: &str,
        until: Option<&str>,
        top: u32,
    ) -> Result<Value, ClientError> {
        let mut q = vec![("since", since.to_owned()), ("limit", top.to_string())];
        if let Some(u) = until {
            q.push(("until", u.to_owned()));
        }
        self.send(self.req(Method::GET, "/stats/overview").query(&q)).await
    }

    /// Follows the live stream, calling `f` for each item until it returns false or the
    /// server ends the stream (`apiary ctl events --follow`).
    pub async fn follow(
        &self,
        q: &StreamQuery,
        mut f: impl FnMut(StreamItem) -> bool,
    ) -> Result<(), ClientError> {
        let mut resp = self.req(Method::GET, "/stream").query(q).send().await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let message = resp.text().await.unwrap_or_default();
            return Err(ClientError::Api { status, message });
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await? {
            buf.extend_from_slice(&chunk);
            while let Some(end) = find_message_end(&buf) {
                let msg: Vec<u8> = buf.drain(..end).collect();
                if let Some(item) = parse_sse(&msg)?
                    && !f(item)
                {
                    return Ok(());
                }
            }
            if buf.len() > MAX_SSE_BUFFER {
                return Err(ClientError::Decode("live-stream message too large".into()));
            }
        }
        Ok(())
    }
}

/// The end (after the blank line) of the first complete SSE message in `buf`.
fn find_message_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

fn parse_sse(msg: &[u8]) -> Result<Option<StreamItem>, ClientError> {
    let text = String::from_utf8_lossy(msg);
    let mut event = "message";
    let mut data = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            event = v.trim();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    let decode = |e: serde_json::Error| ClientError::Decode(e.to_string());
    Ok(match event {
        "events" => Some(StreamItem::Events(serde_json::from_str(&data).map_err(decode)?)),
        "lagged" => {
            let v: Value = serde_json::from_str(&data).map_err(decode)?;
            Some(StreamItem::Lagged(v.get("missed").and_then(Value::as_u64).unwrap_or(0)))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_messages_split_and_parse() {
        let raw = b"event: hello\ndata: {}\n\nevent: lagged\ndata: {\"missed\":7}\n\n:keep\n\n";
        let first = find_message_end(raw).unwrap();
        assert!(parse_sse(&raw[..first]).unwrap().is_none());
        let rest = &raw[first..];
        let second = find_message_end(rest).unwrap();
        assert_eq!(parse_sse(&rest[..second]).unwrap(), Some(StreamItem::Lagged(7)));
        assert!(parse_sse(&rest[second..]).unwrap().is_none());
    }
}
