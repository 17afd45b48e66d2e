//! Drawing a pull's progress: bars on a terminal, lines otherwise, nothing with `-q`. All of
//! it on stderr, so stdout keeps only the command's result.

use skiff::image::{PullEvent, PullObserver, Quiet};
use skiff::oci::digest::Digest;
use skiff::registry::push::{PushEvent, PushObserver};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Bars,
    Lines,
    /// Lines for a CI job's log: also which policy let a stored image be used, as the runner
    /// says it (`skiff pull` says that in its own words).
    JobLog,
    Quiet,
}

impl ProgressMode {
    pub fn observer(self) -> Arc<dyn PullObserver> {
        match self {
            ProgressMode::Bars => Arc::new(Bars::default()),
            ProgressMode::Lines => Arc::new(Lines),
            ProgressMode::JobLog => Arc::new(JobLines),
            ProgressMode::Quiet => Arc::new(Quiet),
        }
    }
}

/// One line per event.
pub struct Lines;

impl PullObserver for Lines {
    fn event(&self, event: &PullEvent<'_>) {
        if !matches!(event, PullEvent::Local { .. }) {
            eprintln!("{event}");
        }
    }
}

/// Every event, one line each.
pub struct JobLines;

impl PullObserver for JobLines {
    fn event(&self, event: &PullEvent<'_>) {
        eprintln!("{event}");
    }
}

impl PushObserver for Lines {
    fn event(&self, event: &PushEvent<'_>) {
        eprintln!("{event}");
    }
}

/// A push with `-q` (or JSON output) prints nothing but its result.
pub struct QuietPush;

impl PushObserver for QuietPush {
    fn event(&self, _: &PushEvent<'_>) {}
}

/// A bar per downloading layer; other layer lines print above the bars.
#[derive(Default)]
pub struct Bars {
    multi: indicatif::MultiProgress,
    bars: Mutex<HashMap<Digest, indicatif::ProgressBar>>,
}

impl PullObserver for Bars {
    fn event(&self, event: &PullEvent<'_>) {
        match event {
            PullEvent::LayerStarted { digest, size } => {
                let b = self.multi.add(indicatif::ProgressBar::new(*size));
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "Copying blob {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                b.set_message(digest.hex()[..12].to_string());
                self.bars.lock().expect("lock").insert((*digest).clone(), b);
            }
            PullEvent::LayerDone { digest } => {
                if let Some(b) = self.bars.lock().expect("lock").remove(*digest) {
                    b.finish();
                }
            }
            PullEvent::LayerExists { .. } => {
                let _ = self.multi.println(event.to_string());
            }
            PullEvent::Local { .. } => {}
            PullEvent::Trying { .. }
            | PullEvent::Authenticating { .. }
            | PullEvent::PolicyFailed { .. }
            | PullEvent::PolicyAttempt { .. }
            | PullEvent::FromMirror { .. } => eprintln!("{event}"),
        }
    }

    fn progress(&self, layer: &Digest, bytes: u64) {
        if let Some(b) = self.bars.lock().expect("lock").get(layer) {
            b.inc(bytes);
        }
    }
}
