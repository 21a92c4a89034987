//! The ACL authorizer (Kafka's `StandardAuthorizer`): may this principal,
//! from this address, perform this operation on this resource? Super users
//! may do everything; otherwise a matching DENY refuses, a matching ALLOW
//! (or one that implies the operation) permits, and no matching ACL refuses
//! (Kafka's `allow.everyone.if.no.acl.found=false`). With the authorizer
//! off (`--authorizer none`, the default) everything is allowed.
//!
//! Must never: do I/O or know the wire format. Locks: none (it reads a
//! snapshot of the state).

use std::net::IpAddr;

use super::acls::{AclOperation, Permission, ResourceType, CLUSTER_NAME, WILDCARD};
use super::{Principal, SecurityState};
use crate::config::{AuthorizerKind, NodeConfig};

/// A resource an operation is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    pub resource_type: ResourceType,
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    pub fn topic(name: &'a str) -> Self {
        Resource {
            resource_type: ResourceType::Topic,
            name,
        }
    }

    pub fn group(name: &'a str) -> Self {
        Resource {
            resource_type: ResourceType::Group,
            name,
        }
    }

    pub fn transactional_id(name: &'a str) -> Self {
        Resource {
            resource_type: ResourceType::TransactionalId,
            name,
        }
    }

    pub fn cluster() -> Resource<'static> {
        Resource {
            resource_type: ResourceType::Cluster,
            name: CLUSTER_NAME,
        }
    }
}

/// The operations an ALLOW of `allowed` also permits (Kafka: READ, WRITE,
/// DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS).
fn implies(allowed: AclOperation, op: AclOperation) -> bool {
    use AclOperation::*;
    allowed == All
        || allowed == op
        || (op == Describe && matches!(allowed, Read | Write | Delete | Alter))
        || (op == DescribeConfigs && allowed == AlterConfigs)
}

fn principal_matches(acl: &str, principal: &Principal) -> bool {
    match acl.split_once(':') {
        Some((kind, name)) => {
            kind == principal.kind && (name == WILDCARD || name == principal.name)
        }
        None => false,
    }
}

fn host_matches(acl: &str, host: IpAddr) -> bool {
    acl == WILDCARD || acl.parse::<IpAddr>().is_ok_and(|ip| ip == host)
}

/// Whether the ACLs of `state` let `principal` at `host` perform `op` on
/// `resource` (super users are not considered here: see `Authorizer`).
pub fn authorize(
    state: &SecurityState,
    principal: &Principal,
    host: IpAddr,
    op: AclOperation,
    resource: Resource<'_>,
) -> bool {
    let mut allowed = false;
    for acl in state.acls.bindings.iter().filter(|b| {
        b.names(resource.resource_type, resource.name)
            && principal_matches(&b.principal, principal)
            && host_matches(&b.host, host)
    }) {
        match acl.permission {
            // DENY refuses the operation itself (or ALL) and wins.
            Permission::Deny if acl.operation == op || acl.operation == AclOperation::All => {
                return false
            }
            Permission::Deny => {}
            Permission::Allow => allowed |= implies(acl.operation, op),
        }
    }
    allowed
}

/// Whether some ALLOW of `op` (or an operation implying it) on a resource
/// of `resource_type` applies to `principal` at `host`, and no DENY of it
/// on every resource of the type (Kafka's `authorizeByResourceType`, used
/// for idempotent producers with WRITE on some topic).
pub fn allows_some(
    state: &SecurityState,
    principal: &Principal,
    host: IpAddr,
    op: AclOperation,
    resource_type: ResourceType,
) -> bool {
    let applies = |b: &&super::acls::AclBinding| {
        b.resource_type == resource_type
            && principal_matches(&b.principal, principal)
            && host_matches(&b.host, host)
    };
    let denied_everywhere = state.acls.bindings.iter().filter(applies).any(|b| {
        b.permission == Permission::Deny
            && b.name == WILDCARD
            && (b.operation == op || b.operation == AclOperation::All)
    });
    !denied_everywhere
        && state
            .acls
            .bindings
            .iter()
            .filter(applies)
            .any(|b| b.permission == Permission::Allow && implies(b.operation, op))
}

/// The node's authorizer: on or off, and its super users.
#[derive(Debug, Clone, Copy)]
pub struct Authorizer<'a> {
    enabled: bool,
    super_users: &'a [String],
}

