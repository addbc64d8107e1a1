//! Two hub processes over one storage, writers spread across both: every compare-and-swap append
//! lands exactly once, every blob is whole, and the hubs agree (nothing authoritative in memory).

mod support;

use std::collections::BTreeSet;

use bytes::Bytes;
use strata_remote::{Remote, RemoteError, RemoteExt, RemotePath};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_over_two_hubs_lose_nothing_and_duplicate_nothing() {
    let h = FolderHub::start(&[]);
    let h2 = HubProcess::start(&h.hub.storage, &[], &[]);
    create_project(&h.hub.url, &h.admin, "acme", "shared").await;
    const WRITERS: usize = 8;
    const ROUNDS: usize = 12;
    let name = RemotePath::parse("branches/main").unwrap();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let url = if w % 2 == 0 {
            h.hub.url.clone()
        } else {
            h2.url.clone()
        };
        let remote = http_remote(&url, "acme/shared", Some(&h.admin));
        let name = name.clone();
        tasks.push(tokio::spawn(async move {
            let mut lost = 0u32;
            for r in 0..ROUNDS {
                let id = format!("w{w}-r{r}");
                // The blob first, then the cursor that names it, as a push does.
                let blob = RemotePath::parse(&format!("branches/main/deltas/{id}")).unwrap();
                remote
                    .put_bytes_if_absent(&blob, Bytes::from(id.repeat(100)))
                    .await
                    .unwrap();
                loop {
                    let cur = remote.read_cursor(&name).await.unwrap();
                    let mut list: Vec<String> = match &cur {
                        Some(c) => serde_json::from_slice(&c.value).unwrap(),
                        None => Vec::new(),
                    };
                    list.push(id.clone());
                    let value = Bytes::from(serde_json::to_vec(&list).unwrap());
                    match remote
                        .write_cursor(&name, value, cur.as_ref().map(|c| &c.token))
                        .await
                    {
                        Ok(_) => break,
                        Err(RemoteError::Conflict(_)) => lost += 1,
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
            lost
        }));
    }
    let mut races = 0;
    for t in tasks {
        races += t.await.unwrap();
    }
    // Both hubs see the same cursor: every append exactly once.
    let r1 = http_remote(&h.hub.url, "acme/shared", Some(&h.admin));
    let r2 = http_remote(&h2.url, "acme/shared", Some(&h.admin));
    let c1 = r1.read_cursor(&name).await.unwrap().unwrap();
    let c2 = r2.read_cursor(&name).await.unwrap().unwrap();
    assert_eq!(c1, c2);
    let list: Vec<String> = serde_json::from_slice(&c1.value).unwrap();
    assert_eq!(list.len(), WRITERS * ROUNDS, "lost or duplicated appends");
    let set: BTreeSet<&String> = list.iter().collect();
    assert_eq!(set.len(), WRITERS * ROUNDS, "an append landed twice");
    for id in &list {
        let blob = RemotePath::parse(&format!("branches/main/deltas/{id}")).unwrap();
        assert_eq!(r2.get_bytes(&blob).await.unwrap(), id.repeat(100));
    }
    eprintln!("{races} compare-and-swap races lost and retried");
}
