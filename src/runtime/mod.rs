//! Running containers rootless: the container and pod APIs, and the shim and helpers that
//! do the work in user namespaces with the user's subordinate ids.

pub mod backend;
pub mod caps;
pub mod container;
pub mod exec;
pub mod host;
pub mod network;
pub mod plan;
pub mod pod;
// pod.json and the member lock; the public names are re-exported by `pod`.
mod pod_state;
pub mod recovery;
pub mod rootfs;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod store_helpers;
// The only module allowed `unsafe`: raw process operations, each with a SAFETY note.
pub mod sys;
pub mod tty;
pub mod userns;

/// Runs one of skiff's internal helper processes (`main.rs` dispatches `__NAME` here, before
/// any thread exists: entering a user namespace requires that) and returns its exit status.
/// `parent`: the pid of the skiff process that started it, as it told it.
pub fn run_helper(cmd: crate::proc::HelperCmd, parent: Option<u32>) -> i32 {
    use crate::proc::HelperCmd;
    // A helper never outlives the skiff process that started it (not even a kill -9 of it).
    // A detached container's shim must outlive the `skiff run -d` that started it.
    if !matches!(cmd, HelperCmd::MapIds { .. }) && !cmd.runs_detached() {
        let pid = |p: rustix::process::Pid| p.as_raw_nonzero().get() as u32;
        let before = rustix::process::getppid();
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
        if rustix::process::getppid().map(pid) != parent.or(before.map(pid)) {
            return 1; // the parent died before the death signal was armed
        }
    }
    match cmd {
        HelperCmd::MapIds { pid, ids } => userns::map_ids_main(pid, ids),
        HelperCmd::UnpackLayer { store, diff_id } => {
            store_helpers::unpack_layer_main(&store, diff_id.as_deref())
        }
        HelperCmd::Remove { paths } => store_helpers::remove_main(&paths),
        HelperCmd::NetHelper { program, args } => network::helper_main(&program, &args),
        HelperCmd::Probe {
            pod_dir,
            timeout_ms,
            ports,
        } => pod::probe_main(&pod_dir, timeout_ms, &ports),
        HelperCmd::Pod { dir } => pod::pod_main(&dir),
        HelperCmd::Shim { dir } => shim::shim_main(&dir),
        HelperCmd::Exec { dir } => exec::exec_main(&dir),
    }
}
