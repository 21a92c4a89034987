//! The transaction APIs on the wire: InitProducerId with a transactional
//! id, AddPartitionsToTxn 0-5 (v4+: batched, with `verify_only` for
//! brokers), AddOffsetsToTxn 0-4, EndTxn 0-5, TxnOffsetCommit 0-5,
//! DescribeTransactions 0, ListTransactions 0-2. Each maps the request to
//! the transaction coordinator (`txn`) or, for TxnOffsetCommit, the group
//! coordinator, and its typed errors to codes (`kafka::errors`).
//!
//! KIP-890 part 2 (the `transaction.version` 2 feature ApiVersions
//! advertises): EndTxn v5 bumps the epoch with each transaction's markers
//! and answers with the new producer id and epoch; Produce v12 adds a
//! partition to the transaction itself (the partition layer asks the
//! coordinator), TxnOffsetCommit v5 the group's offsets partition, so such a
//! client sends neither AddPartitionsToTxn nor AddOffsetsToTxn. Older
//! versions keep the epoch for the producer's life.
//!
//! Must never: hold transaction policy. Locks: none.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedTxn,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;

use super::errors::{outcome_code, txn_error_code, txn_outcome_code, txn_verify_error_code};
use super::{code, str_bytes};
use crate::group::{CommitRequest, GroupCoordinator, PartitionCommit};
use crate::partition::{TxnAsk, TxnVerifyError};
use crate::txn::{TransactionCoordinator, TxnState};

/// InitProducerId with a transactional id.
pub async fn init_producer_id(
    txns: &Arc<TransactionCoordinator>,
    req: &InitProducerIdRequest,
    transactional_id: &str,
) -> InitProducerIdResponse {
    let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let mut resp = InitProducerIdResponse::default();
    match txns
        .init_producer_id(transactional_id, req.transaction_timeout_ms, expected)
        .await
    {
        Ok((id, epoch)) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = epoch;
        }
        Err(e) => {
            resp.producer_id = ProducerId(-1);
            resp.producer_epoch = -1;
            resp.error_code = txn_error_code(&e);
        }
    }
    resp
}

/// Partitions of a request's topics, in order.
fn partitions_of(
    topics: &[add_partitions_to_txn_request::AddPartitionsToTxnTopic],
) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect()
}

/// Per-partition codes grouped by topic, in order.
pub fn topic_codes(codes: &[((String, i32), i16)]) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), error) in codes {
        let mut p = AddPartitionsToTxnPartitionResult::default();
        p.partition_index = *partition;
        p.partition_error_code = *error;
        match out.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.results_by_partition.push(p),
            _ => {
                let mut t = AddPartitionsToTxnTopicResult::default();
                t.name = TopicName(str_bytes(topic.clone()));
                t.results_by_partition.push(p);
                out.push(t);
            }
        }
    }
    out
}

/// One transaction of AddPartitionsToTxn: add, or (v4+ `verify_only`)
/// check that each partition is in the ongoing transaction.
async fn add_partitions_one(
    txns: &TransactionCoordinator,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    partitions: Vec<(String, i32)>,
) -> Vec<((String, i32), i16)> {
    if verify_only {
        return txns
            .verify(transactional_id, producer_id, producer_epoch, &partitions)
            .into_iter()
            .map(|(p, r)| (p, txn_outcome_code(&r)))
            .collect();
    }
    let outcome = txns
        .add_partitions(transactional_id, producer_id, producer_epoch, &partitions)
        .await;
    let error = txn_outcome_code(&outcome);
    partitions.into_iter().map(|p| (p, error)).collect()
}

/// AddPartitionsToTxn: v0-3 one transaction, v4+ a batch. `refused`: the
/// partitions authorization took out, with their codes.
pub async fn add_partitions_to_txn(
    txns: &TransactionCoordinator,
    req: AddPartitionsToTxnRequest,
    version: i16,
    refused: Vec<((String, i32), i16)>,
) -> AddPartitionsToTxnResponse {
    let mut resp = AddPartitionsToTxnResponse::default();
    if version <= 3 {
        let partitions = partitions_of(&req.v3_and_below_topics);
        let codes = if refused.is_empty() {
            add_partitions_one(
                txns,
                &req.v3_and_below_transactional_id.0,
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                false,
                partitions,
            )
            .await
        } else {
            // As Kafka: nothing is added when any partition is refused.
            let mut codes = refused;
            codes.extend(
                partitions
                    .into_iter()
                    .map(|p| (p, code::OPERATION_NOT_ATTEMPTED)),
            );
            codes
        };
        resp.results_by_topic_v3_and_below = topic_codes(&codes);
        return resp;
    }
    for t in req.transactions {
        let codes = add_partitions_one(
            txns,
            &t.transactional_id.0,
            t.producer_id.0,
            t.producer_epoch,
            t.verify_only,
            partitions_of(&t.topics),
        )
        .await;
        let mut result = AddPartitionsToTxnResult::default();
        result.transactional_id = t.transactional_id.clone();
        result.topic_results = topic_codes(&codes);
        resp.results_by_transaction.push(result);
    }
    resp
}

