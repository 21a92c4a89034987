//! Every API at every version this broker advertises: a request encoded by
//! kafka-protocol gets a response that decodes at that version, with the
//! right header version. Pins that no handler sets a field its version lacks.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use sluice::SUPPORTED_APIS;
use sluice::{encode_plain, PlainRecord};

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn record_batch() -> Bytes {
    let record = PlainRecord {
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        timestamp: 1_700_000_000_000,
    };
    encode_plain(&[record], kafka_protocol::records::Compression::None)
        .expect("encode")
        .freeze()
}

fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max) = SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == api)
        .copied()
        .expect("supported");
    min..=max
}

#[test]
fn every_advertised_version_round_trips() {
    let node = common::Node::start(&[]);
    let mut wire = common::Wire::connect(&node);
    let topic = "versions";

    for v in versions(ApiKey::ApiVersions) {
        let resp: ApiVersionsResponse =
            wire.call(ApiKey::ApiVersions, v, &ApiVersionsRequest::default());
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.api_keys.len(), SUPPORTED_APIS.len());
    }
    for v in versions(ApiKey::CreateTopics) {
        let mut ct = create_topics_request::CreatableTopic::default();
        ct.name = topic_name(&format!("{topic}-{v}"));
        ct.num_partitions = 2;
        ct.replication_factor = 1;
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![ct];
        let resp: CreateTopicsResponse = wire.call(ApiKey::CreateTopics, v, &req);
        assert_eq!(resp.topics[0].error_code, 0, "CreateTopics v{v}");
    }
    for v in versions(ApiKey::Metadata) {
        let mut req = MetadataRequest::default();
        let mut t = metadata_request::MetadataRequestTopic::default();
        t.name = Some(topic_name(&format!("{topic}-2")));
        req.topics = Some(vec![t]);
        req.allow_auto_topic_creation = v < 4;
        let resp: MetadataResponse = wire.call(ApiKey::Metadata, v, &req);
        assert_eq!(resp.brokers.len(), 1);
        assert_eq!(resp.topics[0].error_code, 0, "Metadata v{v}");
        assert_eq!(resp.topics[0].partitions.len(), 2);
    }
    for v in versions(ApiKey::Produce) {
        let mut p = produce_request::PartitionProduceData::default();
        p.index = 0;
        p.records = Some(record_batch());
        let mut t = produce_request::TopicProduceData::default();
        t.name = topic_name(&format!("{topic}-2"));
        t.partition_data = vec![p];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 5000;
        req.topic_data = vec![t];
        let resp: ProduceResponse = wire.call(ApiKey::Produce, v, &req);
        let part = &resp.responses[0].partition_responses[0];
        assert_eq!(part.error_code, 0, "Produce v{v}");
        assert_eq!(part.base_offset, (v - 3) as i64);
    }
    // One record per Produce version above.
    let produced = versions(ApiKey::Produce).count() as i64;
    let topic_id = {
        let mut t = metadata_request::MetadataRequestTopic::default();
        t.name = Some(topic_name(&format!("{topic}-2")));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![t]);
        let resp: MetadataResponse = wire.call(ApiKey::Metadata, 12, &req);
        resp.topics[0].topic_id
    };
    for v in versions(ApiKey::Fetch) {
        let mut p = fetch_request::FetchPartition::default();
        p.partition = 0;
        p.fetch_offset = 0;
        p.partition_max_bytes = 1 << 20;
        let mut t = fetch_request::FetchTopic::default();
        // v13+ names the topic by id only.
        if v >= 13 {
            t.topic_id = topic_id;
        } else {
            t.topic = topic_name(&format!("{topic}-2"));
        }
        t.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = 0;
        req.max_bytes = 1 << 20;
        req.session_epoch = -1;
        req.topics = vec![t];
        let resp: FetchResponse = wire.call(ApiKey::Fetch, v, &req);
        if v >= 13 {
            assert_eq!(resp.responses[0].topic_id, topic_id, "Fetch v{v}");
        } else {
            assert_eq!(resp.responses[0].topic.0.as_str(), format!("{topic}-2"));
        }
        let part = &resp.responses[0].partitions[0];
        assert_eq!(part.error_code, 0, "Fetch v{v}");
        assert!(part
            .records
            .as_ref()
            .map(|r| !r.is_empty())
            .unwrap_or(false));
        assert_eq!(part.high_watermark, produced);
    }
    for v in versions(ApiKey::ListOffsets) {
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        let mut t = list_offsets_request::ListOffsetsTopic::default();
        t.name = topic_name(&format!("{topic}-2"));
        // Latest, earliest, earliest local (v8+), latest tiered (v9+).
        t.partitions = [-1i64, -2, -4, -5]
            .iter()
            .map(|ts| {
                let mut p = list_offsets_request::ListOffsetsPartition::default();
                p.partition_index = 0;
                p.timestamp = *ts;
                p
            })
            .collect();
        req.topics = vec![t];
        let resp: ListOffsetsResponse = wire.call(ApiKey::ListOffsets, v, &req);
        let parts = &resp.topics[0].partitions;
        assert_eq!(
            (parts[0].error_code, parts[0].offset),
            (0, produced),
            "ListOffsets v{v}"
        );
        assert_eq!(
            (parts[1].error_code, parts[1].offset),
            (0, 0),
            "ListOffsets v{v}"
        );
        // Without a remote tier the earliest local offset (v8+) is the log
        // start, and there is no latest tiered offset (v9+); older versions
        // may not ask for them.
        const UNSUPPORTED_VERSION: i16 = 35;
        for (part, since, answer) in [(&parts[2], 8, (0, 0)), (&parts[3], 9, (0, -1))] {
            let expected = if v >= since {
                answer
            } else {
                (UNSUPPORTED_VERSION, -1)
            };
            assert_eq!((part.error_code, part.offset), expected, "ListOffsets v{v}");
        }
    }
    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        let mut p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
        p.partition = 0;
        p.current_leader_epoch = -1;
        p.leader_epoch = 0;
        let mut t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
        t.topic = topic_name(&format!("{topic}-2"));
        t.partitions = vec![p];
        let mut req = OffsetForLeaderEpochRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics = vec![t];
        let resp: OffsetForLeaderEpochResponse = wire.call(ApiKey::OffsetForLeaderEpoch, v, &req);
        let part = &resp.topics[0].partitions[0];
        assert_eq!(
            (part.error_code, part.end_offset),
            (0, produced),
            "OffsetForLeaderEpoch v{v}"
        );
    }
    for v in versions(ApiKey::DescribeConfigs) {
        let mut r = describe_configs_request::DescribeConfigsResource::default();
        r.resource_type = 2;
        r.resource_name = StrBytes::from_string(format!("{topic}-2"));
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![r];
        let resp: DescribeConfigsResponse = wire.call(ApiKey::DescribeConfigs, v, &req);
        assert_eq!(resp.results[0].error_code, 0);
        assert!(resp.results[0]
            .configs
            .iter()
            .any(|c| &*c.name == "retention.ms" && c.value.as_deref() == Some("604800000")));
    }
    for v in versions(ApiKey::IncrementalAlterConfigs) {
        let mut c = incremental_alter_configs_request::AlterableConfig::default();
        c.name = StrBytes::from_static_str("retention.ms");
        c.config_operation = 0;
        c.value = Some(StrBytes::from_string(format!("{}", 1000 + v)));
        let mut r = incremental_alter_configs_request::AlterConfigsResource::default();
        r.resource_type = 2;
        r.resource_name = StrBytes::from_string(format!("{topic}-2"));
        r.configs = vec![c];
        let mut req = IncrementalAlterConfigsRequest::default();
        req.resources = vec![r];
        let resp: IncrementalAlterConfigsResponse =
            wire.call(ApiKey::IncrementalAlterConfigs, v, &req);
        assert_eq!(resp.responses[0].error_code, 0);
    }
    for v in versions(ApiKey::AlterConfigs) {
        let mut c = alter_configs_request::AlterableConfig::default();
        c.name = StrBytes::from_static_str("retention.ms");
        c.value = Some(StrBytes::from_static_str("86400000"));
        let mut r = alter_configs_request::AlterConfigsResource::default();
        r.resource_type = 2;
        r.resource_name = StrBytes::from_string(format!("{topic}-2"));
        r.configs = vec![c];
        let mut req = AlterConfigsRequest::default();
        req.resources = vec![r];
        let resp: AlterConfigsResponse = wire.call(ApiKey::AlterConfigs, v, &req);
        assert_eq!(resp.responses[0].error_code, 0);
    }
    for v in versions(ApiKey::CreatePartitions) {
        let mut t = create_partitions_request::CreatePartitionsTopic::default();
        t.name = topic_name(&format!("{topic}-3"));
        t.count = 3 + v as i32;
        let mut req = CreatePartitionsRequest::default();
        req.topics = vec![t];
        let resp: CreatePartitionsResponse = wire.call(ApiKey::CreatePartitions, v, &req);
        assert_eq!(resp.results[0].error_code, 0, "CreatePartitions v{v}");
    }
    for v in versions(ApiKey::DescribeCluster) {
        let resp: DescribeClusterResponse = wire.call(
            ApiKey::DescribeCluster,
            v,
            &DescribeClusterRequest::default(),
        );
        assert_eq!(resp.brokers.len(), 1);
    }
    for v in versions(ApiKey::InitProducerId) {
        let mut req = InitProducerIdRequest::default();
        req.transaction_timeout_ms = 60_000;
        let resp: InitProducerIdResponse = wire.call(ApiKey::InitProducerId, v, &req);
        assert_eq!(resp.error_code, 0);
        assert!(resp.producer_id.0 >= 0);
    }
    for v in versions(ApiKey::DeleteRecords) {
        let mut p = delete_records_request::DeleteRecordsPartition::default();
        p.partition_index = 0;
        p.offset = 1 + v as i64;
        let mut t = delete_records_request::DeleteRecordsTopic::default();
        t.name = topic_name(&format!("{topic}-2"));
        t.partitions = vec![p];
        let mut req = DeleteRecordsRequest::default();
        req.topics = vec![t];
        let resp: DeleteRecordsResponse = wire.call(ApiKey::DeleteRecords, v, &req);
        let part = &resp.topics[0].partitions[0];
        assert_eq!(part.error_code, 0);
        assert_eq!(part.low_watermark, 1 + v as i64);
    }
    for v in versions(ApiKey::CreateAcls) {
        let mut c = create_acls_request::AclCreation::default();
        c.resource_type = 2;
        c.resource_name = StrBytes::from_string(format!("{topic}-acl-{v}"));
        c.resource_pattern_type = 3;
        c.principal = StrBytes::from_static_str("User:alice");
        c.host = StrBytes::from_static_str("*");
        c.operation = 3;
        c.permission_type = 3;
        let mut req = CreateAclsRequest::default();
        req.creations = vec![c];
        let resp: CreateAclsResponse = wire.call(ApiKey::CreateAcls, v, &req);
        assert_eq!(resp.results[0].error_code, 0, "CreateAcls v{v}");
    }
    for v in versions(ApiKey::DescribeAcls) {
        // kafka-protocol's defaults are empty strings; null matches anything.
        let mut req = DescribeAclsRequest::default();
        req.resource_name_filter = None;
        req.principal_filter = None;
        req.host_filter = None;
        req.resource_type_filter = 1;
        req.pattern_type_filter = 1;
        req.operation = 1;
        req.permission_type = 1;
        let resp: DescribeAclsResponse = wire.call(ApiKey::DescribeAcls, v, &req);
        assert_eq!(resp.error_code, 0, "DescribeAcls v{v}");
        assert!(!resp.resources.is_empty(), "DescribeAcls v{v}");
    }
    for v in versions(ApiKey::DeleteAcls) {
        let mut f = delete_acls_request::DeleteAclsFilter::default();
        f.resource_type_filter = 2;
        f.resource_name_filter = Some(StrBytes::from_string(format!("{topic}-acl-{v}")));
        f.pattern_type_filter = 3;
        f.principal_filter = None;
        f.host_filter = None;
        f.operation = 1;
        f.permission_type = 1;
        let mut req = DeleteAclsRequest::default();
        req.filters = vec![f];
        let resp: DeleteAclsResponse = wire.call(ApiKey::DeleteAcls, v, &req);
        assert_eq!(resp.filter_results[0].error_code, 0, "DeleteAcls v{v}");
        assert_eq!(
            resp.filter_results[0].matching_acls.len(),
            1,
            "DeleteAcls v{v}"
        );
    }
    for v in versions(ApiKey::AlterClientQuotas) {
        let mut entity = alter_client_quotas_request::EntityData::default();
        entity.entity_type = StrBytes::from_static_str("client-id");
        entity.entity_name = Some(StrBytes::from_string(format!("c{v}")));
        let mut op = alter_client_quotas_request::OpData::default();
        op.key = StrBytes::from_static_str("producer_byte_rate");
        op.value = 1000.0;
        let mut entry = alter_client_quotas_request::EntryData::default();
        entry.entity = vec![entity];
        entry.ops = vec![op];
        let mut req = AlterClientQuotasRequest::default();
        req.entries = vec![entry];
        let resp: AlterClientQuotasResponse = wire.call(ApiKey::AlterClientQuotas, v, &req);
        assert_eq!(resp.entries[0].error_code, 0, "AlterClientQuotas v{v}");
    }
    for v in versions(ApiKey::DescribeClientQuotas) {
        let resp: DescribeClientQuotasResponse = wire.call(
            ApiKey::DescribeClientQuotas,
            v,
            &DescribeClientQuotasRequest::default(),
        );
        assert_eq!(resp.error_code, 0, "DescribeClientQuotas v{v}");
        assert!(
            resp.entries.is_some_and(|e| !e.is_empty()),
            "DescribeClientQuotas v{v}"
        );
    }
    for v in versions(ApiKey::DeleteTopics) {
        let name = format!("{topic}-{}", v + 1);
        let mut req = DeleteTopicsRequest::default();
        if v >= 6 {
            let mut t = delete_topics_request::DeleteTopicState::default();
            t.name = Some(topic_name(&name));
            req.topics = vec![t];
        } else {
            req.topic_names = vec![topic_name(&name)];
        }
        let resp: DeleteTopicsResponse = wire.call(ApiKey::DeleteTopics, v, &req);
        let expected = if v < 7 { 0 } else { 3 };
        assert_eq!(resp.responses[0].error_code, expected, "DeleteTopics v{v}");
    }
}

