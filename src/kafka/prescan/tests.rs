//! The pre-scan against kafka-protocol: frames generated from the layouts
//! must decode and encode back to the same bytes at every supported version
//! (so the layouts are the codec's), and the pre-scan must agree with the
//! decoder on where every frame ends, refuse every truncated frame, and
//! never be stricter than the decoder.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::schema::{message_of, Field, Kind, Message, Schema};
use super::*;
use crate::kafka::SUPPORTED_APIS;

/// Frames generated per API and version.
const FRAMES: usize = 60;

/// Writes frames of one API version from its layout, with random contents.
struct Generator {
    rng: StdRng,
    version: i16,
    flexible: bool,
    /// Writing an entry of the fewest bytes its layout allows.
    minimal: bool,
}

impl Generator {
    fn uvarint(out: &mut Vec<u8>, mut v: u32) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn length(&self, out: &mut Vec<u8>, n: usize, wide: bool) {
        if self.flexible {
            Self::uvarint(out, n as u32 + 1);
        } else if wide {
            out.extend_from_slice(&(n as i32).to_be_bytes());
        } else {
            out.extend_from_slice(&(n as i16).to_be_bytes());
        }
    }

    fn count(&mut self, most: usize) -> usize {
        if self.minimal {
            0
        } else {
            self.rng.gen_range(0..=most)
        }
    }

    fn string(&mut self, out: &mut Vec<u8>, wide: bool) {
        let n = self.count(4);
        self.length(out, n, wide);
        for _ in 0..n {
            out.push(self.rng.gen_range(b'a'..=b'z'));
        }
    }

    fn field(&mut self, out: &mut Vec<u8>, kind: Kind) {
        match kind {
            // Booleans must read back as they were written.
            Kind::Fixed(1) => out.push(self.rng.gen_range(0..=1)),
            Kind::Fixed(n) => out.extend((0..n).map(|_| self.rng.gen::<u8>())),
            Kind::Str => self.string(out, false),
            Kind::Bytes => self.string(out, true),
            Kind::Int8s => {
                let n = self.count(3);
                self.length(out, n, true);
                out.extend((0..n).map(|_| self.rng.gen::<u8>()));
            }
            Kind::Int32s => {
                let n = self.count(3);
                self.length(out, n, true);
                out.extend((0..n * 4).map(|_| self.rng.gen::<u8>()));
            }
            Kind::Int64s => {
                let n = self.count(3);
                self.length(out, n, true);
                out.extend((0..n * 8).map(|_| self.rng.gen::<u8>()));
            }
            Kind::Strs => {
                let n = self.count(3);
                self.length(out, n, true);
                for _ in 0..n {
                    self.string(out, false);
                }
            }
            Kind::Structs(schema) => {
                // Sometimes many entries of the fewest bytes, so a smallest
                // entry size the pre-scan overstates shows up as a refusal.
                let (n, minimal) = match (self.minimal, self.rng.gen_range(0..4)) {
                    (true, _) => (0, true),
                    (false, 0) => (self.rng.gen_range(1..=40), true),
                    (false, _) => (self.rng.gen_range(0..=2), false),
                };
                self.length(out, n, true);
                let outer = std::mem::replace(&mut self.minimal, minimal);
                for _ in 0..n {
                    self.structure(out, schema);
                }
                self.minimal = outer;
            }
            Kind::OptionalStruct(schema) => {
                if self.count(1) == 0 {
                    out.push(0xff);
                } else {
                    out.push(1);
                    self.structure(out, schema);
                }
            }
            Kind::Struct(schema) => self.structure(out, schema),
        }
    }

    fn structure(&mut self, out: &mut Vec<u8>, schema: &Schema) {
        let version = self.version;
        for field in schema.fields.iter().filter(|f| f.present_in(version)) {
            self.field(out, field.kind);
        }
        if self.flexible {
            self.tagged_fields(out, schema.known_tags);
        }
    }

