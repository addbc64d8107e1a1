//! Store errors are classified by HTTP status and error code, from the genuine errors `object_store`
//! produces against a tiny in-test server (tests/support/status_server.rs), never by the words of a
//! message: every body below also says "500", "1.500ms", "connection", "timed out" and other
//! codes, and blob names hold such words too.

#![cfg(all(feature = "aws", feature = "gcp", feature = "azure"))]

#[path = "support/status_server.rs"]
mod status_server;

use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use status_server::{dead_port, xml_error, Reply, StatusServer};
use strata_remote::{CursorToken, Remote, RemoteError, RemoteExt, RemotePath};
use strata_remote_s3::{BucketOptions, Env, ObjectStoreRemote, Provider};

/// Words that text matching used to take for a status, a timeout or a missing bucket.
const MISLEADING: &str = "We saw 500 and 503 and 401 Unauthorized and 403 Forbidden, the \
     connection timed out after 1.500ms, InvalidAccessKeyId NoSuchBucket SlowDown";

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn p(s: &str) -> RemotePath {
    RemotePath::parse(s).unwrap()
}

fn open_at(provider: Provider, base: &str, extra: &[(&str, &str)]) -> ObjectStoreRemote {
    let mut opts = vec![
        ("endpoint", base),
        ("max_retries", "0"),
        ("timeout", "5s"),
        ("connect_timeout", "2s"),
    ];
    opts.extend_from_slice(extra);
    let (url, env) = match provider {
        Provider::S3 => {
            opts.push(("region", "us-east-1"));
            (
                "s3://bkt/pre",
                BTreeMap::from([
                    ("AWS_ACCESS_KEY_ID".to_string(), "AKIDEXAMPLE".to_string()),
                    ("AWS_SECRET_ACCESS_KEY".to_string(), SECRET.to_string()),
                ]),
            )
        }
        Provider::Azure => {
            opts.push(("use_emulator", "true"));
            ("az://ctr/pre", BTreeMap::new())
        }
        Provider::Gcs => (
            "gs://bkt/pre",
            BTreeMap::from([(
                "GOOGLE_SERVICE_ACCOUNT_KEY".to_string(),
                format!(
                    r#"{{"private_key":"","private_key_id":"","client_email":"","disable_oauth":true,"gcs_base_url":"{base}"}}"#
                ),
            )]),
        ),
    };
    ObjectStoreRemote::open_with_env(
        url,
        &BucketOptions::from_pairs(opts).unwrap(),
        &Env::from_map(env),
    )
    .unwrap()
}

fn open(provider: Provider, server: &StatusServer) -> ObjectStoreRemote {
    open_at(provider, &server.url(), &[])
}

/// A token as read from a head: an e_tag and a version (GCS needs the generation).
fn token() -> CursorToken {
    CursorToken("h1|\"0x8D0\"|7".to_string())
}

/// A compare-and-swap of cursor `branches/main` with [`token`].
async fn cas(r: &ObjectStoreRemote) -> Result<CursorToken, RemoteError> {
    r.write_cursor(
        &p("branches/main"),
        Bytes::from_static(b"v"),
        Some(&token()),
    )
    .await
}

/// Every kind of request a remote makes, each failing as the server says.
async fn every_op(r: &ObjectStoreRemote) -> Vec<(&'static str, RemoteError)> {
    let mut out = Vec::new();
    let mut push = |name, res: Result<(), RemoteError>| match res {
        Ok(()) => panic!("{name} succeeded"),
        Err(e) => out.push((name, e)),
    };
    push("list", r.list_blobs("").await.map(|_| ()));
    push(
        "get",
        r.get_blob(&p("d/connection-500-timeout-1.500ms"))
            .await
            .map(|_| ()),
    );
    push(
        "read cursor",
        r.read_cursor(&p("branches/main")).await.map(|_| ()),
    );
    push(
        "put",
        r.put_bytes_if_absent(&p("d/503"), Bytes::from_static(b"x"))
            .await,
    );
    push("cas", cas(r).await.map(|_| ()));
    out
}

/// Each thing said once: Display names what failed and how, not the store's text, which stays
/// reachable as the source and appears exactly once in the report.
fn says_each_thing_once(e: &RemoteError) {
    let shown = e.to_string();
    assert!(
        !shown.contains("Server returned") && !shown.contains("Error performing"),
        "{shown}"
    );
    let source = e.source().expect("the store error is kept");
    assert!(source.downcast_ref::<object_store::Error>().is_some());
    let report = e.report();
    assert!(report.starts_with(&shown), "{report}");
    assert_eq!(report.matches("Server returned").count(), 1, "{report}");
    assert!(!report.contains(SECRET), "{report}");
}