#[test]
fn reassignment_apis_round_trip_at_every_advertised_version() {
    let node = common::Node::start(&[]);
    let mut wire = common::Wire::connect(&node);
    for v in versions(ApiKey::AlterPartitionReassignments) {
        let mut partition = alter_partition_reassignments_request::ReassignablePartition::default();
        partition.replicas = Some(vec![BrokerId(1)]);
        let mut topic = alter_partition_reassignments_request::ReassignableTopic::default();
        topic.name = topic_name("no-such-topic");
        topic.partitions = vec![partition];
        let mut req = AlterPartitionReassignmentsRequest::default();
        req.topics = vec![topic];
        let resp: AlterPartitionReassignmentsResponse =
            wire.call(ApiKey::AlterPartitionReassignments, v, &req);
        assert_eq!(resp.error_code, 0, "AlterPartitionReassignments v{v}");
        assert_eq!(
            resp.responses[0].partitions[0].error_code, 3,
            "AlterPartitionReassignments v{v}: UNKNOWN_TOPIC_OR_PARTITION"
        );
    }
    for v in versions(ApiKey::ListPartitionReassignments) {
        let resp: ListPartitionReassignmentsResponse = wire.call(
            ApiKey::ListPartitionReassignments,
            v,
            &ListPartitionReassignmentsRequest::default(),
        );
        assert_eq!(
            (resp.error_code, resp.topics.len()),
            (0, 0),
            "ListPartitionReassignments v{v}"
        );
    }
    for v in versions(ApiKey::UnregisterBroker) {
        let mut req = UnregisterBrokerRequest::default();
        req.broker_id = BrokerId(7);
        let resp: UnregisterBrokerResponse = wire.call(ApiKey::UnregisterBroker, v, &req);
        assert_eq!(
            resp.error_code, 102,
            "UnregisterBroker v{v}: BROKER_ID_NOT_REGISTERED"
        );
    }
}

