//! The `atomic-firstboot` binary: parse, run, print a failure as one line.

use clap::Parser;

fn main() {
    let cli = firstboot::cli::Cli::parse();
    if let Err(e) = firstboot::run(cli) {
        eprintln!("atomic-firstboot: {e}");
        std::process::exit(1);
    }
}