fn status_server(status: u16, code: &'static str) -> impl Fn(&Method, &str) -> Reply {
    move |_: &Method, _: &str| Reply::Status(status, xml_error(code, MISLEADING))
}

#[tokio::test(flavor = "multi_thread")]
async fn retryable_statuses_are_transient_on_every_operation_and_not_retried_past_the_budget() {
    for (provider, code) in [
        (Provider::S3, "SlowDown"),
        (Provider::Azure, "ServerBusy"),
        (Provider::Gcs, "InternalError"),
    ] {
        for status in [429u16, 500, 502, 503, 504] {
            let server = StatusServer::start(status_server(status, code)).await;
            let r = open(provider, &server);
            for (op, e) in every_op(&r).await {
                assert!(
                    matches!(e, RemoteError::Transient(_)) && e.is_retryable(),
                    "{provider:?} {status} {op}: {e:?}"
                );
                assert!(
                    e.to_string().contains(&format!("HTTP {status}, {code}")),
                    "{provider:?} {op}: {e}"
                );
                says_each_thing_once(&e);
            }
            // max_retries=0: one request per operation.
            assert_eq!(server.seen().len(), 5, "{provider:?} {status}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_and_refused_connections_are_transient() {
    let server = StatusServer::start(|_: &Method, _: &str| Reply::Hang).await;
    for provider in [Provider::S3, Provider::Azure, Provider::Gcs] {
        let r = open_at(provider, &server.url(), &[("timeout", "300ms")]);
        let t0 = Instant::now();
        let e = r.list_blobs("").await.unwrap_err();
        assert!(
            matches!(e, RemoteError::Transient(_)) && e.is_retryable(),
            "{provider:?}: {e:?}"
        );
        assert!(e.to_string().contains("timed out"), "{e}");
        let e = r.get_blob(&p("a")).await.map(|_| ()).unwrap_err();
        assert!(e.is_retryable(), "{provider:?}: {e:?}");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }
    let dead = format!("http://127.0.0.1:{}", dead_port());
    for provider in [Provider::S3, Provider::Azure, Provider::Gcs] {
        let r = open_at(provider, &dead, &[]);
        for (op, e) in every_op(&r).await {
            assert!(
                matches!(e, RemoteError::Transient(_)) && e.is_retryable(),
                "{provider:?} {op}: {e:?}"
            );
            assert!(e.to_string().contains("could not connect"), "{e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_and_refused_access_are_told_apart_by_status_and_code() {
    for (provider, status, code, unauthorized, hint) in [
        (Provider::S3, 401, "Unauthorized", true, "AWS_ACCESS_KEY_ID"),
        (
            Provider::S3,
            403,
            "InvalidAccessKeyId",
            true,
            "AWS_ACCESS_KEY_ID",
        ),
        (
            Provider::S3,
            403,
            "SignatureDoesNotMatch",
            true,
            "AWS_ACCESS_KEY_ID",
        ),
        (Provider::S3, 400, "ExpiredToken", true, "AWS_ACCESS_KEY_ID"),
        // The message names InvalidAccessKeyId; the code says AccessDenied.
        (
            Provider::S3,
            403,
            "AccessDenied",
            false,
            "AWS_ACCESS_KEY_ID",
        ),
        (
            Provider::Azure,
            403,
            "AuthenticationFailed",
            true,
            "AZURE_STORAGE_ACCOUNT_KEY",
        ),
        (
            Provider::Azure,
            403,
            "AuthorizationFailure",
            false,
            "AZURE_STORAGE_ACCOUNT_KEY",
        ),
        (
            Provider::Gcs,
            401,
            "AuthenticationRequired",
            true,
            "GOOGLE_APPLICATION_CREDENTIALS",
        ),
        (
            Provider::Gcs,
            403,
            "AccessDenied",
            false,
            "GOOGLE_APPLICATION_CREDENTIALS",
        ),
    ] {
        let server = StatusServer::start(status_server(status, code)).await;
        let r = open(provider, &server);
        for (op, e) in every_op(&r).await {
            let what = format!("{provider:?} {status} {code} {op}: {e:?}");
            if unauthorized {
                assert!(matches!(e, RemoteError::Unauthorized(_)), "{what}");
            } else {
                assert!(matches!(e, RemoteError::PermissionDenied(_)), "{what}");
            }
            assert!(!e.is_retryable(), "{what}");
            assert!(e.to_string().contains(hint), "{what}");
            says_each_thing_once(&e);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bucket_is_told_by_its_error_code_without_an_extra_request() {
    for (provider, code, word) in [
        (Provider::S3, "NoSuchBucket", "bucket"),
        (Provider::Azure, "ContainerNotFound", "container"),
        (Provider::Gcs, "NoSuchBucket", "bucket"),
    ] {
        let server = StatusServer::start(status_server(404, code)).await;
        let r = open(provider, &server);
        for (op, e) in every_op(&r).await {
            match &e {
                RemoteError::NotFound(m) => assert!(
                    m.contains(&format!("the {word} ")) && m.contains("does not exist"),
                    "{provider:?} {op}: {m}"
                ),
                other => panic!("{provider:?} {op}: {other:?}"),
            }
            assert!(!e.is_retryable());
            says_each_thing_once(&e);
        }
        // Each answer named the missing bucket, except a read of the cursor, which looks for
        // records next (one listing).
        assert_eq!(server.seen().len(), 6, "{provider:?}: {:?}", server.seen());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_object_is_not_found_whatever_its_name_says() {
    // S3: listings answer an empty page, everything else 404 NoSuchKey.
    let server = StatusServer::start(|m: &Method, target: &str| {
        if m == Method::GET && target.contains("list-type=2") {
            Reply::Status(
                200,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>bkt</Name>\
                 <KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"
                    .to_string(),
            )
        } else {
            Reply::Status(404, xml_error("NoSuchKey", MISLEADING))
        }
    })
    .await;
    let r = open(Provider::S3, &server);
    let e = r
        .get_blob(&p("d/connection-500-timeout-1.500ms"))
        .await
        .map(|_| ())
        .unwrap_err();
    match &e {
        RemoteError::NotFound(m) => {
            assert!(m.contains("d/connection-500-timeout-1.500ms"), "{m}");
            assert!(!m.contains("does not exist"), "the bucket exists: {m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.is_retryable());
    says_each_thing_once(&e);
    assert!(r.read_cursor(&p("branches/main")).await.unwrap().is_none());
    // A compare-and-swap on a cursor that is gone lost.
    let e = cas(&r).await.unwrap_err();
    assert!(matches!(e, RemoteError::Conflict(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_conditions_are_conflicts_for_cursors_and_already_exists_for_blobs() {
    for (provider, status, code) in [
        (Provider::S3, 412, "PreconditionFailed"),
        (Provider::S3, 409, "ConditionalRequestConflict"),
        (Provider::Azure, 412, "ConditionNotMet"),
        (Provider::Azure, 409, "BlobAlreadyExists"),
        (Provider::Gcs, 412, "conditionNotMet"),
        (Provider::Gcs, 409, "Conflict"),
    ] {
        let server = StatusServer::start(status_server(status, code)).await;
        let r = open(provider, &server);
        let what = format!("{provider:?} {status} {code}");
        let e = cas(&r).await.unwrap_err();
        assert!(matches!(e, RemoteError::Conflict(_)), "{what}: {e:?}");
        assert!(!e.is_retryable());
        let e = r
            .put_bytes_if_absent(&p("d/500"), Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(matches!(e, RemoteError::AlreadyExists(_)), "{what}: {e:?}");
        assert!(!e.is_retryable());
        says_each_thing_once(&e);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn other_statuses_are_other_and_keep_the_store_error() {
    for (status, code) in [
        (400u16, "InvalidArgument"),
        (501, "NotImplemented"),
        (418, "Teapot"),
    ] {
        let server = StatusServer::start(status_server(status, code)).await;
        let r = open(Provider::S3, &server);
        for (op, e) in every_op(&r).await {
            if op == "cas" || op == "put" {
                continue; // statuses of conditional writes have their own test
            }
            assert!(
                matches!(e, RemoteError::Other(_)) && !e.is_retryable(),
                "{status} {op}: {e:?}"
            );
            assert!(
                e.to_string().contains(&format!("HTTP {status}, {code}")),
                "{e}"
            );
            says_each_thing_once(&e);
            // The store's own message is in the report, once.
            assert_eq!(
                e.report().matches("We saw 500").count(),
                1,
                "{}",
                e.report()
            );
        }
    }
}

/// An environment with nothing in it: no variables but `HOME` (an empty folder) and the
/// metadata endpoint.
fn bare_env(home: &std::path::Path, metadata: &str, extra: &[(&str, &str)]) -> Env {
    let mut m = BTreeMap::from([
        ("HOME".to_string(), home.to_str().unwrap().to_string()),
        ("AWS_METADATA_ENDPOINT".to_string(), metadata.to_string()),
    ]);
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    Env::from_map(m)
}

fn opts(endpoint: &str) -> BucketOptions {
    BucketOptions::from_pairs([
        ("endpoint", endpoint),
        ("region", "us-east-1"),
        ("max_retries", "0"),
        ("timeout", "5s"),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_no_credentials_anywhere_the_error_says_where_it_looked() {
    let home = tempfile::tempdir().unwrap();
    let bucket = StatusServer::start(|_: &Method, _: &str| Reply::Status(200, String::new())).await;
    // The metadata address refuses connections (not an EC2 instance), or answers 403 (a proxy).
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let forbidding =
        StatusServer::start(|_: &Method, _: &str| Reply::Status(403, "Forbidden".into())).await;
    for (metadata, how) in [
        (dead, "could not connect"),
        (forbidding.url(), "answered HTTP 403"),
    ] {
        let r = ObjectStoreRemote::open_with_env(
            "s3://bkt/pre",
            &opts(&bucket.url()),
            &bare_env(home.path(), &metadata, &[]),
        )
        .unwrap();
        let e = r.list_blobs("").await.unwrap_err();
        let m = match &e {
            RemoteError::Unauthorized(m) => m.to_string(),
            other => panic!("{other:?}"),
        };
        for needle in [
            "no AWS credentials found",
            "AWS_ACCESS_KEY_ID",
            "AWS_CONTAINER_CREDENTIALS_",
            &format!("{}/.aws/credentials", home.path().display()),
            &format!("{}/.aws/config", home.path().display()),
            "instance metadata service",
            how,
            "aws configure",
        ] {
            assert!(m.contains(needle), "{needle:?} missing: {m}");
        }
        assert!(!e.is_retryable());
        // The metadata service's own error is the source.
        assert!(e.source().is_some());
        assert!(bucket.seen().is_empty(), "no request reached the bucket");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn other_credential_sources_are_left_to_object_store() {
    // Container credentials are configured: their failure is not "no credentials anywhere".
    let home = tempfile::tempdir().unwrap();
    let creds = StatusServer::start(|_: &Method, _: &str| Reply::Status(500, "down".into())).await;
    let token_file = home.path().join("token");
    std::fs::write(&token_file, "t").unwrap();
    let env = bare_env(
        home.path(),
        &format!("http://127.0.0.1:{}", dead_port()),
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                &format!("{}/creds", creds.url()),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token_file.to_str().unwrap(),
            ),
        ],
    );
    let r = ObjectStoreRemote::open_with_env(
        "s3://bkt/pre",
        &opts(&format!("http://127.0.0.1:{}", dead_port())),
        &env,
    )
    .unwrap();
    let e = r.list_blobs("").await.unwrap_err();
    assert!(!e.to_string().contains("no AWS credentials found"), "{e}");
    assert!(
        creds.seen().iter().any(|s| s.target == "/creds"),
        "the container endpoint was asked: {:?}",
        creds.seen()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_process_credentials_sign_requests_and_stay_secret() {
    let home = tempfile::tempdir().unwrap();
    let script = home.path().join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho '{{\"Version\": 1, \"AccessKeyId\": \"AKPROCESS\", \
             \"SecretAccessKey\": \"{SECRET}\", \"SessionToken\": \"TOKENSECRET\"}}'\n"
        ),
    )
    .unwrap();
    let config = home.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile proc]\nregion = us-east-1\ncredential_process = /bin/sh {}\n",
            script.display()
        ),
    )
    .unwrap();
    let answer = std::sync::Arc::new(std::sync::Mutex::new(200u16));
    let a = answer.clone();
    let server = StatusServer::start(move |_: &Method, _: &str| {
        let status = *a.lock().unwrap();
        if status == 200 {
            Reply::Status(
                200,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>bkt</Name>\
                 </ListBucketResult>"
                    .into(),
            )
        } else {
            Reply::Status(
                status,
                xml_error("InvalidAccessKeyId", "The key does not exist"),
            )
        }
    })
    .await;
    let env = bare_env(
        home.path(),
        &format!("http://127.0.0.1:{}", dead_port()),
        &[
            ("AWS_PROFILE", "proc"),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ],
    );
    let r = ObjectStoreRemote::open_with_env("s3://bkt/pre", &opts(&server.url()), &env).unwrap();
    assert!(r.list_blobs("").await.unwrap().is_empty());
    let seen = server.seen();
    let auth = seen[0].authorization.as_deref().unwrap_or("");
    assert!(auth.contains("Credential=AKPROCESS/"), "{auth}");
    *answer.lock().unwrap() = 403;
    let e = r.list_blobs("").await.unwrap_err();
    assert!(matches!(e, RemoteError::Unauthorized(_)), "{e:?}");
    let text = format!("{e} {e:?} {} {r} {r:?}", e.report());
    assert!(
        !text.contains(SECRET) && !text.contains("TOKENSECRET"),
        "a secret was printed: {text}"
    );
}
