//! The fuzz targets' entry points: each takes arbitrary bytes, drives one
//! path that hostile input reaches as the node drives it, and panics when a
//! promise of that path is broken. `fuzz/` (cargo fuzz, one small file per
//! target) and `tests/fuzz_corpus.rs` (every committed corpus input, under
//! `cargo test`) call them through [`TARGETS`]; docs/SECURITY.md, "Fuzzing",
//! says how to run them.
//!
//! - [`kafka_request`]: a request frame as `kafka::server` reads it: the
//!   frame size check, the pre-scan (`kafka::prescan`), the header, the body.
//! - [`record_batches`]: the `records` of a Produce partition through the
//!   batch validator (`log::batch`), then what the log and its readers do
//!   with an accepted batch.
//! - [`sasl_messages`]: SASL tokens as a SaslAuthenticate carries them:
//!   PLAIN messages and SCRAM client-first / client-final messages through
//!   the server side of the exchange (`security::scram`).
//! - [`shop_commands`]: request bodies of the shop's commands (orders,
//!   payments, deliveries, cancellations, simulator settings) through the
//!   validation the REST handlers run (`app::fuzzing`).
//!
//! Allocation checks need [`CountingAllocator`] as the process's global
//! allocator (the fuzz targets and the replay test install it); without it
//! they are skipped.
//!
//! Must never: be called by the node; hold state between inputs (a fuzz
//! input must reproduce on its own). Locks: none.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::RecordBatchDecoder;

use crate::alloc::Allocator;
use crate::kafka::prescan;
use crate::kafka::supported_range;
use crate::log::batch;

/// A fuzz target: its name (the cargo fuzz target and the corpus folder
/// `fuzz/corpus/<name>`) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every fuzz target. Adding one: a function here and a line in this table,
/// and `fuzz/fuzz_targets/<name>.rs` with its `[[bin]]` in `fuzz/Cargo.toml`
/// (docs/SECURITY.md, "Fuzzing").
pub const TARGETS: &[Target] = &[
    ("kafka_request", kafka_request),
    ("record_batches", record_batches),
    ("sasl_messages", sasl_messages),
    ("shop_commands", shop_commands),
];

// -- allocation accounting ------------------------------------------------------

/// The node's allocator, counting what the current thread allocates while a
/// measurement is open ([`measure`]). Thread-local, so tests running side
/// by side do not see each other's allocations.
pub struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Bytes allocated minus bytes freed since the measurement opened.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The most `LIVE` reached.
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static OPEN: Cell<bool> = const { Cell::new(false) };
}

fn count(delta: isize) {
    let _ = OPEN.try_with(|open| {
        if open.get() {
            let live = LIVE.with(|l| {
                l.set(l.get() + delta);
                l.get()
            });
            PEAK.with(|p| p.set(p.get().max(live)));
        }
    });
}

// SAFETY: forwards every call to `Allocator` with the caller's arguments; the
// counting touches only const-initialised thread-locals (no allocation).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        COUNTING.store(true, Ordering::Relaxed);
        count(layout.size() as isize);
        // SAFETY: forwarded.
        unsafe { Allocator.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: forwarded.
        unsafe { Allocator.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        COUNTING.store(true, Ordering::Relaxed);
        count(layout.size() as isize);
        // SAFETY: forwarded.
        unsafe { Allocator.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded.
        unsafe { Allocator.realloc(ptr, layout, new_size) }
    }
}

/// Run `f` and return its result and the most bytes it had allocated at
/// once (`None` when [`CountingAllocator`] is not the global allocator).
fn measure<T>(f: impl FnOnce() -> T) -> (T, Option<usize>) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    OPEN.with(|o| o.set(true));
    let out = f();
    OPEN.with(|o| o.set(false));
    let peak = PEAK.with(Cell::get).max(0) as usize;
    (out, COUNTING.load(Ordering::Relaxed).then_some(peak))
}

