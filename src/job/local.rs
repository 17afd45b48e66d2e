//! The job's seams on this machine: images from the store (pulled or imported as policies
//! allow), pods and containers through skiff's runtime, in-process. What must run in a
//! single-threaded process (joining a user namespace: exec, the port probe, removing files
//! owned by subordinate ids) runs as a typed helper process; blocking runtime calls run on
//! tokio's blocking pool.

use super::Stream;
use super::seams::{
    BoxError, ContainerRequest, ImageSource, JobRuntime, OutputSink, PodRequest, RunExit,
};
use crate::image::ResolvedImage;
use crate::image::pull::{Policy, Puller};
use crate::runtime::container::{self, ContainerDir, CreateOptions};
use crate::runtime::network::Network;
use crate::runtime::pod::{self, PodOptions};
use futures_util::future::LocalBoxFuture as BoxFuture;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

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

/// The runtime's options for a job's container.
fn create_options(c: &ContainerRequest) -> CreateOptions {
    CreateOptions {
        name: Some(c.name.clone()),
        command: c.command.clone(),
        entrypoint: c.entrypoint.clone(),
        // An env file could not carry a value with a newline; neither does this.
        env: c
            .env
            .iter()
            .filter(|(k, v)| !k.is_empty() && !v.contains('\n'))
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        workdir: c.workdir.clone(),
        user: c.settings.user.clone(),
        cap_add: c.settings.cap_add.clone(),
        cap_drop: c.settings.cap_drop.clone(),
        tmpfs: c.settings.tmpfs.clone(),
        limits: c.settings.limits.clone(),
        seccomp: c.settings.seccomp.clone(),
        pod: Some(c.pod.clone()),
        hosts: c.hosts.clone(),
        volumes: c.volumes.clone(),
        ..Default::default()
    }
}

/// A foreground shim's waiting task: aborted (so the shim is killed) when dropped, unless
/// detached once the shim reported its container's exit.
struct ShimTask(Option<tokio::task::JoinHandle<std::io::Result<std::process::ExitStatus>>>);

impl ShimTask {
    /// The shim's exit status, once it has ended.
    async fn wait(&mut self) -> Option<std::process::ExitStatus> {
        let task = self.0.take()?;
        task.await.ok()?.ok()
    }

    /// The shim finishes on its own.
    fn detach(&mut self) {
        self.0 = None;
    }
}

impl Drop for ShimTask {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Relays a child's output a whole line at a time; what it said on stderr is kept too (a
/// container that could not start says why there).
async fn relay(
    stream: Option<impl tokio::io::AsyncRead + Unpin>,
    kind: Stream,
    output: OutputSink<'_>,
) -> String {
    let Some(stream) = stream else {
        return String::new();
    };
    let mut lines = tokio::io::BufReader::new(stream);
    let (mut buf, mut said) = (Vec::new(), String::new());
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                output(kind, &buf);
                if kind == Stream::Stderr && said.len() < 4096 {
                    said.push_str(&String::from_utf8_lossy(&buf));
                }
            }
        }
    }
    said
}