    /// Known tags first, then unknown ones, each in ascending order (as the
    /// codec writes them back).
    fn tagged_fields(&mut self, out: &mut Vec<u8>, known: &[(u32, Field)]) {
        let mut fields: Vec<(u32, Vec<u8>)> = Vec::new();
        let version = self.version;
        for (tag, field) in known.iter().filter(|(_, f)| f.present_in(version)) {
            if self.count(1) == 1 {
                let mut value = Vec::new();
                self.field(&mut value, field.kind);
                fields.push((*tag, value));
            }
        }
        let mut tag = 100;
        for _ in 0..self.count(2) {
            tag += self.rng.gen_range(1..=200);
            let n = self.rng.gen_range(0..=3);
            fields.push((tag, (0..n).map(|_| self.rng.gen::<u8>()).collect()));
        }
        Self::uvarint(out, fields.len() as u32);
        for (tag, value) in fields {
            Self::uvarint(out, tag);
            Self::uvarint(out, value.len() as u32);
            out.extend_from_slice(&value);
        }
    }

    /// A whole frame (without its size prefix): header, then body.
    fn frame(&mut self, message: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(message.api as i16).to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.rng.gen::<i32>().to_be_bytes());
        let header_version = message.api.request_header_version(self.version);
        self.flexible = false;
        self.string(&mut out, false);
        if header_version >= 2 {
            self.flexible = true;
            self.tagged_fields(&mut out, &[]);
        }
        self.flexible = message.flexible(self.version);
        self.structure(&mut out, message.body);
        out
    }
}

/// Every supported API and version with its layout.
fn every_version() -> impl Iterator<Item = (&'static Message, i16)> {
    SUPPORTED_APIS.iter().flat_map(|(api, min, max)| {
        let message = message_of(*api).unwrap_or_else(|| panic!("{api:?} has no layout"));
        (*min..=*max).map(move |v| (message, v))
    })
}

fn frames(message: &Message, version: i16) -> Vec<Vec<u8>> {
    let mut generator = Generator {
        rng: StdRng::seed_from_u64(((message.api as u64) << 16) | version as u64),
        version,
        flexible: false,
        minimal: false,
    };
    (0..FRAMES).map(|_| generator.frame(message)).collect()
}

