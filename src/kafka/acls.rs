//! DescribeAcls, CreateAcls, DeleteAcls: map the wire's numeric codes to
//! the ACL model (`security::acls`) and make one call below
//! (`Partitions::change_security`), or read the node's snapshot.
//!
//! Must never: decide an access (the caller checks ALTER / DESCRIBE on the
//! cluster first). Locks: none.

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::errors::{change_outcome, security_error};
use super::{code, str_bytes};
use crate::partition::Partitions;
use crate::security::acls::{
    AclBinding, AclChange, AclFilter, AclOperation, PatternFilter, PatternType, Permission,
    ResourceType,
};
use crate::security::SecurityChange;

/// Kafka's ANY in the resource type, operation and permission of a filter.
const ANY: i8 = 1;

fn invalid(what: &str, value: i8) -> String {
    format!("invalid {what} {value}")
}

/// A filter field: ANY is `None`, an unknown code an error.
fn optional<T>(value: i8, parse: fn(i8) -> Option<T>, what: &str) -> Result<Option<T>, String> {
    match value {
        ANY => Ok(None),
        v => parse(v).map(Some).ok_or_else(|| invalid(what, v)),
    }
}

/// A filter from its wire fields (`ANY` and null match anything).
#[allow(clippy::too_many_arguments)]
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    Ok(AclFilter {
        resource_type: optional(resource_type, ResourceType::from_code, "resource type")?,
        name: name.map(|n| n.to_string()),
        pattern: PatternFilter::from_code(pattern)
            .ok_or_else(|| invalid("pattern type", pattern))?,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: optional(operation, AclOperation::from_code, "operation")?,
        permission: optional(permission, Permission::from_code, "permission")?,
    })
}

fn delete_filter(f: &DeleteAclsFilter) -> Result<AclFilter, String> {
    filter(
        f.resource_type_filter,
        f.resource_name_filter.as_ref(),
        f.pattern_type_filter,
        f.principal_filter.as_ref(),
        f.host_filter.as_ref(),
        f.operation,
        f.permission_type,
    )
}

/// DescribeAcls: the stored bindings the filter matches, grouped by resource.
pub fn describe(partitions: &Partitions, req: DescribeAclsRequest) -> DescribeAclsResponse {
    let mut resp = DescribeAclsResponse::default();
    let f = match filter(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.host_filter.as_ref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(message) => {
            resp.error_code = code::INVALID_REQUEST;
            resp.error_message = Some(str_bytes(message));
            return resp;
        }
    };
    let state = partitions.broker().security.current();
    for b in state.acls.matching(&f) {
        let description = {
            let mut d = AclDescription::default();
            d.principal = str_bytes(b.principal.clone());
            d.host = str_bytes(b.host.clone());
            d.operation = b.operation.code();
            d.permission_type = b.permission.code();
            d
        };
        // Bindings are sorted by resource, so one resource's are adjacent.
        match resp.resources.last_mut() {
            Some(r)
                if r.resource_type == b.resource_type.code()
                    && r.pattern_type == b.pattern.code()
                    && r.resource_name.as_str() == b.name =>
            {
                r.acls.push(description)
            }
            _ => {
                let mut r = DescribeAclsResource::default();
                r.resource_type = b.resource_type.code();
                r.resource_name = str_bytes(b.name.clone());
                r.pattern_type = b.pattern.code();
                r.acls.push(description);
                resp.resources.push(r);
            }
        }
    }
    resp
}

