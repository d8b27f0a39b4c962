//! YAML policy test files (`steward policy test FILE`): cases of request and expected outcome.
//!
//! A file is either a list of cases or a mapping `{time_zone: "Europe/Berlin", cases: [...]}`.
//! Each case:
//! ```yaml
//! - name: refund above the cap needs approval
//!   request:
//!     identity: {id: bot-1, kind: agent, owner: alice, labels: {env: prod}}
//!     operation: "payments:refund"
//!     args: {amount_cents: 15000}
//!     at: "2026-01-05T10:00:00Z"          # RFC 3339, required
//!     tz: Europe/Berlin                    # optional; else the file's, else UTC
//!     rate: {op_per_day: 12}               # optional, missing counts are 0
//!     risk_score: 10                       # optional
//!     source_ip: 10.0.0.1                  # optional
//!     delegated: false                     # optional
//!   expect: approval_required              # allow | deny | approval_required
//! ```

use std::net::IpAddr;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use steward_core::{OperationClass, OperationName};

use crate::authorize::authorize;
use crate::compile::CompiledPolicies;
use crate::decision::Effect;
use crate::error::PolicyError;
use crate::explain::explain;
use crate::request::{IdentityAttrs, RateCounts, Request};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawFile {
    List(Vec<RawCase>),
    Suite {
        #[serde(default)]
        time_zone: Option<String>,
        cases: Vec<RawCase>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    request: RawRequest,
    expect: Effect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    identity: IdentityAttrs,
    operation: String,
    #[serde(default)]
    args: Option<serde_json::Value>,
    at: String,
    #[serde(default)]
    tz: Option<String>,
    #[serde(default)]
    rate: RateCounts,
    #[serde(default)]
    risk_score: i64,
    #[serde(default)]
    source_ip: Option<String>,
    #[serde(default)]
    delegated: bool,
}

/// One case that did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestFailure {
    /// The case's name.
    pub name: String,
    /// What the case expected.
    pub expected: Effect,
    /// What happened; `None` when the case itself is malformed.
    pub actual: Option<Effect>,
    /// The decision's explanation, or what is wrong with the case.
    pub detail: String,
}

/// The result of running a test file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TestReport {
    /// Names of the cases that passed.
    pub passed: Vec<String>,
    /// The cases that failed, in file order.
    pub failures: Vec<TestFailure>,
}

impl TestReport {
    /// Whether every case passed (and there was at least one).
    pub fn is_success(&self) -> bool {
        self.failures.is_empty() && !self.passed.is_empty()
    }

    /// A summary line plus one paragraph per failure.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} passed, {} failed\n",
            self.passed.len(),
            self.failures.len()
        );
        for f in &self.failures {
            let actual = f.actual.map_or("invalid case", Effect::as_str);
            out.push_str(&format!(
                "FAIL `{}`: expected {}, got {}\n{}\n",
                f.name,
                f.expected.as_str(),
                actual,
                f.detail
            ));
        }
        out
    }
}

/// Runs every case of a YAML test file. A file that does not parse is an error; a malformed
/// case (bad time, unknown zone) is a failure of that case.
pub fn run_test_file(compiled: &CompiledPolicies, yaml: &str) -> Result<TestReport, PolicyError> {
    let raw: RawFile =
        serde_yaml_ng::from_str(yaml).map_err(|e| PolicyError::TestFile(e.to_string()))?;
    let (file_tz, cases) = match raw {
        RawFile::List(cases) => (None, cases),
        RawFile::Suite { time_zone, cases } => (time_zone, cases),
    };
    let mut report = TestReport::default();
    for case in cases {
        let tz_name = case.request.tz.clone().or_else(|| file_tz.clone());
        match build_request(compiled, case.request, tz_name.as_deref()) {
            Err(detail) => report.failures.push(TestFailure {
                name: case.name,
                expected: case.expect,
                actual: None,
                detail,
            }),
            Ok(request) => {
                let decision = authorize(compiled, &request);
                if decision.effect() == case.expect {
                    report.passed.push(case.name);
                } else {
                    report.failures.push(TestFailure {
                        name: case.name,
                        expected: case.expect,
                        actual: Some(decision.effect()),
                        detail: explain(&decision, Some(compiled)),
                    });
                }
            }
        }
    }
    Ok(report)
}

fn build_request(
    compiled: &CompiledPolicies,
    raw: RawRequest,
    tz: Option<&str>,
) -> Result<Request, String> {
    let operation: OperationName = raw.operation.parse()?;
    let now: Timestamp = raw
        .at
        .parse()
        .map_err(|e| format!("`at` `{}` is not RFC 3339: {e}", raw.at))?;
    let tz = match tz {
        None => TimeZone::UTC,
        Some(name) => TimeZone::get(name).map_err(|e| format!("time zone `{name}`: {e}"))?,
    };
    let source_ip = raw
        .source_ip
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|e| format!("source_ip `{s}`: {e}"))
        })
        .transpose()?;
    let class = compiled
        .catalog()
        .operation(&operation)
        .map_or(OperationClass::Write, |o| o.class);
    Ok(Request {
        identity: raw.identity,
        operation,
        class,
        args: raw
            .args
            .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new())),
        now,
        tz,
        source_ip,
        rate: raw.rate,
        risk_score: raw.risk_score,
        delegated: raw.delegated,
    })
}
