//! DescribeTopicPartitions (75, KIP-966): topics' partitions with leader,
//! leader epoch, replicas, ISR and offline replicas, a page at a time. The
//! topics are described as Metadata describes them (`metadata::handle`,
//! never auto-created), in name order; a page holds at most
//! `response_partition_limit` partitions and ends with a cursor (topic and
//! partition) where the next page starts. Sluice has no eligible leader
//! replicas (KIP-966's ELR): those lists are empty.
//!
//! Must never: decide who may see a topic (the caller's `may_describe`
//! does, from `authz`). Locks: none.

use std::net::IpAddr;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, MetadataRequest, TopicName,
};

use super::{code, metadata, str_bytes};
use crate::partition::Partitions;

/// Kafka's `max.request.partition.size.limit`: the most partitions one
/// page holds, whatever the request asks.
const MAX_PARTITIONS_PER_PAGE: i32 = 2000;

/// The Metadata version whose answer is read (topic ids, offline replicas).
const METADATA_VERSION: i16 = 12;

/// What the principal may do, as `authz` decides it.
pub struct Visibility<'a> {
    /// May it DESCRIBE this topic?
    pub may_describe: &'a (dyn Fn(&str) -> bool + Sync),
    /// Its authorized operations on this topic (Kafka's bit field).
    pub operations: &'a (dyn Fn(&str) -> i32 + Sync),
}

/// Answer a DescribeTopicPartitions from `client`.
pub async fn describe(
    partitions: &Partitions,
    req: DescribeTopicPartitionsRequest,
    visibility: Visibility<'_>,
    client: IpAddr,
) -> DescribeTopicPartitionsResponse {
    // The topics asked for (all when none is named), in name order.
    let mut names: Vec<String> = if req.topics.is_empty() {
        partitions
            .topic_names()
            .into_iter()
            .filter(|n| (visibility.may_describe)(n))
            .collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    if let Some(cursor) = &req.cursor {
        names.retain(|n| n.as_str() >= cursor.topic_name.0.as_str());
    }
    let (allowed, refused): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| (visibility.may_describe)(n));
    let mut meta = MetadataRequest::default();
    meta.allow_auto_topic_creation = false;
    meta.topics = Some(
        allowed
            .iter()
            .map(|n| {
                let mut t = MetadataRequestTopic::default();
                t.name = Some(TopicName(str_bytes(n.clone())));
                t
            })
            .collect(),
    );
    let described = metadata::handle(partitions, meta, METADATA_VERSION, client)
        .await
        .topics;
    let mut topics: Vec<(String, DescribeTopicPartitionsResponseTopic)> = described
        .into_iter()
        .filter_map(|t| {
            let name = t.name.as_ref()?.0.to_string();
            let ops = (visibility.operations)(&name);
            Some((name, topic_entry(t, ops)))
        })
        .chain(refused.into_iter().map(|name| {
            let mut t = DescribeTopicPartitionsResponseTopic::default();
            t.name = Some(TopicName(str_bytes(name.clone())));
            t.error_code = code::TOPIC_AUTHORIZATION_FAILED;
            (name, t)
        }))
        .collect();
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    let limit = match req.response_partition_limit {
        n if n <= 0 => MAX_PARTITIONS_PER_PAGE,
        n => n.min(MAX_PARTITIONS_PER_PAGE),
    };
    let first = req
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.0.to_string(), c.partition_index));
    paginate(topics, first, limit)
}