/// Run `f`, turning a panic into `None` (quietly: the caller asserts).
fn unwinding<T>(f: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

// -- Kafka requests ---------------------------------------------------------------

/// The pre-scan's limit on one request's decoded size: the default request
/// budget (`--queued-max-request-bytes`, 256 MiB) over its handling factor.
const LARGEST_DECODED: usize = 256 * 1024 * 1024 / 3;

/// A request frame (without its size prefix) as `kafka::server` handles it:
/// a frame under 8 bytes is refused; the pre-scan checks its lengths and
/// estimates its decoded size; an unknown API or unsupported version is
/// refused (or answered, for ApiVersions) without decoding; otherwise the
/// header and then the body are decoded (the server does that inside
/// `catch_unwind`).
///
/// Panics when: the pre-scan panics; a frame the pre-scan accepted makes
/// the decoder panic (the pre-scan must never accept a length the frame
/// cannot hold); or decoding it allocates more than the pre-scan estimated
/// (what the request budget is charged). (Whether the decoder takes a frame
/// the pre-scan refused is `kafka::prescan`'s own tests' business: under
/// libFuzzer any panic aborts, even one the server would contain.)
pub fn kafka_request(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let estimate = prescan::decoded_size(data, LARGEST_DECODED);
    let api_key = i16::from_be_bytes([data[0], data[1]]);
    let version = i16::from_be_bytes([data[2], data[3]]);
    let Ok(api) = ApiKey::try_from(api_key) else {
        return;
    };
    match supported_range(api) {
        Some((min, max)) if (min..=max).contains(&version) => {}
        _ => return,
    }
    let Ok(estimate) = estimate else {
        // Refused before decoding: the server closes the connection.
        return;
    };
    // The frame as the server holds it: read into a zeroed buffer, frozen.
    let mut frame = BytesMut::zeroed(data.len());
    frame.copy_from_slice(data);
    let frame = frame.freeze();
    let (decoded, peak) = measure(|| unwinding(|| decode_request(frame, api, version)));
    let Some(decoded) = decoded else {
        panic!("{api:?} v{version}: the pre-scan accepted a frame the decoder panics on");
    };
    if let (true, Some(peak)) = (decoded, peak) {
        assert!(
            peak <= estimate,
            "{api:?} v{version}: decoding allocated {peak} bytes, the pre-scan estimated {estimate}"
        );
    }
}

/// Decode header and body as the server does: whether both decoded.
fn decode_request(mut frame: Bytes, api: ApiKey, version: i16) -> bool {
    let Ok(_header) = RequestHeader::decode(&mut frame, api.request_header_version(version)) else {
        return false;
    };
    decode_body(api, &mut frame, version).is_some_and(|decoded| decoded)
}

/// Decode a request body as the handler of `api` does (`server::HANDLERS`):
/// whether it decoded, or `None` for an API without a handler here.
fn decode_body(api: ApiKey, body: &mut Bytes, version: i16) -> Option<bool> {
    fn ok<T: Decodable>(body: &mut Bytes, version: i16) -> Option<bool> {
        Some(T::decode(body, version).is_ok())
    }
    match api {
        ApiKey::Produce => ok::<ProduceRequest>(body, version),
        ApiKey::Fetch => ok::<FetchRequest>(body, version),
        ApiKey::ListOffsets => ok::<ListOffsetsRequest>(body, version),
        ApiKey::Metadata => ok::<MetadataRequest>(body, version),
        ApiKey::ApiVersions => ok::<ApiVersionsRequest>(body, version),
        ApiKey::CreateTopics => ok::<CreateTopicsRequest>(body, version),
        ApiKey::DeleteTopics => ok::<DeleteTopicsRequest>(body, version),
        ApiKey::DeleteRecords => ok::<DeleteRecordsRequest>(body, version),
        ApiKey::InitProducerId => ok::<InitProducerIdRequest>(body, version),
        ApiKey::OffsetForLeaderEpoch => ok::<OffsetForLeaderEpochRequest>(body, version),
        ApiKey::DescribeConfigs => ok::<DescribeConfigsRequest>(body, version),
        ApiKey::AlterConfigs => ok::<AlterConfigsRequest>(body, version),
        ApiKey::CreatePartitions => ok::<CreatePartitionsRequest>(body, version),
        ApiKey::IncrementalAlterConfigs => ok::<IncrementalAlterConfigsRequest>(body, version),
        ApiKey::DescribeCluster => ok::<DescribeClusterRequest>(body, version),
        ApiKey::FindCoordinator => ok::<FindCoordinatorRequest>(body, version),
        ApiKey::JoinGroup => ok::<JoinGroupRequest>(body, version),
        ApiKey::SyncGroup => ok::<SyncGroupRequest>(body, version),
        ApiKey::Heartbeat => ok::<HeartbeatRequest>(body, version),
        ApiKey::LeaveGroup => ok::<LeaveGroupRequest>(body, version),
        ApiKey::DescribeGroups => ok::<DescribeGroupsRequest>(body, version),
        ApiKey::ListGroups => ok::<ListGroupsRequest>(body, version),
        ApiKey::DeleteGroups => ok::<DeleteGroupsRequest>(body, version),
        ApiKey::OffsetCommit => ok::<OffsetCommitRequest>(body, version),
        ApiKey::OffsetFetch => ok::<OffsetFetchRequest>(body, version),
        ApiKey::OffsetDelete => ok::<OffsetDeleteRequest>(body, version),
        ApiKey::SaslHandshake => ok::<SaslHandshakeRequest>(body, version),
        ApiKey::SaslAuthenticate => ok::<SaslAuthenticateRequest>(body, version),
        ApiKey::DescribeUserScramCredentials => {
            ok::<DescribeUserScramCredentialsRequest>(body, version)
        }
        ApiKey::AlterUserScramCredentials => ok::<AlterUserScramCredentialsRequest>(body, version),
        ApiKey::DescribeAcls => ok::<DescribeAclsRequest>(body, version),
        ApiKey::CreateAcls => ok::<CreateAclsRequest>(body, version),
        ApiKey::DeleteAcls => ok::<DeleteAclsRequest>(body, version),
        ApiKey::DescribeClientQuotas => ok::<DescribeClientQuotasRequest>(body, version),
        ApiKey::AlterClientQuotas => ok::<AlterClientQuotasRequest>(body, version),
        ApiKey::ConsumerGroupHeartbeat => ok::<ConsumerGroupHeartbeatRequest>(body, version),
        ApiKey::ConsumerGroupDescribe => ok::<ConsumerGroupDescribeRequest>(body, version),
        ApiKey::ShareGroupHeartbeat => ok::<ShareGroupHeartbeatRequest>(body, version),
        ApiKey::ShareGroupDescribe => ok::<ShareGroupDescribeRequest>(body, version),
        ApiKey::ShareFetch => ok::<ShareFetchRequest>(body, version),
        ApiKey::ShareAcknowledge => ok::<ShareAcknowledgeRequest>(body, version),
        ApiKey::DescribeShareGroupOffsets => ok::<DescribeShareGroupOffsetsRequest>(body, version),
        ApiKey::AlterShareGroupOffsets => ok::<AlterShareGroupOffsetsRequest>(body, version),
        ApiKey::DeleteShareGroupOffsets => ok::<DeleteShareGroupOffsetsRequest>(body, version),
        ApiKey::AddPartitionsToTxn => ok::<AddPartitionsToTxnRequest>(body, version),
        ApiKey::AddOffsetsToTxn => ok::<AddOffsetsToTxnRequest>(body, version),
        ApiKey::EndTxn => ok::<EndTxnRequest>(body, version),
        ApiKey::TxnOffsetCommit => ok::<TxnOffsetCommitRequest>(body, version),
        ApiKey::DescribeTransactions => ok::<DescribeTransactionsRequest>(body, version),
        ApiKey::ListTransactions => ok::<ListTransactionsRequest>(body, version),
        ApiKey::WriteTxnMarkers => ok::<WriteTxnMarkersRequest>(body, version),
        ApiKey::DescribeProducers => ok::<DescribeProducersRequest>(body, version),
        ApiKey::AlterPartitionReassignments => {
            ok::<AlterPartitionReassignmentsRequest>(body, version)
        }
        ApiKey::ListPartitionReassignments => {
            ok::<ListPartitionReassignmentsRequest>(body, version)
        }
        ApiKey::UnregisterBroker => ok::<UnregisterBrokerRequest>(body, version),
        ApiKey::DescribeTopicPartitions => ok::<DescribeTopicPartitionsRequest>(body, version),
        ApiKey::DescribeLogDirs => ok::<DescribeLogDirsRequest>(body, version),
        ApiKey::AlterReplicaLogDirs => ok::<AlterReplicaLogDirsRequest>(body, version),
        ApiKey::ElectLeaders => ok::<ElectLeadersRequest>(body, version),
        ApiKey::DescribeQuorum => ok::<DescribeQuorumRequest>(body, version),
        ApiKey::ListConfigResources => ok::<ListConfigResourcesRequest>(body, version),
        _ => None,
    }
}

// -- record batches -----------------------------------------------------------------

/// The `records` of one Produce partition through the batch validator, as
/// the partition layer runs it (`log::batch::split_and_validate`), then what
/// happens to an accepted batch: offsets assigned (`assign`, with and
/// without LogAppendTime), and its records decoded by the readers that
/// decode stored batches (compaction, timestamp lookup, consumers).
///
/// The first byte is not part of the records: its low bit asks for the
/// CRC-32C of every batch to be fixed first (so inputs reach past the
/// checksum), its next bits pick `max.message.bytes`.
///
/// Panics when: the validator panics; it accepts batches that do not tile
/// the input, break the size limit, fail their checksum, or (uncompressed)
/// whose records do not decode to the count their header states; decoding
/// an accepted compressed batch panics; offset assignment breaks the batch.
pub fn record_batches(data: &[u8]) {
    let Some((&mode, records)) = data.split_first() else {
        return;
    };
    let mut records = records.to_vec();
    if mode & 1 == 1 {
        fix_checksums(&mut records);
    }
    let max_message_bytes = match (mode >> 1) & 3 {
        0 => 1024 * 1024,
        1 => 64,
        2 => 200,
        _ => 1000,
    };
    let Some(result) = unwinding(|| batch::split_and_validate(&records, max_message_bytes)) else {
        panic!("the batch validator panicked");
    };
    let Ok(batches) = result else {
        return;
    };
    let total: usize = batches.iter().map(|b| b.bytes.len()).sum();
    assert_eq!(
        total,
        records.len(),
        "accepted batches do not tile the input"
    );
    for produced in batches {
        let header = produced.header;
        assert!(
            produced.bytes.len() <= max_message_bytes,
            "over max.message.bytes"
        );
        assert_eq!(produced.bytes.len(), header.total_len());
        assert!(header.record_count > 0);
        assert!(batch::check_crc(&produced.bytes, &header).is_ok());
        let decoded = unwinding(|| {
            RecordBatchDecoder::decode(&mut Bytes::from(produced.bytes.to_vec()))
                .map(|set| set.records.len())
        });
        match decoded {
            None => panic!("an accepted batch makes the record decoder panic"),
            // Compressed contents are not checked on produce (docs/SECURITY.md).
            Some(_) if header.compression() != 0 => {}
            Some(Err(e)) => panic!("an accepted batch does not decode: {e}"),
            Some(Ok(n)) => assert_eq!(
                n, header.record_count as usize,
                "an accepted batch holds another number of records than it says"
            ),
        }
        for append_time in [None, Some(1_700_000_000_000)] {
            let mut stored = produced.bytes.clone();
            batch::assign(&mut stored, 1 << 40, 7, append_time);
            let again = batch::split_and_validate(&stored, usize::MAX)
                .unwrap_or_else(|e| panic!("an assigned batch is refused: {e}"));
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].header.base_offset, 1 << 40);
            assert_eq!(again[0].header.record_count, header.record_count);
        }
    }
}

