//! amo_crm: not implemented yet.

use super::{ConfigError, CrmClient};

/// Builds the amo_crm client.
pub fn client(
    _base_url: &str,
    _credentials: &serde_json::Value,
) -> Result<Box<dyn CrmClient>, ConfigError> {
    Err(ConfigError(
        "the amo_crm client is not built yet".to_owned(),
    ))
}