pub async fn add_offsets_to_txn(
    txns: &TransactionCoordinator,
    req: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let mut resp = AddOffsetsToTxnResponse::default();
    resp.error_code = txn_outcome_code(
        &txns
            .add_offsets(
                &req.transactional_id.0,
                req.producer_id.0,
                req.producer_epoch,
                &req.group_id.0,
            )
            .await,
    );
    resp
}

pub async fn end_txn(
    txns: &Arc<TransactionCoordinator>,
    req: EndTxnRequest,
    version: i16,
) -> EndTxnResponse {
    let mut resp = EndTxnResponse::default();
    let outcome = txns
        .end_txn(
            &req.transactional_id.0,
            req.producer_id.0,
            req.producer_epoch,
            req.committed,
            version >= 5,
        )
        .await;
    let (id, epoch) = match outcome {
        Ok(answer) => answer,
        Err(e) => {
            resp.error_code = txn_error_code(&e);
            (-1, -1)
        }
    };
    if version >= 5 {
        resp.producer_id = ProducerId(id);
        resp.producer_epoch = epoch;
    }
    resp
}

/// TxnOffsetCommit v5+ (KIP-890 part 2): the group's offsets partition
/// joins the producer's transaction here, as AddOffsetsToTxn did before.
async fn add_offsets_partition(
    txns: &Arc<TransactionCoordinator>,
    req: &TxnOffsetCommitRequest,
) -> Result<(), i16> {
    let partition = txns
        .offsets_partition(&req.group_id.0)
        .map_err(|e| txn_error_code(&e))?;
    let verdicts = Arc::clone(txns)
        .ask_for_partitions(
            TxnAsk::Add,
            req.transactional_id.0.to_string(),
            req.producer_id.0,
            req.producer_epoch,
            vec![partition],
        )
        .await;
    match verdicts.into_iter().next() {
        Some((_, Ok(()))) => Ok(()),
        Some((_, Err(e))) => Err(match e {
            // The group coordinator answers: its own codes send the
            // client back to find it, so the transaction's are told apart.
            TxnVerifyError::NotCoordinator => code::COORDINATOR_NOT_AVAILABLE,
            TxnVerifyError::ConcurrentTransactions => code::CONCURRENT_TRANSACTIONS,
            other => txn_verify_error_code(&other),
        }),
        None => Err(code::COORDINATOR_NOT_AVAILABLE),
    }
}

