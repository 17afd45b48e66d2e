//! Hidden subcommands the binary runs as its own helper, single-threaded and before any
//! runtime exists (entering a user namespace requires that).

use skiff::proc::HelperCmd;

/// `args`: from the `__NAME` on. `parent`: the pid of the skiff process that started us, as
/// it told us.
pub fn run(args: &[String], parent: Option<u32>) -> i32 {
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
