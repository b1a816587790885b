//! One module per vendor: its routes, paging, auth checks and record format.

mod amo_crm;
mod iiko;
mod onec;
mod renovatio;
mod yclients;

use crate::{Routes, State, Vendor};
use std::sync::Arc;

/// The path prefix of the vendor's API under the simulator's address (what the business's
/// `crm_base_url` ends with).
pub(crate) fn base_path(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::Yclients => "/api/v1",
        Vendor::Iiko => "",
        Vendor::OneC => "/base",
        Vendor::AmoCrm => "/api/v4",
        Vendor::Renovatio => "/api/public",
    }
}

pub(crate) fn credentials(vendor: Vendor) -> serde_json::Value {
    match vendor {
        Vendor::Yclients => {
            serde_json::json!({"partner_token": "sim-partner-token", "user_token": "sim-user-token", "company_id": 4564})
        }
        Vendor::Iiko => {
            serde_json::json!({"api_login": "sim-api-login", "organization_id": "7bc05553-4b68-44e8-b7bc-37be63c6d9e9"})
        }
        Vendor::OneC => serde_json::json!({"username": "sim-user", "password": "sim-password"}),
        Vendor::AmoCrm => serde_json::json!({"access_token": "sim-access-token"}),
        Vendor::Renovatio => serde_json::json!({"api_key": "sim-api-key", "clinic_id": 1}),
    }
}

pub(crate) fn iiko_application_credentials() -> serde_json::Value {
    serde_json::json!({
        "app_id": "5e3c1b7a-0000-4000-8000-00000000a991",
        "client_secret": "sim-client-secret",
        "api_key": "sim-api-key",
        "organization_id": "7bc05553-4b68-44e8-b7bc-37be63c6d9e9",
    })
}

pub(crate) fn amo_oauth_credentials() -> serde_json::Value {
    serde_json::json!({
        "client_id": "sim-client-id",
        "client_secret": "sim-client-secret",
        "redirect_uri": "https://svoy-krug.example/amo/callback",
        "refresh_token": amo_crm::FIRST_REFRESH_TOKEN,
    })
}

pub(crate) fn routes(vendor: Vendor, state: Arc<State>) -> Routes {
    match vendor {
        Vendor::Yclients => yclients::routes(state),
        Vendor::Iiko => iiko::routes(state),
        Vendor::OneC => onec::routes(state),
        Vendor::AmoCrm => amo_crm::routes(state),
        Vendor::Renovatio => renovatio::routes(state),
    }
}