#[test]
fn sasl_and_scram_apis_round_trip_at_every_advertised_version() {
    let node = common::Node::start(&[]);
    let mut wire = common::Wire::connect(&node);
    for v in versions(ApiKey::AlterUserScramCredentials) {
        let mut upsert = alter_user_scram_credentials_request::ScramCredentialUpsertion::default();
        upsert.name = StrBytes::from_string(format!("user-{v}"));
        upsert.mechanism = 1;
        upsert.iterations = 4096;
        upsert.salt = Bytes::from_static(b"salt");
        upsert.salted_password = Bytes::from(vec![7u8; 32]);
        let mut req = AlterUserScramCredentialsRequest::default();
        req.upsertions = vec![upsert];
        let resp: AlterUserScramCredentialsResponse =
            wire.call(ApiKey::AlterUserScramCredentials, v, &req);
        assert_eq!(
            resp.results[0].error_code, 0,
            "AlterUserScramCredentials v{v}"
        );
    }
    for v in versions(ApiKey::DescribeUserScramCredentials) {
        let resp: DescribeUserScramCredentialsResponse = wire.call(
            ApiKey::DescribeUserScramCredentials,
            v,
            &DescribeUserScramCredentialsRequest::default(),
        );
        assert_eq!(resp.results.len(), 1, "DescribeUserScramCredentials v{v}");
        assert_eq!(resp.results[0].credential_infos[0].iterations, 4096);
    }
    // On a PLAINTEXT listener the SASL APIs answer ILLEGAL_SASL_STATE (and close).
    for v in versions(ApiKey::SaslHandshake) {
        let mut wire = common::Wire::connect(&node);
        let mut req = SaslHandshakeRequest::default();
        req.mechanism = StrBytes::from_static_str("PLAIN");
        let resp: SaslHandshakeResponse = wire.call(ApiKey::SaslHandshake, v, &req);
        assert_eq!(resp.error_code, 34, "SaslHandshake v{v}");
        assert_eq!(resp.mechanisms.len(), 3);
    }
    for v in versions(ApiKey::SaslAuthenticate) {
        let mut wire = common::Wire::connect(&node);
        let resp: SaslAuthenticateResponse = wire.call(
            ApiKey::SaslAuthenticate,
            v,
            &SaslAuthenticateRequest::default(),
        );
        assert_eq!(resp.error_code, 34, "SaslAuthenticate v{v}");
    }
}

