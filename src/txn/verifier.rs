//! The KIP-890 verifier the partition layer asks before it accepts the
//! first transactional batch of a producer epoch on a partition: this
//! node's coordinator answers when it coordinates the transactional id,
//! else the id's coordinator elsewhere in the cluster (AddPartitionsToTxn
//! v4 `verify_only`).

use std::sync::Weak;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{TransactionCoordinator, TxnError};
use crate::partition::{TxnVerifier, TxnVerifyError, VerifyResults};

/// Weak: the coordinator may be gone at shutdown.
pub(super) struct Verifier(pub Weak<TransactionCoordinator>);

type Verdicts = VerifyResults;

fn verdict(e: TxnError) -> TxnVerifyError {
    match e {
        TxnError::NotCoordinator | TxnError::CoordinatorNotAvailable => {
            TxnVerifyError::NotCoordinator
        }
        TxnError::ProducerFenced => TxnVerifyError::ProducerFenced,
        TxnError::InvalidProducerEpoch => TxnVerifyError::InvalidProducerEpoch,
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
        _ => TxnVerifyError::NotInTransaction,
    })
}

impl TxnVerifier for Verifier {
    fn verify(
        &self,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> BoxFuture<'static, Verdicts> {
        let coordinator = self.0.upgrade();
        async move {
            let all = |e: fn() -> TxnVerifyError| -> Verdicts {
                partitions.iter().map(|p| (p.clone(), Err(e()))).collect()
            };
            let Some(c) = coordinator else {
                return all(|| TxnVerifyError::NotCoordinator);
            };
            if c.coordinator_error(&transactional_id).is_ok() {
                return c
                    .verify(&transactional_id, producer_id, producer_epoch, &partitions)
                    .into_iter()
                    .map(|(p, r)| (p, r.map_err(verdict)))
                    .collect();
            }
            let Some((broker, addr)) = c.remote_coordinator(&transactional_id) else {
                return all(|| TxnVerifyError::NotCoordinator);
            };
            match c
                .peers
                .verify(
                    broker,
                    &addr,
                    &transactional_id,
                    producer_id,
                    producer_epoch,
                    &partitions,
                )
                .await
            {
                None => all(|| TxnVerifyError::NotCoordinator),
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
        .boxed()
    }
}
