//! A front end sees the phases of a push and a pull (for labels such as "main: verifying"), in order,
//! and transfers named by branch, never by blob file name.

use std::sync::{Arc, Mutex};

use strata_engine::Strata;
use strata_remote::InMemoryRemote;
use strata_sync::{pull_from, push_to, Progress, ProgressSink, PullOptions, PushOptions};

#[derive(Default)]
struct Record(Mutex<Vec<String>>);

impl ProgressSink for Record {
    fn start(&self, what: &str, _total: Option<u64>) {
        self.0.lock().unwrap().push(format!("start {what}"));
    }
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
    fn phase(&self, phase: &str) {
        self.0.lock().unwrap().push(format!("phase {phase}"));
    }
}

fn take(r: &Record) -> Vec<String> {
    std::mem::take(&mut *r.0.lock().unwrap())
}

#[tokio::test]
async fn push_and_pull_report_their_phases_in_order() {
    let remote = InMemoryRemote::new();
    let a = Strata::open_temp().unwrap();
    a.main().kv_put("k", 1).unwrap();
    let rec = Arc::new(Record::default());
    let progress = Progress::new(rec.clone());
    let opts = PushOptions {
        progress: progress.clone(),
        ..Default::default()
    };
    push_to(&a, &remote, "hub", "main", &opts).await.unwrap();
    assert_eq!(
        take(&rec),
        [
            "phase building the delta",
            "phase uploading",
            "start upload main",
            "phase publishing"
        ]
    );

    let b = Strata::open_temp().unwrap();
    let opts = PullOptions {
        progress,
        ..Default::default()
    };
    pull_from(&b, &remote, "hub", "main", &opts).await.unwrap();
    assert_eq!(
        take(&rec),
        [
            "phase downloading",
            "start download main",
            "phase verifying",
            "phase applying",
            "phase merging"
        ]
    );
    assert_eq!(b.main().kv_get("k").unwrap(), Some(1i64.into()));
}
