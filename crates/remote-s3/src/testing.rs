//! Test support: bucket remotes on the emulators that `scripts/emulators.sh` starts (moto for S3,
//! Azurite for Azure). Not for production use.
//!
//! The script exports `STRATA_TEST_EMULATORS=1` and the endpoints. When that flag is set, a test
//! that asks for an emulator and finds it unconfigured **fails**; when it is not set (a plain
//! `cargo test`), such tests print that they skipped and pass, so that the suite still runs without
//! the emulators. `bash scripts/test.sh` always starts them.

use std::collections::BTreeMap;

use crate::url::Provider;

/// A fresh, unused location on an emulator: a URL with a unique prefix, and the options to reach it.
/// Credentials come from the environment, as for users (the script exports dummy AWS keys for moto;
/// Azurite's development key needs none).
#[derive(Clone, Debug)]
pub struct EmulatorRemote {
    /// `s3://strata-test/<label>-<uuid>` or `az://strata-test/<label>-<uuid>`.
    pub url: String,
    /// `endpoint`, `allow_http`, `max_retries`… as `strata remote add -o` takes them.
    pub options: BTreeMap<String, String>,
}

/// Whether the test script says the emulators are up.
pub fn emulators_required() -> bool {
    std::env::var("STRATA_TEST_EMULATORS").is_ok_and(|v| v == "1")
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A fresh location on the emulator for `provider` (S3 or Azure), or `None` (after printing why) when
/// the emulators are not configured and not required. Panics when they are required but missing.
pub fn emulator(provider: Provider, label: &str) -> Option<EmulatorRemote> {
    let (endpoint_var, bucket_var) = match provider {
        Provider::S3 => ("STRATA_TEST_S3_ENDPOINT", "STRATA_TEST_S3_BUCKET"),
        Provider::Azure => ("STRATA_TEST_AZURE_ENDPOINT", "STRATA_TEST_AZURE_CONTAINER"),
        Provider::Gcs => panic!("there is no GCS emulator; use the in-test fake GCS server"),
    };
    let (Some(endpoint), Some(bucket)) = (var(endpoint_var), var(bucket_var)) else {
        if emulators_required() {
            panic!(
                "STRATA_TEST_EMULATORS=1 but {endpoint_var} / {bucket_var} are not set: \
                 start the emulators with scripts/emulators.sh"
            );
        }
        eprintln!(
            "SKIPPED: {endpoint_var} is not set; run `bash scripts/emulators.sh run -- cargo test` \
             (or scripts/test.sh) to test against the {} emulator",
            provider.scheme()
        );
        return None;
    };
    if provider == Provider::S3 && var("AWS_ACCESS_KEY_ID").is_none() {
        panic!(
            "{endpoint_var} is set but AWS_ACCESS_KEY_ID is not: export dummy AWS credentials \
             (scripts/emulators.sh does)"
        );
    }
    let mut options = BTreeMap::new();
    options.insert("endpoint".to_string(), endpoint);
    options.insert("allow_http".to_string(), "true".to_string());
    // A dead emulator should fail a test quickly, not after ten retries.
    options.insert("max_retries".to_string(), "2".to_string());
    options.insert("timeout".to_string(), "60s".to_string());
    match provider {
        Provider::S3 => {
            options.insert("region".to_string(), "us-east-1".to_string());
        }
        _ => {
            options.insert("use_emulator".to_string(), "true".to_string());
        }
    }
    let seg = format!("{label}-{}", uuid::Uuid::new_v4().simple());
    Some(EmulatorRemote {
        url: format!("{}://{bucket}/{seg}", provider.scheme()),
        options,
    })
}
