//! The HTTP SIEM writers.

use std::sync::Arc;

use apiary_event::Event;
use serde_json::{Value, json};

use super::{
    ElasticsearchConfig, HoneydbConfig, Http, SplunkHecConfig, SumologicConfig, check_status,
};
use crate::{Encoder, Sink, SinkError};

/// Splunk HTTP Event Collector: one request per batch, events concatenated.
#[derive(Debug)]
pub struct SplunkHecSink {
    cfg: SplunkHecConfig,
    http: Http,
    encoder: Encoder,
}

impl SplunkHecSink {
    pub(crate) fn new(cfg: SplunkHecConfig, http: Http, encoder: Encoder) -> Self {
        Self { cfg, http, encoder }
    }
}

#[async_trait::async_trait]
impl Sink for SplunkHecSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let mut body = Vec::with_capacity(batch.len() * 600);
        for e in batch {
            // HEC's `time` is epoch seconds with a fraction (milliseconds, as HoneyPy sent).
            let time = (e.time.as_micros() / 1000) as f64 / 1000.0;
            let mut env = json!({
                "time": time,
                "host": &*e.node,
                "source": self.cfg.source,
                "sourcetype": self.cfg.sourcetype,
                "event": self.encoder.value(e),
            });
            if let (Some(i), Some(m)) = (&self.cfg.index, env.as_object_mut()) {
                m.insert("index".into(), Value::String(i.clone()));
            }
            let _ = serde_json::to_writer(&mut body, &env);
            body.push(b'\n');
        }
        let req = self
            .http
            .client
            .post(&self.cfg.url)
            .header("Authorization", format!("Splunk {}", self.cfg.token))
            .header("Content-Type", "application/json")
            .body(body);
        let (status, resp) = self.http.send(req).await?;
        check_status(status, &resp)
    }
}

/// Elasticsearch / OpenSearch `_bulk`.
#[derive(Debug)]
pub struct ElasticsearchSink {
    cfg: ElasticsearchConfig,
    http: Http,
    encoder: Encoder,
}

impl ElasticsearchSink {
    pub(crate) fn new(cfg: ElasticsearchConfig, http: Http, encoder: Encoder) -> Self {
        Self { cfg, http, encoder }
    }
}

/// Checks a `_bulk` response: every item must be created (201) or already there (409).
fn bulk_outcome(body: &[u8]) -> Result<(), SinkError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| SinkError::Rejected(format!("bad _bulk response: {e}")))?;
    if v.get("errors").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    let items = v.get("items").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for item in items {
        let op = item.get("create").or_else(|| item.get("index"));
        let status = op.and_then(|o| o.get("status")).and_then(Value::as_u64).unwrap_or(0);
        if !(status == 201 || status == 200 || status == 409) {
            let reason = op.and_then(|o| o.get("error")).map(|e| e.to_string()).unwrap_or_default();
            return Err(SinkError::Rejected(format!("_bulk item failed with {status}: {reason}")));
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Sink for ElasticsearchSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let mut body = Vec::with_capacity(batch.len() * 700);
        for e in batch {
            let action = json!({"create": {"_index": self.cfg.index, "_id": e.id.to_string()}});
            let _ = serde_json::to_writer(&mut body, &action);
            body.push(b'\n');
            self.encoder.write_line(e, &mut body);
        }
        let url = format!("{}/_bulk", self.cfg.url.trim_end_matches('/'));
        let mut req =
            self.http.client.post(url).header("Content-Type", "application/x-ndjson").body(body);
        if let Some(key) = &self.cfg.api_key {
            req = req.header("Authorization", format!("ApiKey {key}"));
        } else if let Some(user) = &self.cfg.username {
            req = req.basic_auth(user, self.cfg.password.as_deref());
        }
        let (status, resp) = self.http.send(req).await?;
        check_status(status, &resp)?;
        bulk_outcome(&resp)
    }
}

/// Sumo Logic HTTP source: newline-separated JSON with `X-Sumo-*` headers.
#[derive(Debug)]
pub struct SumologicSink {
    cfg: SumologicConfig,
    http: Http,
    encoder: Encoder,
}

