//! Opening and checking every kind of URL through the `Connector`, with whatever backend features
//! this build has (`cargo test -p strata-remotes --no-default-features` runs the feature-absent
//! cases).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use strata_remote::{Connector, RemoteError, RemoteExt, RemotePath};
use strata_remotes::{check_url, open_url, Remotes, MEMORY_IS_NOT_PERSISTENT};

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn none() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn p(s: &str) -> RemotePath {
    RemotePath::parse(s).unwrap()
}

/// Both `check` and `open` refuse `url` with `Invalid`, with the same message, naming the URL and
/// containing each of `words`.
fn refused(c: &dyn Connector, url: &str, options: &BTreeMap<String, String>, words: &[&str]) {
    let checked = match c.check(url, options) {
        Err(RemoteError::Invalid(m)) => m.to_string(),
        other => panic!("check({url:?}, {options:?}) should be Invalid, got {other:?}"),
    };
    let opened = match c.open(url, options) {
        Err(RemoteError::Invalid(m)) => m.to_string(),
        Err(e) => panic!("open({url:?}, {options:?}) should be Invalid, got {e:?}"),
        Ok(r) => panic!("open({url:?}, {options:?}) should be refused, opened {r}"),
    };
    assert_eq!(checked, opened, "check and open disagree on {url:?}");
    assert!(checked.contains(&format!("{url:?}")), "{url:?}: {checked}");
    for w in words {
        assert!(checked.contains(w), "{url:?}: {checked:?} lacks {w:?}");
    }
}

#[test]
fn folder_urls_open_folder_remotes_without_creating_them() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("remote");
    let abs = root.to_str().unwrap();
    for c in [Remotes::new(), Remotes::persistent()] {
        for url in [
            abs.to_string(),
            format!("file://{abs}"),
            format!("FILE://localhost{abs}"),
            format!("file:{abs}"),
        ] {
            c.check(&url, &none()).unwrap();
            let r = c.open(&url, &none()).unwrap();
            assert_eq!(r.to_string(), format!("file://{abs}"), "{url}");
        }
    }
    assert!(!root.exists(), "checking and opening create nothing");
}

#[test]
fn bad_folder_urls_are_refused_by_check_as_by_open() {
    for c in [Remotes::new(), Remotes::persistent()] {
        for url in [
            "file://",
            "file:",
            "file://host/x",
            "file://localhost",
            "file:relative",
            "file:///tmp/x?q",
            "file:///tmp/x#f",
            "file:///tmp/bad%zz",
        ] {
            refused(&c, url, &none(), &[]);
        }
        refused(&c, "", &none(), &["empty"]);
    }
}

#[test]
fn folder_and_memory_remotes_refuse_options() {
    let d = tempfile::tempdir().unwrap();
    let folder = d.path().join("r");
    let folder = folder.to_str().unwrap();
    let c = Remotes::new();
    for url in [folder, "memory://options"] {
        refused(
            &c,
            url,
            &opts(&[("endpoint", "http://x")]),
            &["\"endpoint\"", "no options"],
        );
        refused(&c, url, &opts(&[("tokne", "x")]), &["\"tokne\""]);
    }
    assert!(!d.path().join("r").exists());
}

#[test]
fn memory_remotes_are_shared_by_name_within_the_process() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Remotes::new();
        let a = c.open("memory://shared-by-name", &none()).unwrap();
        let b = open_url("memory://shared-by-name", &none()).unwrap();
        let other = c.open("memory://another-name", &none()).unwrap();
        a.put_bytes_if_absent(&p("x"), Bytes::from_static(b"1"))
            .await
            .unwrap();
        assert_eq!(b.get_bytes(&p("x")).await.unwrap().as_ref(), b"1");
        assert!(!other.blob_exists(&p("x")).await.unwrap());
    });
    check_url("memory://x", &none()).unwrap();
    refused(&Remotes::new(), "memory://", &none(), &["memory://name"]);
}

#[test]
fn persistent_connectors_refuse_memory_remotes() {
    let c = Remotes::persistent();
    assert!(!c.allows_memory() && Remotes::new().allows_memory());
    for url in ["memory://x", "MEMORY://x", "memory://"] {
        refused(&c, url, &none(), &[MEMORY_IS_NOT_PERSISTENT]);
    }
    assert!(!c.supported_urls().contains("memory"));
    assert!(Remotes::new().supported_urls().contains("memory://name"));
}

