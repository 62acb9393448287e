//! The shared HTTP client: rustls (aws-lc-rs), timeouts, capped response bodies.

use std::time::Duration;

use crate::SinkError;

/// Most bytes of a response body read.
const MAX_BODY: usize = 1 << 20;

/// A reqwest client with apiary's settings.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
}

impl Http {
    pub(crate) fn new(insecure: bool, timeout: Duration) -> Result<Self, SinkError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("apiary/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(insecure)
            .build()
            .map_err(|e| SinkError::Config(format!("http client: {e}")))?;
        Ok(Self { client })
    }

    /// Sends a request; returns the status and up to 1 MiB of body.
    pub(crate) async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), SinkError> {
        let mut resp = req.send().await.map_err(|e| SinkError::Rejected(format!("http: {e}")))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| SinkError::Rejected(format!("http body: {e}")))?
        {
            let room = MAX_BODY.saturating_sub(body.len());
            body.extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
            if room <= chunk.len() {
                break;
            }
        }
        Ok((status, body))
    }
}

/// Maps a status to an outcome: 2xx ok; 400, 413 and 422 refuse the batch for good (retrying
/// the same bytes cannot succeed); everything else is retried.
pub(crate) fn check_status(status: u16, body: &[u8]) -> Result<(), SinkError> {
    let text = || {
        String::from_utf8_lossy(body.get(..body.len().min(300)).unwrap_or_default()).into_owned()
    };
    match status {
        200..=299 => Ok(()),
        400 | 413 | 422 => Err(SinkError::Refused(format!("HTTP {status}: {}", text()))),
        _ => Err(SinkError::Rejected(format!("HTTP {status}: {}", text()))),
    }
}
