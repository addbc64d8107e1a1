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