#[test]
fn unsupported_api_versions_version_gets_a_v0_answer_with_the_list() {
    let node = common::Node::start(&[]);
    let mut stream = TcpStream::connect(node.kafka_addr).expect("connect");
    // ApiVersions v99, correlation id 7, empty client id.
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(18);
    frame.put_i16(99);
    frame.put_i32(7);
    frame.put_i16(-1);
    stream.write_all(&frame).expect("write");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("read");
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).expect("read body");
    let mut buf = Bytes::from(buf);
    let header = ResponseHeader::decode(&mut buf, 0).expect("header v0");
    assert_eq!(header.correlation_id, 7);
    let resp = ApiVersionsResponse::decode(&mut buf, 0).expect("body v0");
    assert_eq!(resp.error_code, 35);
    assert!(!resp.api_keys.is_empty());
}

#[test]
fn cluster_admin_apis_round_trip_at_every_advertised_version() {
    let node = common::Node::start(&[]);
    let mut wire = common::Wire::connect(&node);
    let mut ct = create_topics_request::CreatableTopic::default();
    ct.name = topic_name("admin-versions");
    ct.num_partitions = 3;
    ct.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![ct];
    let resp: CreateTopicsResponse = wire.call(ApiKey::CreateTopics, 7, &req);
    assert_eq!(resp.topics[0].error_code, 0);

    for v in versions(ApiKey::DescribeTopicPartitions) {
        let mut topic = describe_topic_partitions_request::TopicRequest::default();
        topic.name = topic_name("admin-versions");
        let mut cursor = describe_topic_partitions_request::Cursor::default();
        cursor.topic_name = topic_name("admin-versions");
        cursor.partition_index = 1;
        let mut req = DescribeTopicPartitionsRequest::default();
        req.topics = vec![topic];
        req.response_partition_limit = 1;
        req.cursor = Some(cursor);
        let resp: DescribeTopicPartitionsResponse =
            wire.call(ApiKey::DescribeTopicPartitions, v, &req);
        assert_eq!(
            resp.topics[0].partitions.len(),
            1,
            "DescribeTopicPartitions v{v}"
        );
        assert_eq!(resp.topics[0].partitions[0].partition_index, 1);
        let next = resp.next_cursor.expect("a cursor to partition 2");
        assert_eq!(next.partition_index, 2, "DescribeTopicPartitions v{v}");
    }
    let mut dir = String::new();
    for v in versions(ApiKey::DescribeLogDirs) {
        // No topic list (null): every hosted replica.
        let mut req = DescribeLogDirsRequest::default();
        req.topics = None;
        let resp: DescribeLogDirsResponse = wire.call(ApiKey::DescribeLogDirs, v, &req);
        assert_eq!(resp.results.len(), 1, "DescribeLogDirs v{v}");
        let result = &resp.results[0];
        assert_eq!(result.error_code, 0);
        let partitions: Vec<i32> = result
            .topics
            .iter()
            .filter(|t| &*t.name.0 == "admin-versions")
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect();
        assert_eq!(partitions, vec![0, 1, 2], "DescribeLogDirs v{v}");
        if v >= 4 {
            assert!(result.total_bytes > 0 && result.usable_bytes > 0);
        }
        dir = result.log_dir.to_string();
    }
    for v in versions(ApiKey::AlterReplicaLogDirs) {
        let mut topic = alter_replica_log_dirs_request::AlterReplicaLogDirTopic::default();
        topic.name = topic_name("admin-versions");
        topic.partitions = vec![0];
        let mut here = alter_replica_log_dirs_request::AlterReplicaLogDir::default();
        here.path = StrBytes::from_string(dir.clone());
        here.topics = vec![topic.clone()];
        let mut elsewhere = alter_replica_log_dirs_request::AlterReplicaLogDir::default();
        elsewhere.path = StrBytes::from_static_str("/no/such/log/dir");
        elsewhere.topics = vec![topic];
        let mut req = AlterReplicaLogDirsRequest::default();
        req.dirs = vec![here, elsewhere];
        let resp: AlterReplicaLogDirsResponse = wire.call(ApiKey::AlterReplicaLogDirs, v, &req);
        let codes: Vec<i16> = resp
            .results
            .iter()
            .map(|t| t.partitions[0].error_code)
            .collect();
        assert_eq!(
            codes,
            vec![0, 57],
            "AlterReplicaLogDirs v{v}: NONE, LOG_DIR_NOT_FOUND"
        );
    }
    for v in versions(ApiKey::ElectLeaders) {
        let mut topic = elect_leaders_request::TopicPartitions::default();
        topic.topic = topic_name("admin-versions");
        topic.partitions = vec![0];
        let mut req = ElectLeadersRequest::default();
        req.topic_partitions = Some(vec![topic]);
        req.timeout_ms = 5_000;
        let resp: ElectLeadersResponse = wire.call(ApiKey::ElectLeaders, v, &req);
        assert_eq!(resp.error_code, 0, "ElectLeaders v{v}");
        assert_eq!(
            resp.replica_election_results[0].partition_result[0].error_code, 84,
            "ElectLeaders v{v}: ELECTION_NOT_NEEDED"
        );
    }
    for v in versions(ApiKey::DescribeQuorum) {
        let mut partition = describe_quorum_request::PartitionData::default();
        partition.partition_index = 0;
        let mut topic = describe_quorum_request::TopicData::default();
        topic.topic_name = topic_name("__cluster_metadata");
        topic.partitions = vec![partition];
        let mut req = DescribeQuorumRequest::default();
        req.topics = vec![topic];
        let resp: DescribeQuorumResponse = wire.call(ApiKey::DescribeQuorum, v, &req);
        let p = &resp.topics[0].partitions[0];
        assert_eq!(
            (resp.error_code, p.error_code),
            (0, 0),
            "DescribeQuorum v{v}"
        );
        assert_eq!(p.current_voters.len(), 1, "DescribeQuorum v{v}");
        assert_eq!(p.leader_id, p.current_voters[0].replica_id);
    }
    for v in versions(ApiKey::ListConfigResources) {
        let resp: ListConfigResourcesResponse = wire.call(
            ApiKey::ListConfigResources,
            v,
            &ListConfigResourcesRequest::default(),
        );
        assert_eq!(resp.error_code, 0, "ListConfigResources v{v}");
        let topics = resp
            .config_resources
            .iter()
            .filter(|r| r.resource_type == 2 && &*r.resource_name == "admin-versions")
            .count();
        // v0 (ListClientMetricsResources) lists client metrics only.
        assert_eq!(topics, usize::from(v >= 1), "ListConfigResources v{v}");
    }
}
