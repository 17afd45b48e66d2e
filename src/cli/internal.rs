//! Hidden subcommands the binary runs as its own helper, single-threaded and before any
//! runtime exists (entering a user namespace requires that).

use anyhow::Result;
use skiff::oci::digest::Digest;
use skiff::proc::HelperCmd;
use skiff::runtime::userns;
use skiff::store::Store;
use skiff::unpack::{self, Options};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// `args`: from the `__NAME` on. `parent`: the pid of the skiff process that started us, as
/// it told us.
pub fn run(args: &[String], parent: Option<u32>) -> i32 {
    let level = std::env::var("SKIFF_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(format!(
                "{level},{}",
                super::quiet_runtime(&level)
            ))
            .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .try_init();
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
    let result = match cmd {
        HelperCmd::MapIds { pid, ids } => return userns::map_ids_main(pid, ids),
        HelperCmd::UnpackLayer { store, diff_id } => unpack_layer(&store, diff_id.as_deref()),
        HelperCmd::Remove { paths } => remove(&paths),
        HelperCmd::NetHelper { program, args } => {
            return skiff::runtime::network::helper_main(&program, &args);
        }
        HelperCmd::Probe {
            pod_dir,
            timeout_ms,
            ports,
        } => return skiff::runtime::pod::probe_main(&pod_dir, timeout_ms, &ports),
        HelperCmd::Pod { dir } => return skiff::runtime::pod::pod_main(&dir),
        HelperCmd::Shim { dir } => return skiff::runtime::shim::shim_main(&dir),
        HelperCmd::Exec { dir } => return skiff::runtime::exec::exec_main(&dir),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e:#}");
            1
        }
    }
}

fn enter() -> Result<userns::Mapping> {
    let mapping = userns::detect();
    userns::enter(&mapping)?;
    Ok(mapping)
}

/// `__unpack-layer STORE DIFF_ID`: the layer stream on stdin, the report on stdout.
fn unpack_layer(root: &Path, diff_id: Option<&str>) -> Result<()> {
    // None ("-"): not known in advance (an import); the layer is named by what it hashes to.
    let diff_id: Option<Digest> = diff_id.map(str::parse).transpose()?;
    let mapping = enter()?;
    let store = Store::open(root)?;
    let stdin = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let opts = Options::overlay(mapping.can_chown(), mapping.is_root());
    let report = unpack::layer::unpack_into_store(&store, diff_id.as_ref(), stdin, &opts)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// `__remove PATH...`: trees whose files may belong to subordinate ids.
fn remove(paths: &[PathBuf]) -> Result<()> {
    enter()?;
    for p in paths {
        unpack::remove_tree(p)?;
    }
    Ok(())
}
