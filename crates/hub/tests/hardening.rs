//! Bad input, limits, ranges, health, metrics, graceful shutdown and kill -9 against real hubs.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use strata_remote::{ByteStream, Remote, RemoteError, RemoteExt, RemotePath};
use support::*;

async fn answer(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let b = resp.bytes().await.unwrap();
    let v = serde_json::from_slice(&b).unwrap_or_else(|e| {
        panic!(
            "{status}: not a JSON body ({e}): {}",
            String::from_utf8_lossy(&b)
        )
    });
    (status, v)
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_json_errors_and_writes_nothing() {
    let h = FolderHub::start(&["--max-blob-bytes", "100000"]);
    let url = &h.hub.url;
    let key = &h.admin;
    create_project(url, key, "acme", "app").await;
    // A fresh client (connection) per request: a 413 answered before its body was read closes the
    // connection, and a pooled one could be reused just as it closes.
    let base = format!("{url}/v1/projects/acme/app");
    let storage = h.dir.path().join("storage");
    let blobs_before = files_under(&storage.join("blobs"));

    // Malformed bodies.
    for body in [
        "",
        "{",
        "[]",
        r#"{"owner":"a"}"#,
        r#"{"owner":"a","name":"b","x":1}"#,
    ] {
        let (s, v) = answer(
            client()
                .post(format!("{url}/v1/projects"))
                .bearer_auth(key)
                .body(body),
        )
        .await;
        assert_eq!((s, code(&v)), (400, "invalid"), "{body:?}: {v}");
    }
    // Names: traversal and odd characters are refused with 400 naming the problem.
    for (owner, name) in [
        ("..", "x"),
        ("a", ".."),
        ("a/b", "c"),
        ("-a", "b"),
        ("a", "b c"),
    ] {
        let body = serde_json::json!({"owner": owner, "name": name}).to_string();
        let (s, v) = answer(
            client()
                .post(format!("{url}/v1/projects"))
                .bearer_auth(key)
                .body(body),
        )
        .await;
        assert_eq!((s, code(&v)), (400, "invalid"), "{owner}/{name}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not a valid name"),
            "{v}"
        );
    }
    for p in ["%2e%2e/x", "..%2Fetc", "a/../../b"] {
        let (s, _) = answer(
            client()
                .get(format!("{url}/v1/projects/acme/{p}/blobs"))
                .bearer_auth(key),
        )
        .await;
        assert!(s == 400 || s == 404, "{p}: {s}");
    }
    for bad in ["../x", "/abs", "a//b", "a/./b", ""] {
        let (s, v) = answer(
            client()
                .put(format!("{base}/blob"))
                .query(&[("path", bad)])
                .bearer_auth(key)
                .body("x"),
        )
        .await;
        assert_eq!((s, code(&v)), (400, "invalid"), "{bad:?}: {v}");
    }
    let (s, v) = answer(
        client()
            .put(format!("{base}/blob"))
            .bearer_auth(key)
            .body("x"),
    )
    .await;
    assert_eq!((s, code(&v)), (400, "invalid"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("path"),
        "{v}"
    );

    // Oversized: declared length and streamed length both get 413.
    let big = vec![7u8; 200_000];
    let (s, v) = answer(
        client()
            .put(format!("{base}/blob"))
            .query(&[("path", "big/declared")])
            .bearer_auth(key)
            .body(big.clone()),
    )
    .await;
    assert_eq!((s, code(&v)), (413, "too_large"), "{v}");
    let remote = http_remote(url, "acme/app", Some(key));
    let chunks: Vec<strata_remote::Result<Bytes>> = (0..20)
        .map(|_| Ok(Bytes::from(vec![1u8; 10_000])))
        .collect();
    let body: ByteStream = Box::pin(futures::stream::iter(chunks));
    let e = remote
        .put_blob_if_absent(&RemotePath::parse("big/streamed").unwrap(), body)
        .await
        .unwrap_err();
    assert!(!matches!(e, RemoteError::AlreadyExists(_)), "{e:?}");

    // A blob whose declared hash does not match: 400 body_mismatch, nothing stored.
    let (s, v) = answer(
        client()
            .put(format!("{base}/blob"))
            .query(&[("path", "hash/bad")])
            .bearer_auth(key)
            .header("x-strata-sha256", hex::encode(Sha256::digest(b"other")))
            .body("actual bytes"),
    )
    .await;
    assert_eq!((s, code(&v)), (400, "body_mismatch"), "{v}");
    // A body shorter than its declared Content-Length never becomes a blob either.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sock = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
            .await
            .unwrap();
        let req = format!(
            "PUT /v1/projects/acme/app/blob?path=short HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 1000\r\n\r\nonly a little"
        );
        sock.write_all(req.as_bytes()).await.unwrap();
        sock.shutdown().await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut sink)).await;
    }
    // Cursor writes need a precondition; cursors are size-limited.
    let (s, v) = answer(
        client()
            .put(format!("{base}/cursor"))
            .query(&[("name", "branches/main")])
            .bearer_auth(key)
            .body("{}"),
    )
    .await;
    assert_eq!((s, code(&v)), (428, "precondition_required"), "{v}");
    let (s, v) = answer(
        client()
            .put(format!("{base}/cursor"))
            .query(&[("name", "branches/main")])
            .bearer_auth(key)
            .header("if-match", "\"zz\"")
            .body("{}"),
    )
    .await;
    assert_eq!((s, code(&v)), (400, "invalid"), "{v}");
    let (s, v) = answer(
        client()
            .put(format!("{base}/cursor"))
            .query(&[("name", "branches/huge")])
            .bearer_auth(key)
            .header("if-none-match", "*")
            .body(vec![b' '; 5 << 20]),
    )
    .await;
    assert_eq!((s, code(&v)), (413, "too_large"), "{v}");
    // Unknown endpoints answer JSON 404s.
    let (s, v) = answer(client().get(format!("{url}/v1/nothing")).bearer_auth(key)).await;
    assert_eq!((s, code(&v)), (404, "not_found"));

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        files_under(&storage.join("blobs")),
        blobs_before,
        "a refused upload left a blob"
    );
    assert!(remote.list_blobs("").await.unwrap().is_empty());
    assert!(
        files_under(&storage.join("tmp")).is_empty(),
        "temporary files left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_resume_downloads() {
    let h = FolderHub::start(&[]);
    create_project(&h.hub.url, &h.admin, "acme", "app").await;
    let remote = http_remote(&h.hub.url, "acme/app", Some(&h.admin));
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let p = RemotePath::parse("r/blob").unwrap();
    remote
        .put_bytes_if_absent(&p, Bytes::from(data.clone()))
        .await
        .unwrap();
    let c = client();
    let u = format!("{}/v1/projects/acme/app/blob", h.hub.url);
    let resp = c
        .get(&u)
        .query(&[("path", "r/blob")])
        .bearer_auth(&h.admin)
        .header("range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"].to_str().unwrap(),
        format!("bytes 1000-{}/{}", data.len() - 1, data.len())
    );
    assert_eq!(resp.bytes().await.unwrap(), &data[1000..]);
    let resp = c
        .get(&u)
        .query(&[("path", "r/blob")])
        .bearer_auth(&h.admin)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap(), &data[10..20]);
    let resp = c
        .get(&u)
        .query(&[("path", "r/blob")])
        .bearer_auth(&h.admin)
        .header("range", format!("bytes={}-", data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 416);
    assert_eq!(remote.get_bytes(&p).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_metrics_and_graceful_shutdown() {
    let mut h = FolderHub::start(&[]);
    let url = h.hub.url.clone();
    let c = client();
    assert_eq!(
        c.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok\n"
    );
    create_project(&url, &h.admin, "acme", "app").await;
    let m = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("stratahub_requests_total{method=\"POST\",status=\"201\"} 1"),
        "{m}"
    );
    assert!(!m.contains(&h.admin));

    // A slow upload in flight when SIGTERM arrives still completes.
    let remote = http_remote(&url, "acme/app", Some(&h.admin));
    let body: ByteStream = Box::pin(futures::stream::iter(0..10).then(|_| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(Bytes::from(vec![5u8; 1000]))
    }));
    let r2 = remote.clone();
    let put = tokio::spawn(async move {
        r2.put_blob_if_absent(&RemotePath::parse("slow/blob").unwrap(), body)
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::task::spawn_blocking(move || {
        let st = h.hub.terminate();
        (st, h)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{:?}", status.0);
    put.await.unwrap().expect("the in-flight upload finished");
    let h = status.1;
    // Restarted over the same storage, the blob is there, whole.
    let again = HubProcess::start(&h.hub.storage, &[], &[]);
    let r = http_remote(&again.url, "acme/app", Some(&h.admin));
    assert_eq!(
        r.get_bytes(&RemotePath::parse("slow/blob").unwrap())
            .await
            .unwrap()
            .len(),
        10_000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_push_then_the_retry_converges() {
    let h = FolderHub::start(&[]);
    let storage = h.hub.storage.clone();
    create_project(&h.hub.url, &h.admin, "acme", "app").await;
    let mut hub = h.hub;
    let remote = http_remote(&hub.url, "acme/app", Some(&h.admin));
    // An upload that is in the middle of its body when the hub dies.
    let body: ByteStream = Box::pin(futures::stream::iter(0..50).then(|_| async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok(Bytes::from(vec![9u8; 4096]))
    }));
    let r2 = remote.clone();
    let put = tokio::spawn(async move {
        r2.put_blob_if_absent(&RemotePath::parse("branches/main/deltas/a").unwrap(), body)
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    hub.kill();
    let e = put.await.unwrap().unwrap_err();
    assert!(e.is_retryable(), "a broken connection is retryable: {e:?}");
    // A new hub on the same storage: the half upload left nothing, and the retry succeeds.
    let hub2 = HubProcess::start(&storage, &[], &[]);
    let remote = http_remote(&hub2.url, "acme/app", Some(&h.admin));
    let p = RemotePath::parse("branches/main/deltas/a").unwrap();
    assert!(matches!(
        remote.get_blob(&p).await,
        Err(RemoteError::NotFound(_))
    ));
    remote
        .put_bytes_if_absent(&p, Bytes::from(vec![9u8; 4096 * 50]))
        .await
        .unwrap();
    let c = strata_remote::RemotePath::parse("branches/main").unwrap();
    let t = remote
        .write_cursor(&c, Bytes::from_static(b"{\"version\":1}"), None)
        .await
        .unwrap();
    assert_eq!(remote.read_cursor(&c).await.unwrap().unwrap().token, t);
    assert_eq!(remote.get_bytes(&p).await.unwrap().len(), 4096 * 50);
    let _ = Arc::clone(&remote);
}

// ----- timeouts and the connection cap ------------------------------------------------------------

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Reads whatever the hub sends until it closes the connection (or `within` passes: then panics).
async fn read_until_closed(sock: &mut TcpStream, within: Duration, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(within, async {
        let mut buf = [0u8; 8192];
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "{what}: the hub did not cut the connection off within {within:?}"
    );
    got
}

/// `GET /healthz` on a fresh connection answers 200.
async fn healthy(url: &str) {
    let resp = client().get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok\n");
}

/// Keeps checking that other clients are served, until `stop` is set; returns how many were.
fn keep_checking(
    url: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut served = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            healthy(&url).await;
            served += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        served
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_while_others_are_served() {
    let h = FolderHub::start(&[
        "--header-timeout",
        "2",
        "--body-timeout",
        "2",
        "--request-timeout",
        "1",
    ]);
    let url = h.hub.url.clone();
    create_project(&url, &h.admin, "acme", "app").await;
    // An upload that keeps sending, slowly, for longer than --request-timeout is not cut off:
    // the time spent receiving a body is the client's, and only its pauses are limited.
    let steady = {
        let remote = http_remote(&url, "acme/app", Some(&h.admin));
        tokio::spawn(async move {
            let body: ByteStream = Box::pin(futures::stream::iter(0..12).then(|_| async {
                tokio::time::sleep(Duration::from_millis(250)).await;
                Ok(Bytes::from(vec![8u8; 1000]))
            }));
            let p = RemotePath::parse("steady/blob").unwrap();
            remote
                .put_blob_if_absent(&p, body)
                .await
                .expect("a slow but steady upload was cut off");
            assert_eq!(remote.get_bytes(&p).await.unwrap().len(), 12_000);
        })
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = keep_checking(url.clone(), stop.clone());
    let generous = Duration::from_secs(30);

    // Headers sent one line at a time, never finished: cut off by --header-timeout.
    let slow_headers = {
        let a = addr(&url);
        tokio::spawn(async move {
            let mut sock = TcpStream::connect(&a).await.unwrap();
            sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            let start = std::time::Instant::now();
            let mut got = Vec::new();
            loop {
                assert!(
                    start.elapsed() < generous,
                    "slow headers: still connected after {generous:?}"
                );
                if sock.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    break;
                }
                let mut buf = [0u8; 1024];
                match tokio::time::timeout(Duration::from_millis(300), sock.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
            assert!(
                !String::from_utf8_lossy(&got).contains(" 200 "),
                "a request whose headers never ended was answered: {}",
                String::from_utf8_lossy(&got)
            );
        })
    };
    // A connection that never sends a byte: closed by the same timeout.
    let silent = {
        let a = addr(&url);
        tokio::spawn(async move {
            let mut sock = TcpStream::connect(&a).await.unwrap();
            read_until_closed(&mut sock, generous, "a silent connection").await;
        })
    };
    // A body that stops: 408 `timeout`, nothing stored, connection closed.
    let stalled_body = {
        let a = addr(&url);
        let key = h.admin.clone();
        tokio::spawn(async move {
            let mut sock = TcpStream::connect(&a).await.unwrap();
            let req = format!(
                "PUT /v1/projects/acme/app/blob?path=stalled/blob HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 100000\r\n\r\nonly ten b"
            );
            sock.write_all(req.as_bytes()).await.unwrap();
            let got = read_until_closed(&mut sock, generous, "a stalled body").await;
            let text = String::from_utf8_lossy(&got).into_owned();
            assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
            assert!(text.contains(r#""code":"timeout""#), "{text}");
        })
    };
    // A client that stops reading a large download: the hub stops sending and closes.
    let remote = http_remote(&url, "acme/app", Some(&h.admin));
    let big = 32usize << 20;
    remote
        .put_bytes_if_absent(
            &RemotePath::parse("big/download").unwrap(),
            Bytes::from(vec![3u8; big]),
        )
        .await
        .unwrap();
    let slow_reader = {
        let a = addr(&url);
        let key = h.admin.clone();
        tokio::spawn(async move {
            let mut sock = TcpStream::connect(&a).await.unwrap();
            let req = format!(
                "GET /v1/projects/acme/app/blob?path=big/download HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\r\n"
            );
            sock.write_all(req.as_bytes()).await.unwrap();
            let mut first = [0u8; 64];
            let n = sock.read(&mut first).await.unwrap();
            assert!(first[..n].starts_with(b"HTTP/1.1 200"));
            // Stop reading for a while, well past --body-timeout.
            tokio::time::sleep(Duration::from_secs(8)).await;
            let rest =
                read_until_closed(&mut sock, generous, "a client that stopped reading").await;
            assert!(
                n + rest.len() < big,
                "the whole blob arrived: the hub never gave up on a client that stopped reading"
            );
        })
    };
    for t in [steady, slow_headers, silent, stalled_body, slow_reader] {
        t.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = checker.await.unwrap();
    assert!(served >= 5, "other clients were served {served} times");

    // Nothing of the stalled upload was stored; the hub is healthy and counted the timeout.
    let storage = h.dir.path().join("storage");
    assert!(
        !files_under(&storage.join("blobs"))
            .iter()
            .any(|f| f.contains("stalled")),
        "a stalled upload left a blob"
    );
    assert!(
        matches!(
            remote
                .get_blob(&RemotePath::parse("stalled/blob").unwrap())
                .await,
            Err(RemoteError::NotFound(_))
        ),
        "a stalled upload became a blob"
    );
    healthy(&url).await;
    assert!(metric(&url, "stratahub_request_timeouts_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_storage_never_answers_times_out_with_503() {
    // A storage endpoint that accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hole.incoming() {
            held.push(s);
        }
    });
    let opts: Vec<String> = [
        format!("endpoint=http://127.0.0.1:{port}"),
        "allow_http=true".into(),
        "skip_signature=true".into(),
        "region=us-east-1".into(),
    ]
    .into();
    let hub = HubProcess::start(
        "s3://black-hole/hub",
        &opts,
        &["--open", "--request-timeout", "2"],
    );
    let (s, v) = tokio::time::timeout(
        Duration::from_secs(30),
        answer(client().get(format!("{}/v1/projects", hub.url))),
    )
    .await
    .expect("the request was not cut off by --request-timeout");
    assert_eq!((s, code(&v)), (503, "timeout"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--request-timeout"),
        "{v}"
    );
    // The hub itself stays healthy.
    healthy(&hub.url).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_past_the_cap_are_refused_with_503_and_served_again_later() {
    let h = FolderHub::start(&["--max-connections", "2", "--header-timeout", "60"]);
    let url = h.hub.url.clone();
    // Two connections, each served once and then kept open (idle, keep-alive).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut sock = TcpStream::connect(addr(&url)).await.unwrap();
        sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"ok\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
                .await
                .expect("a held connection was not served")
                .unwrap();
            assert!(n > 0, "a held connection was closed");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"));
        held.push(sock);
    }
    // A third is refused cleanly: 503 `overloaded`, Retry-After, then closed.
    for _ in 0..3 {
        let resp = client().get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "1");
        let v = resp.json_value().await;
        assert_eq!(code(&v), "overloaded", "{v}");
    }
    // The HTTP remote sees a retryable error.
    let remote = http_remote(&url, "acme/app", Some(&h.admin));
    let e = remote.list_blobs("").await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    // Once one closes, new connections are served again.
    drop(held.pop());
    let mut served = false;
    for _ in 0..100 {
        let resp = client().get(format!("{url}/healthz")).send().await.unwrap();
        if resp.status() == 200 {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a freed connection slot was never reused");
    let refused = metric(&url, "stratahub_connections_refused_total").await;
    assert!(refused >= 4.0, "{refused}");
    drop(held);
    healthy(&url).await;
}
