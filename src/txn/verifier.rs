//! The KIP-890 verifier the partition layer asks before it accepts the
//! first transactional batch of a producer epoch on a partition: this
//! node's coordinator answers when it coordinates the transactional id,
//! else the id's coordinator elsewhere in the cluster (AddPartitionsToTxn
//! v4+, with `verify_only` for part 1, without it for part 2's implicit
//! add). TxnOffsetCommit v5 asks the same way for the group's offsets
//! partition.

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{TransactionCoordinator, TxnError};
use crate::partition::{TxnAsk, TxnVerifier, TxnVerifyError, VerifyResults};

/// Weak: the coordinator may be gone at shutdown.
pub(super) struct Verifier(pub Weak<TransactionCoordinator>);

fn verdict(e: TxnError) -> TxnVerifyError {
    match e {
        TxnError::NotCoordinator | TxnError::CoordinatorNotAvailable => {
            TxnVerifyError::NotCoordinator
        }
        TxnError::ProducerFenced => TxnVerifyError::ProducerFenced,
        TxnError::InvalidProducerEpoch => TxnVerifyError::InvalidProducerEpoch,
        TxnError::ConcurrentTransactions => TxnVerifyError::ConcurrentTransactions,
        _ => TxnVerifyError::NotInTransaction,
    }
}

/// A peer's error code for one partition, as the verifier's error.
fn verdict_of_code(code: i16) -> Result<(), TxnVerifyError> {
    use kafka_protocol::ResponseError as R;
    if code == 0 {
        return Ok(());
    }
    Err(match R::try_from_code(code) {
        Some(R::NotCoordinator | R::CoordinatorNotAvailable) => TxnVerifyError::NotCoordinator,
        Some(R::CoordinatorLoadInProgress) => TxnVerifyError::CoordinatorLoading,
        Some(R::ProducerFenced) => TxnVerifyError::ProducerFenced,
        Some(R::InvalidProducerEpoch) => TxnVerifyError::InvalidProducerEpoch,
        Some(R::ConcurrentTransactions) => TxnVerifyError::ConcurrentTransactions,
        _ => TxnVerifyError::NotInTransaction,
    })
}

impl TransactionCoordinator {
    /// Verify `partitions` are in the producer's ongoing transaction, or
    /// add them to it (`ask`), at whichever node coordinates the id.
    pub async fn ask_for_partitions(
        self: Arc<Self>,
        ask: TxnAsk,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> VerifyResults {
        let all = |e: TxnVerifyError| -> VerifyResults {
            partitions.iter().map(|p| (p.clone(), Err(e))).collect()
        };
        if self.coordinator_error(&transactional_id).is_ok() {
            return match ask {
                TxnAsk::Verify => self
                    .verify(&transactional_id, producer_id, producer_epoch, &partitions)
                    .into_iter()
                    .map(|(p, r)| (p, r.map_err(verdict)))
                    .collect(),
                TxnAsk::Add => match self
                    .add_partitions(&transactional_id, producer_id, producer_epoch, &partitions)
                    .await
                {
                    Ok(()) => partitions.iter().map(|p| (p.clone(), Ok(()))).collect(),
                    Err(e) => all(verdict(e)),
                },
            };
        }
        let Some((broker, addr)) = self.remote_coordinator(&transactional_id) else {
            return all(TxnVerifyError::NotCoordinator);
        };
        match self
            .peers
            .ask(
                broker,
                &addr,
                ask,
                &transactional_id,
                (producer_id, producer_epoch),
                &partitions,
            )
            .await
        {
            None => all(TxnVerifyError::NotCoordinator),
            Some(codes) => partitions
                .iter()
                .map(|p| {
                    let code = codes
                        .iter()
                        .find(|(q, _)| q == p)
                        .map_or(-1, |(_, code)| *code);
                    (p.clone(), verdict_of_code(code))
                })
                .collect(),
        }
    }
}

impl TxnVerifier for Verifier {
    fn verify(
        &self,
        ask: TxnAsk,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'static, VerifyResults> {
        let coordinator = self.0.upgrade();
        async move {
            match coordinator {
                Some(c) => {
                    c.ask_for_partitions(
                        ask,
                        transactional_id,
                        producer_id,
                        producer_epoch,
                        partitions,
                    )
                    .await
                }
                None => partitions
                    .into_iter()
                    .map(|p| (p, Err(TxnVerifyError::NotCoordinator)))
                    .collect(),
            }
        }
        .boxed()
    }
}
