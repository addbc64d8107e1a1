//! The seed's higher-level endpoints (push with an expected version, pull?since=V, bundle, branches,
//! a branch's cursor) and the OpenAPI document, against a real hub.

mod support;

use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use strata_remote::{Remote, RemoteExt, RemotePath};
use support::*;

fn cursor(version: u64, deltas: Value, snapshot: Value) -> String {
    json!({"format": 1, "branch": "main", "version": version, "updated_micros": 1, "snapshot": snapshot, "deltas": deltas}).to_string()
}

async fn push(
    url: &str,
    key: &str,
    expected: u64,
    path: Option<&str>,
    cursor: &str,
    blob: &[u8],
) -> (u16, Value) {
    let mut q = vec![("expected_version", expected.to_string())];
    if let Some(p) = path {
        q.push(("path", p.to_string()));
    }
    let mut body = cursor.as_bytes().to_vec();
    body.extend_from_slice(blob);
    let resp = client()
        .put(format!("{url}/v1/projects/acme/app/branches/main/push"))
        .query(&q)
        .bearer_auth(key)
        .header("x-strata-cursor-length", cursor.len().to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json_value().await)
}

#[tokio::test(flavor = "multi_thread")]
async fn push_pull_bundle_and_branches() {
    let h = FolderHub::start(&[]);
    let url = h.hub.url.clone();
    let key = h.admin.clone();
    create_project(&url, &key, "acme", "app").await;
    let remote = http_remote(&url, "acme/app", Some(&key));

    let d1 = "branches/main/deltas/0-4.delta";
    let c1 = cursor(
        4,
        json!([{"path": d1, "from": 0, "to": 4, "entries": 4, "bytes": 5, "sha256": hex::encode(Sha256::digest(b"delta"))}]),
        Value::Null,
    );
    let (s, v) = push(&url, &key, 0, Some(d1), &c1, b"delta").await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(4)), "{v}");
    assert_eq!(
        remote
            .get_bytes(&RemotePath::parse(d1).unwrap())
            .await
            .unwrap(),
        "delta"
    );

    // A stale push: 409 pull_first with the current version, and its blob is not stored.
    let d2 = "branches/main/deltas/0-2.delta";
    let stale = cursor(2, json!([{"path": d2, "from": 0, "to": 2}]), Value::Null);
    let (s, v) = push(&url, &key, 0, Some(d2), &stale, b"stale").await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "pull_first");
    assert_eq!(v["error"]["current_version"], 4);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("pull first"));
    assert!(!remote
        .blob_exists(&RemotePath::parse(d2).unwrap())
        .await
        .unwrap());

    // Bad pushes: a blob outside the branch, a version that does not advance, a short body.
    let (s, _) = push(
        &url,
        &key,
        4,
        Some("elsewhere/x"),
        &cursor(5, json!([]), Value::Null),
        b"x",
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = push(&url, &key, 4, None, &cursor(4, json!([]), Value::Null), b"").await;
    assert_eq!(s, 400);
    let resp = client()
        .put(format!(
            "{url}/v1/projects/acme/app/branches/main/push?expected_version=4"
        ))
        .bearer_auth(&key)
        .header("x-strata-cursor-length", "1000")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // A snapshot and a delta; pull?since picks what a client needs.
    let snap = "branches/main/snapshots/6.snap";
    let d3 = "branches/main/deltas/6-9.delta";
    remote
        .put_bytes_if_absent(
            &RemotePath::parse(snap).unwrap(),
            Bytes::from_static(b"SNAPSHOT"),
        )
        .await
        .unwrap();
    let c3 = cursor(
        9,
        json!([{"path": d3, "from": 6, "to": 9}]),
        json!({"path": snap, "from": 0, "to": 6, "bytes": 8}),
    );
    let (s, v) = push(&url, &key, 4, Some(d3), &c3, b"delta3").await;
    assert_eq!(s, 200, "{v}");
    let pull = |since: u64| {
        let url = url.clone();
        let key = key.clone();
        async move {
            client()
                .get(format!(
                    "{url}/v1/projects/acme/app/branches/main/pull?since={since}"
                ))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json_value()
                .await
        }
    };
    let paths = |v: &Value| -> Vec<String> {
        v["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["path"].as_str().unwrap().to_string())
            .collect()
    };
    let v = pull(7).await;
    assert_eq!(v["version"], 9);
    assert_eq!(paths(&v), [d3]);
    assert_eq!(paths(&pull(2).await), [snap, d3]);
    assert!(paths(&pull(9).await).is_empty());
    let resp = client()
        .get(format!("{url}/v1/projects/acme/app/branches/main/bundle"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-strata-version"], "6");
    assert_eq!(resp.bytes().await.unwrap(), "SNAPSHOT");

    // Branches and a branch's cursor.
    let v = client()
        .get(format!("{url}/v1/projects/acme/app/branches"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(
        v,
        json!([{"name": "main", "version": 9, "updated_micros": 1, "pushes": []}])
    );
    let resp = client()
        .get(format!("{url}/v1/projects/acme/app/branches/main/cursor"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(resp.text().await.unwrap(), c3);
    let c = remote
        .read_cursor(&RemotePath::parse("branches/main").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(strata_remote_http::token_to_etag(&c.token), etag);
    let resp = client()
        .get(format!("{url}/v1/projects/acme/app/branches/nope/bundle"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_is_served_and_covers_every_route() {
    let h = FolderHub::start(&[]);
    let served = client()
        .get(format!("{}/v1/openapi.json", h.hub.url))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/stratahub-openapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(served, on_disk);
    assert_eq!(served["openapi"], "3.0.3");
    let paths: Vec<&String> = served["paths"].as_object().unwrap().keys().collect();
    for route in [
        "/healthz",
        "/metrics",
        "/v1/keys",
        "/v1/keys/{key_id}",
        "/v1/projects",
        "/v1/projects/{owner}/{name}",
        "/v1/projects/{owner}/{name}/members/{key_id}",
        "/v1/projects/{owner}/{name}/blob",
        "/v1/projects/{owner}/{name}/blobs",
        "/v1/projects/{owner}/{name}/cursor",
        "/v1/projects/{owner}/{name}/cursors",
        "/v1/projects/{owner}/{name}/branches",
        "/v1/projects/{owner}/{name}/branches/{branch}/cursor",
        "/v1/projects/{owner}/{name}/branches/{branch}/push",
        "/v1/projects/{owner}/{name}/branches/{branch}/pull",
        "/v1/projects/{owner}/{name}/branches/{branch}/bundle",
    ] {
        assert!(
            paths.iter().any(|p| *p == route),
            "{route} is missing from the document"
        );
    }
}
