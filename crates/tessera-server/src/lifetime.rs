//! The lifetime class a sign-in asks for: "keep me signed in".
//!
//! A sign-in form's checkbox, a JSON sign-in's `remember: true`,
//! `POST /v1/sessions` and `POST /v1/requests/login` all choose the class
//! here, in one place, so every door refuses it the same way when the
//! operator has not configured it (`remember_idle_timeout` and
//! `remember_absolute_timeout`): a request for a lifetime the server does
//! not offer gets a 400 before anything is checked or stored, never a
//! silent default-class session the user did not ask for either.

use tessera::policy::SessionClass;

use crate::error::ApiError;
use crate::state::AppState;

/// The class a sign-in asked for: [`SessionClass::Remember`] for
/// `remember`, else [`SessionClass::Default`].
///
/// # Errors
///
/// 400 `remember_not_configured` when `remember` is asked for and the
/// server does not offer the class.
pub fn requested_class(state: &AppState, remember: bool) -> Result<SessionClass, ApiError> {
    if !remember {
        return Ok(SessionClass::Default);
    }
    if state.manager.policy().offers(SessionClass::Remember) {
        Ok(SessionClass::Remember)
    } else {
        Err(ApiError::bad_request(
            "remember_not_configured",
            "\"keep me signed in\" is not offered by this server \
             (remember_idle_timeout and remember_absolute_timeout are not set)",
        ))
    }
}

/// Whether the sign-in form shows the "Keep me signed in" checkbox.
pub fn remember_offered(state: &AppState) -> bool {
    state.manager.policy().offers(SessionClass::Remember)
}
