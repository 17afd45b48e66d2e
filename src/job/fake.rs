//! Recording fakes of the job's seams, for unit tests of the job logic without root, a
//! registry or containers.

use super::log::{JobLog, Stream};
use super::seams::{
    BoxError, ContainerRequest, ImageSource, JobRuntime, OutputSink, PodRequest, RunExit,
};
use crate::image::ResolvedImage;
use crate::image::pull::Policy;
use crate::oci::config::ImageConfig;
use futures_util::future::LocalBoxFuture as BoxFuture;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// What a start of one stage script does in the fake.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub output: String,
    pub exit_code: i32,
    /// Never ends by itself (for timeouts): only a kill ends it.
    pub hang: bool,
}

#[derive(Default)]
pub struct FakeRuntime {
    pub calls: Mutex<Vec<String>>,
    pub started: Mutex<Vec<ContainerRequest>>,
    pub pods: Mutex<Vec<PodRequest>>,
    /// The first key a stage's input contains says what it does; a script not listed
    /// succeeds silently.
    pub scripts: BTreeMap<String, Script>,
    /// Containers whose start fails.
    pub failing: Vec<String>,
    /// Created containers whose process never starts (a missing entrypoint).
    pub not_starting: Vec<String>,
    pub killed: Mutex<Vec<String>>,
    /// Whether services' ports answer.
    pub ports_up: bool,
}

impl FakeRuntime {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
    /// A container started or created: recorded, and failing when listed in `failing`.
    fn make<'a>(&'a self, verb: &str, c: &ContainerRequest) -> BoxFuture<'a, Result<(), BoxError>> {
        self.record(format!("{verb} {}", c.name));
        self.started.lock().unwrap().push(c.clone());
        let fails = self.failing.contains(&c.name);
        Box::pin(async move {
            if fails {
                return Err("no such image layer".into());
            }
            Ok(())
        })
    }
}

impl JobRuntime for FakeRuntime {
    fn create_pod<'a>(&'a self, pod: &'a PodRequest) -> BoxFuture<'a, Result<(), BoxError>> {
        self.record(format!("create_pod {} {}", pod.name, pod.network));
        self.pods.lock().unwrap().push(pod.clone());
        Box::pin(async { Ok(()) })
    }

    fn start<'a>(&'a self, c: &'a ContainerRequest) -> BoxFuture<'a, Result<(), BoxError>> {
        self.make("start", c)
    }

    fn create<'a>(&'a self, c: &'a ContainerRequest) -> BoxFuture<'a, Result<(), BoxError>> {
        self.make("create", c)
    }

    fn run<'a>(
        &'a self,
        container: &'a str,
        input: &'a [u8],
        output: OutputSink<'a>,
    ) -> BoxFuture<'a, Result<RunExit, BoxError>> {
        let text = String::from_utf8_lossy(input);
        let key = self.scripts.keys().find(|k| text.contains(k.as_str()));
        self.record(format!(
            "run {container} {}",
            key.map_or("-", |k| k.as_str())
        ));
        let behaviour = key.map(|k| self.scripts[k].clone()).unwrap_or_default();
        let not_starting = self.not_starting.iter().any(|c| c == container);
        // A hanging start ends at the next kill of its container, not an earlier one's.
        let kills = move |killed: &Vec<String>| killed.iter().filter(|c| *c == container).count();
        let kills_before = kills(&self.killed.lock().unwrap());
        Box::pin(async move {
            if not_starting {
                return Ok(RunExit::NotStarted(
                    "/entry.sh: no such file or directory".into(),
                ));
            }
            for line in behaviour.output.split_inclusive('\n') {
                output(Stream::Stdout, line.as_bytes());
            }
            if behaviour.hang {
                while kills(&self.killed.lock().unwrap()) == kills_before {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                return Ok(RunExit::Exited(137));
            }
            Ok(RunExit::Exited(behaviour.exit_code))
        })
    }

    fn kill<'a>(&'a self, container: &'a str) -> BoxFuture<'a, ()> {
        self.record(format!("kill {container}"));
        self.killed.lock().unwrap().push(container.to_string());
        Box::pin(async {})
    }

    fn wait_for_ports<'a>(
        &'a self,
        pod: &'a str,
        ports: &'a [u16],
        _timeout: Duration,
    ) -> BoxFuture<'a, bool> {
        self.record(format!("wait {pod} {ports:?}"));
        let up = self.ports_up;
        Box::pin(async move { up })
    }

    fn logs(&self, container: &str) -> String {
        format!("log of {container}")
    }

    fn remove_pod<'a>(&'a self, pod: &'a str) -> BoxFuture<'a, ()> {
        self.record(format!("remove_pod {pod}"));
        Box::pin(async {})
    }

    fn remove_files<'a>(&'a self, paths: &'a [PathBuf]) -> BoxFuture<'a, Result<(), BoxError>> {
        self.record(format!("remove_files {}", paths.len()));
        Box::pin(async { Ok(()) })
    }
}

/// Images by name; services expose 6379.
#[derive(Default)]
pub struct FakeImages {
    pub missing: Vec<String>,
    pub asked: Mutex<Vec<(String, Vec<Policy>)>>,
}

impl ImageSource for FakeImages {
    fn ensure<'a>(
        &'a self,
        name: &'a str,
        policies: &'a [Policy],
    ) -> BoxFuture<'a, Result<ResolvedImage, BoxError>> {
        self.asked
            .lock()
            .unwrap()
            .push((name.to_string(), policies.to_vec()));
        let missing = self.missing.iter().any(|m| m == name);
        Box::pin(async move {
            if missing {
                return Err(format!("{name}: manifest unknown").into());
            }
            let config: ImageConfig = serde_json::from_value(serde_json::json!({
                "config": {"ExposedPorts": {"6379/tcp": {}}},
                "rootfs": {"type": "layers", "diff_ids": []}
            }))?;
            Ok(ResolvedImage {
                name: name.to_string(),
                id: crate::oci::digest::Digest::sha256_of(name.as_bytes()),
                config,
                lowers: vec![],
            })
        })
    }
}

/// Every line and every piece of output, in order.
#[derive(Default)]
pub struct RecordingLog {
    pub entries: Mutex<Vec<(Option<Stream>, String)>>,
}

impl RecordingLog {
    /// Everything, as one text.
    pub fn text(&self) -> String {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .map(|(s, t)| {
                if s.is_none() {
                    format!("{t}\n")
                } else {
                    t.clone()
                }
            })
            .collect()
    }
}

impl JobLog for RecordingLog {
    fn line(&self, text: &str) {
        self.entries.lock().unwrap().push((None, text.to_string()));
    }
    fn output(&self, stream: Stream, text: &str) {
        self.entries
            .lock()
            .unwrap()
            .push((Some(stream), text.to_string()));
    }
}
