//! The JSON error body every edgerec HTTP endpoint answers with.

use serde::{Deserialize, Serialize};

/// An error answer: an HTTP status and `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// A stable, machine-readable code (`malformed_json`, `invalid_event`, ...).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
}

/// The body of an error answer, as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
            },
        }
    }
}

impl core::fmt::Display for ApiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let e = ApiError::new(400, "invalid_event", "event 0: `item` is missing");
        assert_eq!(
            serde_json::to_value(e.body()).unwrap(),
            serde_json::json!({"error": {"code": "invalid_event", "message": "event 0: `item` is missing"}})
        );
    }
}
