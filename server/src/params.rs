//! Query parameters read the same way by every handler, so every bad value gets the same
//! kind of 400.

use std::collections::HashMap;
use std::ops::RangeInclusive;

use crate::error::ApiError;

/// The optional whole-number query parameter `name`, which must lie in `range`.
pub fn whole_number(
    query: &HashMap<String, String>,
    name: &str,
    range: RangeInclusive<u64>,
) -> Result<Option<u64>, ApiError> {
    let Some(raw) = query.get(name) else {
        return Ok(None);
    };
    match raw.parse::<u64>() {
        Ok(value) if range.contains(&value) => Ok(Some(value)),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a whole number from {} to {}, got `{raw}`",
            range.start(),
            range.end()
        ))),
    }
}
