//! Fuzzes policy `eval` input: Cedar policy text compiled against a fixed catalog, and
//! JSON arguments evaluated by `authorize`.
//!
//! Input: policy text, a NUL byte, then the JSON arguments. Compilation must return a
//! value or an error, never panic; any decision is a value; an evaluation error denies.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use steward_core::OperationName;
use steward_policy::{Catalog, Effect, IdentityAttrs, PolicySource, Request, authorize, compile};

const CATALOG: &str = r#"version: 1
services:
  - name: payments
    operations:
      - name: refund
        class: write
        args:
          - {name: amount_cents, type: long}
          - {name: currency, type: string}
          - {name: tags, type: set_of_string, optional: true}
      - name: list
        class: read
"#;

const BASELINE: &str = r#"permit (principal, action == Action::"payments:refund", resource) when { context.args.currency == "EUR" };
@approval("big refunds need a human")
forbid (principal, action == Action::"payments:refund", resource) when { context.args.amount_cents > 10000 };
"#;

fn catalog() -> &'static Catalog {
    static CATALOG_CELL: OnceLock<Catalog> = OnceLock::new();
    CATALOG_CELL.get_or_init(|| Catalog::from_yaml(CATALOG).unwrap_or_else(|e| panic!("fixed catalog rejected: {e}")))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (policy_text, args_text) = text.split_once('\0').unwrap_or((text, "{}"));
    let args: serde_json::Value = serde_json::from_str(args_text).unwrap_or(serde_json::Value::Null);
    let catalog = catalog();
    for (policy, label) in [(policy_text, "fuzzed"), (BASELINE, "baseline")] {
        let Ok(compiled) = compile(catalog, &[PolicySource::new(label, policy)], 1) else {
            continue;
        };
        for op in ["refund", "list", "nope"] {
            let identity = IdentityAttrs { id: "agent-1".into(), kind: "ai_agent".into(), owner: "alice".into(), labels: Default::default() };
            let mut request = Request::new(identity, OperationName::new("payments", op), catalog, steward_core::time::from_millis(1_800_000_000_000));
            request.args = args.clone();
            let decision = authorize(&compiled, &request);
            if !decision.errors().is_empty() {
                assert_ne!(decision.effect(), Effect::Allow, "an evaluation error allowed: {policy:?} {args}");
            }
            if op == "nope" {
                assert_ne!(decision.effect(), Effect::Allow, "an unknown operation was allowed");
            }
        }
    }
});
