//! Request body extraction with clear errors: malformed JSON is a 400 that
//! names the problem, an oversized body a 413, never a bare text response.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// True when the request's body is JSON.
pub fn is_json_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || v.ends_with("+json")
        })
}

/// True when the client wants JSON back: a JSON body or an `Accept`
/// naming JSON — the layer's rule ([`tessera_axum::wants_json`]), so the
/// site and the layer never disagree on a request's format.
pub fn wants_json(headers: &HeaderMap) -> bool {
    tessera_axum::wants_json(headers)
}

async fn read_body(req: Request) -> Result<(HeaderMap, Bytes), ApiError> {
    let headers = req.headers().clone();
    let bytes = Bytes::from_request(req, &()).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                .message("the request body is larger than the configured body_limit")
        } else {
            ApiError::bad_request("invalid_body", rejection.body_text())
        }
    })?;
    Ok((headers, bytes))
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("malformed JSON body: {e}")))
}

/// A JSON body (the `/v1` API): `Content-Type: application/json` is
/// required.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (headers, bytes) = read_body(req).await?;
        if !is_json_body(&headers) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            )
            .message("send Content-Type: application/json"));
        }
        Ok(Self(parse_json(&bytes)?))
    }
}

/// A site form: JSON when the request says so, else
/// `application/x-www-form-urlencoded`.
#[derive(Debug, Clone)]
pub struct FormOrJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormOrJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (headers, bytes) = read_body(req).await?;
        if is_json_body(&headers) {
            return Ok(Self(parse_json(&bytes)?));
        }
        serde_urlencoded::from_bytes(&bytes)
            .map(Self)
            .map_err(|e| ApiError::bad_request("invalid_form", format!("malformed form body: {e}")))
    }
}

/// The client's IP as text: the socket peer, or behind the configured
/// `trusted_proxies` the right-most untrusted address of the forwarding
/// header (see [`crate::proxy`]); `None` without a peer (never a made-up
/// placeholder that would have to be parsed back).
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
    config: &crate::config::Config,
) -> Option<std::net::IpAddr> {
    config
        .trusted_proxies
        .client_ip(headers, peer, config.client_ip_header)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn json_detection() {
        let mut h = HeaderMap::new();
        assert!(!wants_json(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html, application/json;q=0.9"),
        );
        assert!(wants_json(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json_body(&h));
    }
}
