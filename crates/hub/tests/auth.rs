//! The auth matrix against a real hub: no key, a bad key, a read key pushing, another project's key,
//! a branch-restricted key outside its branches, a revoked key. Each gets its status and stable code,
//! and writes nothing.

mod support;

use bytes::Bytes;
use strata_remote::{encode_segment, Remote, RemoteError, RemoteExt, RemotePath};
use support::*;

fn blob_path(branch: &str) -> RemotePath {
    RemotePath::parse(&format!(
        "branches/{}/deltas/x.delta",
        encode_segment(branch)
    ))
    .unwrap()
}

fn cursor_name(branch: &str) -> RemotePath {
    RemotePath::parse(&format!("branches/{}", encode_segment(branch))).unwrap()
}

/// Tries a blob put and a cursor create on `branch`; returns the two errors (panics on success).
async fn write_attempts(remote: &dyn Remote, branch: &str) -> (RemoteError, RemoteError) {
    let e1 = remote
        .put_bytes_if_absent(&blob_path(branch), Bytes::from_static(b"data"))
        .await
        .expect_err("the put must be refused");
    let e2 = remote
        .write_cursor(&cursor_name(branch), Bytes::from_static(b"{}"), None)
        .await
        .expect_err("the cursor write must be refused");
    (e1, e2)
}

