//! Hidden subcommands the binary runs as its own helper, single-threaded and before any
//! runtime exists (entering a user namespace requires that).

use skiff::proc::HelperCmd;

/// `args`: from the `__NAME` on. `parent`: the pid of the skiff process that started us, as
/// it told us.
pub fn run(args: &[String], parent: Option<u32>) -> i32 {
    // Not a helper process: a build step (packaging), which needs the clap definitions.
    if args[0] == "__man" {
        return man(&args[1..]);
    }
    let level = std::env::var("SKIFF_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    // Never colour: a helper's stderr is read by its parent.
    super::init_tracing(&level, false);
    match HelperCmd::parse(args) {
        Ok(cmd) => skiff::runtime::run_helper(cmd, parent),
        Err(e) => {
            eprintln!("{e}");
            e.usage_status()
        }
    }
}

/// `__man DIR`: writes every man page into DIR.
fn man(args: &[String]) -> i32 {
    let [dir] = args else {
        eprintln!("usage: skiff __man DIR");
        return 2;
    };
    match super::manual::write_pages(std::path::Path::new(dir)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}
