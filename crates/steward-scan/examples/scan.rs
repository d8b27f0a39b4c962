//! Stand-alone `scan` until `steward scan` is mounted: `cargo run --release -p steward-scan --example scan -- PATH`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: steward_scan::ScanArgs,
}

fn main() {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let code = match steward_scan::run(&cli.args, &mut out) {
        Ok(outcome) => {
            for warning in &outcome.warnings {
                eprintln!("warning: {warning}");
            }
            outcome.exit_code
        }
        Err(error) => {
            eprintln!("error: {error}");
            2
        }
    };
    drop(out);
    std::process::exit(code);
}