async fn status_and_code(req: reqwest::RequestBuilder) -> (u16, String) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let v = resp.json_value().await;
    (
        status,
        v["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_auth_matrix() {
    let h = FolderHub::start(&[]);
    let url = h.hub.url.clone();
    create_project(&url, &h.admin, "acme", "app").await;
    create_project(&url, &h.admin, "other", "app").await;
    let (read_id, read_key) = api_key(&url, &h.admin, "reader").await;
    let (other_id, other_key) = api_key(&url, &h.admin, "other-project").await;
    let (agents_id, agents_key) = api_key(&url, &h.admin, "agents-only").await;
    let (revoked_id, revoked_key) = api_key(&url, &h.admin, "revoked").await;
    let (_, no_member_key) = api_key(&url, &h.admin, "no-member").await;
    set_member(&url, &h.admin, "acme/app", &read_id, r#"{"role":"read"}"#).await;
    set_member(
        &url,
        &h.admin,
        "other/app",
        &other_id,
        r#"{"role":"write"}"#,
    )
    .await;
    set_member(
        &url,
        &h.admin,
        "acme/app",
        &agents_id,
        r#"{"role":"write","branches":["agent-*"]}"#,
    )
    .await;
    set_member(
        &url,
        &h.admin,
        "acme/app",
        &revoked_id,
        r#"{"role":"write"}"#,
    )
    .await;

    // The revoked key works until it is revoked.
    let revoked = http_remote(&url, "acme/app", Some(&revoked_key));
    revoked.list_blobs("").await.unwrap();
    let resp = client()
        .delete(format!("{url}/v1/keys/{revoked_id}"))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    let storage = h.dir.path().join("storage");
    let before = files_under(&storage.join("blobs"));
    let cursors_before = files_under(&storage.join("cursors"));

    // No key, a malformed key, a well-formed unknown key, a revoked key: 401 everywhere.
    let bad_shape = "shub_nonsense";
    let unknown = {
        // Right shape and checksum, unknown id.
        let good = &h.admin;
        let id_end = 5 + 16;
        format!("{}ffffffffffffffff{}", &good[..5], &good[id_end..])
    };
    for (label, key) in [
        ("no key", None),
        ("bad key", Some(bad_shape)),
        ("unknown key", Some(unknown.as_str())),
        ("revoked key", Some(revoked_key.as_str())),
    ] {
        let r = http_remote(&url, "acme/app", key);
        let (e1, e2) = write_attempts(&*r, "main").await;
        for e in [e1, e2] {
            assert!(matches!(e, RemoteError::Unauthorized(_)), "{label}: {e:?}");
        }
        let e = r.list_blobs("").await.unwrap_err();
        assert!(matches!(e, RemoteError::Unauthorized(_)), "{label}: {e:?}");
        let mut req = client().get(format!("{url}/v1/projects/acme/app/branches"));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        assert_eq!(
            status_and_code(req).await,
            (401, "unauthorized".into()),
            "{label}"
        );
    }

    // A read key may read but not write: 403.
    let reader = http_remote(&url, "acme/app", Some(&read_key));
    reader.list_blobs("").await.unwrap();
    let (e1, e2) = write_attempts(&*reader, "main").await;
    for e in [e1, e2] {
        assert!(
            matches!(e, RemoteError::PermissionDenied(_)),
            "read key: {e:?}"
        );
    }

    // Another project's key, and a key in no project: 404, as if acme/app did not exist.
    for (label, key) in [("other project", &other_key), ("no member", &no_member_key)] {
        let r = http_remote(&url, "acme/app", Some(key));
        let (e1, e2) = write_attempts(&*r, "main").await;
        for e in [e1, e2] {
            assert!(matches!(e, RemoteError::NotFound(_)), "{label}: {e:?}");
        }
        assert!(matches!(
            r.read_cursor(&cursor_name("main")).await,
            Err(RemoteError::NotFound(_))
        ));
        let (status, code) = status_and_code(
            client()
                .get(format!("{url}/v1/projects/acme/app"))
                .bearer_auth(key),
        )
        .await;
        assert_eq!((status, code.as_str()), (404, "not_found"), "{label}");
    }
    // ... and the same answer as a project that does not exist at all.
    let (status, code) = status_and_code(
        client()
            .get(format!("{url}/v1/projects/acme/nothing-here"))
            .bearer_auth(&other_key),
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "not_found"));

    // A branch-restricted key: outside its branches 403, inside them allowed.
    let agents = http_remote(&url, "acme/app", Some(&agents_key));
    let (e1, e2) = write_attempts(&*agents, "main").await;
    for e in [e1, e2] {
        assert!(
            matches!(e, RemoteError::PermissionDenied(_)),
            "restricted: {e:?}"
        );
    }
    let e = agents
        .put_bytes_if_absent(
            &RemotePath::parse("elsewhere/x").unwrap(),
            Bytes::from_static(b"x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, RemoteError::PermissionDenied(_)), "{e:?}");

    // Nothing was written by any refused request.
    assert_eq!(files_under(&storage.join("blobs")), before);
    assert_eq!(files_under(&storage.join("cursors")), cursors_before);

    // The restricted key writes its own branches; non-admins cannot make keys.
    agents
        .put_bytes_if_absent(&blob_path("agent-7"), Bytes::from_static(b"ok"))
        .await
        .unwrap();
    agents
        .write_cursor(&cursor_name("agent-7"), Bytes::from_static(b"{}"), None)
        .await
        .unwrap();
    let (status, code) = status_and_code(
        client()
            .post(format!("{url}/v1/keys"))
            .bearer_auth(&read_key)
            .body(r#"{"name":"x"}"#),
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    // A reader cannot delete the project; the owner (admin) can, and it is gone for everyone.
    let (status, _) = status_and_code(
        client()
            .delete(format!("{url}/v1/projects/acme/app"))
            .bearer_auth(&read_key),
    )
    .await;
    assert_eq!(status, 403);
    let resp = client()
        .delete(format!("{url}/v1/projects/acme/app"))
        .bearer_auth(&h.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(matches!(
        reader.list_blobs("").await,
        Err(RemoteError::NotFound(_))
    ));
    // Re-created, it starts empty.
    create_project(&url, &h.admin, "acme", "app").await;
    let admin = http_remote(&url, "acme/app", Some(&h.admin));
    assert!(admin.list_blobs("").await.unwrap().is_empty());
    assert!(admin
        .read_cursor(&cursor_name("agent-7"))
        .await
        .unwrap()
        .is_none());
}
