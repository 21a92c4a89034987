//! The admin side of the client: what a console asks a Kafka cluster about
//! its topics, configs and consumer groups (Metadata with replicas and ISR,
//! DeleteTopics, DescribeConfigs, IncrementalAlterConfigs, CreatePartitions,
//! ListGroups to every broker, FindCoordinator, DescribeGroups,
//! ConsumerGroupDescribe, OffsetFetch, OffsetCommit, OffsetDelete,
//! DeleteGroups), each answered as plain structs.
//!
//! Every call goes over the wire, so the same code administers Sluice and
//! any other Kafka-compatible cluster. Errors are `ClientError::Broker` with
//! the API and Kafka's error name; the caller maps them to its own answers.
//! Must never: import anything of the broker, or cache what it reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::cluster::Client;
use super::connection::BrokerConnection;
use super::error::ClientError;
use super::group::decode_assignment_by_topic;

/// The TOPIC resource type of the config APIs.
const TOPIC_RESOURCE: i8 = 2;
/// ConfigResource type of a group (Kafka 4's group configs).
const GROUP_RESOURCE: i8 = 32;

/// One broker as Metadata lists it.
#[derive(Debug, Clone)]
pub struct BrokerEntry {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The cluster as one Metadata answer describes it.
#[derive(Debug, Clone)]
pub struct ClusterDescription {
    pub cluster_id: Option<String>,
    /// -1 when the broker does not say.
    pub controller_id: i32,
    pub brokers: Vec<BrokerEntry>,
    pub topics: Vec<TopicDescription>,
}

/// One topic with its partitions' placement.
#[derive(Debug, Clone)]
pub struct TopicDescription {
    pub name: String,
    pub topic_id: String,
    pub internal: bool,
    pub partitions: Vec<PartitionDescription>,
}

/// Where one partition lives.
#[derive(Debug, Clone)]
pub struct PartitionDescription {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub offline_replicas: Vec<i32>,
}

/// One config entry of a topic.
#[derive(Debug, Clone)]
pub struct ConfigEntry {
    pub name: String,
    /// None for a sensitive or unset value.
    pub value: Option<String>,
    pub read_only: bool,
    /// True when the topic does not override the broker's default.
    pub is_default: bool,
    pub sensitive: bool,
}

/// A change to one topic config: set it, or remove the override.
#[derive(Debug, Clone)]
pub enum ConfigChange {
    Set(String, String),
    Delete(String),
}

/// One group as ListGroups names it, with the broker that coordinates it.
#[derive(Debug, Clone)]
pub struct GroupListing {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// `classic` or `consumer` (ListGroups v5), else empty.
    pub group_type: String,
    pub coordinator: i32,
}

/// One member of a group and what it is assigned.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// A group's state and members, from DescribeGroups (classic) or
/// ConsumerGroupDescribe (KIP-848 consumer groups).
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    /// `classic` or `consumer`.
    pub group_type: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
    pub coordinator: i32,
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// `Ok` for error code 0, else the typed error of `api`.
fn check(
    api: ApiKey,
    code: i16,
    message: Option<&StrBytes>,
    topic: Option<&str>,
) -> Result<(), ClientError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(ClientError::Broker {
            api,
            error,
            topic: topic.map(str::to_owned),
            partition: None,
            message: message.map(|m| m.to_string()).filter(|m| !m.is_empty()),
        }),
    }
}