/// Times a runtime call: one info line per call on the `skiff::job::timing` target, so the
/// per-container cost inside a job or a driver call can be read (and benchmarked) step by step.
async fn timed<T>(step: &str, what: &str, work: impl std::future::Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let result = work.await;
    tracing::info!(
        target: "skiff::job::timing",
        "{step} {what}: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    result
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
        Box::pin(timed(
            "pod create",
            &pod.name,
            blocking(move || {
                let opts = PodOptions {
                    name: request.name,
                    network: Network::parse(&request.network)?,
                    hosts: request.hosts,
                    dns: request.dns,
                    owner: request.owner,
                    userns: request.userns,
                };
                Ok(pod::create(&root, &opts)?)
            }),
        ))
    }

    fn start<'a>(&'a self, c: &'a ContainerRequest) -> BoxFuture<'a, Result<(), BoxError>> {
        let root = self.root.clone();
        let request = c.clone();
        Box::pin(timed(
            "start",
            &c.name,
            blocking(move || {
                let opts = create_options(&request);
                container::create(&root, &request.image, &opts)?.start_detached()?;
                Ok(())
            }),
        ))
    }

    fn create<'a>(&'a self, c: &'a ContainerRequest) -> BoxFuture<'a, Result<(), BoxError>> {
        let root = self.root.clone();
        let request = c.clone();
        Box::pin(timed(
            "create",
            &c.name,
            blocking(move || {
                container::create(&root, &request.image, &create_options(&request))?;
                Ok(())
            }),
        ))
    }

    fn run<'a>(
        &'a self,
        name: &'a str,
        input: &'a [u8],
        output: OutputSink<'a>,
    ) -> BoxFuture<'a, Result<RunExit, BoxError>> {
        Box::pin(timed("run", name, async move {
            let c = container::find(&self.root, name)?;
            let (command, mut exit) = c.foreground_command_reporting_exit()?;
            let mut child = tokio::process::Command::from(command)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()?;
            exit.spawned();
            let mut stdin = child.stdin.take();
            let feed = async move {
                if let Some(pipe) = &mut stdin {
                    // A process that never reads its stdin is no error.
                    let _ = pipe.write_all(input).await;
                }
                drop(stdin);
            };
            let out = relay(child.stdout.take(), Stream::Stdout, output);
            let err = relay(child.stderr.take(), Stream::Stderr, output);
            // The shim reports the exit status before its own cleanup, and closes its output
            // then; it is reaped (or, if this run is dropped, killed) by `shim`.
            let mut shim = ShimTask(Some(tokio::spawn(async move { child.wait().await })));
            let mut reported = tokio::task::spawn_blocking(move || exit.read());
            let ended = async {
                let waiting = shim.0.as_mut().expect("spawned");
                tokio::select! {
                    r = &mut reported => match r.ok().flatten() {
                        Some(code) => (Some(code), None),
                        // Not reported: the shim's own end says what happened.
                        None => (None, shim.wait().await),
                    },
                    // Ended first (a copy of the pipe's write end may have leaked into a
                    // process spawned meanwhile): its state says the rest.
                    s = waiting => {
                        shim.0 = None;
                        (None, s.ok().and_then(Result::ok))
                    }
                }
            };
            let ((reported, status), _, _, said) = tokio::join!(ended, feed, out, err);
            shim.detach();
            let status = status.map_or_else(|| "no status".to_string(), |s| s.to_string());
            Ok(match reported.or_else(|| c.last_exit()) {
                Some(code) => RunExit::Exited(code),
                None => RunExit::NotStarted(match said.trim() {
                    "" => format!("its start ended with {status}"),
                    why => why.lines().last().unwrap_or(why).to_string(),
                }),
            })
        }))
    }

    fn kill<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ()> {
        let root = self.root.clone();
        let owned = name.to_string();
        Box::pin(async move {
            let killed = blocking(move || {
                Ok(container::find(&root, &owned)?.kill(nix::sys::signal::Signal::SIGKILL)?)
            })
            .await;
            if let Err(e) = killed {
                tracing::debug!("killing {name}: {e}");
            }
        })
    }

    fn wait_for_ports<'a>(
        &'a self,
        pod_name: &'a str,
        ports: &'a [u16],
        timeout: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(timed("wait for ports", pod_name, async move {
            let Ok(cmd) = pod::probe_command(&self.root, pod_name, timeout, ports) else {
                return false;
            };
            tokio::process::Command::from(cmd)
                .stdout(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success())
        }))
    }

    fn logs(&self, container: &str) -> String {
        std::fs::read_to_string(ContainerDir::in_store(&self.root, container).log())
            .unwrap_or_default()
    }

    fn remove_pod<'a>(&'a self, pod_name: &'a str) -> BoxFuture<'a, ()> {
        let root = self.root.clone();
        let name = pod_name.to_string();
        Box::pin(timed("pod remove", pod_name, async move {
            let removed = blocking(move || Ok(pod::remove(&root, &name, true)?)).await;
            if let Err(e) = removed {
                tracing::debug!("removing pod {pod_name}: {e}");
            }
        }))
    }

    fn remove_files<'a>(&'a self, paths: &'a [PathBuf]) -> BoxFuture<'a, Result<(), BoxError>> {
        let paths = paths.to_vec();
        Box::pin(blocking(move || Ok(container::remove_paths(&paths)?)))
    }
}
