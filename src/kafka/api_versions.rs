//! ApiVersions: the list of APIs and versions this broker serves.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use super::{code, SUPPORTED_APIS};

/// The ApiVersions response, with `error_code` (UNSUPPORTED_VERSION when the
/// client asked for a version we do not speak; the list is sent all the same).
pub fn response(error_code: i16) -> ApiVersionsResponse {
    let mut resp = ApiVersionsResponse::default();
    resp.error_code = error_code;
    resp.api_keys = SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = *key as i16;
            v.min_version = *min;
            v.max_version = *max;
            v
        })
        .collect();
    resp
}

/// The normal answer.
pub fn handle() -> ApiVersionsResponse {
    response(code::NONE)
}
