//! The `steward scan` command line: [`ScanArgs`] and [`run`].

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::inputs::{Collector, Progress};
use crate::report::Format;
use crate::suppress::Suppressions;
use crate::{Confidence, Report, ScanError, Scanner, Stats};

/// Arguments of `steward scan`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScanArgs {
    /// Directories, files, archives, or `-` for standard input.
    #[arg(value_name = "PATH", default_value = ".")]
    pub paths: Vec<PathBuf>,
    /// Scan every commit's added lines (git history) of each PATH instead of its files.
    #[arg(long)]
    pub git: bool,
    /// Do not honour .gitignore/.ignore files.
    #[arg(long)]
    pub no_ignore: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to FILE instead of standard output. (Not `-o`/`--output`: under
    /// `steward scan` those are the CLI's global output-format flag.)
    #[arg(id = "output_file", long = "output-file", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit code when findings remain after suppression.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub exit_code: i32,
    /// Previous JSON report: only findings absent from it are reported.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Report only findings at or above this confidence.
    #[arg(long, value_enum, default_value_t = Confidence::Low)]
    pub min_confidence: Confidence,
    /// Skip files (and archive members) larger than this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 50 * 1024 * 1024)]
    pub max_file_size: u64,
    /// Worker threads (0: all cores).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// Never show the progress spinner.
    #[arg(long)]
    pub no_progress: bool,
}

impl Default for ScanArgs {
    fn default() -> Self {
        Self {
            paths: vec![PathBuf::from(".")],
            git: false,
            no_ignore: false,
            format: Format::Table,
            output: None,
            exit_code: 1,
            baseline: None,
            min_confidence: Confidence::Low,
            max_file_size: 50 * 1024 * 1024,
            threads: 0,
            no_progress: false,
        }
    }
}

/// What a run produced: the report (already filtered) and the process exit code.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The findings and totals, as written.
    pub report: Report,
    /// `0` without findings, `args.exit_code` with findings.
    pub exit_code: i32,
    /// Non-fatal problems (unreadable files, corrupt archives).
    pub warnings: Vec<String>,
}

/// Scans according to `args` and returns the filtered report, without writing it.
pub fn scan(args: &ScanArgs) -> Result<(Report, Vec<String>), ScanError> {
    let started = Instant::now();
    let scanner = Scanner::new()?;
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        args.threads
    };
    let progress = Progress::new(!args.no_progress && std::io::stderr().is_terminal());
    let collector = Collector::new(&scanner, args.max_file_size, progress);
    let mut suppressions = Suppressions::default();
    if let Some(baseline) = &args.baseline {
        suppressions.load_baseline(baseline)?;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| ScanError::Git {
            path: PathBuf::from("."),
            message: e.to_string(),
        })?;
    for path in &args.paths {
        if path == Path::new("-") {
            collector.scan_stdin()?;
        } else if args.git {
            suppressions.add_root(path, true);
            pool.install(|| collector.scan_git(path))?;
        } else if path.is_dir() {
            suppressions.add_root(path, false);
            collector.scan_directory(path, args.no_ignore, threads);
        } else if path.exists() {
            if let Some(parent) = path.parent() {
                suppressions.add_root(
                    if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    },
                    false,
                );
            }
            collector.scan_file(path);
        } else {
            return Err(ScanError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            });
        }
    }
    collector.progress.finish();
    let mut findings = collector.findings.into_inner().unwrap_or_default();
    findings.retain(|f| f.confidence >= args.min_confidence && !suppressions.suppressed(f));
    findings.sort_by(|a, b| {
        (&a.path, a.line, a.column, &a.rule_id, &a.commit)
            .cmp(&(&b.path, b.line, b.column, &b.rule_id, &b.commit))
    });
    findings.dedup();
    let stats = Stats {
        files: collector.files.load(Ordering::Relaxed),
        bytes: collector.bytes.load(Ordering::Relaxed),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    };
    let warnings = collector.warnings.into_inner().unwrap_or_default();
    Ok((Report { findings, stats }, warnings))
}

/// Runs `steward scan`: scans, writes the report to `args.output` or `out`, and returns
/// the outcome. Warnings are returned, not printed.
pub fn run(args: &ScanArgs, out: &mut dyn std::io::Write) -> Result<Outcome, ScanError> {
    let (report, warnings) = scan(args)?;
    match &args.output {
        Some(file) => {
            let handle = std::fs::File::create(file).map_err(|source| ScanError::Io {
                path: file.clone(),
                source,
            })?;
            let mut writer = std::io::BufWriter::new(handle);
            report.write(args.format, &mut writer)?;
            std::io::Write::flush(&mut writer).map_err(ScanError::Output)?;
        }
        None => report.write(args.format, out)?,
    }
    let exit_code = if report.findings.is_empty() {
        0
    } else {
        args.exit_code
    };
    Ok(Outcome {
        report,
        exit_code,
        warnings,
    })
}