#[test]
fn unsupported_and_mistyped_schemes_are_refused() {
    let c = Remotes::new();
    for (url, scheme) in [("ftp://h/x", "\"ftp\""), ("gopher://h/x", "\"gopher\"")] {
        refused(&c, url, &none(), &[scheme, "unsupported", "a folder path"]);
    }
    // http(s) URLs name a StrataHub project (feature `http`, on by default).
    refused(&c, "http://h/x", &none(), &["names no project"]);
    refused(
        &c,
        "https://h/acme/x",
        &opts(&[("region", "eu")]),
        &["hub remotes take"],
    );
    c.check("http://127.0.0.1:1/acme/x", &none()).unwrap();
    let r = c
        .open(
            "https://hub.example/acme/x",
            &opts(&[("token", "shub_secret")]),
        )
        .unwrap();
    assert!(!format!("{r} {r:?}").contains("shub_secret"));
    assert!(c.supported_urls().contains("http(s)://"));
    for url in ["s3:bucket/x", "memory:x", "gs:/b"] {
        refused(&c, url, &none(), &["//"]);
    }
}

#[test]
fn a_connector_is_usable_as_a_trait_object() {
    let c: Arc<dyn Connector> = Arc::new(Remotes::default());
    assert!(format!("{c:?}").contains("Remotes"));
    c.check("memory://dyn", &none()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_through_the_connector() {
    let d = tempfile::tempdir().unwrap();
    let folder = d.path().join("remote");
    for url in [folder.to_str().unwrap(), "memory://conformance"] {
        let r = Remotes::new().open(url, &none()).unwrap();
        strata_remote::conformance::run_all(r).await;
    }
}

/// `clone ./not-a-remote` and other read-only commands: opening and reading through the connector
/// leave an unrelated folder as it was.
#[tokio::test]
async fn reading_an_unrelated_folder_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("notes.txt"), b"mine").unwrap();
    let listing = |dir: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing(d.path());
    let r = Remotes::persistent()
        .open(d.path().to_str().unwrap(), &none())
        .unwrap();
    assert!(!r.blob_exists(&p("strata-remote.json")).await.unwrap());
    assert!(r.list_cursors("").await.unwrap().is_empty());
    assert!(r.read_cursor(&p("branches/main")).await.unwrap().is_none());
    assert_eq!(listing(d.path()), before);
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
mod buckets {
    use super::*;

    #[test]
    fn bad_bucket_urls_and_options_are_refused_by_check_as_by_open() {
        let c = Remotes::new();
        for url in [
            "s3://",
            "s3://bad bucket/x",
            "s3://b/x?region=eu",
            "s3://b/a//c",
        ] {
            refused(&c, url, &none(), &[]);
        }
        refused(
            &c,
            "s3://bucket/p",
            &opts(&[("endpont", "http://x")]),
            &["endpont"],
        );
        refused(
            &c,
            "s3://bucket/p",
            &opts(&[("secret_access_key", "x")]),
            &["secret_access_key"],
        );
        refused(
            &c,
            "s3://bucket/p",
            &opts(&[("allow_http", "maybe")]),
            &["allow_http"],
        );
    }
}

#[cfg(feature = "s3")]
#[test]
fn s3_urls_open_without_a_request() {
    for c in [Remotes::new(), Remotes::persistent()] {
        let o = opts(&[("endpoint", "http://127.0.0.1:1"), ("allow_http", "true")]);
        for url in ["s3://bucket/prefix", "s3a://bucket"] {
            c.check(url, &o).unwrap();
        }
        let r = c.open("s3://bucket/prefix", &o).unwrap();
        assert_eq!(r.to_string(), "s3://bucket/prefix");
    }
}

#[cfg(feature = "gcs")]
#[test]
fn gcs_urls_check() {
    Remotes::new().check("gs://bucket/prefix", &none()).unwrap();
    Remotes::new().check("gcs://bucket", &none()).unwrap();
}

#[cfg(feature = "azure")]
#[test]
fn azure_urls_check() {
    let o = opts(&[("account", "devstoreaccount1")]);
    Remotes::new().check("az://container/prefix", &o).unwrap();
    Remotes::new().check("azure://container", &none()).unwrap();
}

/// Each backend left out of the build is refused with an error naming the feature to enable, for
/// `check` as for `open`, whatever the options.
#[test]
fn missing_backend_features_are_named() {
    let c = Remotes::new();
    let cases = [
        ("s3://bucket/p", "\"s3\"", cfg!(feature = "s3")),
        ("gs://bucket/p", "\"gcs\"", cfg!(feature = "gcs")),
        ("az://container/p", "\"azure\"", cfg!(feature = "azure")),
    ];
    for (url, feature, compiled) in cases {
        let example = url.split_once("://").unwrap().0;
        assert_eq!(
            c.supported_urls().contains(&format!("{example}://")),
            compiled,
            "{}",
            c.supported_urls()
        );
        if !compiled {
            refused(&c, url, &none(), &[feature, "not compiled"]);
            refused(&c, url, &opts(&[("region", "eu")]), &[feature]);
        }
    }
}
