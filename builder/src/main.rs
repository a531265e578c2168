//! The `atomicbuild` binary: parse, run, print the error chain once.

use clap::Parser;

fn main() {
    let cli = atomicbuild::cli::Cli::parse();
    if let Err(e) = atomicbuild::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
