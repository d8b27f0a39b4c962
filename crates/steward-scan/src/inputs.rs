//! Input sources: directories (parallel walker honouring .gitignore), files, stdin,
//! archives (zip, tar, tar.gz), git history, and Kubernetes Secret `data:` decoding.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ignore::{WalkBuilder, WalkState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use crate::checksum::B64_LENIENT;
use crate::{Finding, ScanError, Scanner};

/// Archives nested deeper than this are scanned as opaque bytes.
const MAX_ARCHIVE_DEPTH: u8 = 3;

/// A spinner on stderr, shown only on a terminal and only once a scan runs long.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    shown: AtomicBool,
}

impl Progress {
    pub(crate) fn new(enabled: bool) -> Self {
        let bar = enabled.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
            if let Ok(style) = ProgressStyle::with_template("{spinner} scanned {pos} files {msg}") {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            shown: AtomicBool::new(false),
        }
    }

    fn tick(&self) {
        let Some(bar) = &self.bar else {
            return;
        };
        bar.inc(1);
        if !self.shown.load(Ordering::Relaxed)
            && self.started.elapsed() > Duration::from_millis(750)
        {
            self.shown.store(true, Ordering::Relaxed);
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Shared state of one scan: the scanner, counters and collected findings.
pub(crate) struct Collector<'a> {
    pub scanner: &'a Scanner,
    pub max_file_size: u64,
    pub findings: Mutex<Vec<Finding>>,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub warnings: Mutex<Vec<String>>,
    pub progress: Progress,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(scanner: &'a Scanner, max_file_size: u64, progress: Progress) -> Self {
        Self {
            scanner,
            max_file_size,
            findings: Mutex::new(Vec::new()),
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            warnings: Mutex::new(Vec::new()),
            progress,
        }
    }

    fn push(&self, mut found: Vec<Finding>) {
        if found.is_empty() {
            return;
        }
        if let Ok(mut findings) = self.findings.lock() {
            findings.append(&mut found);
        }
    }

    fn warn(&self, message: String) {
        if let Ok(mut warnings) = self.warnings.lock() {
            warnings.push(message);
        }
    }

    /// Scans one buffer: archives are opened, binaries skipped, Kubernetes Secrets decoded.
    pub(crate) fn scan_blob(&self, path: &str, data: &[u8], depth: u8) {
        if depth < MAX_ARCHIVE_DEPTH
            && let Some(kind) = archive_kind(path, data)
        {
            if let Err(message) = self.scan_archive(kind, path, data, depth) {
                self.warn(format!("archive `{path}`: {message}"));
            }
            return;
        }
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.progress.tick();
        if is_binary(data) {
            return;
        }
        let mut found = self.scanner.scan(path, data);
        let decoded = self.scan_kubernetes_secret(path, data);
        if !decoded.is_empty() {
            // The decoded value supersedes a generic hit on its base64 form.
            found.retain(|f| {
                !(f.rule_id == "generic-secret" && decoded.iter().any(|d| d.line == f.line))
            });
            found.extend(decoded);
        }
        self.push(found);
    }

    fn scan_archive(
        &self,
        kind: ArchiveKind,
        path: &str,
        data: &[u8],
        depth: u8,
    ) -> Result<(), String> {
        match kind {
            ArchiveKind::Zip => {
                let mut archive =
                    zip::ZipArchive::new(Cursor::new(data)).map_err(|e| e.to_string())?;
                for index in 0..archive.len() {
                    let mut member = archive.by_index(index).map_err(|e| e.to_string())?;
                    if !member.is_file() || member.size() > self.max_file_size {
                        continue;
                    }
                    let name = format!("{path}!{}", member.name());
                    let mut bytes = Vec::with_capacity(usize::try_from(member.size()).unwrap_or(0));
                    member.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
                    self.scan_blob(&name, &bytes, depth + 1);
                }
                Ok(())
            }
            ArchiveKind::Tar => self.scan_tar(tar::Archive::new(Cursor::new(data)), path, depth),
            ArchiveKind::TarGz => {
                let decoder = flate2::read::GzDecoder::new(Cursor::new(data));
                self.scan_tar(tar::Archive::new(decoder), path, depth)
            }
        }
    }

    fn scan_tar<R: Read>(
        &self,
        mut archive: tar::Archive<R>,
        path: &str,
        depth: u8,
    ) -> Result<(), String> {
        for entry in archive.entries().map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            if !entry.header().entry_type().is_file() || entry.size() > self.max_file_size {
                continue;
            }
            let member = entry
                .path()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = format!("{path}!{member}");
            let mut bytes = Vec::new();
            entry
                .take(self.max_file_size)
                .read_to_end(&mut bytes)
                .map_err(|e| e.to_string())?;
            self.scan_blob(&name, &bytes, depth + 1);
        }
        Ok(())
    }

    /// Base64 `data:` values of a Kubernetes Secret, decoded and scanned with their key
    /// as context; findings point at the YAML line of the value.
    fn scan_kubernetes_secret(&self, path: &str, data: &[u8]) -> Vec<Finding> {
        let mut findings = Vec::new();
        for (line, key, decoded) in kubernetes_secret_values(data) {
            let mut synthetic = format!("{key}: ").into_bytes();
            synthetic.extend_from_slice(&decoded);
            for mut finding in self.scanner.scan(path, &synthetic) {
                finding.line = line;
                finding.end_line = line;
                finding.column = 1;
                findings.push(finding);
            }
        }
        findings
    }

    /// Walks a directory with the parallel walker.
    pub(crate) fn scan_directory(&self, root: &Path, no_ignore: bool, threads: usize) {
        let mut builder = WalkBuilder::new(root);
        builder
            .hidden(false)
            .git_ignore(!no_ignore)
            .git_global(!no_ignore)
            .git_exclude(!no_ignore)
            .ignore(!no_ignore)
            .parents(!no_ignore)
            .require_git(false)
            .threads(threads)
            .filter_entry(|entry| entry.file_name() != ".git");
        builder.build_parallel().run(|| {
            Box::new(move |entry| {
                match entry {
                    Ok(entry) if entry.file_type().is_some_and(|t| t.is_file()) => {
                        self.scan_file(entry.path());
                    }
                    Ok(_) => {}
                    Err(error) => self.warn(error.to_string()),
                }
                WalkState::Continue
            })
        });
    }

    /// Reads and scans one file.
    pub(crate) fn scan_file(&self, path: &Path) {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size > self.max_file_size {
            self.warn(format!(
                "skipped `{}`: larger than {} bytes",
                path.display(),
                self.max_file_size
            ));
            return;
        }
        match std::fs::read(path) {
            Ok(data) => self.scan_blob(&display_path(path), &data, 0),
            Err(error) => self.warn(format!("cannot read `{}`: {error}", path.display())),
        }
    }
}

/// Paths as the user gave them, without a leading `./`.
fn display_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    text.strip_prefix("./").unwrap_or(&text).to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArchiveKind {
    Zip,
    Tar,
    TarGz,
}

fn archive_kind(path: &str, data: &[u8]) -> Option<ArchiveKind> {
    let name = path.rsplit('!').next().unwrap_or(path).to_ascii_lowercase();
    if data.starts_with(b"PK\x03\x04") && (name.ends_with(".zip") || name.ends_with(".jar")) {
        return Some(ArchiveKind::Zip);
    }
    if data.starts_with(&[0x1f, 0x8b]) && (name.ends_with(".tar.gz") || name.ends_with(".tgz")) {
        return Some(ArchiveKind::TarGz);
    }
    if name.ends_with(".tar") && data.get(257..262) == Some(b"ustar") {
        return Some(ArchiveKind::Tar);
    }
    None
}

/// A NUL byte in the first 8 KiB marks a binary file.
fn is_binary(data: &[u8]) -> bool {
    data.iter().take(8192).any(|b| *b == 0)
}

/// `(line, key, decoded value)` for each `data:` entry of each Kubernetes Secret in a YAML
/// stream (`kubectl get secret -o yaml`, manifests, lists).
pub(crate) fn kubernetes_secret_values(data: &[u8]) -> Vec<(u32, String, Vec<u8>)> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Vec::new();
    };
    if !text.contains("kind: Secret") || !text.contains("data:") {
        return Vec::new();
    }
    let mut values = Vec::new();
    let mut data_indent: Option<usize> = None;
    for (index, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start().trim_start_matches("- ");
        if let Some(block_indent) = data_indent {
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if indent <= block_indent {
                data_indent = None;
            } else if let Some((key, value)) = trimmed.split_once(':') {
                let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
                if let Ok(decoded) = B64_LENIENT.decode(value)
                    && !decoded.is_empty()
                {
                    values.push((
                        u32::try_from(index + 1).unwrap_or(u32::MAX),
                        key.trim().to_owned(),
                        decoded,
                    ));
                }
                continue;
            }
        }
        if trimmed == "data:" {
            data_indent = Some(indent);
        }
    }
    values
}

