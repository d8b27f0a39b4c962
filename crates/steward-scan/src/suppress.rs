//! Suppression: `.stewardignore` (gitignore-style paths and fingerprints) and baselines.
//! Inline `steward:allow` comments are handled by the engine.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::{Finding, Report, ScanError};

/// File name of the per-root suppression file.
pub const STEWARDIGNORE: &str = ".stewardignore";

/// Path patterns and fingerprints that must not be reported.
#[derive(Default)]
pub(crate) struct Suppressions {
    /// (root, matcher, whether finding paths are already relative to the root).
    paths: Vec<(PathBuf, Gitignore, bool)>,
    fingerprints: HashSet<String>,
    baseline: HashSet<(String, String, String)>,
}

fn is_fingerprint(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Suppressions {
    /// Loads `<root>/.stewardignore` when present.
    pub(crate) fn add_root(&mut self, root: &Path, relative_paths: bool) {
        let file = root.join(STEWARDIGNORE);
        let Ok(text) = std::fs::read_to_string(&file) else {
            return;
        };
        let mut builder = GitignoreBuilder::new(root);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let candidate = line.strip_prefix("fingerprint:").unwrap_or(line).trim();
            if is_fingerprint(candidate) {
                self.fingerprints.insert(candidate.to_ascii_lowercase());
            } else {
                // An invalid glob is skipped rather than failing the scan.
                let _ = builder.add_line(Some(file.clone()), line);
            }
        }
        if let Ok(matcher) = builder.build() {
            self.paths
                .push((root.to_path_buf(), matcher, relative_paths));
        }
    }

    /// Loads a previous `--format json` report; its findings are not reported again.
    pub(crate) fn load_baseline(&mut self, path: &Path) -> Result<(), ScanError> {
        let bytes = std::fs::read(path).map_err(|source| ScanError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let report: Report = serde_json::from_slice(&bytes).map_err(|e| ScanError::Baseline {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        self.baseline.extend(
            report
                .findings
                .into_iter()
                .map(|f| (f.path, f.rule_id, f.fingerprint)),
        );
        Ok(())
    }

    /// Whether a finding is suppressed.
    pub(crate) fn suppressed(&self, finding: &Finding) -> bool {
        if self.fingerprints.contains(&finding.fingerprint) {
            return true;
        }
        if self.baseline.contains(&(
            finding.path.clone(),
            finding.rule_id.clone(),
            finding.fingerprint.clone(),
        )) {
            return true;
        }
        // Archive members are matched by the archive's own path.
        let file = finding.path.split('!').next().unwrap_or(&finding.path);
        let path = Path::new(file);
        self.paths.iter().any(|(root, matcher, relative)| {
            let relative_path = if *relative {
                Some(path)
            } else {
                path.strip_prefix(root).ok()
            };
            relative_path.is_some_and(|p| {
                !p.has_root() && matcher.matched_path_or_any_parents(p, false).is_ignore()
            })
        })
    }
}
