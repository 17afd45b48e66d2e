//! Hidden subcommands the binary runs as its own helper, single-threaded and before any
//! runtime exists (entering a user namespace requires that).

use skiff::proc::HelperCmd;
use skiff::runtime::store_helpers;
use skiff::runtime::userns;

/// `args`: from the `__NAME` on. `parent`: the pid of the skiff process that started us, as
/// it told us.
pub fn run(args: &[String], parent: Option<u32>) -> i32 {
    let level = std::env::var("SKIFF_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    // Never colour: a helper's stderr is read by its parent.
    super::init_tracing(&level, false);
    let cmd = match HelperCmd::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return e.usage_status();
        }
    };
    // A helper never outlives the skiff process that started it (not even a kill -9 of it).
    // A detached container's shim must outlive the `skiff run -d` that started it.
    if !matches!(cmd, HelperCmd::MapIds { .. }) && !cmd.runs_detached() {
        let before = rustix::process::getppid();
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
        let now = rustix::process::getppid();
        let expected = parent.or(before.map(|p| p.as_raw_nonzero().get() as u32));
        if now.map(|p| p.as_raw_nonzero().get() as u32) != expected {
            return 1; // the parent died before the death signal was armed
        }
    }
    match cmd {
        HelperCmd::MapIds { pid, ids } => userns::map_ids_main(pid, ids),
        HelperCmd::UnpackLayer { store, diff_id } => {
            store_helpers::unpack_layer_main(&store, diff_id.as_deref())
        }
        HelperCmd::Remove { paths } => store_helpers::remove_main(&paths),
        HelperCmd::NetHelper { program, args } => {
            skiff::runtime::network::helper_main(&program, &args)
        }
        HelperCmd::Probe {
            pod_dir,
            timeout_ms,
            ports,
        } => skiff::runtime::pod::probe_main(&pod_dir, timeout_ms, &ports),
        HelperCmd::Pod { dir } => skiff::runtime::pod::pod_main(&dir),
        HelperCmd::Shim { dir } => skiff::runtime::shim::shim_main(&dir),
        HelperCmd::Exec { dir } => skiff::runtime::exec::exec_main(&dir),
    }
}
