//! E-mail alerts over SMTP (plain or implicit TLS, optional AUTH PLAIN), one message per alert
//! or digest, through the same dedupe-and-digest wrapper as the chat loggers.

mod config;
mod smtp;

pub use config::EmailConfig;
pub use smtp::SmtpChannel;
