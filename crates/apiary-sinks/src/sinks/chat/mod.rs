//! Alert channels over HTTP: Slack and Discord incoming webhooks, Telegram's Bot API, a
//! generic JSON webhook, and X (Twitter) with OAuth 1.0a. Each is wrapped in an
//! [`AlertSink`](crate::alert::AlertSink), so repeats are deduplicated and summarised in digests.

mod config;
mod oauth1;
mod sink;

pub use config::{DiscordConfig, SlackConfig, TelegramConfig, TwitterConfig, WebhookConfig};
pub use oauth1::{OAuth1, percent_encode};
pub use sink::{DiscordChannel, SlackChannel, TelegramChannel, TwitterChannel, WebhookChannel};
