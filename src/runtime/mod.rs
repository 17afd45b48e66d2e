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

/// A container's or pod's name as podman accepts it, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`: it names
/// a directory of the store, so it can never reach outside it (`..`, `/`) or be mistaken
/// for skiff's own entries there (which start with a dot).
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Runs one of skiff's internal helper processes (`main.rs` dispatches `__NAME` here, before
/// any thread exists: entering a user namespace requires that) and returns its exit status.
/// `parent`: the pid of the skiff process that started it, as it told it.
pub fn run_helper(cmd: crate::proc::HelperCmd, parent: Option<u32>) -> i32 {
    use crate::proc::HelperCmd;
    // A helper never outlives the skiff process that started it (not even a kill -9 of it).
    // A detached container's shim must outlive the `skiff run -d` that started it.
    if !cmd.runs_detached() && !dies_with_parent(parent) {
        return 1;
    }
    match cmd {
        HelperCmd::UnpackLayer { store, diff_id } => {
            store_helpers::unpack_layer_main(&store, diff_id.as_deref())
        }
        HelperCmd::Remove { paths } => store_helpers::remove_main(&paths),
        HelperCmd::RemoveIn { pid, paths } => store_helpers::remove_in_main(pid, &paths),
        HelperCmd::NetHelper { program, args } => network::helper_main(&program, &args),
        HelperCmd::Probe {
            pod_dir,
            timeout_ms,
            ports,
        } => pod::probe_main(&pod_dir, timeout_ms, &ports),
        HelperCmd::Pod { dir } => pod::pod_main(&dir),
        HelperCmd::Shim { dir } => shim::shim_main(&dir, crate::proc::ShimPipes::inherited()),
        HelperCmd::Exec { dir } => exec::exec_main(&dir),
    }
}

/// Arms this process's parent-death signal (SIGKILL); false when the parent, `parent` (or
/// the process's parent when not known), died before it was armed. getppid() read only
/// after arming would already name the reaper then.
fn dies_with_parent(parent: Option<u32>) -> bool {
    let pid = |p: rustix::process::Pid| p.as_raw_nonzero().get() as u32;
    let before = rustix::process::getppid();
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    rustix::process::getppid().map(pid) == parent.or(before.map(pid))
}

/// The shim of a foreground container, forked from `skiff run` before the container exists
/// (see `container::EarlyShim`): it dies with `run`, then runs as `skiff __shim DIR` would.
pub(crate) fn forked_shim_main(
    dir: &std::path::Path,
    parent: u32,
    pipes: crate::proc::ShimPipes,
) -> i32 {
    if !dies_with_parent(Some(parent)) {
        return 1;
    }
    shim::shim_main(dir, pipes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_stay_inside_the_store() {
        let cases = [
            ("db", true),
            ("job-0f3a-svc-0", true),
            ("a.b_c-1", true),
            ("7", true),
            ("", false),
            (".", false),
            ("..", false),
            ("../x", false),
            ("a/b", false),
            (".creating-x-1", false),
            ("-x", false),
            ("_x", false),
            ("a b", false),
            ("ä", false),
        ];
        for (name, valid) in cases {
            assert_eq!(super::is_valid_name(name), valid, "{name:?}");
        }
    }
}
