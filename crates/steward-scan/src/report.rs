//! Report types and output formats (table, JSON, JSON lines, SARIF 2.1.0).

use serde::{Deserialize, Serialize};

use crate::rules::Confidence;

/// One discovered credential. Holds no raw secret: only its fingerprint and a preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Where it was found; archive members read `archive.tar.gz!inner/file`.
    pub path: String,
    /// 1-based line of the secret's first byte.
    pub line: u32,
    /// 1-based byte column of the secret's first byte.
    pub column: u32,
    /// 1-based line of the secret's last byte (differs for multi-line keys).
    pub end_line: u32,
    /// Commit that added the line (`--git` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Rule id, e.g. `github-pat`.
    pub rule_id: String,
    /// Provider, e.g. `github`.
    pub provider: String,
    /// Credential kind, e.g. `access-token`.
    pub kind: String,
    /// How sure the detector is.
    pub confidence: Confidence,
    /// [`crate::fingerprint`] of the secret.
    pub fingerprint: String,
    /// Redacted preview of the secret.
    pub redacted: String,
}

/// Totals for one scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Files (or archive members, or commit-file diffs) scanned.
    pub files: u64,
    /// Bytes scanned.
    pub bytes: u64,
    /// Wall time of the scan in milliseconds.
    pub duration_ms: u64,
}

/// The result of a scan, serialised as the `--format json` document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Findings, sorted by path, line, column and rule.
    pub findings: Vec<Finding>,
    /// Totals.
    pub stats: Stats,
}

/// Output formats of `steward scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// A readable table with redacted previews.
    #[default]
    Table,
    /// One JSON document: `{"findings":[…],"stats":{…}}`.
    Json,
    /// One finding per line, then a final `{"stats":{…}}` line.
    Jsonl,
    /// SARIF 2.1.0 for code-scanning tools.
    Sarif,
}

impl Report {
    /// Writes the report in `format`.
    pub fn write(
        &self,
        format: Format,
        out: &mut dyn std::io::Write,
    ) -> Result<(), crate::ScanError> {
        match format {
            Format::Table => self.write_table(out).map_err(crate::ScanError::Output),
            Format::Json => {
                serde_json::to_writer(&mut *out, self)?;
                writeln!(out).map_err(crate::ScanError::Output)
            }
            Format::Jsonl => {
                for finding in &self.findings {
                    serde_json::to_writer(&mut *out, finding)?;
                    writeln!(out).map_err(crate::ScanError::Output)?;
                }
                serde_json::to_writer(&mut *out, &serde_json::json!({ "stats": self.stats }))?;
                writeln!(out).map_err(crate::ScanError::Output)
            }
            Format::Sarif => {
                serde_json::to_writer_pretty(&mut *out, &self.to_sarif())?;
                writeln!(out).map_err(crate::ScanError::Output)
            }
        }
    }

    fn write_table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let locations: Vec<String> = self
            .findings
            .iter()
            .map(|f| match &f.commit {
                Some(commit) => format!(
                    "{}:{}:{} @{}",
                    f.path,
                    f.line,
                    f.column,
                    commit.get(..10).unwrap_or(commit)
                ),
                None => format!("{}:{}:{}", f.path, f.line, f.column),
            })
            .collect();
        let width = locations
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(8)
            .clamp(8, 80);
        let rule_width = self
            .findings
            .iter()
            .map(|f| f.rule_id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        if !self.findings.is_empty() {
            writeln!(
                out,
                "{:<width$}  {:<rule_width$}  {:<10}  {:<16}  PREVIEW",
                "LOCATION", "RULE", "CONFIDENCE", "FINGERPRINT"
            )?;
        }
        for (finding, location) in self.findings.iter().zip(&locations) {
            writeln!(
                out,
                "{location:<width$}  {:<rule_width$}  {:<10}  {:<16}  {}",
                finding.rule_id,
                finding.confidence.as_str(),
                finding
                    .fingerprint
                    .get(..16)
                    .unwrap_or(&finding.fingerprint),
                finding.redacted,
            )?;
        }
        writeln!(
            out,
            "{} finding(s) in {} file(s), {} bytes, {} ms",
            self.findings.len(),
            self.stats.files,
            self.stats.bytes,
            self.stats.duration_ms
        )
    }

    /// Builds the SARIF 2.1.0 log (GitHub code scanning subset).
    pub fn to_sarif(&self) -> serde_json::Value {
        use serde_json::json;
        let mut rule_ids: Vec<&str> = self.findings.iter().map(|f| f.rule_id.as_str()).collect();
        rule_ids.sort_unstable();
        rule_ids.dedup();
        let rules: Vec<serde_json::Value> = rule_ids
            .iter()
            .map(|id| {
                let example = self.findings.iter().find(|f| f.rule_id == *id);
                let provider = example.map_or("generic", |f| f.provider.as_str());
                let kind = example.map_or("secret", |f| f.kind.as_str());
                json!({
                    "id": id,
                    "name": id,
                    "shortDescription": { "text": format!("Exposed {provider} {kind}") },
                    "fullDescription": { "text": format!("A {provider} {kind} is committed in plain text. Rotate it and move it into the Steward vault.") },
                    "help": { "text": "Revoke or rotate the credential, remove it from the file and its history, and let Steward inject it at request time." },
                    "defaultConfiguration": { "level": "error" },
                    "properties": { "tags": ["security", "secret", provider], "security-severity": "8.0", "precision": "high" }
                })
            })
            .collect();
        let results: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                let index = rule_ids.iter().position(|id| *id == f.rule_id).unwrap_or(0);
                let mut result = json!({
                    "ruleId": f.rule_id,
                    "ruleIndex": index,
                    "level": if f.confidence == Confidence::Low { "warning" } else { "error" },
                    "message": { "text": format!("{} {} found ({}, confidence {})", f.provider, f.kind, f.redacted, f.confidence.as_str()) },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": uri_reference(&f.path) },
                            "region": { "startLine": f.line.max(1), "startColumn": f.column.max(1), "endLine": f.end_line.max(f.line).max(1) }
                        }
                    }],
                    "partialFingerprints": { "stewardSecretFingerprint/v1": f.fingerprint },
                });
                if let (Some(commit), Some(object)) = (&f.commit, result.as_object_mut()) {
                    object.insert("properties".into(), json!({ "commit": commit }));
                }
                result
            })
            .collect();
        json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": { "driver": {
                    "name": "steward-scan",
                    "informationUri": "https://example.invalid/steward",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules
                }},
                "results": results
            }]
        })
    }
}

/// Percent-encodes a path into a relative URI reference (forward slashes).
fn uri_reference(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.replace('\\', "/").bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