/// Decode a body as `api`'s request at `version` and encode it back.
fn decode_and_encode(api: ApiKey, buf: &mut Bytes, version: i16) -> anyhow::Result<BytesMut> {
    fn again<T: Decodable + Encodable>(buf: &mut Bytes, version: i16) -> anyhow::Result<BytesMut> {
        let message = T::decode(buf, version)?;
        let mut out = BytesMut::new();
        message.encode(&mut out, version)?;
        Ok(out)
    }
    match api {
        ApiKey::Produce => again::<ProduceRequest>(buf, version),
        ApiKey::Fetch => again::<FetchRequest>(buf, version),
        ApiKey::ListOffsets => again::<ListOffsetsRequest>(buf, version),
        ApiKey::Metadata => again::<MetadataRequest>(buf, version),
        ApiKey::ApiVersions => again::<ApiVersionsRequest>(buf, version),
        ApiKey::CreateTopics => again::<CreateTopicsRequest>(buf, version),
        ApiKey::DeleteTopics => again::<DeleteTopicsRequest>(buf, version),
        ApiKey::DeleteRecords => again::<DeleteRecordsRequest>(buf, version),
        ApiKey::InitProducerId => again::<InitProducerIdRequest>(buf, version),
        ApiKey::OffsetForLeaderEpoch => again::<OffsetForLeaderEpochRequest>(buf, version),
        ApiKey::DescribeConfigs => again::<DescribeConfigsRequest>(buf, version),
        ApiKey::AlterConfigs => again::<AlterConfigsRequest>(buf, version),
        ApiKey::CreatePartitions => again::<CreatePartitionsRequest>(buf, version),
        ApiKey::IncrementalAlterConfigs => again::<IncrementalAlterConfigsRequest>(buf, version),
        ApiKey::DescribeCluster => again::<DescribeClusterRequest>(buf, version),
        ApiKey::FindCoordinator => again::<FindCoordinatorRequest>(buf, version),
        ApiKey::JoinGroup => again::<JoinGroupRequest>(buf, version),
        ApiKey::SyncGroup => again::<SyncGroupRequest>(buf, version),
        ApiKey::Heartbeat => again::<HeartbeatRequest>(buf, version),
        ApiKey::LeaveGroup => again::<LeaveGroupRequest>(buf, version),
        ApiKey::DescribeGroups => again::<DescribeGroupsRequest>(buf, version),
        ApiKey::ListGroups => again::<ListGroupsRequest>(buf, version),
        ApiKey::DeleteGroups => again::<DeleteGroupsRequest>(buf, version),
        ApiKey::OffsetCommit => again::<OffsetCommitRequest>(buf, version),
        ApiKey::OffsetFetch => again::<OffsetFetchRequest>(buf, version),
        ApiKey::OffsetDelete => again::<OffsetDeleteRequest>(buf, version),
        ApiKey::SaslHandshake => again::<SaslHandshakeRequest>(buf, version),
        ApiKey::SaslAuthenticate => again::<SaslAuthenticateRequest>(buf, version),
        ApiKey::DescribeUserScramCredentials => {
            again::<DescribeUserScramCredentialsRequest>(buf, version)
        }
        ApiKey::AlterUserScramCredentials => {
            again::<AlterUserScramCredentialsRequest>(buf, version)
        }
        ApiKey::DescribeAcls => again::<DescribeAclsRequest>(buf, version),
        ApiKey::CreateAcls => again::<CreateAclsRequest>(buf, version),
        ApiKey::DeleteAcls => again::<DeleteAclsRequest>(buf, version),
        ApiKey::DescribeClientQuotas => again::<DescribeClientQuotasRequest>(buf, version),
        ApiKey::AlterClientQuotas => again::<AlterClientQuotasRequest>(buf, version),
        ApiKey::ConsumerGroupHeartbeat => again::<ConsumerGroupHeartbeatRequest>(buf, version),
        ApiKey::ConsumerGroupDescribe => again::<ConsumerGroupDescribeRequest>(buf, version),
        ApiKey::ShareGroupHeartbeat => again::<ShareGroupHeartbeatRequest>(buf, version),
        ApiKey::ShareGroupDescribe => again::<ShareGroupDescribeRequest>(buf, version),
        ApiKey::ShareFetch => again::<ShareFetchRequest>(buf, version),
        ApiKey::ShareAcknowledge => again::<ShareAcknowledgeRequest>(buf, version),
        ApiKey::DescribeShareGroupOffsets => {
            again::<DescribeShareGroupOffsetsRequest>(buf, version)
        }
        ApiKey::AlterShareGroupOffsets => again::<AlterShareGroupOffsetsRequest>(buf, version),
        ApiKey::DeleteShareGroupOffsets => again::<DeleteShareGroupOffsetsRequest>(buf, version),
        ApiKey::AddPartitionsToTxn => again::<AddPartitionsToTxnRequest>(buf, version),
        ApiKey::AddOffsetsToTxn => again::<AddOffsetsToTxnRequest>(buf, version),
        ApiKey::EndTxn => again::<EndTxnRequest>(buf, version),
        ApiKey::TxnOffsetCommit => again::<TxnOffsetCommitRequest>(buf, version),
        ApiKey::DescribeTransactions => again::<DescribeTransactionsRequest>(buf, version),
        ApiKey::ListTransactions => again::<ListTransactionsRequest>(buf, version),
        ApiKey::AlterPartitionReassignments => {
            again::<AlterPartitionReassignmentsRequest>(buf, version)
        }
        ApiKey::ListPartitionReassignments => {
            again::<ListPartitionReassignmentsRequest>(buf, version)
        }
        ApiKey::UnregisterBroker => again::<UnregisterBrokerRequest>(buf, version),
        ApiKey::WriteTxnMarkers => again::<WriteTxnMarkersRequest>(buf, version),
        ApiKey::DescribeProducers => again::<DescribeProducersRequest>(buf, version),
        ApiKey::DescribeTopicPartitions => again::<DescribeTopicPartitionsRequest>(buf, version),
        ApiKey::DescribeLogDirs => again::<DescribeLogDirsRequest>(buf, version),
        ApiKey::AlterReplicaLogDirs => again::<AlterReplicaLogDirsRequest>(buf, version),
        ApiKey::ElectLeaders => again::<ElectLeadersRequest>(buf, version),
        ApiKey::DescribeQuorum => again::<DescribeQuorumRequest>(buf, version),
        ApiKey::ListConfigResources => again::<ListConfigResourcesRequest>(buf, version),
        other => anyhow::bail!("{other:?} is not served"),
    }
}

