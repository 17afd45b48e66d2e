//! The helpers that write the store from inside its user namespace, where files may belong
//! to subordinate ids: `__unpack-layer` (a layer stream on stdin, into the store) and
//! `__remove` (trees a container or job left). Their spawners are `unpack::child`'s.

use super::userns;
use crate::oci::digest::Digest;
use crate::store::Store;
use crate::unpack::Options;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

type HelperResult = Result<(), Box<dyn std::error::Error>>;

/// A helper's exit: 0, or 1 with the error's chain on stderr (the parent's channel).
fn helper_exit(result: HelperResult) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", crate::error_chain(&*e));
            1
        }
    }
}

/// The `__unpack-layer STORE DIFF_ID` helper, in the store's user namespace: the layer
/// stream on stdin, the report on stdout.
pub fn unpack_layer_main(root: &Path, diff_id: Option<&str>) -> i32 {
    helper_exit((|| -> HelperResult {
        // None ("-"): not known in advance (an import); the layer is named by what it hashes to.
        let diff_id: Option<Digest> = diff_id.map(str::parse).transpose()?;
        let mapping = userns::detect();
        userns::enter(&mapping)?;
        let store = Store::open(root)?;
        let stdin = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
        let opts = Options::overlay(mapping.can_chown(), mapping.is_root());
        let report =
            crate::unpack::layer::unpack_into_store(&store, diff_id.as_ref(), stdin, &opts)?;
        println!("{}", serde_json::to_string(&report)?);
        Ok(())
    })())
}

/// The `__remove-in PID PATH...` helper: as `__remove`, from inside the user namespace of
/// PID (a pod's infra process, alive), which costs no id mapping (two setuid helpers).
pub fn remove_in_main(pid: u32, paths: &[PathBuf]) -> i32 {
    helper_exit((|| -> HelperResult {
        userns::join(pid, &userns::detect())?;
        remove_trees(paths)
    })())
}

fn remove_trees(paths: &[PathBuf]) -> HelperResult {
    for p in paths {
        crate::unpack::remove_tree(p)?;
    }
    Ok(())
}

/// The `__remove PATH...` helper: trees whose files may belong to subordinate ids, removed
/// from inside the user namespace that owns them.
pub fn remove_main(paths: &[PathBuf]) -> i32 {
    helper_exit((|| -> HelperResult {
        userns::enter(&userns::detect())?;
        remove_trees(paths)
    })())
}
