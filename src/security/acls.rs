//! Access control lists in Kafka's model: a binding says that a principal
//! from a host may (or may not) perform an operation on the resources a
//! pattern names. Bindings are created one by one and deleted by filters
//! with Kafka's ANY / MATCH semantics; the numeric codes are Kafka's wire
//! codes (`code()` / `from_code()`), so the wire handlers only convert.
//!
//! Must never: decide an access (that is `authorizer`), do I/O. Locks: none.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// Kafka's `*`: a literal pattern that names every resource of its type,
/// a principal `User:*` or a host that matches everyone.
pub const WILDCARD: &str = "*";

/// The only name a cluster resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// What a binding protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceType {
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
    ];

    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The operations Kafka defines on this resource type (what
    /// `authorized_operations` reports).
    pub fn operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
        }
    }
}

/// How a binding's name matches resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PatternType {
    /// The name itself (or every name, for `*`).
    Literal,
    /// Every name that starts with it.
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }
}

/// An operation a binding allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl AclOperation {
    pub const ALL: [AclOperation; 11] = [
        AclOperation::All,
        AclOperation::Read,
        AclOperation::Write,
        AclOperation::Create,
        AclOperation::Delete,
        AclOperation::Alter,
        AclOperation::Describe,
        AclOperation::ClusterAction,
        AclOperation::DescribeConfigs,
        AclOperation::AlterConfigs,
        AclOperation::IdempotentWrite,
    ];

    pub fn code(self) -> i8 {
        match self {
            AclOperation::All => 2,
            AclOperation::Read => 3,
            AclOperation::Write => 4,
            AclOperation::Create => 5,
            AclOperation::Delete => 6,
            AclOperation::Alter => 7,
            AclOperation::Describe => 8,
            AclOperation::ClusterAction => 9,
            AclOperation::DescribeConfigs => 10,
            AclOperation::AlterConfigs => 11,
            AclOperation::IdempotentWrite => 12,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.code() == code)
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }
}

/// One ACL: `principal` from `host` is allowed or denied `operation` on the
/// resources of `resource_type` that `pattern` and `name` match.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    /// `User:alice` or `User:*`.
    pub principal: String,
    /// `*` or an IP address.
    pub host: String,
    pub operation: AclOperation,
    pub permission: Permission,
}

impl AclBinding {
    /// Why Kafka would refuse to store this binding, if it would.
    pub fn invalid(&self) -> Option<String> {
        if self.name.is_empty() {
            return Some("the resource name is empty".into());
        }
        if crate::security::Principal::parse(&self.principal).is_none() {
            return Some(format!(
                "principal {:?} is not of the form Type:name",
                self.principal
            ));
        }
        if self.host.is_empty() {
            return Some("the host is empty (use * for every host)".into());
        }
        if self.resource_type == ResourceType::Cluster
            && (self.name != CLUSTER_NAME || self.pattern != PatternType::Literal)
        {
            return Some(format!(
                "a cluster resource is the literal name {CLUSTER_NAME}"
            ));
        }
        if self.pattern == PatternType::Prefixed && self.name == WILDCARD {
            return Some("a prefixed pattern cannot be *".into());
        }
        None
    }

    /// Whether this binding's pattern names the resource `name` of its type.
    pub fn names(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern {
                PatternType::Literal => self.name == WILDCARD || self.name == name,
                PatternType::Prefixed => name.starts_with(self.name.as_str()),
            }
    }
}

/// Which pattern types a filter matches (Kafka's `PatternType` in a filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    /// Any pattern type, the name compared as it is.
    Any,
    /// Every binding that would apply to the named resource (literal, `*`,
    /// and prefixes of the name).
    Match,
    /// Exactly this pattern type.
    Exactly(PatternType),
}

impl PatternFilter {
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(PatternFilter::Any),
            2 => Some(PatternFilter::Match),
            c => PatternType::from_code(c).map(PatternFilter::Exactly),
        }
    }
}

