//! The full remote conformance suite against real emulators: moto (S3) and Azurite (Azure), started
//! by scripts/emulators.sh. GCS runs it against the in-test fake server (see gcs.rs).

#![cfg(all(feature = "aws", feature = "azure"))]

use std::sync::Arc;

use strata_remote_s3::testing::emulator;
use strata_remote_s3::{BucketOptions, ObjectStoreRemote, Provider};

async fn conformance(provider: Provider) {
    let Some(e) = emulator(provider, "conformance") else {
        return;
    };
    let opts = BucketOptions::from_map(&e.options).unwrap();
    let remote = ObjectStoreRemote::open(&e.url, &opts).unwrap();
    strata_remote::conformance::run_all(Arc::new(remote)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_on_moto_passes_the_conformance_suite() {
    conformance(Provider::S3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_on_azurite_passes_the_conformance_suite() {
    conformance(Provider::Azure).await;
}