/// CreateAcls: each creation is checked, the valid ones stored in one change.
pub async fn create(partitions: &Partitions, req: CreateAclsRequest) -> CreateAclsResponse {
    let mut results: Vec<Result<AclBinding, String>> = req
        .creations
        .iter()
        .map(|c| {
            let binding = AclBinding {
                resource_type: ResourceType::from_code(c.resource_type)
                    .ok_or_else(|| invalid("resource type", c.resource_type))?,
                name: c.resource_name.to_string(),
                pattern: PatternType::from_code(c.resource_pattern_type)
                    .ok_or_else(|| invalid("pattern type", c.resource_pattern_type))?,
                principal: c.principal.to_string(),
                host: c.host.to_string(),
                operation: AclOperation::from_code(c.operation)
                    .ok_or_else(|| invalid("operation", c.operation))?,
                permission: Permission::from_code(c.permission_type)
                    .ok_or_else(|| invalid("permission", c.permission_type))?,
            };
            match binding.invalid() {
                Some(why) => Err(why),
                None => Ok(binding),
            }
        })
        .collect();
    let valid: Vec<AclBinding> = results.iter().filter_map(|r| r.clone().ok()).collect();
    let mut failure = None;
    if !valid.is_empty() {
        if let Err(e) = partitions
            .change_security(SecurityChange::Acl(AclChange::Create(valid)))
            .await
        {
            failure = Some(security_error(&e));
        }
    }
    let mut resp = CreateAclsResponse::default();
    resp.results = results
        .drain(..)
        .map(|r| {
            let mut out = AclCreationResult::default();
            let (error, message) = change_outcome(r.err(), failure.as_ref());
            out.error_code = error;
            out.error_message = message.map(str_bytes);
            out
        })
        .collect();
    resp
}

/// DeleteAcls: every binding any valid filter matches is removed in one
/// change; each filter's result lists the bindings it matched.
pub async fn delete(partitions: &Partitions, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let filters: Vec<Result<AclFilter, String>> = req.filters.iter().map(delete_filter).collect();
    let state = partitions.broker().security.current();
    let matched: Vec<Vec<AclBinding>> = filters
        .iter()
        .map(|f| match f {
            Ok(f) => state.acls.matching(f).cloned().collect(),
            Err(_) => Vec::new(),
        })
        .collect();
    let valid: Vec<AclFilter> = filters.iter().filter_map(|f| f.clone().ok()).collect();
    let mut failure = None;
    if matched.iter().any(|m| !m.is_empty()) {
        if let Err(e) = partitions
            .change_security(SecurityChange::Acl(AclChange::Delete(valid)))
            .await
        {
            failure = Some(security_error(&e));
        }
    }
    let mut resp = DeleteAclsResponse::default();
    resp.filter_results = filters
        .into_iter()
        .zip(matched)
        .map(|(f, matched)| {
            let mut out = DeleteAclsFilterResult::default();
            let (error, message) = change_outcome(f.err(), failure.as_ref());
            if error != code::NONE {
                out.error_code = error;
                out.error_message = message.map(str_bytes);
                return out;
            }
            out.matching_acls = matched
                .into_iter()
                .map(|b| {
                    let mut m = DeleteAclsMatchingAcl::default();
                    m.resource_type = b.resource_type.code();
                    m.resource_name = str_bytes(b.name);
                    m.pattern_type = b.pattern.code();
                    m.principal = str_bytes(b.principal);
                    m.host = str_bytes(b.host);
                    m.operation = b.operation.code();
                    m.permission_type = b.permission.code();
                    m
                })
                .collect();
            out
        })
        .collect();
    resp
}

/// CreateAcls refused as a whole (no ALTER on the cluster).
pub fn create_refused(req: &CreateAclsRequest, error: i16) -> CreateAclsResponse {
    let mut resp = CreateAclsResponse::default();
    resp.results = req
        .creations
        .iter()
        .map(|_| {
            let mut out = AclCreationResult::default();
            out.error_code = error;
            out
        })
        .collect();
    resp
}

/// DeleteAcls refused as a whole (no ALTER on the cluster).
pub fn delete_refused(req: &DeleteAclsRequest, error: i16) -> DeleteAclsResponse {
    let mut resp = DeleteAclsResponse::default();
    resp.filter_results = req
        .filters
        .iter()
        .map(|_| {
            let mut out = DeleteAclsFilterResult::default();
            out.error_code = error;
            out
        })
        .collect();
    resp
}