impl SumologicSink {
    pub(crate) fn new(cfg: SumologicConfig, http: Http, encoder: Encoder) -> Self {
        Self { cfg, http, encoder }
    }
}

#[async_trait::async_trait]
impl Sink for SumologicSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let mut body = Vec::with_capacity(batch.len() * 600);
        for e in batch {
            self.encoder.write_line(e, &mut body);
        }
        let mut req = self.http.client.post(&self.cfg.url).body(body);
        for (h, v) in [
            ("X-Sumo-Host", &self.cfg.custom_source_host),
            ("X-Sumo-Name", &self.cfg.custom_source_name),
            ("X-Sumo-Category", &self.cfg.custom_source_category),
        ] {
            if let Some(v) = v {
                req = req.header(h, v);
            }
        }
        let (status, resp) = self.http.send(req).await?;
        check_status(status, &resp)
    }
}

/// HoneyDB.
#[derive(Debug)]
pub struct HoneydbSink {
    cfg: HoneydbConfig,
    http: Http,
    encoder: Encoder,
    hmac: Option<(String, String)>,
    /// Events of the current batch already accepted, so a retry resumes after them.
    done: usize,
    batch_first: Option<uuid::Uuid>,
}

impl HoneydbSink {
    pub(crate) fn new(cfg: HoneydbConfig, http: Http, encoder: Encoder) -> Self {
        Self { cfg, http, encoder, hmac: None, done: 0, batch_first: None }
    }

    async fn fetch_hmac(&self) -> Result<(String, String), SinkError> {
        let req = self
            .http
            .client
            .get(&self.cfg.hmac_url)
            .header("X-HoneyDb-ApiId", &self.cfg.api_id)
            .header("X-HoneyDb-ApiKey", &self.cfg.api_key);
        let (status, body) = self.http.send(req).await?;
        check_status(status, &body)?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| SinkError::Rejected(format!("bad HoneyDB hmac answer: {e}")))?;
        match (v["status"].as_str(), v["hmac_hash"].as_str(), v["hmac_message"].as_str()) {
            (Some("Success"), Some(h), Some(m)) => Ok((h.to_owned(), m.to_owned())),
            _ => Err(SinkError::Rejected(format!("HoneyDB refused the hmac request: {v}"))),
        }
    }
}

#[async_trait::async_trait]
impl Sink for HoneydbSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let first = batch.first().map(|e| e.id);
        if first != self.batch_first {
            self.batch_first = first;
            self.done = 0;
        }
        let node = self.cfg.node.clone().unwrap_or_default();
        while let Some(e) = batch.get(self.done) {
            let (hash, message) = match &self.hmac {
                Some(h) => h.clone(),
                None => {
                    let h = self.fetch_hmac().await?;
                    self.hmac = Some(h.clone());
                    h
                }
            };
            let mut rec = self.encoder.value(e);
            if let Some(m) = rec.as_object_mut() {
                m.insert("hmac_hash".into(), hash.into());
                m.insert("hmac_message".into(), message.into());
                m.insert("node".into(), node.clone().into());
            }
            let req = self.http.client.post(&self.cfg.url).json(&rec);
            let (status, body) = self.http.send(req).await?;
            let ok = (200..300).contains(&status)
                && serde_json::from_slice::<Value>(&body)
                    .is_ok_and(|v| v["status"].as_str() == Some("Success"));
            if !ok {
                // A stale HMAC is the usual cause: fetch a new one on the retry.
                self.hmac = None;
                check_status(status, &body)?;
                return Err(SinkError::Rejected(format!(
                    "HoneyDB did not accept the event: {}",
                    String::from_utf8_lossy(&body)
                )));
            }
            self.done += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_conflicts_are_success_other_errors_are_not() {
        assert!(bulk_outcome(br#"{"errors":false,"items":[]}"#).is_ok());
        assert!(
            bulk_outcome(
                br#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409}}]}"#
            )
            .is_ok()
        );
        assert!(
            bulk_outcome(
                br#"{"errors":true,"items":[{"create":{"status":429,"error":{"type":"x"}}}]}"#
            )
            .is_err()
        );
    }
}
