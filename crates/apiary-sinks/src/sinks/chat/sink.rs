//! The alert channels.

use std::collections::BTreeMap;

use serde_json::json;

use super::OAuth1;
use crate::alert::{Alert, AlertChannel};
use crate::sinks::http::{Http, check_status};
use crate::{Encoder, SinkError};

async fn post_json(http: &Http, req: reqwest::RequestBuilder) -> Result<(), SinkError> {
    let (status, body) = http.send(req).await?;
    check_status(status, &body)
}

/// Cuts `s` to at most `max` characters.
fn cap(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Slack incoming webhook: `{"text": ...}`.
#[derive(Debug)]
pub struct SlackChannel {
    pub(crate) url: String,
    pub(crate) http: Http,
}

#[async_trait::async_trait]
impl AlertChannel for SlackChannel {
    async fn post(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let req = self.http.client.post(&self.url).json(&json!({"text": cap(&alert.text, 3000)}));
        post_json(&self.http, req).await
    }
}

/// Discord webhook: `{"content": ...}` (at most 2000 characters).
#[derive(Debug)]
pub struct DiscordChannel {
    pub(crate) url: String,
    pub(crate) http: Http,
}

#[async_trait::async_trait]
impl AlertChannel for DiscordChannel {
    async fn post(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let req =
            self.http.client.post(&self.url).json(&json!({"content": cap(&alert.text, 2000)}));
        post_json(&self.http, req).await
    }
}

/// Telegram Bot API `sendMessage`.
#[derive(Debug)]
pub struct TelegramChannel {
    pub(crate) url: String,
    pub(crate) chat_id: String,
    pub(crate) http: Http,
}

#[async_trait::async_trait]
impl AlertChannel for TelegramChannel {
    async fn post(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let req = self
            .http
            .client
            .post(&self.url)
            .json(&json!({"chat_id": self.chat_id, "text": cap(&alert.text, 4096)}));
        post_json(&self.http, req).await
    }
}

/// A generic JSON webhook.
#[derive(Debug)]
pub struct WebhookChannel {
    pub(crate) url: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) encoder: Encoder,
    pub(crate) http: Http,
}

#[async_trait::async_trait]
impl AlertChannel for WebhookChannel {
    async fn post(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let event = alert.event.as_ref().map(|e| self.encoder.value(e));
        let mut req = self.http.client.post(&self.url).json(&json!({
            "kind": alert.kind.as_str(),
            "text": alert.text,
            "event": event,
        }));
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        post_json(&self.http, req).await
    }
}

/// X (Twitter) API v2 `POST /2/tweets`, signed with OAuth 1.0a.
#[derive(Debug)]
pub struct TwitterChannel {
    pub(crate) url: String,
    pub(crate) oauth: OAuth1,
    pub(crate) http: Http,
}

#[async_trait::async_trait]
impl AlertChannel for TwitterChannel {
    async fn post(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let nonce = apiary_event::new_id().simple().to_string();
        let ts = apiary_event::Timestamp::now().as_secs().max(0) as u64;
        let auth = self.oauth.header("POST", &self.url, &nonce, ts);
        let req = self
            .http
            .client
            .post(&self.url)
            .header("Authorization", auth)
            .json(&json!({"text": cap(&alert.text, 280)}));
        post_json(&self.http, req).await
    }
}
