//! The `atomic-update` binary: parse, run, print a failure as one line.

use clap::Parser;

fn main() {
    // ostree's grub2 backend runs `/usr/sbin/grub-mkconfig -o PATH`, which
    // images link to this binary.
    let argv: Vec<String> = std::env::args().collect();
    let cli = if argv.get(1).map(String::as_str) == Some("-o") {
        updater::cli::Cli::parse_from(
            [argv[0].as_str(), "grub-mkconfig"]
                .into_iter()
                .chain(argv[1..].iter().map(String::as_str)),
        )
    } else {
        updater::cli::Cli::parse()
    };
    if let Err(e) = updater::run(cli) {
        eprintln!("atomic-update: {e:#}");
        std::process::exit(1);
    }
}
