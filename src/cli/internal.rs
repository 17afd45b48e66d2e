//! Hidden subcommands the binary runs as its own helper, single-threaded and before any
//! runtime exists (entering a user namespace requires that).

use skiff::oci::digest::Digest;
use skiff::runtime::userns;
use skiff::store::Store;
use skiff::unpack::{self, Options};
use std::os::fd::AsFd;
use std::path::PathBuf;

/// `parent`: the pid of the skiff process that started us, as it told us.
pub fn run(cmd: &str, args: &[String], parent: Option<u32>) -> i32 {
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
    // A helper never outlives the skiff process that started it (not even a kill -9 of it).
    // A detached container's shim must outlive the `skiff run -d` that started it.
    let detached =
        cmd == "__pod" || (cmd == "__shim" && std::env::var_os("SKIFF_DETACHED").is_some());
    if cmd != "__map-ids" && !detached {
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
        "__map-ids" => return userns::map_ids_main(args),
        "__unpack-layer" => unpack_layer(args),
        "__remove" => remove(args),
        "__net-helper" => return skiff::runtime::network::helper_main(args),
        "__probe" => return skiff::runtime::pod::probe_main(args),
        "__pod" => match args {
            [dir] => return skiff::runtime::pod::pod_main(std::path::Path::new(dir)),
            _ => Err("usage: skiff __pod POD_DIR".into()),
        },
        "__shim" => match args {
            [dir] => return skiff::runtime::shim::shim_main(std::path::Path::new(dir)),
            _ => Err("usage: skiff __shim CONTAINER_DIR".into()),
        },
        other => Err(format!("unknown internal command {other}")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn enter() -> Result<userns::Mapping, String> {
    let mapping = userns::detect();
    userns::enter(&mapping).map_err(|e| e.to_string())?;
    Ok(mapping)
}

/// `__unpack-layer STORE DIFF_ID`: the layer stream on stdin, the report on stdout.
fn unpack_layer(args: &[String]) -> Result<(), String> {
    let [root, diff_id] = args else {
        return Err("usage: skiff __unpack-layer STORE DIFF_ID|-".into());
    };
    // "-": not known in advance (an import); the layer is named by what it hashes to.
    let diff_id: Option<Digest> = match diff_id.as_str() {
        "-" => None,
        d => Some(d.parse().map_err(|e| format!("{e}"))?),
    };
    let mapping = enter()?;
    let store = Store::open(&PathBuf::from(root)).map_err(|e| e.to_string())?;
    let stdin = std::fs::File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?,
    );
    let opts = Options::overlay(mapping.can_chown(), mapping.is_root());
    let report = unpack::layer::unpack_into_store(&store, diff_id.as_ref(), stdin, &opts)
        .map_err(|e| e.to_string())?;
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// `__remove PATH...`: trees whose files may belong to subordinate ids.
fn remove(args: &[String]) -> Result<(), String> {
    enter()?;
    for p in args {
        unpack::remove_tree(&PathBuf::from(p)).map_err(|e| e.to_string())?;
    }
    Ok(())
}