impl<'a> Authorizer<'a> {
    pub fn new(config: &'a NodeConfig) -> Self {
        Authorizer {
            enabled: config.authorizer == AuthorizerKind::Acl,
            super_users: &config.super_users,
        }
    }

    /// An authorizer that allows everything.
    pub fn off() -> Authorizer<'static> {
        Authorizer {
            enabled: false,
            super_users: &[],
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `principal` may do everything without ACLs.
    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.super_users
            .iter()
            .any(|s| principal_matches(s.trim(), principal))
    }

    /// Whether `principal` at `host` may perform `op` on `resource`.
    pub fn allows(
        &self,
        state: &SecurityState,
        principal: &Principal,
        host: IpAddr,
        op: AclOperation,
        resource: Resource<'_>,
    ) -> bool {
        !self.enabled
            || self.is_super_user(principal)
            || authorize(state, principal, host, op, resource)
    }

    /// Kafka's `authorized_operations` bit field for `resource`: bit `code`
    /// set for each operation of its type that is allowed.
    pub fn authorized_operations(
        &self,
        state: &SecurityState,
        principal: &Principal,
        host: IpAddr,
        resource: Resource<'_>,
    ) -> i32 {
        resource
            .resource_type
            .operations()
            .iter()
            .filter(|op| self.allows(state, principal, host, **op, resource))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::acls::{AclBinding, AclChange, PatternType};
    use super::*;
    use AclOperation::*;

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    fn acl(
        resource_type: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        host: &str,
        operation: AclOperation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            name: name.into(),
            pattern,
            principal: principal.into(),
            host: host.into(),
            operation,
            permission,
        }
    }

    fn allow_topic(
        name: &str,
        pattern: PatternType,
        principal: &str,
        op: AclOperation,
    ) -> AclBinding {
        acl(
            ResourceType::Topic,
            name,
            pattern,
            principal,
            "*",
            op,
            Permission::Allow,
        )
    }

    fn state(bindings: Vec<AclBinding>) -> SecurityState {
        let mut s = SecurityState::default();
        s.acls.apply(&AclChange::Create(bindings)).unwrap();
        s
    }

    fn can(s: &SecurityState, who: &str, op: AclOperation, r: Resource<'_>) -> bool {
        authorize(s, &Principal::parse(who).unwrap(), HOST, op, r)
    }

    #[test]
    fn no_acl_means_deny() {
        let s = state(vec![]);
        assert!(!can(&s, "User:a", Read, Resource::topic("t")));
        assert!(!can(&s, "User:a", Describe, Resource::cluster()));
    }

    #[test]
    fn literal_acl_names_one_topic() {
        let s = state(vec![allow_topic(
            "orders",
            PatternType::Literal,
            "User:a",
            Write,
        )]);
        assert!(can(&s, "User:a", Write, Resource::topic("orders")));
        assert!(!can(&s, "User:a", Write, Resource::topic("orders2")));
        assert!(!can(&s, "User:b", Write, Resource::topic("orders")));
        assert!(!can(&s, "User:a", Read, Resource::topic("orders")));
        // Same name, other resource type.
        assert!(!can(
            &s,
            "User:a",
            Write,
            Resource::transactional_id("orders")
        ));
    }

    #[test]
    fn prefixed_acl_names_every_topic_that_starts_with_it() {
        let s = state(vec![allow_topic(
            "shop.",
            PatternType::Prefixed,
            "User:a",
            Read,
        )]);
        assert!(can(&s, "User:a", Read, Resource::topic("shop.orders")));
        assert!(can(&s, "User:a", Read, Resource::topic("shop.")));
        assert!(!can(&s, "User:a", Read, Resource::topic("shop")));
        assert!(!can(&s, "User:a", Read, Resource::topic("other")));
    }

    #[test]
    fn wildcards_name_every_resource_and_every_user() {
        let s = state(vec![allow_topic("*", PatternType::Literal, "User:*", Read)]);
        assert!(can(&s, "User:a", Read, Resource::topic("anything")));
        assert!(can(&s, "User:ANONYMOUS", Read, Resource::topic("x")));
        assert!(!can(&s, "User:a", Write, Resource::topic("x")));
    }

