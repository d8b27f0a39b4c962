//! Crash recovery helpers: find intents whose outcome was never recorded, and build the
//! `outcome_unknown` records that close them.
//!
//! An intent is a [`EventKind::Decision`] record with decision `allow` and a `request_id`;
//! it is closed by an [`EventKind::Outcome`] record with the same `request_id`. After a
//! crash the server scans the records written since the last clean shutdown (or all of
//! them), and appends one [`outcome_unknown_event`] per open intent.

use std::collections::HashSet;

use crate::event::{Actor, AuditEvent, AuditRecord, Decision, EventKind, Outcome};

/// Allowed intents in `records` with no outcome record for the same request id, in log
/// order.
pub fn intents_without_outcome<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Vec<&'a AuditRecord> {
    let mut intents: Vec<&'a AuditRecord> = Vec::new();
    let mut closed: HashSet<&'a str> = HashSet::new();
    for record in records {
        let event = &record.event;
        let Some(request_id) = event.request_id.as_deref() else {
            continue;
        };
        match event.kind {
            EventKind::Decision if event.decision == Some(Decision::Allow) => {
                intents.push(record);
            }
            EventKind::Outcome => {
                closed.insert(request_id);
            }
            _ => {}
        }
    }
    intents.retain(|record| {
        record
            .event
            .request_id
            .as_deref()
            .is_some_and(|id| !closed.contains(id))
    });
    intents
}

/// The outcome record that marks `intent`'s outcome as unknown, written by the system.
pub fn outcome_unknown_event(intent: &AuditEvent) -> AuditEvent {
    let mut event = AuditEvent::new(EventKind::Outcome, Actor::system());
    event.instance_id.clone_from(&intent.instance_id);
    event.request_id.clone_from(&intent.request_id);
    event.operation.clone_from(&intent.operation);
    event.resource.clone_from(&intent.resource);
    event.traceparent.clone_from(&intent.traceparent);
    event.outcome = Some(Outcome {
        outcome_unknown: true,
        ..Outcome::default()
    });
    event.detail = serde_json::json!({
        "recovered": true,
        "intent_actor": intent.actor.id,
    });
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::GENESIS_HASH;
    use crate::event::tests::sample_event;

    #[test]
    fn open_intents_are_found_and_closed_ones_are_not() {
        let mut events = Vec::new();
        for n in 0..4 {
            events.push(sample_event(n)); // allowed intents req_0..req_3
        }
        let mut denied = sample_event(9);
        denied.decision = Some(Decision::Deny);
        events.push(denied);
        for n in [0, 2] {
            let mut outcome = sample_event(n);
            outcome.kind = EventKind::Outcome;
            outcome.decision = None;
            events.push(outcome);
        }
        let mut prev = GENESIS_HASH;
        let records: Vec<AuditRecord> = events
            .into_iter()
            .enumerate()
            .map(|(seq, event)| {
                let record = AuditRecord::chain(seq as u64, 0, prev, event).unwrap();
                prev = record.hash;
                record
            })
            .collect();
        let open: Vec<&str> = intents_without_outcome(&records)
            .iter()
            .filter_map(|r| r.event.request_id.as_deref())
            .collect();
        assert_eq!(open, vec!["req_1", "req_3"]);

        let closing = outcome_unknown_event(&records[1].event);
        assert_eq!(closing.kind, EventKind::Outcome);
        assert_eq!(closing.request_id.as_deref(), Some("req_1"));
        assert!(closing.outcome.unwrap().outcome_unknown);
    }
}