/// Give every batch the fuzzer framed the CRC-32C of its contents.
fn fix_checksums(records: &mut [u8]) {
    let mut at = 0;
    while records.len() - at >= batch::HEADER_LEN {
        let length = i32::from_be_bytes([
            records[at + 8],
            records[at + 9],
            records[at + 10],
            records[at + 11],
        ]);
        let Some(end) = usize::try_from(length)
            .ok()
            .and_then(|l| (at + batch::LOG_OVERHEAD).checked_add(l))
            .filter(|end| *end <= records.len() && *end >= at + batch::HEADER_LEN)
        else {
            return;
        };
        let crc = crc32c::crc32c(&records[at + 21..end]);
        records[at + 17..at + 21].copy_from_slice(&crc.to_be_bytes());
        at = end;
    }
}

// -- the shop's REST bodies -----------------------------------------------------------

/// Request bodies of the shop's commands, validated and applied to one
/// order as the REST handlers and the command side do (`app::fuzzing`).
///
/// Input: commands separated by the byte 0xFF (never part of UTF-8 JSON);
/// the first byte of each picks the endpoint, the rest is its body.
///
/// Panics when: validation panics or answers a status other than 400, 409
/// or 422; an accepted body breaks the documented limits; an accepted
/// command leaves the order in a state the rules forbid (refunds above what
/// was paid, a payment after cancellation, a delivery before payment); an
/// event does not read back as written.
pub fn shop_commands(data: &[u8]) {
    crate::app::fuzzing::shop_commands(data);
}

