//! Keys of the chat, webhook and X loggers.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    DiscordChannel, OAuth1, SlackChannel, TelegramChannel, TwitterChannel, WebhookChannel,
};
use crate::sinks::http::Http;
use crate::{Encoder, SinkError};

fn http_url(url: &str, key: &str) -> Result<(), SinkError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(SinkError::Config(format!("{key} must be an http:// or https:// URL")))
    }
}

fn http() -> Result<Http, SinkError> {
    Http::new(false, std::time::Duration::from_secs(10))
}

/// `type = "slack"` (HoneyPy's `webhook_url`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// Incoming webhook URL.
    pub webhook_url: String,
}

impl SlackConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        http_url(&self.webhook_url, "webhook_url")
    }
    /// The channel.
    pub fn build(&self) -> Result<SlackChannel, SinkError> {
        self.validate()?;
        Ok(SlackChannel { url: self.webhook_url.clone(), http: http()? })
    }
}

/// `type = "discord"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// Webhook URL.
    pub webhook_url: String,
}

impl DiscordConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        http_url(&self.webhook_url, "webhook_url")
    }
    /// The channel.
    pub fn build(&self) -> Result<DiscordChannel, SinkError> {
        self.validate()?;
        Ok(DiscordChannel { url: self.webhook_url.clone(), http: http()? })
    }
}

/// `type = "telegram"` (HoneyPy's `bot_id`; the chat id is configured, not looked up per event).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// Bot token.
    #[serde(alias = "bot_id")]
    pub bot_token: String,
    /// Chat to post to.
    pub chat_id: String,
    /// Bot API base URL.
    #[serde(default = "default_telegram")]
    pub api_url: String,
}

fn default_telegram() -> String {
    "https://api.telegram.org".into()
}

impl TelegramConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        http_url(&self.api_url, "api_url")?;
        if self.bot_token.is_empty() || self.bot_token.contains('/') {
            return Err(SinkError::Config("bot_token is required and has no '/'".into()));
        }
        if self.chat_id.is_empty() {
            return Err(SinkError::Config("chat_id is required".into()));
        }
        Ok(())
    }
    /// The channel.
    pub fn build(&self) -> Result<TelegramChannel, SinkError> {
        self.validate()?;
        Ok(TelegramChannel {
            url: format!(
                "{}/bot{}/sendMessage",
                self.api_url.trim_end_matches('/'),
                self.bot_token
            ),
            chat_id: self.chat_id.clone(),
            http: http()?,
        })
    }
}

/// `type = "webhook"`: `{"kind": "alert"|"digest"|"test", "text": ..., "event": {...}|null}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Target URL.
    pub url: String,
    /// Extra headers (`Authorization`, ...).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl WebhookConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        http_url(&self.url, "url")?;
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                return Err(SinkError::Config(format!("bad header {k:?}")));
            }
        }
        Ok(())
    }
    /// The channel.
    pub fn build(&self, encoder: Encoder) -> Result<WebhookChannel, SinkError> {
        self.validate()?;
        Ok(WebhookChannel {
            url: self.url.clone(),
            headers: self.headers.clone(),
            encoder,
            http: http()?,
        })
    }
}

/// `type = "twitter"` (HoneyPy's `consumerkey`, `consumersecret`, `oauthtoken`, `oauthsecret`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwitterConfig {
    /// Consumer key.
    #[serde(alias = "consumerkey")]
    pub consumer_key: String,
    /// Consumer secret.
    #[serde(alias = "consumersecret")]
    pub consumer_secret: String,
    /// Access token.
    #[serde(alias = "oauthtoken")]
    pub access_token: String,
    /// Access token secret.
    #[serde(alias = "oauthsecret")]
    pub access_secret: String,
    /// Post endpoint (X API v2).
    #[serde(default = "default_tweet_url")]
    pub url: String,
}

fn default_tweet_url() -> String {
    "https://api.twitter.com/2/tweets".into()
}

impl TwitterConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        http_url(&self.url, "url")?;
        if [&self.consumer_key, &self.consumer_secret, &self.access_token, &self.access_secret]
            .iter()
            .any(|s| s.is_empty())
        {
            return Err(SinkError::Config("all four OAuth credentials are required".into()));
        }
        Ok(())
    }
    /// The channel.
    pub fn build(&self) -> Result<TwitterChannel, SinkError> {
        self.validate()?;
        Ok(TwitterChannel {
            url: self.url.clone(),
            oauth: OAuth1 {
                consumer_key: self.consumer_key.clone(),
                consumer_secret: self.consumer_secret.clone(),
                token: self.access_token.clone(),
                token_secret: self.access_secret.clone(),
            },
            http: http()?,
        })
    }
}