/// Kafka's `AclBindingFilter`: `None` in a field matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<AclOperation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// A filter that matches every binding.
    #[cfg(test)]
    pub fn any() -> Self {
        AclFilter {
            resource_type: None,
            name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    pub fn matches(&self, b: &AclBinding) -> bool {
        if self.resource_type.is_some_and(|t| t != b.resource_type) {
            return false;
        }
        if let PatternFilter::Exactly(p) = self.pattern {
            if p != b.pattern {
                return false;
            }
        }
        if let Some(name) = &self.name {
            let name_matches = match self.pattern {
                PatternFilter::Match => match b.pattern {
                    PatternType::Literal => b.name == *name || b.name == WILDCARD,
                    PatternType::Prefixed => name.starts_with(b.name.as_str()),
                },
                _ => b.name == *name,
            };
            if !name_matches {
                return false;
            }
        }
        self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

/// Every stored ACL binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acls {
    #[serde(default)]
    pub bindings: BTreeSet<AclBinding>,
}

/// A change to the ACLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclChange {
    /// Add these bindings (one already stored is kept once).
    Create(Vec<AclBinding>),
    /// Remove every binding that any of these filters matches.
    Delete(Vec<AclFilter>),
}

impl Acls {
    pub(super) fn apply(&mut self, change: &AclChange) -> Result<(), String> {
        match change {
            AclChange::Create(bindings) => {
                if let Some(why) = bindings.iter().find_map(AclBinding::invalid) {
                    return Err(why);
                }
                self.bindings.extend(bindings.iter().cloned());
            }
            AclChange::Delete(filters) => {
                self.bindings
                    .retain(|b| !filters.iter().any(|f| f.matches(b)));
            }
        }
        Ok(())
    }

    /// The stored bindings `filter` matches.
    pub fn matching<'a>(&'a self, filter: &'a AclFilter) -> impl Iterator<Item = &'a AclBinding> {
        self.bindings.iter().filter(|b| filter.matches(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn binding(
        resource_type: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        operation: AclOperation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            name: name.into(),
            pattern,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation,
            permission,
        }
    }

    fn sample() -> Acls {
        let mut acls = Acls::default();
        acls.apply(&AclChange::Create(vec![
            binding(
                ResourceType::Topic,
                "orders",
                PatternType::Literal,
                "User:a",
                AclOperation::Read,
                Permission::Allow,
            ),
            binding(
                ResourceType::Topic,
                "ord",
                PatternType::Prefixed,
                "User:b",
                AclOperation::Write,
                Permission::Allow,
            ),
            binding(
                ResourceType::Topic,
                "*",
                PatternType::Literal,
                "User:c",
                AclOperation::Describe,
                Permission::Deny,
            ),
            binding(
                ResourceType::Group,
                "orders",
                PatternType::Literal,
                "User:a",
                AclOperation::Read,
                Permission::Allow,
            ),
        ]))
        .unwrap();
        acls
    }

    #[test]
    fn codes_are_kafkas() {
        assert_eq!(ResourceType::Topic.code(), 2);
        assert_eq!(ResourceType::TransactionalId.code(), 5);
        assert_eq!(AclOperation::IdempotentWrite.code(), 12);
        assert_eq!(PatternFilter::from_code(2), Some(PatternFilter::Match));
        assert_eq!(Permission::from_code(3), Some(Permission::Allow));
        for op in AclOperation::ALL {
            assert_eq!(AclOperation::from_code(op.code()), Some(op));
        }
    }

    #[test]
    fn match_filter_finds_every_binding_that_applies_to_a_name() {
        let acls = sample();
        let mut f = AclFilter::any();
        f.resource_type = Some(ResourceType::Topic);
        f.name = Some("orders".into());
        f.pattern = PatternFilter::Match;
        assert_eq!(acls.matching(&f).count(), 3);
        f.pattern = PatternFilter::Any;
        assert_eq!(acls.matching(&f).count(), 1);
        f.pattern = PatternFilter::Exactly(PatternType::Prefixed);
        f.name = Some("ord".into());
        assert_eq!(acls.matching(&f).count(), 1);
        assert_eq!(acls.matching(&AclFilter::any()).count(), 4);
    }

    #[test]
    fn delete_removes_what_the_filters_match() {
        let mut acls = sample();
        let mut f = AclFilter::any();
        f.principal = Some("User:a".into());
        acls.apply(&AclChange::Delete(vec![f])).unwrap();
        assert_eq!(acls.bindings.len(), 2);
        assert!(acls.bindings.iter().all(|b| b.principal != "User:a"));
    }

    #[test]
    fn invalid_bindings_are_refused_whole() {
        let mut acls = Acls::default();
        let bad = binding(
            ResourceType::Cluster,
            "other",
            PatternType::Literal,
            "User:a",
            AclOperation::Alter,
            Permission::Allow,
        );
        assert!(acls.apply(&AclChange::Create(vec![bad])).is_err());
        let bad = binding(
            ResourceType::Topic,
            "t",
            PatternType::Literal,
            "nobody",
            AclOperation::Read,
            Permission::Allow,
        );
        assert!(acls.apply(&AclChange::Create(vec![bad])).is_err());
        assert!(acls.bindings.is_empty());
    }
}