// -- SASL ---------------------------------------------------------------------

/// SASL tokens through the server side of PLAIN and SCRAM. The first byte
/// picks the mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); for SCRAM the
/// rest is a client-first and a client-final message separated by a NUL
/// byte. The user `u` has the password `p` (salted with one iteration, so
/// each input is cheap; the server nonce is fixed so an exchange reproduces). Promises: no panic; a
/// client-first the server answers names its user, and its server-first
/// carries the client's nonce; an exchange succeeds only with the proof of
/// `u`'s password (its answer is `v=` and the server signature); PLAIN
/// accepts only `u` with `p`.
pub fn sasl_messages(data: &[u8]) {
    use crate::security::scram::{self, Mechanism, ScramCredential, ScramServer};

    const SERVER_NONCE: &str = "fuzz-server-nonce";
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mechanism = match selector % 3 {
        0 => {
            if let Some((user, password)) = scram::parse_plain(rest) {
                assert!(!user.is_empty(), "PLAIN accepted an empty user");
                if user == "u" {
                    let credential = plain_credential();
                    let ok = credential.matches_password(Mechanism::ScramSha256, &password);
                    assert_eq!(ok, password == b"p", "PLAIN decided wrongly for u");
                }
            }
            return;
        }
        1 => Mechanism::ScramSha256,
        _ => Mechanism::ScramSha512,
    };
    let (first, last) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let user = scram::client_first_user(first);
    // `p` salted with one iteration: cheap enough for every input.
    let salted = mechanism.salted_password(b"p", b"fixed salt", 1);
    let credential = match &user {
        Ok(u) if u == "u" => Some(ScramCredential::from_salted_password(
            mechanism,
            b"fixed salt".to_vec(),
            1,
            &salted,
        )),
        _ => None,
    };
    let Ok((server, server_first)) =
        ScramServer::start_with_nonce(mechanism, first, credential.clone(), SERVER_NONCE)
    else {
        assert!(user.is_err(), "a client-first naming a user was refused");
        return;
    };
    assert_eq!(Ok(server.user()), user.as_deref(), "the exchange's user");
    let server_first = String::from_utf8(server_first).expect("server-first is UTF-8");
    assert!(
        server_first.starts_with("r=") && server_first.contains(SERVER_NONCE),
        "server-first without the nonce: {server_first}"
    );
    if let Ok(server_final) = server.finish(last) {
        assert!(
            credential.is_some(),
            "an exchange without a credential succeeded"
        );
        assert!(
            server_final.starts_with(b"v="),
            "server-final without a signature"
        );
    }
}

/// `u`'s PLAIN credential (password `p`), derived once.
fn plain_credential() -> &'static crate::security::scram::ScramCredential {
    use crate::security::scram::{Mechanism, ScramCredential};
    static CREDENTIAL: std::sync::OnceLock<ScramCredential> = std::sync::OnceLock::new();
    CREDENTIAL.get_or_init(|| {
        let salted = Mechanism::ScramSha256.salted_password(b"p", b"fixed salt", 1);
        ScramCredential::from_salted_password(
            Mechanism::ScramSha256,
            b"fixed salt".to_vec(),
            1,
            &salted,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_api_has_a_body_decoder() {
        for (api, min, _) in crate::kafka::SUPPORTED_APIS {
            let decoded = decode_body(*api, &mut Bytes::new(), *min);
            assert!(decoded.is_some(), "{api:?}: add it to fuzzing::decode_body");
        }
    }
}