/// One commit's added lines in one file.
struct GitChunk {
    commit: String,
    path: String,
    text: Vec<u8>,
    /// Line number in the file at that commit of each line of `text`.
    lines: Vec<u32>,
}

/// Runs `git log -p --all` and returns the added lines per commit and file.
fn git_added_lines(repo: &Path) -> Result<Vec<GitChunk>, ScanError> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "log",
            "-p",
            "--all",
            "-U0",
            "--no-color",
            "--no-ext-diff",
            "--no-renames",
            "--no-textconv",
            "--format=%x1ecommit %H",
        ])
        .output()
        .map_err(|e| ScanError::Git {
            path: repo.to_path_buf(),
            message: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(ScanError::Git {
            path: repo.to_path_buf(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(parse_git_log(&output.stdout))
}

fn parse_git_log(log: &[u8]) -> Vec<GitChunk> {
    let mut chunks: Vec<GitChunk> = Vec::new();
    let mut commit = String::new();
    let mut current: Option<GitChunk> = None;
    let mut next_line: u32 = 0;
    let mut in_hunk = false;
    let flush = |current: &mut Option<GitChunk>, chunks: &mut Vec<GitChunk>| {
        if let Some(chunk) = current.take()
            && !chunk.text.is_empty()
        {
            chunks.push(chunk);
        }
    };
    for line in log.split(|b| *b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"\x1ecommit ") {
            flush(&mut current, &mut chunks);
            commit = String::from_utf8_lossy(rest).trim().to_owned();
            in_hunk = false;
        } else if line.starts_with(b"diff --git ") {
            flush(&mut current, &mut chunks);
            in_hunk = false;
        } else if !in_hunk && line.starts_with(b"+++ ") {
            let target = line.get(4..).unwrap_or_default();
            current = target.strip_prefix(b"b/").map(|p| GitChunk {
                commit: commit.clone(),
                path: String::from_utf8_lossy(p).into_owned(),
                text: Vec::new(),
                lines: Vec::new(),
            });
        } else if let Some(header) = line.strip_prefix(b"@@ ") {
            in_hunk = true;
            next_line = parse_hunk_start(header).unwrap_or(1);
        } else if in_hunk && let Some(added) = line.strip_prefix(b"+") {
            if let Some(chunk) = current.as_mut() {
                chunk.text.extend_from_slice(added);
                chunk.text.push(b'\n');
                chunk.lines.push(next_line);
            }
            next_line += 1;
        }
    }
    flush(&mut current, &mut chunks);
    chunks
}

/// New-file start line from `-a,b +c,d @@`.
fn parse_hunk_start(header: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(header).ok()?;
    let plus = text.split_whitespace().find(|p| p.starts_with('+'))?;
    plus.trim_start_matches('+').split(',').next()?.parse().ok()
}

impl Collector<'_> {
    /// Scans every commit's added lines, reporting the commit for each finding.
    pub(crate) fn scan_git(&self, repo: &Path) -> Result<(), ScanError> {
        let chunks = git_added_lines(repo)?;
        chunks.par_iter().for_each(|chunk| {
            self.files.fetch_add(1, Ordering::Relaxed);
            self.bytes
                .fetch_add(chunk.text.len() as u64, Ordering::Relaxed);
            self.progress.tick();
            if is_binary(&chunk.text) {
                return;
            }
            let remap = |line: u32| chunk.lines.get(line as usize - 1).copied().unwrap_or(line);
            let found: Vec<Finding> = self
                .scanner
                .scan(&chunk.path, &chunk.text)
                .into_iter()
                .map(|mut finding| {
                    finding.line = remap(finding.line);
                    finding.end_line = remap(finding.end_line);
                    finding.commit = Some(chunk.commit.clone());
                    finding
                })
                .collect();
            self.push(found);
        });
        Ok(())
    }

    /// Scans standard input as one buffer named `-`.
    pub(crate) fn scan_stdin(&self) -> Result<(), ScanError> {
        let mut data = Vec::new();
        std::io::stdin()
            .read_to_end(&mut data)
            .map_err(|source| ScanError::Io {
                path: PathBuf::from("-"),
                source,
            })?;
        self.scan_blob("-", &data, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_log_parser_keeps_added_lines_with_their_numbers() {
        let log = b"\x1ecommit abc123\n\ndiff --git a/x.env b/x.env\nnew file mode 100644\n--- /dev/null\n+++ b/x.env\n@@ -0,0 +1,2 @@\n+A=1\n+B=2\n\x1ecommit def456\n\ndiff --git a/x.env b/x.env\n--- a/x.env\n+++ b/x.env\n@@ -2 +2 @@\n-B=2\n+B=3\n";
        let chunks = parse_git_log(log);
        assert_eq!(chunks.len(), 2);
        let first = chunks
            .first()
            .map(|c| (c.commit.as_str(), c.path.as_str(), c.lines.clone()));
        assert_eq!(first, Some(("abc123", "x.env", vec![1, 2])));
        let second = chunks
            .get(1)
            .map(|c| (c.commit.as_str(), c.text.clone(), c.lines.clone()));
        assert_eq!(second, Some(("def456", b"B=3\n".to_vec(), vec![2])));
    }

    #[test]
    fn kubernetes_secret_data_values_are_decoded_with_lines() {
        let yaml = b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  username: YWRtaW4=\n  password: UzNjcjN0LVBhc3M=\ntype: Opaque\n";
        let values = kubernetes_secret_values(yaml);
        assert_eq!(values.len(), 2);
        assert_eq!(
            values.get(1).map(|v| (v.0, v.1.as_str(), v.2.clone())),
            Some((7, "password", b"S3cr3t-Pass".to_vec()))
        );
        assert!(kubernetes_secret_values(b"kind: ConfigMap\ndata:\n  a: YWRtaW4=\n").is_empty());
    }
}
