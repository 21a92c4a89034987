//! ListConfigResources (74; v0 was ListClientMetricsResources): the config
//! resources of the types asked for (all of them when none is asked for
//! from v1 on), as DescribeConfigs knows them: every topic and registered
//! broker (`Partitions`), the groups with dynamic configs (replicated with
//! the security state, so every node lists them) and the groups this node
//! coordinates. Sluice keeps no client-metrics subscriptions, so that type
//! lists nothing; v0 asks for that type alone.
//!
//! Must never: change a config. Locks: none (the security snapshot is a
//! copy).

use std::collections::BTreeSet;

use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};

use super::{code, str_bytes};
use crate::group::GroupCoordinator;
use crate::partition::Partitions;

/// Kafka's config resource types that can be listed here.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;
const LISTED: &[i8] = &[TOPIC, BROKER, CLIENT_METRICS, GROUP];

/// Answer a ListConfigResources.
pub fn list(
    partitions: &Partitions,
    groups: &GroupCoordinator,
    req: ListConfigResourcesRequest,
    version: i16,
) -> ListConfigResourcesResponse {
    let mut resp = ListConfigResourcesResponse::default();
    let types: Vec<i8> = if version == 0 {
        vec![CLIENT_METRICS]
    } else if req.resource_types.is_empty() {
        LISTED.to_vec()
    } else {
        req.resource_types
    };
    if let Some(unknown) = types.iter().find(|t| !LISTED.contains(t)) {
        tracing::debug!(
            resource_type = unknown,
            "ListConfigResources of a type not listed"
        );
        resp.error_code = code::INVALID_REQUEST;
        return resp;
    }
    let mut add = |resource_type: i8, names: Vec<String>| {
        for name in names {
            let mut r = ConfigResource::default();
            r.resource_name = str_bytes(name);
            r.resource_type = resource_type;
            resp.config_resources.push(r);
        }
    };
    for t in types {
        match t {
            TOPIC => add(TOPIC, partitions.topic_names()),
            BROKER => add(
                BROKER,
                partitions
                    .broker_ids()
                    .iter()
                    .map(|id| id.to_string())
                    .collect(),
            ),
            GROUP => {
                let configured = partitions.broker().security.current();
                let mut names: BTreeSet<String> =
                    configured.configs.groups.keys().cloned().collect();
                names.extend(groups.list_groups(&[]).into_iter().map(|g| g.group_id));
                add(GROUP, names.into_iter().collect());
            }
            _ => {} // CLIENT_METRICS: none kept
        }
    }
    resp
}

/// A ListConfigResources refused with `error`.
pub fn refused(error: i16) -> ListConfigResourcesResponse {
    let mut resp = ListConfigResourcesResponse::default();
    resp.error_code = error;
    resp
}
