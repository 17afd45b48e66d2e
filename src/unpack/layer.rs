//! Unpacking one layer into the store, as the `__unpack-layer` helper does it inside the
//! user namespace: extract into a temporary directory, check the diff_id, sync, rename.

use super::{Options, Report, UnpackError, remove_tree, unpack_verified};
use crate::digest::Digest;
use crate::store::Store;
use std::io::Read;

pub fn unpack_into_store(
    store: &Store,
    diff_id: &Digest,
    input: impl Read,
    opts: &Options,
) -> Result<Report, UnpackError> {
    let io = |op, path: &std::path::Path, e: std::io::Error| UnpackError::Io {
        op,
        path: path.to_path_buf(),
        error: e,
    };
    let _unpacking = store
        .lock_unpacking(diff_id)
        .map_err(|e| io("lock", store.root(), std::io::Error::other(e.to_string())))?;
    let final_path = store.layer_path(diff_id);
    std::fs::create_dir_all(store.layers_dir()).map_err(|e| io("mkdir", &store.layers_dir(), e))?;
    // Holding the unpacking lock, any other temporary directory of this layer is a leftover
    // of a killed run: clean it now rather than waiting for a prune.
    if let Ok(rd) = std::fs::read_dir(store.layers_dir()) {
        let prefix = format!("tmp-{}-", diff_id.hex());
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                remove_tree(&e.path())?;
            }
        }
    }
    let tmp = store.layer_tmp(diff_id);
    std::fs::create_dir(&tmp).map_err(|e| io("mkdir", &tmp, e))?;
    let result = unpack_verified(input, &tmp, opts, diff_id).and_then(|report| {
        // Durable before it is visible: a crash never leaves a complete-looking layer.
        let dir = std::fs::File::open(&tmp).map_err(|e| io("open", &tmp, e))?;
        rustix::fs::syncfs(&dir).map_err(|e| io("syncfs", &tmp, e.into()))?;
        match std::fs::rename(&tmp, &final_path) {
            Ok(()) => Ok(report),
            // Someone else finished the same layer first: theirs is as good as ours.
            Err(_) if final_path.is_dir() => {
                remove_tree(&tmp)?;
                Ok(report)
            }
            Err(e) => Err(io("rename", &final_path, e)),
        }
    });
    if result.is_err() {
        let _ = remove_tree(&tmp);
    }
    result
}