impl Client {
    /// The cluster and every topic (internal ones too) with replicas and ISR.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription, ClientError> {
        let conn = self.any_broker().await?;
        let version = conn.version_for::<MetadataRequest>()?;
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let response = conn.request_with_version(&request, version).await?;
        check(ApiKey::Metadata, response.error_code, None, None)?;
        let mut topics: Vec<TopicDescription> = response
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| {
                let name = t.name.as_ref()?.to_string();
                let mut partitions: Vec<PartitionDescription> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionDescription {
                        partition: p.partition_index,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                        isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                        offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                    })
                    .collect();
                partitions.sort_by_key(|p| p.partition);
                Some(TopicDescription {
                    internal: t.is_internal || name.starts_with("__"),
                    name,
                    topic_id: t.topic_id.to_string(),
                    partitions,
                })
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let mut brokers: Vec<BrokerEntry> = response
            .brokers
            .iter()
            .map(|b| BrokerEntry {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        // Keep the client's own view (leaders, broker addresses) current too.
        self.metadata_cache().apply(&response);
        Ok(ClusterDescription {
            cluster_id: response.cluster_id.as_ref().map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers,
            topics,
        })
    }

    /// A connection to the controller if Metadata names one, else to any broker.
    async fn controller_connection(&self) -> Result<Arc<BrokerConnection>, ClientError> {
        let description = self.describe_cluster().await?;
        match self.broker(description.controller_id).await {
            Ok(conn) if description.controller_id >= 0 => Ok(conn),
            _ => self.any_broker().await,
        }
    }

    /// DeleteTopics for one topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let conn = self.controller_connection().await?;
        let version = conn.version_for::<DeleteTopicsRequest>()?;
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topic_names(vec![TopicName(str_bytes(name))])
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(TopicName(str_bytes(name))))
            ]);
        let response = conn.request_with_version(&request, version).await?;
        let result = response.responses.first().ok_or_else(|| {
            ClientError::Metadata(format!("DeleteTopics answered without {name}"))
        })?;
        check(
            ApiKey::DeleteTopics,
            result.error_code,
            result.error_message.as_ref(),
            Some(name),
        )
    }

    /// Every config of a topic with its value and whether it is a default.
    pub async fn topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>, ClientError> {
        let conn = self.any_broker().await?;
        let version = conn.version_for::<DescribeConfigsRequest>()?;
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(str_bytes(name))
                .with_configuration_keys(None),
        ]);
        let response = conn.request_with_version(&request, version).await?;
        let result = response.results.first().ok_or_else(|| {
            ClientError::Metadata(format!("DescribeConfigs answered without {name}"))
        })?;
        check(
            ApiKey::DescribeConfigs,
            result.error_code,
            result.error_message.as_ref(),
            Some(name),
        )?;
        let mut configs: Vec<ConfigEntry> = result
            .configs
            .iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.as_ref().map(|v| v.to_string()),
                read_only: c.read_only,
                // Source 1 is DYNAMIC_TOPIC_CONFIG: the topic's own value.
                is_default: c.config_source != 1,
                sensitive: c.is_sensitive,
            })
            .collect();
        configs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(configs)
    }

    /// IncrementalAlterConfigs on one topic.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        changes: &[ConfigChange],
    ) -> Result<(), ClientError> {
        self.alter_configs(TOPIC_RESOURCE, name, changes).await
    }

    /// IncrementalAlterConfigs on one group (`share.*`, `consumer.*`).
    pub async fn alter_group_configs(
        &self,
        group_id: &str,
        changes: &[ConfigChange],
    ) -> Result<(), ClientError> {
        self.alter_configs(GROUP_RESOURCE, group_id, changes).await
    }

    async fn alter_configs(
        &self,
        resource_type: i8,
        name: &str,
        changes: &[ConfigChange],
    ) -> Result<(), ClientError> {
        let conn = self.controller_connection().await?;
        let version = conn.version_for::<IncrementalAlterConfigsRequest>()?;
        let configs = changes
            .iter()
            .map(|c| match c {
                ConfigChange::Set(key, value) => AlterableConfig::default()
                    .with_name(str_bytes(key))
                    .with_config_operation(0)
                    .with_value(Some(str_bytes(value))),
                ConfigChange::Delete(key) => AlterableConfig::default()
                    .with_name(str_bytes(key))
                    .with_config_operation(1)
                    .with_value(None),
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(str_bytes(name))
                .with_configs(configs),
        ]);
        let response = conn.request_with_version(&request, version).await?;
        for r in &response.responses {
            check(
                ApiKey::IncrementalAlterConfigs,
                r.error_code,
                r.error_message.as_ref(),
                Some(name),
            )?;
        }
        Ok(())
    }

    /// CreatePartitions: grow a topic to `total` partitions.
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<(), ClientError> {
        let conn = self.controller_connection().await?;
        let version = conn.version_for::<CreatePartitionsRequest>()?;
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_count(total)
                .with_assignments(None)]);
        let response = conn.request_with_version(&request, version).await?;
        for r in &response.results {
            check(
                ApiKey::CreatePartitions,
                r.error_code,
                r.error_message.as_ref(),
                Some(name),
            )?;
        }
        let _ = self.refresh_metadata(&[name]).await;
        Ok(())
    }

    /// Every group of the cluster: ListGroups asked of every broker (each
    /// answers only for the groups it coordinates).
    pub async fn list_all_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        let description = self.describe_cluster().await?;
        let mut groups = BTreeMap::new();
        for broker in &description.brokers {
            let conn = self.broker(broker.node_id).await?;
            let version = conn.version_for::<ListGroupsRequest>()?;
            let response = conn
                .request_with_version(&ListGroupsRequest::default(), version)
                .await?;
            check(ApiKey::ListGroups, response.error_code, None, None)?;
            for g in response.groups {
                groups.insert(
                    g.group_id.to_string(),
                    GroupListing {
                        group_id: g.group_id.to_string(),
                        state: g.group_state.to_string(),
                        protocol_type: g.protocol_type.to_string(),
                        group_type: if version >= 5 {
                            g.group_type.to_string()
                        } else {
                            String::new()
                        },
                        coordinator: broker.node_id,
                    },
                );
            }
        }
        Ok(groups.into_values().collect())
    }

    /// The coordinator of `group` (FindCoordinator, retried while it loads
    /// or moves): its broker id and a connection to it.
    pub async fn group_coordinator(
        &self,
        group: &str,
    ) -> Result<(i32, Arc<BrokerConnection>), ClientError> {
        let mut attempt = 0u64;
        loop {
            let conn = self.any_broker().await?;
            // v4 batches keys; one key needs no more than v3.
            let version = conn.version_for_capped::<FindCoordinatorRequest>(3)?;
            let request = FindCoordinatorRequest::default()
                .with_key(str_bytes(group))
                .with_key_type(0);
            let response = conn.request_with_version(&request, version).await?;
            match check(
                ApiKey::FindCoordinator,
                response.error_code,
                response.error_message.as_ref(),
                None,
            ) {
                Ok(()) => {
                    let node_id = response.node_id.0;
                    if self.broker(node_id).await.is_err() {
                        self.refresh_metadata(&[]).await?;
                    }
                    return Ok((node_id, self.broker(node_id).await?));
                }
                Err(e) if e.is_retriable() && attempt < 10 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A group's state and members. GROUP_ID_NOT_FOUND when there is none.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, ClientError> {
        let (coordinator, conn) = self.group_coordinator(group).await?;
        if let Ok(version) = conn.version_for::<ConsumerGroupDescribeRequest>() {
            let request = ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![GroupId(str_bytes(group))]);
            let response = conn.request_with_version(&request, version).await?;
            if let Some(g) = response.groups.into_iter().find(|g| g.error_code == 0) {
                return Ok(GroupDescription {
                    group_id: group.to_owned(),
                    state: g.group_state.to_string(),
                    group_type: "consumer".into(),
                    protocol_type: "consumer".into(),
                    protocol: g.assignor_name.to_string(),
                    members: g
                        .members
                        .iter()
                        .map(|m| MemberDescription {
                            member_id: m.member_id.to_string(),
                            instance_id: m.instance_id.as_ref().map(|i| i.to_string()),
                            client_id: m.client_id.to_string(),
                            client_host: m.client_host.to_string(),
                            assignment: m
                                .assignment
                                .topic_partitions
                                .iter()
                                .map(|tp| (tp.topic_name.to_string(), tp.partitions.clone()))
                                .collect(),
                        })
                        .collect(),
                    coordinator,
                });
            }
        }
        let version = conn.version_for::<DescribeGroupsRequest>()?;
        let request = DescribeGroupsRequest::default().with_groups(vec![GroupId(str_bytes(group))]);
        let response = conn.request_with_version(&request, version).await?;
        let described = response.groups.into_iter().next().ok_or_else(|| {
            ClientError::Metadata(format!("DescribeGroups answered without {group}"))
        })?;
        check(
            ApiKey::DescribeGroups,
            described.error_code,
            described.error_message.as_ref(),
            None,
        )?;
        if described.group_state.as_str() == "Dead" {
            return Err(ClientError::broker(
                ApiKey::DescribeGroups,
                ResponseError::GroupIdNotFound,
                Some(format!("group {group} does not exist")),
            ));
        }
        Ok(GroupDescription {
            group_id: group.to_owned(),
            state: described.group_state.to_string(),
            group_type: "classic".into(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            members: described
                .members
                .iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id.to_string(),
                    instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: decode_assignment_by_topic(&m.member_assignment)
                        .unwrap_or_default(),
                })
                .collect(),
            coordinator,
        })
    }

    /// The committed offset of every partition of the group.
    pub async fn group_offsets(
        &self,
        group: &str,
    ) -> Result<BTreeMap<(String, i32), i64>, ClientError> {
        let (_, conn) = self.group_coordinator(group).await?;
        // v8+ batches groups; one group needs no more than v7.
        let version = conn.version_for_capped::<OffsetFetchRequest>(7)?;
        let request = OffsetFetchRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_topics(None);
        let response = conn.request_with_version(&request, version).await?;
        check(ApiKey::OffsetFetch, response.error_code, None, None)?;
        let mut out = BTreeMap::new();
        for t in response.topics {
            for p in t.partitions {
                if p.error_code == 0 && p.committed_offset >= 0 {
                    out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
        Ok(out)
    }

    /// Commit `offsets` of `topic` for a group without members (generation -1).
    pub async fn commit_group_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), ClientError> {
        let (_, conn) = self.group_coordinator(group).await?;
        let version = conn.version_for::<OffsetCommitRequest>()?;
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(StrBytes::default())
            .with_retention_time_ms(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partitions(
                    offsets
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_leader_epoch(-1)
                                .with_committed_metadata(Some(StrBytes::default()))
                        })
                        .collect(),
                )]);
        let response = conn.request_with_version(&request, version).await?;
        for t in &response.topics {
            for p in &t.partitions {
                check(ApiKey::OffsetCommit, p.error_code, None, Some(topic))?;
            }
        }
        Ok(())
    }

    /// OffsetDelete: forget the group's committed offsets of `partitions` of `topic`.
    pub async fn delete_group_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<(), ClientError> {
        let (_, conn) = self.group_coordinator(group).await?;
        let version = conn.version_for::<OffsetDeleteRequest>()?;
        let request = OffsetDeleteRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(str_bytes(topic)))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p))
                        .collect(),
                )]);
        let response = conn.request_with_version(&request, version).await?;
        check(ApiKey::OffsetDelete, response.error_code, None, None)?;
        for t in &response.topics {
            for p in &t.partitions {
                check(ApiKey::OffsetDelete, p.error_code, None, Some(topic))?;
            }
        }
        Ok(())
    }

    /// DeleteGroups for one group (it must have no members).
    pub async fn delete_group(&self, group: &str) -> Result<(), ClientError> {
        let (_, conn) = self.group_coordinator(group).await?;
        let version = conn.version_for::<DeleteGroupsRequest>()?;
        let request =
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(str_bytes(group))]);
        let response = conn.request_with_version(&request, version).await?;
        for r in &response.results {
            check(ApiKey::DeleteGroups, r.error_code, None, None)?;
        }
        Ok(())
    }
}
