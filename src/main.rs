//! The skiff binary: internal helpers first, then the command line.
#![forbid(unsafe_code)]

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let parent = skiff::runtime::sys::take_parent_pid();
    // Internal helpers run before clap and before any thread exists.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a.starts_with("__")) {
        return std::process::ExitCode::from(cli::internal::run(&args[1..], parent) as u8);
    }
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let code = cli::exit_code(&e);
            // The container's own status is skiff run's, silently.
            if e.downcast_ref::<cli::run::ExitStatus>().is_none() {
                eprintln!("Error: {e:#}");
            }
            std::process::ExitCode::from(code)
        }
    }
}