/// Decode a frame as the server does (header, then body) and encode the body
/// back. Returns the body's offset, the body encoded again and how many bytes
/// were left, or `None` when the codec refuses the frame (or panics on it).
fn codec_decode(api: ApiKey, version: i16, frame: &[u8]) -> Option<(usize, BytesMut, usize)> {
    std::panic::catch_unwind(|| {
        let mut buf = Bytes::copy_from_slice(frame);
        RequestHeader::decode(&mut buf, api.request_header_version(version)).ok()?;
        let body_at = frame.len() - buf.len();
        let encoded = decode_and_encode(api, &mut buf, version).ok()?;
        Some((body_at, encoded, buf.len()))
    })
    .ok()
    .flatten()
}

#[test]
fn every_layout_is_the_codecs_at_every_supported_version() {
    for (message, version) in every_version() {
        let api = message.api;
        for frame in frames(message, version) {
            let walked = walk(&frame, usize::MAX)
                .unwrap_or_else(|e| panic!("{api:?} v{version}: refused a valid frame: {e}"));
            assert_eq!(
                walked.pos(),
                frame.len(),
                "{api:?} v{version}: ends elsewhere"
            );
            let (body_at, encoded, left) = codec_decode(api, version, &frame)
                .unwrap_or_else(|| panic!("{api:?} v{version}: the codec refused {frame:?}"));
            assert_eq!(left, 0, "{api:?} v{version}: the codec left bytes");
            assert_eq!(
                &encoded[..],
                &frame[body_at..],
                "{api:?} v{version}: the codec wrote the body back differently"
            );
        }
    }
}

#[test]
fn every_truncated_frame_is_refused_at_every_version() {
    for (message, version) in every_version() {
        for frame in frames(message, version).iter().take(10) {
            for end in 0..frame.len() {
                match walk(&frame[..end], usize::MAX) {
                    Err(PrescanError::Truncated { .. } | PrescanError::TooManyEntries { .. }) => {}
                    other => panic!(
                        "{:?} v{version}: {} of {} bytes gave {:?}",
                        message.api,
                        end,
                        frame.len(),
                        other.map(|w| w.pos())
                    ),
                }
            }
        }
    }
}

#[test]
fn the_prescan_agrees_with_the_codec_on_altered_frames() {
    let mut rng = StdRng::seed_from_u64(7);
    for (message, version) in every_version() {
        let api = message.api;
        for mut frame in frames(message, version) {
            if frame.len() <= 4 {
                continue;
            }
            for _ in 0..rng.gen_range(1..=3) {
                let at = rng.gen_range(4..frame.len());
                frame[at] = rng.gen();
            }
            match walk(&frame, 1 << 20) {
                Ok(walked) => {
                    if let Some((_, _, left)) = codec_decode(api, version, &frame) {
                        assert_eq!(
                            frame.len() - left,
                            walked.pos(),
                            "{api:?} v{version}: {frame:?}"
                        );
                    }
                }
                // The codec must not take what the pre-scan calls truncated.
                Err(PrescanError::Truncated { .. } | PrescanError::NegativeLength { .. }) => {
                    assert!(
                        codec_decode(api, version, &frame).is_none(),
                        "{api:?} v{version}: the codec decodes what the pre-scan refused: {frame:?}"
                    );
                }
                // The codec would size a vector from the count: not tried here.
                Err(PrescanError::TooManyEntries { .. } | PrescanError::TooLarge { .. }) => {}
                Err(e) => panic!("{api:?} v{version}: {e}"),
            }
        }
    }
}

