//! The job's seams on this machine: images from the store (pulled or imported as policies
//! allow), pods and containers through skiff's runtime, in-process. What must run in a
//! single-threaded process (joining a user namespace: exec, the port probe, removing files
//! owned by subordinate ids) runs as a typed helper process; blocking runtime calls run on
//! tokio's blocking pool.

use super::Stream;
use super::seams::{BoxError, ContainerRequest, ImageSource, JobRuntime, OutputSink, PodRequest};
use crate::image::ResolvedImage;
use crate::image::pull::{Policy, Puller};
use crate::runtime::container::{self, ContainerDir, CreateOptions};
use crate::runtime::exec::{self, ExecRequest};
use crate::runtime::network::Network;
use crate::runtime::plan::Volume;
use crate::runtime::pod::{self, PodOptions};
use futures_util::future::LocalBoxFuture as BoxFuture;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

/// Images of the store behind `puller`.
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

/// Pods and containers of the store at `root`.
pub struct LocalRuntime {
    pub root: PathBuf,
}

/// Runs a blocking runtime call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BoxError> + Send + 'static,
) -> Result<T, BoxError> {
    tokio::task::spawn_blocking(f).await?
}

impl JobRuntime for LocalRuntime {
    fn create_pod<'a>(&'a self, pod: &'a PodRequest) -> BoxFuture<'a, Result<(), BoxError>> {
        let root = self.root.clone();
        let request = pod.clone();
        Box::pin(blocking(move || {
            let opts = PodOptions {
                name: request.name,
                network: Network::parse(&request.network)?,
                hosts: vec![],
                dns: vec![],
                owner: request.owner,
            };
            Ok(pod::create(&root, &opts)?)
        }))
    }

    fn start<'a>(&'a self, c: &'a ContainerRequest) -> BoxFuture<'a, Result<(), BoxError>> {
        let root = self.root.clone();
        let c = c.clone();
        Box::pin(blocking(move || {
            let opts = CreateOptions {
                name: Some(c.name),
                command: c.command,
                entrypoint: c.entrypoint,
                // An env file could not carry a value with a newline; neither does this.
                env: c
                    .env
                    .iter()
                    .filter(|(k, v)| !k.is_empty() && !v.contains('\n'))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
                workdir: c.workdir,
                pod: Some(c.pod),
                hosts: c.hosts,
                volumes: c
                    .volumes
                    .into_iter()
                    .map(|(source, destination, read_only)| Volume {
                        source,
                        destination,
                        read_only,
                    })
                    .collect(),
                ..Default::default()
            };
            container::create(&root, &c.image, &opts)?.start_detached()?;
            Ok(())
        }))
    }

    fn exec<'a>(
        &'a self,
        container: &'a str,
        command: &'a [String],
        output: OutputSink<'a>,
    ) -> BoxFuture<'a, Result<i32, BoxError>> {
        Box::pin(async move {
            let request = ExecRequest {
                args: command.to_vec(),
                ..Default::default()
            };
            let mut cmd =
                tokio::process::Command::from(exec::command(&self.root, container, &request)?);
            let mut child = cmd
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
                    "the exec helper was killed by signal {}",
                    status.signal().unwrap_or(0)
                )
                .into()
            })
        })
    }

    fn wait_for_ports<'a>(
        &'a self,
        pod_name: &'a str,
        ports: &'a [u16],
        timeout: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Ok(cmd) = pod::probe_command(&self.root, pod_name, timeout, ports) else {
                return false;
            };
            tokio::process::Command::from(cmd)
                .stdout(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success())
        })
    }

    fn logs(&self, container: &str) -> String {
        std::fs::read_to_string(ContainerDir::in_store(&self.root, container).log())
            .unwrap_or_default()
    }

    fn remove_pod<'a>(&'a self, pod_name: &'a str) -> BoxFuture<'a, ()> {
        let root = self.root.clone();
        let name = pod_name.to_string();
        Box::pin(async move {
            let removed = blocking(move || Ok(pod::remove(&root, &name, true)?)).await;
            if let Err(e) = removed {
                tracing::debug!("removing pod {pod_name}: {e}");
            }
        })
    }

    fn remove_files<'a>(&'a self, paths: &'a [PathBuf]) -> BoxFuture<'a, Result<(), BoxError>> {
        let paths = paths.to_vec();
        Box::pin(blocking(move || Ok(container::remove_paths(&paths)?)))
    }
}
