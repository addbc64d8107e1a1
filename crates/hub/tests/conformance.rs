//! The shared remote conformance suite through HttpRemote -> a real stratahub process -> storage:
//! a folder, and S3 on moto (scripts/emulators.sh; FAILS under scripts/test.sh when moto is missing).

mod support;

use std::sync::Arc;

use strata_remote::{conformance, Remote};
use strata_remote_s3::testing::emulator;
use strata_remote_s3::Provider;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_remote_over_a_folder_hub_passes_the_conformance_suite() {
    let h = FolderHub::start(&[]);
    create_project(&h.hub.url, &h.admin, "acme", "conformance").await;
    let remote = http_remote(&h.hub.url, "acme/conformance", Some(&h.admin));
    conformance::run_all(remote.clone() as Arc<dyn Remote>).await;
    // Everything the suite wrote lives under the project's data folder; its blobs are gone.
    assert!(remote.list_blobs("").await.unwrap().is_empty());
    let files = files_under(&h.dir.path().join("storage"));
    assert!(
        files
            .iter()
            .all(|f| f.starts_with("cursors/data/") || f.starts_with("cursors/hub/")),
        "only cursors remain, under the project's data or the hub's documents: {files:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_remote_over_an_s3_hub_passes_the_conformance_suite() {
    let Some(e) = emulator(Provider::S3, "hub-conformance") else {
        return;
    };
    let opts: Vec<String> = e.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let admin = create_key(&e.url, &opts, true, "admin");
    let hub = HubProcess::start(&e.url, &opts, &[]);
    create_project(&hub.url, &admin, "acme", "conformance").await;
    let remote = http_remote(&hub.url, "acme/conformance", Some(&admin));
    conformance::run_all(remote as Arc<dyn Remote>).await;
}
