//! The job's seams on this store: images through the puller, pods and containers through
//! skiff's runtime.

use futures_util::future::LocalBoxFuture as BoxFuture;
use skiff::image::ResolvedImage;
use skiff::image::{Policy, Puller};
use skiff::job::Stream;
use skiff::job::seams::{
    BoxError, ContainerRequest, ImageSource, JobRuntime, OutputSink, PodRequest,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// Images from the store, pulled or imported as the policies allow.
pub struct StoreImages {
    pub puller: Puller,
}

impl ImageSource for StoreImages {
    fn ensure<'a>(
        &'a self,
        name: &'a str,
        policies: &'a [Policy],
    ) -> BoxFuture<'a, Result<ResolvedImage, BoxError>> {
        Box::pin(async move { Ok(self.puller.ensure_resolved(name, policies).await?) })
    }
}

/// Pods and containers of the store at `root`; service environments are written as private
/// files in `env_dir` (the job's directory), never on a command line.
pub struct StoreRuntime {
    pub root: PathBuf,
    pub env_dir: PathBuf,
}

impl StoreRuntime {
    fn skiff(&self) -> Result<tokio::process::Command, BoxError> {
        let mut c = tokio::process::Command::new(std::env::current_exe()?);
        c.arg("--root").arg(&self.root);
        Ok(c)
    }
}

/// A failed skiff command, with what it printed.
fn failed(out: &std::process::Output) -> BoxError {
    String::from_utf8_lossy(&out.stderr)
        .trim()
        .to_string()
        .into()
}

fn write_private(path: &Path, body: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(body.as_bytes())
}

impl JobRuntime for StoreRuntime {
    fn create_pod<'a>(&'a self, pod: &'a PodRequest) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let mut cmd = self.skiff()?;
            cmd.args(["pod", "create", "--network", &pod.network]);
            if let Some(owner) = pod.owner {
                cmd.args(["--owner", &owner.to_string()]);
            }
            let out = cmd.arg(&pod.name).output().await?;
            if !out.status.success() {
                return Err(failed(&out));
            }
            Ok(())
        })
    }

    fn start<'a>(&'a self, c: &'a ContainerRequest) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let mut cmd = self.skiff()?;
            cmd.args([
                "run", "-d", "--pull", "never", "--pod", &c.pod, "--name", &c.name,
            ]);
            if !c.env.is_empty() {
                let env_file = self.env_dir.join(format!("{}.env", c.name));
                let body: String = c
                    .env
                    .iter()
                    .filter(|(k, v)| !k.is_empty() && !v.contains('\n'))
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect();
                write_private(&env_file, &body)?;
                cmd.arg("--env-file").arg(&env_file);
            }
            for (host, ip) in &c.hosts {
                cmd.arg("--add-host").arg(format!("{host}:{ip}"));
            }
            for (source, target, read_only) in &c.volumes {
                let ro = if *read_only { ":ro" } else { "" };
                cmd.arg("-v")
                    .arg(format!("{}:{target}{ro}", source.display()));
            }
            if let Some(w) = &c.workdir {
                cmd.args(["-w", w]);
            }
            if let Some(e) = &c.entrypoint {
                cmd.arg("--entrypoint").arg(serde_json::to_string(e)?);
            }
            let out = cmd.arg(&c.image.name).args(&c.command).output().await?;
            if !out.status.success() {
                return Err(failed(&out));
            }
            Ok(())
        })
    }

    fn exec<'a>(
        &'a self,
        container: &'a str,
        command: &'a [String],
        output: OutputSink<'a>,
    ) -> BoxFuture<'a, Result<i32, BoxError>> {
        Box::pin(async move {
            let mut child = self
                .skiff()?
                .arg("exec")
                .arg(container)
                .args(command)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            let relay = |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>,
                         kind: Stream| async move {
                let Some(stream) = stream else { return };
                let mut lines = tokio::io::BufReader::new(stream);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match lines.read_until(b'\n', &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => output(kind, &buf),
                    }
                }
            };
            let out = relay(
                child.stdout.take().map(|s| Box::new(s) as _),
                Stream::Stdout,
            );
            let err = relay(
                child.stderr.take().map(|s| Box::new(s) as _),
                Stream::Stderr,
            );
            let (status, _, _) = tokio::join!(child.wait(), out, err);
            let status = status?;
            status.code().ok_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                format!(
                    "skiff exec killed by signal {}",
                    status.signal().unwrap_or(0)
                )
                .into()
            })
        })
    }

    fn wait_for_ports<'a>(
        &'a self,
        pod: &'a str,
        ports: &'a [u16],
        timeout: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Ok(exe) = std::env::current_exe() else {
                return false;
            };
            tokio::process::Command::new(exe)
                .arg("__probe")
                .arg(self.root.join("pods").join(pod))
                .arg(timeout.as_millis().to_string())
                .args(ports.iter().map(|p| p.to_string()))
                .stdout(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success())
        })
    }

    fn logs(&self, container: &str) -> String {
        std::fs::read_to_string(self.root.join("containers").join(container).join("log"))
            .unwrap_or_default()
    }

    fn remove_pod<'a>(&'a self, pod: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(mut cmd) = self.skiff() {
                let _ = cmd
                    .args(["pod", "rm", "-f", pod])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await;
            }
        })
    }

    fn remove_files<'a>(&'a self, paths: &'a [PathBuf]) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            skiff::unpack::child::remove_paths(paths).await?;
            Ok(())
        })
    }
}
