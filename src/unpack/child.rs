//! The async side of layer unpacking: a `skiff __unpack-layer` child (which enters the user
//! namespace) fed through its stdin, so a layer unpacks while it downloads.

use super::{Report, UnpackError};
use crate::oci::digest::Digest;
use crate::proc::HelperCmd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};

pub struct LayerUnpacker {
    child: Child,
    stdin: Option<ChildStdin>,
    diff_id: Digest,
    /// The child stopped reading (it failed); its error comes from `finish`.
    broken: bool,
}

/// The helper as an async child of this process.
fn helper(cmd: HelperCmd) -> Result<Command, UnpackError> {
    cmd.command()
        .map(Command::from)
        .map_err(|e| UnpackError::Io {
            op: "locate skiff",
            path: "/proc/self/exe".into(),
            source: std::io::Error::other(e),
        })
}

/// Starts `skiff __unpack-layer` reading the layer from `stdin`.
fn spawn_helper(store_root: &Path, diff_id: &Digest, stdin: Stdio) -> Result<Child, UnpackError> {
    helper(HelperCmd::UnpackLayer {
        store: store_root.to_path_buf(),
        diff_id: Some(diff_id.to_string()),
    })?
    .stdin(stdin)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .map_err(|e| UnpackError::Io {
        op: "start unpacker",
        path: store_root.to_path_buf(),
        source: e,
    })
}

impl LayerUnpacker {
    pub fn spawn(store_root: &Path, diff_id: &Digest) -> Result<LayerUnpacker, UnpackError> {
        let mut child = spawn_helper(store_root, diff_id, Stdio::piped())?;
        let stdin = child.stdin.take();
        Ok(LayerUnpacker {
            child,
            stdin,
            diff_id: diff_id.clone(),
            broken: false,
        })
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        if let Some(s) = &mut self.stdin {
            if s.write_all(bytes).await.is_err() {
                self.broken = true;
            }
        }
    }

    pub async fn finish(mut self) -> Result<Report, UnpackError> {
        drop(self.stdin.take());
        wait(self.child, &self.diff_id).await
    }

    pub async fn abort(mut self) {
        let _ = self.child.kill().await;
    }
}

async fn wait(child: Child, diff_id: &Digest) -> Result<Report, UnpackError> {
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| UnpackError::Io {
            op: "wait for unpacker",
            path: Default::default(),
            source: e,
        })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(UnpackError::Decompress(format!("layer {diff_id}: {msg}")));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| UnpackError::Decompress(format!("layer {diff_id}: unreadable report: {e}")))
}

/// Unpacks a stored blob (a layer downloaded earlier, or whose download restarted).
pub async fn unpack_blob_file(
    store_root: &Path,
    diff_id: &Digest,
    blob: &Path,
) -> Result<Report, UnpackError> {
    let file = std::fs::File::open(blob).map_err(|e| UnpackError::Io {
        op: "open",
        path: blob.to_path_buf(),
        source: e,
    })?;
    let child = spawn_helper(store_root, diff_id, Stdio::from(file))?;
    wait(child, diff_id).await
}

/// Removes store paths from inside the user namespace that owns their files.
pub async fn remove_paths(paths: &[PathBuf]) -> Result<(), UnpackError> {
    if paths.is_empty() {
        return Ok(());
    }
    let out = helper(HelperCmd::Remove {
        paths: paths.to_vec(),
    })?
    .output()
    .await
    .map_err(|e| UnpackError::Io {
        op: "start remover",
        path: paths[0].clone(),
        source: e,
    })?;
    if !out.status.success() {
        return Err(UnpackError::Decompress(format!(
            "removing {}: {}",
            paths[0].display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
