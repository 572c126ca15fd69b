//! The request bodies of the `/v1` API and of the site's forms, as the
//! server reads them: arbitrary bytes are deserialized (serde_json, and
//! serde_urlencoded for the forms) into every request type, and whatever
//! parses goes through the same checks the handlers run — `user_id`
//! validation, token and handle parsing, client metadata truncation, data
//! patches applied to a record's data. Never a panic, never an unbounded
//! recursion; accepted values keep the rules the checks promise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::record::{ClientMeta, Data, DataChanges, SessionHandle};
use tessera::token::{RefreshToken, SessionToken};
use tessera_server::api::types::{
    BodyToken, CreateSession, MAX_USER_ID, PatchData, TokenRequest, VerifyRequest, valid_user_id,
};
use tessera_server::site::auth::{CsrfForm, LoginForm, PasswordForm, ReauthForm};
use tessera_server::site::sessions::RevokeForm;
use tessera_server::tokens::types::{RefreshRequest, TokenGrant, TokenQuery};

/// What `valid_user_id` promises about the ids it accepts.
fn check_user_id(user_id: &str) {
    if valid_user_id(user_id).is_ok() {
        assert!(!user_id.is_empty() && user_id.len() <= MAX_USER_ID);
        assert!(!user_id.chars().any(char::is_control));
    }
}

/// A refresh token accepted by the parser names exactly itself.
fn check_refresh_token(token: Option<&str>) {
    if let Some(Ok(parsed)) = token.map(RefreshToken::parse) {
        assert_eq!(parsed.expose(), token.unwrap_or_default());
    }
}

/// The token endpoints' bodies (`POST /token`, `/v1/tokens/refresh`,
/// `/v1/tokens/revoke`, `/v1/tokens/introspect`), each as JSON and as a
/// form, as `FormOrJson` reads them.
fn check_token_bodies(body: &[u8]) {
    for grant in [
        serde_json::from_slice::<TokenGrant>(body).ok(),
        serde_urlencoded::from_bytes::<TokenGrant>(body).ok(),
    ]
    .into_iter()
    .flatten()
    {
        check_refresh_token(grant.refresh_token.as_deref());
    }
    for req in [
        serde_json::from_slice::<RefreshRequest>(body).ok(),
        serde_urlencoded::from_bytes::<RefreshRequest>(body).ok(),
    ]
    .into_iter()
    .flatten()
    {
        check_refresh_token(req.refresh_token.as_deref());
    }
    for query in [
        serde_json::from_slice::<TokenQuery>(body).ok(),
        serde_urlencoded::from_bytes::<TokenQuery>(body).ok(),
    ]
    .into_iter()
    .flatten()
    {
        check_refresh_token(query.token.as_deref());
        if let Some(token) = query.token.as_deref() {
            check_session_token(token);
        }
    }
}

/// A token accepted by the parser names exactly itself.
/// A session token accepted by the parser names exactly itself.
fn check_session_token(token: &str) {
    if let Ok(parsed) = SessionToken::parse(token) {
        assert_eq!(parsed.expose(), token);
    }
}

/// A well-formed body token names exactly itself.
fn check_token(token: &BodyToken) {
    if let Some(parsed) = token.token() {
        assert_eq!(SessionToken::parse(parsed.expose()).ok().as_ref(), Some(parsed));
    }
}

fn check_bodies(body: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<CreateSession>(body) {
        check_user_id(&req.user_id);
        // As the server does: text that is not an address is dropped, and
        // an address reads back as the same address.
        let ip = req.ip.as_deref().and_then(ClientMeta::parse_ip);
        if let Some(ip) = ip {
            assert_eq!(ClientMeta::parse_ip(&ip.to_string()), Some(ip));
        }
        let meta = ClientMeta::new(ip, req.user_agent);
        assert!(
            meta.user_agent
                .is_none_or(|ua| ua.len() <= ClientMeta::MAX_USER_AGENT)
        );
        // Stored data is written back as JSON: it must serialize.
        assert!(serde_json::to_vec(&req.data).is_ok());
    }
    if let Ok(req) = serde_json::from_slice::<VerifyRequest>(body) {
        check_token(&req.token);
    }
    if let Ok(req) = serde_json::from_slice::<TokenRequest>(body) {
        check_token(&req.token);
    }
    if let Ok(req) = serde_json::from_slice::<PatchData>(body) {
        check_token(&req.token);
        let mut changes = DataChanges::default();
        for (key, value) in req.set.clone() {
            changes.set(key, value);
        }
        for key in req.remove.clone() {
            changes.remove(key);
        }
        let mut data = Data::new();
        changes.apply(&mut data);
        // Removals come after sets, as in the handler.
        for key in &req.remove {
            assert!(!data.contains_key(key));
        }
        assert!(serde_json::to_vec(&data).is_ok());
    }
    // The site's forms, as JSON and as url-encoded bodies.
    let _ = serde_json::from_slice::<LoginForm>(body);
    let _ = serde_urlencoded::from_bytes::<LoginForm>(body);
    let _ = serde_json::from_slice::<ReauthForm>(body);
    let _ = serde_urlencoded::from_bytes::<ReauthForm>(body);
    let _ = serde_json::from_slice::<PasswordForm>(body);
    let _ = serde_urlencoded::from_bytes::<PasswordForm>(body);
    let _ = serde_json::from_slice::<CsrfForm>(body);
    let _ = serde_urlencoded::from_bytes::<CsrfForm>(body);
    let _ = serde_json::from_slice::<RevokeForm>(body);
    let _ = serde_urlencoded::from_bytes::<RevokeForm>(body);
}

fuzz_target!(|data: &[u8]| {
    check_bodies(data);
    check_token_bodies(data);
    // Path parameters: user ids and session handles.
    if let Ok(s) = std::str::from_utf8(data) {
        check_user_id(s);
        if let Some(handle) = SessionHandle::parse(s) {
            assert_eq!(handle.as_str(), s);
        }
    }
});
