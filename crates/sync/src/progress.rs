//! Progress reporting for long transfers. The library stays free of terminal code: a front end (the
//! CLI draws indicatif bars) implements [`ProgressSink`].

use std::sync::Arc;

/// Receives transfer progress.
pub trait ProgressSink: Send + Sync {
    /// A transfer starts; `total` bytes if known.
    fn start(&self, what: &str, total: Option<u64>);
    /// `bytes` more were moved.
    fn advance(&self, bytes: u64);
    /// The transfer ended.
    fn finish(&self);
    /// A phase of a push, pull or fetch begins: `building the delta`, `uploading`, `publishing`,
    /// `downloading`, `verifying`, `applying` or `merging` (transfers inside a phase still report
    /// through `start`). Ignored unless implemented.
    fn phase(&self, _phase: &str) {}
}

/// An optional progress sink; `Progress::none()` reports nothing.
#[derive(Clone, Default)]
pub struct Progress(Option<Arc<dyn ProgressSink>>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Progress(sink)"
        } else {
            "Progress(none)"
        })
    }
}

impl Progress {
    /// No reporting.
    pub fn none() -> Progress {
        Progress(None)
    }

    /// Reports to `sink`.
    pub fn new(sink: Arc<dyn ProgressSink>) -> Progress {
        Progress(Some(sink))
    }

    pub(crate) fn start(&self, what: &str, total: Option<u64>) {
        if let Some(s) = &self.0 {
            s.start(what, total);
        }
    }

    pub(crate) fn advance(&self, bytes: u64) {
        if let Some(s) = &self.0 {
            s.advance(bytes);
        }
    }

    pub(crate) fn phase(&self, phase: &str) {
        if let Some(s) = &self.0 {
            s.phase(phase);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(s) = &self.0 {
            s.finish();
        }
    }
}
