//! DescribeClientQuotas and AlterClientQuotas: map the wire's entities to
//! the quota model (`security::quotas`) and make one call below
//! (`Partitions::change_security`), or read the node's snapshot.
//!
//! Must never: measure or throttle (`security::quotas::QuotaMeters` does,
//! the server delays the response). Locks: none.

use kafka_protocol::messages::alter_client_quotas_response as alter_resp;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};

use super::errors::{change_outcome, security_error};
use super::{code, str_bytes};
use crate::partition::Partitions;
use crate::security::quotas::{
    invalid, EntityName, QuotaChange, QuotaEntity, QuotaOps, CLIENT_ID, USER,
};
use crate::security::SecurityChange;

/// Kafka's component match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

/// One component of a describe filter: which part of the entity, and what
/// it must be (`None`: any name, specified).
type Component = (&'static str, Option<EntityName>);

fn part<'a>(entity: &'a QuotaEntity, entity_type: &str) -> Option<&'a EntityName> {
    match entity_type {
        USER => entity.user.as_ref(),
        _ => entity.client_id.as_ref(),
    }
}

fn matches(entity: &QuotaEntity, components: &[Component], strict: bool) -> bool {
    let all = components
        .iter()
        .all(|(kind, want)| match (part(entity, kind), want) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(have), Some(want)) => have == want,
        });
    let named = [USER, CLIENT_ID]
        .iter()
        .filter(|k| part(entity, k).is_some())
        .count();
    all && (!strict || named == components.len())
}

fn entity_type(name: &str) -> Result<&'static str, String> {
    match name {
        USER => Ok(USER),
        CLIENT_ID => Ok(CLIENT_ID),
        other => Err(format!("unsupported entity type {other} (user, client-id)")),
    }
}

/// DescribeClientQuotas: the stored quotas of the entities the filter matches.
pub fn describe(
    partitions: &Partitions,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let mut resp = DescribeClientQuotasResponse::default();
    let components: Result<Vec<Component>, String> = req
        .components
        .iter()
        .map(|c| {
            let kind = entity_type(&c.entity_type)?;
            let want = match c.match_type {
                MATCH_EXACT => Some(EntityName::from_wire(c._match.as_deref())),
                MATCH_DEFAULT => Some(EntityName::Default),
                MATCH_ANY => None,
                m => return Err(format!("invalid match type {m}")),
            };
            Ok((kind, want))
        })
        .collect();
    let components = match components {
        Ok(c) => c,
        Err(message) => {
            resp.error_code = code::INVALID_REQUEST;
            resp.error_message = Some(str_bytes(message));
            return resp;
        }
    };
    let state = partitions.broker().security.current();
    let entries = state
        .quotas
        .entries
        .iter()
        .filter(|(e, _)| matches(e, &components, req.strict))
        .map(|(e, values)| {
            let mut entry = EntryData::default();
            for (kind, name) in [(USER, &e.user), (CLIENT_ID, &e.client_id)] {
                if let Some(name) = name {
                    let mut d = EntityData::default();
                    d.entity_type = str_bytes(kind);
                    d.entity_name = name.to_wire().map(str_bytes);
                    entry.entity.push(d);
                }
            }
            entry.values = values
                .iter()
                .map(|(k, v)| {
                    let mut d = ValueData::default();
                    d.key = str_bytes(k.clone());
                    d.value = *v;
                    d
                })
                .collect();
            entry
        })
        .collect();
    resp.entries = Some(entries);
    resp
}

/// The entity of an alteration, as its result names it.
fn echo_entity(
    e: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> Vec<alter_resp::EntityData> {
    e.entity
        .iter()
        .map(|d| {
            let mut o = alter_resp::EntityData::default();
            o.entity_type = d.entity_type.clone();
            o.entity_name = d.entity_name.clone();
            o
        })
        .collect()
}

/// AlterClientQuotas: every valid entry in one change (none when
/// `validate_only`).
pub async fn alter(
    partitions: &Partitions,
    req: AlterClientQuotasRequest,
) -> AlterClientQuotasResponse {
    let parsed: Vec<Result<(QuotaEntity, QuotaOps), String>> = req
        .entries
        .iter()
        .map(|e| {
            let mut entity = QuotaEntity {
                user: None,
                client_id: None,
            };
            for d in &e.entity {
                let name = Some(EntityName::from_wire(d.entity_name.as_deref()));
                match entity_type(&d.entity_type)? {
                    USER => entity.user = name,
                    _ => entity.client_id = name,
                }
            }
            let ops: QuotaOps = e
                .ops
                .iter()
                .map(|o| (o.key.to_string(), (!o.remove).then_some(o.value)))
                .collect();
            match invalid(&entity, &ops) {
                Some(why) => Err(why),
                None => Ok((entity, ops)),
            }
        })
        .collect();
    let valid: Vec<_> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let mut failure = None;
    if !valid.is_empty() && !req.validate_only {
        if let Err(e) = partitions
            .change_security(SecurityChange::Quota(QuotaChange::Alter(valid)))
            .await
        {
            failure = Some(security_error(&e));
        }
    }
    let mut resp = AlterClientQuotasResponse::default();
    resp.entries = req
        .entries
        .iter()
        .zip(parsed)
        .map(|(e, parsed)| {
            let mut out = alter_resp::EntryData::default();
            out.entity = echo_entity(e);
            let (error, message) = change_outcome(parsed.err(), failure.as_ref());
            out.error_code = error;
            out.error_message = message.map(str_bytes);
            out
        })
        .collect();
    resp
}

/// Record `bytes` of a client's produce (`PRODUCER_BYTE_RATE`) or fetch
/// (`CONSUMER_BYTE_RATE`) traffic on this node; how long to throttle it.
pub fn throttle(
    partitions: &Partitions,
    user: &str,
    client_id: &str,
    key: &'static str,
    bytes: usize,
) -> std::time::Duration {
    let security = &partitions.broker().security;
    let state = security.current();
    if state.quotas.entries.is_empty() {
        return std::time::Duration::ZERO;
    }
    security
        .quota_meters
        .record(&state.quotas, key, user, client_id, bytes as u64)
}

/// AlterClientQuotas refused as a whole (no ALTER_CONFIGS on the cluster).
pub fn alter_refused(req: &AlterClientQuotasRequest, error: i16) -> AlterClientQuotasResponse {
    let mut resp = AlterClientQuotasResponse::default();
    resp.entries = req
        .entries
        .iter()
        .map(|e| {
            let mut out = alter_resp::EntryData::default();
            out.error_code = error;
            out.entity = echo_entity(e);
            out
        })
        .collect();
    resp
}
