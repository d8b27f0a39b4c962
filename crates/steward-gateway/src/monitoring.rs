//! Acting on monitoring: storing alerts and tripping the circuit breaker.

use std::sync::Arc;

use steward_monitor::{BreakerAction, Observation};
use steward_store::models::Identity;

use crate::runtime::Runtime;

/// Applies an observation: the breaker suspends at once in memory (so the very next
/// request is refused); persistence, alerts and auditing follow in the background.
pub fn handle(rt: &Runtime, identity: &Arc<Identity>, observation: Observation) {
    if observation.alerts.is_empty() && observation.breaker.is_none() {
        return;
    }
    if let Some(BreakerAction::Suspend { .. }) = &observation.breaker {
        rt.tokens.suspend_identity(&identity.id);
        rt.invalidate_identity(&identity.id);
    }
    if let Some(tx) = &rt.monitor_events {
        let _ = tx.try_send((identity.id.clone(), observation));
    }
}