    #[test]
    fn deny_wins_over_allow() {
        let s = state(vec![
            allow_topic("*", PatternType::Literal, "User:*", All),
            acl(
                ResourceType::Topic,
                "secret.",
                PatternType::Prefixed,
                "User:a",
                "*",
                Write,
                Permission::Deny,
            ),
        ]);
        assert!(!can(&s, "User:a", Write, Resource::topic("secret.x")));
        assert!(can(&s, "User:a", Read, Resource::topic("secret.x")));
        assert!(can(&s, "User:b", Write, Resource::topic("secret.x")));
        assert!(can(&s, "User:a", Write, Resource::topic("public")));
        let s = state(vec![
            allow_topic("t", PatternType::Literal, "User:a", Read),
            acl(
                ResourceType::Topic,
                "t",
                PatternType::Literal,
                "User:*",
                "*",
                All,
                Permission::Deny,
            ),
        ]);
        assert!(!can(&s, "User:a", Read, Resource::topic("t")));
    }

    #[test]
    fn host_must_match() {
        let s = state(vec![acl(
            ResourceType::Topic,
            "t",
            PatternType::Literal,
            "User:a",
            "10.0.0.1",
            Read,
            Permission::Allow,
        )]);
        assert!(can(&s, "User:a", Read, Resource::topic("t")));
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(!authorize(
            &s,
            &Principal::user("a"),
            other,
            Read,
            Resource::topic("t")
        ));
        let s = state(vec![
            acl(
                ResourceType::Topic,
                "t",
                PatternType::Literal,
                "User:a",
                "10.0.0.2",
                Read,
                Permission::Deny,
            ),
            allow_topic("t", PatternType::Literal, "User:a", Read),
        ]);
        assert!(
            can(&s, "User:a", Read, Resource::topic("t")),
            "a deny for another host"
        );
        assert!(!authorize(
            &s,
            &Principal::user("a"),
            other,
            Read,
            Resource::topic("t")
        ));
    }

    #[test]
    fn read_write_delete_alter_imply_describe_and_alter_configs_implies_describe_configs() {
        for op in [Read, Write, Delete, Alter] {
            let s = state(vec![allow_topic("t", PatternType::Literal, "User:a", op)]);
            assert!(can(&s, "User:a", Describe, Resource::topic("t")), "{op:?}");
            assert!(!can(&s, "User:a", DescribeConfigs, Resource::topic("t")));
        }
        let s = state(vec![allow_topic(
            "t",
            PatternType::Literal,
            "User:a",
            AlterConfigs,
        )]);
        assert!(can(&s, "User:a", DescribeConfigs, Resource::topic("t")));
        assert!(!can(&s, "User:a", Describe, Resource::topic("t")));
        // A DENY of READ does not deny DESCRIBE.
        let s = state(vec![
            allow_topic("t", PatternType::Literal, "User:a", All),
            acl(
                ResourceType::Topic,
                "t",
                PatternType::Literal,
                "User:a",
                "*",
                Read,
                Permission::Deny,
            ),
        ]);
        assert!(can(&s, "User:a", Describe, Resource::topic("t")));
        assert!(!can(&s, "User:a", Read, Resource::topic("t")));
    }

    #[test]
    fn super_users_may_do_everything_and_off_allows_all() {
        let mut config = NodeConfig::for_tests("/nonexistent".into());
        config.authorizer = AuthorizerKind::Acl;
        config.super_users = vec!["User:admin".into(), "User:ops".into()];
        let authorizer = Authorizer::new(&config);
        let s = state(vec![]);
        let admin = Principal::user("admin");
        let alice = Principal::user("alice");
        assert!(authorizer.allows(&s, &admin, HOST, Alter, Resource::cluster()));
        assert!(!authorizer.allows(&s, &alice, HOST, Describe, Resource::topic("t")));
        assert!(Authorizer::off().allows(&s, &alice, HOST, Alter, Resource::cluster()));
    }

    #[test]
    fn authorized_operations_is_kafkas_bit_field() {
        let s = state(vec![allow_topic("t", PatternType::Literal, "User:a", Read)]);
        let mut config = NodeConfig::for_tests("/nonexistent".into());
        config.authorizer = AuthorizerKind::Acl;
        let on = Authorizer::new(&config);
        let a = Principal::user("a");
        // READ (3) and the DESCRIBE (8) it implies.
        assert_eq!(
            on.authorized_operations(&s, &a, HOST, Resource::topic("t")),
            (1 << 3) | (1 << 8)
        );
        // Off: every topic operation.
        let every = Authorizer::off().authorized_operations(&s, &a, HOST, Resource::topic("t"));
        assert_eq!(
            every,
            [3, 4, 5, 6, 7, 8, 10, 11]
                .iter()
                .fold(0, |b, c| b | (1 << c))
        );
    }
}