// -- Produce -------------------------------------------------------------------

/// A Produce frame of `topics` empty topic entries (no name, no partitions).
fn produce_of_empty_topics(version: i16, topics: usize) -> Vec<u8> {
    let flexible = version >= 9;
    let mut frame = Vec::new();
    frame.extend_from_slice(&(ApiKey::Produce as i16).to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // client id
    if flexible {
        frame.push(0); // header tags
        frame.push(0); // transactional id: null
    } else {
        frame.extend_from_slice(&(-1i16).to_be_bytes());
    }
    frame.extend_from_slice(&1i16.to_be_bytes()); // acks
    frame.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    if flexible {
        Generator::uvarint(&mut frame, topics as u32 + 1);
        for _ in 0..topics {
            frame.extend_from_slice(&[1, 1, 0]); // name "", no partitions, no tags
        }
        frame.push(0);
    } else {
        frame.extend_from_slice(&(topics as i32).to_be_bytes());
        for _ in 0..topics {
            frame.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        }
    }
    frame
}

#[test]
fn empty_topic_entries_are_charged_their_decoded_size_at_every_produce_version() {
    let topics = 100_000;
    let entry = std::mem::size_of::<TopicProduceData>();
    for version in 3..=11 {
        let frame = produce_of_empty_topics(version, topics);
        let decoded = decoded_size(&frame, usize::MAX).expect("valid");
        assert!(decoded >= topics * entry, "v{version}: {decoded}");
        assert!(decoded < topics * entry + 4096, "v{version}: {decoded}");
        // A third of a byte of frame per byte of memory at least.
        assert!(decoded > frame.len() * 10, "v{version}");
        assert!(matches!(
            decoded_size(&frame, topics * entry / 2),
            Err(PrescanError::TooLarge { .. })
        ));
    }
}

#[test]
fn a_count_the_frame_cannot_hold_is_refused_before_any_entry_is_read() {
    for version in 3..=11 {
        let mut frame = produce_of_empty_topics(version, 0);
        // Claim two billion topics in a frame of a few bytes.
        frame.truncate(frame.len() - if version >= 9 { 2 } else { 4 });
        if version >= 9 {
            Generator::uvarint(&mut frame, i32::MAX as u32);
        } else {
            frame.extend_from_slice(&i32::MAX.to_be_bytes());
        }
        frame.extend_from_slice(&[0; 64]);
        match decoded_size(&frame, usize::MAX) {
            Err(PrescanError::TooManyEntries { count, left, .. }) => {
                assert!(count >= i32::MAX as u64 - 1, "v{version}");
                assert_eq!(left, 64, "v{version}");
            }
            other => panic!("v{version}: {other:?}"),
        }
    }
}

#[test]
fn record_batches_cost_nothing_beyond_their_frame() {
    use kafka_protocol::messages::produce_request::PartitionProduceData;
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    for version in 3..=11i16 {
        let mut partition = PartitionProduceData::default();
        partition.records = Some(Bytes::from(vec![7u8; 8 << 20]));
        let mut topic = TopicProduceData::default();
        topic.name = TopicName(StrBytes::from_static_str("orders"));
        topic.partition_data = vec![partition; 4];
        let mut request = ProduceRequest::default();
        request.acks = -1;
        request.topic_data = vec![topic];
        let mut frame = BytesMut::new();
        let mut header = RequestHeader::default();
        header.request_api_key = ApiKey::Produce as i16;
        header.request_api_version = version;
        header
            .encode(&mut frame, ApiKey::Produce.request_header_version(version))
            .expect("header");
        request.encode(&mut frame, version).expect("body");
        let decoded = decoded_size(&frame, usize::MAX).expect("valid");
        assert!(
            decoded < 2048,
            "v{version}: {decoded} bytes for 32 MiB of records"
        );
    }
}
