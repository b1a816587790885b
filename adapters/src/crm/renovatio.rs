//! renovatio: not implemented yet.

use super::{ConfigError, CrmClient};

/// Builds the renovatio client.
pub fn client(
    _base_url: &str,
    _credentials: &serde_json::Value,
) -> Result<Box<dyn CrmClient>, ConfigError> {
    Err(ConfigError(
        "the renovatio client is not built yet".to_owned(),
    ))
}