pub async fn txn_offset_commit(
    groups: &GroupCoordinator,
    txns: &Arc<TransactionCoordinator>,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    if version >= 5 {
        if let Err(error) = add_offsets_partition(txns, &req).await {
            return txn_offset_commit_refused(&req, error);
        }
    }
    let partitions: Vec<PartitionCommit> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| PartitionCommit {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let commit = CommitRequest {
        group_id: req.group_id.0.to_string(),
        member_id: if version >= 3 {
            req.member_id.to_string()
        } else {
            String::new()
        },
        group_instance_id: None,
        generation_id: if version >= 3 { req.generation_id } else { -1 },
        partitions: partitions.clone(),
    };
    let outcomes = groups
        .txn_commit_offsets(req.producer_id.0, req.producer_epoch, commit)
        .await;
    let mut resp = TxnOffsetCommitResponse::default();
    for (p, outcome) in partitions.iter().zip(&outcomes) {
        let mut r = TxnOffsetCommitResponsePartition::default();
        r.partition_index = p.partition;
        r.error_code = outcome_code(outcome);
        match resp.topics.last_mut() {
            Some(t) if t.name.0.as_str() == p.topic => t.partitions.push(r),
            _ => {
                let mut t = TxnOffsetCommitResponseTopic::default();
                t.name = TopicName(str_bytes(p.topic.clone()));
                t.partitions.push(r);
                resp.topics.push(t);
            }
        }
    }
    resp
}

pub fn describe_transactions(
    txns: &TransactionCoordinator,
    req: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let ids: Vec<String> = req
        .transactional_ids
        .iter()
        .map(|t| t.0.to_string())
        .collect();
    let mut resp = DescribeTransactionsResponse::default();
    for (id, found) in ids.iter().zip(txns.describe(&ids)) {
        let mut d = DescribedTxn::default();
        d.transactional_id = TransactionalId(str_bytes(id.clone()));
        match found {
            Ok(m) => {
                d.transaction_state = str_bytes(m.state.name());
                d.transaction_timeout_ms = m.timeout_ms;
                d.transaction_start_time_ms = m.start_ms;
                d.producer_id = ProducerId(m.producer_id);
                d.producer_epoch = m.producer_epoch;
                let partitions: Vec<(String, i32)> = m.partitions.iter().cloned().collect();
                for (topic, ps) in crate::txn::by_topic(&partitions) {
                    let mut t = TopicData::default();
                    t.topic = TopicName(str_bytes(topic));
                    t.partitions = ps;
                    d.topics.push(t);
                }
            }
            Err(e) => {
                d.error_code = txn_error_code(&e);
                d.transaction_state = str_bytes("");
                d.producer_id = ProducerId(-1);
                d.producer_epoch = -1;
                d.transaction_start_time_ms = -1;
            }
        }
        resp.transaction_states.push(d);
    }
    resp
}

/// ListTransactions; `visible` says which transactional ids the client may
/// describe (the others are left out, as Kafka does).
pub fn list_transactions(
    txns: &TransactionCoordinator,
    req: ListTransactionsRequest,
    version: i16,
    visible: impl Fn(&str) -> bool,
) -> ListTransactionsResponse {
    let mut resp = ListTransactionsResponse::default();
    let mut states = Vec::new();
    for name in &req.state_filters {
        match TxnState::from_name(name) {
            Some(s) => states.push(s),
            None => resp.unknown_state_filters.push(name.clone()),
        }
    }
    if !req.state_filters.is_empty() && states.is_empty() {
        return resp;
    }
    let producer_ids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let min_duration = if version >= 1 {
        req.duration_filter
    } else {
        -1
    };
    let pattern = if version >= 2 {
        match req
            .transactional_id_pattern
            .as_ref()
            .filter(|p| !p.is_empty())
        {
            Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
                Ok(r) => Some(r),
                Err(_) => {
                    resp.error_code = code::INVALID_REQUEST;
                    return resp;
                }
            },
            None => None,
        }
    } else {
        None
    };
    for m in txns.list(&states, &producer_ids, min_duration) {
        if !visible(&m.transactional_id)
            || pattern
                .as_ref()
                .is_some_and(|r| !r.is_match(&m.transactional_id))
        {
            continue;
        }
        let mut t = ListedTxn::default();
        t.transactional_id = TransactionalId(str_bytes(m.transactional_id.clone()));
        t.producer_id = ProducerId(m.producer_id);
        t.transaction_state = str_bytes(m.state.name());
        resp.transaction_states.push(t);
    }
    resp
}

/// TxnOffsetCommit refused by authorization: every partition gets `error`.
pub fn txn_offset_commit_refused(
    req: &TxnOffsetCommitRequest,
    error: i16,
) -> TxnOffsetCommitResponse {
    let mut resp = TxnOffsetCommitResponse::default();
    resp.topics = req
        .topics
        .iter()
        .map(|t| {
            let mut topic = TxnOffsetCommitResponseTopic::default();
            topic.name = t.name.clone();
            topic.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = TxnOffsetCommitResponsePartition::default();
                    r.partition_index = p.partition_index;
                    r.error_code = error;
                    r
                })
                .collect();
            topic
        })
        .collect();
    resp
}

/// DescribeTransactions entries for ids the client may not describe.
pub fn describe_refused(ids: Vec<TransactionalId>) -> Vec<DescribedTxn> {
    ids.into_iter()
        .map(|id| {
            let mut d = DescribedTxn::default();
            d.transactional_id = id;
            d.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
            d.producer_id = ProducerId(-1);
            d.producer_epoch = -1;
            d.transaction_start_time_ms = -1;
            d
        })
        .collect()
}
