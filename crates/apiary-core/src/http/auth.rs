//! API authentication: bearer tokens (or the dashboard's cookie holding one) mapped to a
//! [`Principal`] with a [`Role`]. Viewers read, operators also send commands, admins also
//! manage nodes and tokens.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::api::ApiError;

/// The dashboard's session cookie (HttpOnly, SameSite=Strict); it holds the API token.
pub(crate) const COOKIE: &str = "apiary_token";
/// Header a cookie-authenticated request must carry to change anything: a cross-site form
/// cannot set it, so a forged POST is refused.
pub(crate) const CSRF_HEADER: &str = "x-apiary-csrf";

/// What a token may do; ordered, each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads nodes, events and statistics.
    Viewer,
    /// Also sends commands to nodes.
    Operator,
    /// Also enrolls and deletes nodes and manages tokens.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// Parses [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "viewer" => Self::Viewer,
            "operator" => Self::Operator,
            "admin" => Self::Admin,
            _ => return None,
        })
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The token's name (written to the audit log as the actor).
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Principal {
    /// Fails with 403 unless the caller has at least `role`.
    pub(crate) fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this needs the {} role; {} is {}",
                    role.as_str(),
                    self.name,
                    self.role.as_str()
                ),
            ))
        }
    }
}

fn cookie_token(parts: &Parts) -> Option<&str> {
    parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(';').find_map(|kv| {
            let (k, val) = kv.trim().split_once('=')?;
            (k == COOKIE).then_some(val)
        })
    })
}

/// The token a request presents and whether it came from the cookie.
pub(crate) fn presented(parts: &Parts) -> Option<(&str, bool)> {
    if let Some(v) = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let t = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?;
        return Some((t.trim(), false));
    }
    cookie_token(parts).map(|t| (t, true))
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Some((token, from_cookie)) = presented(parts) else {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing API token"));
        };
        if from_cookie
            && !matches!(parts.method, Method::GET | Method::HEAD)
            && parts.headers.get(CSRF_HEADER).is_none()
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("cookie-authenticated changes need the {CSRF_HEADER} header"),
            ));
        }
        match state.db.authenticate(token).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid API token")),
            Err(e) => Err(ApiError::internal(e)),
        }
    }
}