/// One described topic as DescribeTopicPartitions answers it.
fn topic_entry(t: MetadataResponseTopic, operations: i32) -> DescribeTopicPartitionsResponseTopic {
    let mut out = DescribeTopicPartitionsResponseTopic::default();
    out.error_code = t.error_code;
    out.name = t.name;
    out.topic_id = t.topic_id;
    out.is_internal = t.is_internal;
    out.topic_authorized_operations = if t.error_code == code::NONE {
        operations
    } else {
        i32::MIN
    };
    out.partitions = t
        .partitions
        .into_iter()
        .map(|p| {
            let mut q = DescribeTopicPartitionsResponsePartition::default();
            q.error_code = p.error_code;
            q.partition_index = p.partition_index;
            q.leader_id = p.leader_id;
            q.leader_epoch = p.leader_epoch;
            q.replica_nodes = p.replica_nodes;
            q.isr_nodes = p.isr_nodes;
            q.eligible_leader_replicas = Some(Vec::new());
            q.last_known_elr = Some(Vec::new());
            q.offline_replicas = p.offline_replicas;
            q
        })
        .collect();
    out.partitions.sort_by_key(|p| p.partition_index);
    out
}

/// One page: the topics from `first` (a cursor's topic and partition) on,
/// at most `limit` partitions, and where the next page starts.
fn paginate(
    topics: Vec<(String, DescribeTopicPartitionsResponseTopic)>,
    first: Option<(String, i32)>,
    limit: i32,
) -> DescribeTopicPartitionsResponse {
    let mut resp = DescribeTopicPartitionsResponse::default();
    let mut left = limit;
    for (name, mut topic) in topics {
        if let Some((cursor_topic, from)) = &first {
            if *cursor_topic == name {
                topic.partitions.retain(|p| p.partition_index >= *from);
            }
        }
        let fits = usize::try_from(left).unwrap_or_default();
        if topic.partitions.len() > fits {
            let rest = topic.partitions.split_off(fits);
            let mut cursor = Cursor::default();
            cursor.topic_name = TopicName(str_bytes(name));
            cursor.partition_index = rest.first().map_or(0, |p| p.partition_index);
            resp.next_cursor = Some(cursor);
            if !topic.partitions.is_empty() {
                resp.topics.push(topic);
            }
            return resp;
        }
        left -= topic.partitions.len() as i32;
        resp.topics.push(topic);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: i32) -> (String, DescribeTopicPartitionsResponseTopic) {
        let mut t = DescribeTopicPartitionsResponseTopic::default();
        t.name = Some(TopicName(str_bytes(name)));
        t.partitions = (0..partitions)
            .map(|i| {
                let mut p = DescribeTopicPartitionsResponsePartition::default();
                p.partition_index = i;
                p
            })
            .collect();
        (name.to_string(), t)
    }

    /// Each topic's partition indexes, and the cursor.
    type Shape = (Vec<(String, Vec<i32>)>, Option<(String, i32)>);

    fn shape(resp: &DescribeTopicPartitionsResponse) -> Shape {
        let topics = resp
            .topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                (
                    name,
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            })
            .collect();
        let cursor = resp
            .next_cursor
            .as_ref()
            .map(|c| (c.topic_name.0.to_string(), c.partition_index));
        (topics, cursor)
    }

    #[test]
    fn a_page_stops_at_the_limit_with_a_cursor_to_the_next_partition() {
        let resp = paginate(vec![topic("a", 3), topic("b", 2)], None, 4);
        assert_eq!(
            shape(&resp),
            (
                vec![("a".into(), vec![0, 1, 2]), ("b".into(), vec![0])],
                Some(("b".into(), 1))
            )
        );
        // The cursor's page starts at its partition.
        let resp = paginate(vec![topic("b", 2)], Some(("b".into(), 1)), 4);
        assert_eq!(shape(&resp), (vec![("b".into(), vec![1])], None));
    }

    #[test]
    fn a_page_that_ends_with_a_topic_points_at_the_next_topic() {
        let resp = paginate(vec![topic("a", 2), topic("b", 2)], None, 2);
        assert_eq!(
            shape(&resp),
            (vec![("a".into(), vec![0, 1])], Some(("b".into(), 0)))
        );
    }

    #[test]
    fn everything_within_the_limit_needs_no_cursor() {
        let resp = paginate(vec![topic("a", 2), topic("b", 2)], None, 10);
        assert_eq!(shape(&resp).1, None);
        assert_eq!(resp.topics.len(), 2);
    }
}
