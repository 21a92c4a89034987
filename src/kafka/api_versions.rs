//! ApiVersions: the list of APIs and versions this broker serves, and the
//! features it has finalized (v3+).

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::ApiVersionsResponse;

use super::SUPPORTED_APIS;
use super::{code, str_bytes};

/// The features this broker speaks, each at the one level it runs:
/// (name, level). `transaction.version` 2 is KIP-890 part 2 (the epoch
/// bumped by each EndTxn v5, partitions added by Produce v12 and
/// TxnOffsetCommit v5): a client that knows it stops sending
/// AddPartitionsToTxn and AddOffsetsToTxn.
pub const FEATURES: &[(&str, i16)] = &[("transaction.version", 2)];

/// The epoch of the finalized features: they never change while a node runs.
const FEATURES_EPOCH: i64 = 1;

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
    resp.supported_features = FEATURES
        .iter()
        .map(|(name, level)| {
            let mut f = SupportedFeatureKey::default();
            f.name = str_bytes(*name);
            f.min_version = 0;
            f.max_version = *level;
            f
        })
        .collect();
    resp.finalized_features = FEATURES
        .iter()
        .map(|(name, level)| {
            let mut f = FinalizedFeatureKey::default();
            f.name = str_bytes(*name);
            f.min_version_level = *level;
            f.max_version_level = *level;
            f
        })
        .collect();
    resp.finalized_features_epoch = FEATURES_EPOCH;
    resp
}

/// The normal answer.
pub fn handle() -> ApiVersionsResponse {
    response(code::NONE)
}
