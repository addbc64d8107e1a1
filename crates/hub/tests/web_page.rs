//! The web page in real headless Chromium, driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, installed by scripts/test.sh): sign in with a key, see the project, its
//! branches with versions and the latest push; a screenshot is written and is a real PNG. A missing
//! browser fails the test.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use strata_remote::{Remote, RemotePath};
use support::*;

fn find(bin: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let p = format!("{dir}/{bin}");
        if std::path::Path::new(&p).exists() {
            return p;
        }
    }
    panic!(
        "{bin} is not installed: apt-get install chromium chromium-driver (scripts/test.sh does)"
    );
}

struct Driver {
    child: Child,
    url: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        let chromium = find("chromium");
        let chromedriver = find("chromedriver");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if http.get(format!("{url}/status")).send().await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                         "--window-size=1280,900",
                         format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let v: Value = http
            .post(format!("{url}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Driver {
            child,
            url,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let u = format!("{}/session/{}{path}", self.url, self.session);
        let mut req = self.http.request(method, u);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("WebDriver {path}: {v}");
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap()
            .to_string()
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn sign_in(&self, hub: &str, key: &str) -> String {
        self.goto(hub).await;
        let input = self.element("#key").await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{input}/value"),
            Some(json!({"text": key})),
        )
        .await;
        let button = self.element("#signin").await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{button}/click"),
            Some(json!({})),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.source().await
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_projects_branches_and_pushes_in_chromium() {
    let h = FolderHub::start(&[]);
    let url = h.hub.url.clone();
    create_project(&url, &h.admin, "acme", "agent-memory").await;
    create_project(&url, &h.admin, "acme", "secret-project").await;
    let (id, key) = api_key(&url, &h.admin, "viewer").await;
    set_member(
        &url,
        &h.admin,
        "acme/agent-memory",
        &id,
        r#"{"role":"read"}"#,
    )
    .await;

    // Branch cursors carrying the push summary, as sync writes them (unknown fields are ignored).
    let remote = http_remote(&url, "acme/agent-memory", Some(&h.admin));
    let now = 1_764_500_000_000_000u64;
    let doc = json!({
        "format": 1, "branch": "main", "version": 6, "updated_micros": now,
        "snapshot": null, "deltas": [],
        "pushes": [
            {"time_micros": now - 60_000_000, "author": "agent-a", "message": "first facts", "from": 0, "to": 4, "entries": 4},
            {"time_micros": now, "author": "agent-b", "message": "tasks <5> & 6", "from": 4, "to": 6, "entries": 2}
        ]
    });
    remote
        .write_cursor(
            &RemotePath::parse("branches/main").unwrap(),
            Bytes::from(doc.to_string()),
            None,
        )
        .await
        .unwrap();
    let older = json!({"format": 1, "branch": "experiment", "version": 2, "updated_micros": now});
    remote
        .write_cursor(
            &RemotePath::parse("branches/experiment").unwrap(),
            Bytes::from(older.to_string()),
            None,
        )
        .await
        .unwrap();

    // And a real push with the strata CLI to another project: its summary comes from sync itself.
    create_project(&url, &h.admin, "acme", "real").await;
    set_member(&url, &h.admin, "acme/real", &id, r#"{"role":"read"}"#).await;
    let db = h.dir.path().join("db");
    let cli = |args: &[&str]| {
        let out = Command::new(strata_bin())
            .env("STRATA_TOKEN", &h.admin)
            .arg("--db")
            .arg(&db)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    cli(&["init"]);
    cli(&["remote", "add", "hub", &format!("{url}/acme/real")]);
    cli(&["kv", "put", "fact:1", "\"the sky is blue\""]);
    cli(&["kv", "put", "fact:2", "\"water is wet\""]);
    cli(&["kv", "put", "fact:3", "\"fire is hot\""]);
    cli(&["push", "hub"]);

    let driver = Driver::start().await;
    // Not signed in: the form, and no project names.
    driver.goto(&url).await;
    let page = driver.source().await;
    assert!(page.contains("id=\"key\""), "{page}");
    assert!(!page.contains("agent-memory"), "{page}");
    // A wrong key: refused.
    let page = driver.sign_in(&url, "shub_wrong").await;
    assert!(page.contains("That key is not valid"), "{page}");
    assert!(!page.contains("agent-memory"));

    let page = driver.sign_in(&url, &key).await;
    assert!(
        page.contains("data-project=\"acme/agent-memory\""),
        "{page}"
    );
    assert!(
        !page.contains("secret-project"),
        "a project the key may not read is shown"
    );
    assert!(page.contains("data-branch=\"main\""), "{page}");
    assert!(page.contains("data-branch=\"experiment\""), "{page}");
    assert!(page.contains("<td class=\"version\">6</td>"), "{page}");
    assert!(page.contains("<td class=\"version\">2</td>"), "{page}");
    // The latest push first, escaped, with its author and entry count.
    let latest = page
        .find("tasks &lt;5&gt; &amp; 6")
        .expect("the latest push's message");
    let first = page.find("first facts").expect("the earlier push");
    assert!(latest < first, "newest push first");
    assert!(page.contains("<td class=\"author\">agent-b</td>"), "{page}");
    assert!(page.contains("<td class=\"entries\">2</td>"), "{page}");
    assert!(page.contains("2025-11-30"), "{page}");
    // The real push: the project, its branch at version 3, and a push of 3 entries.
    let real = &page[page
        .find("data-project=\"acme/real\"")
        .expect("the pushed project")..];
    assert!(real.contains("data-branch=\"main\""), "{real}");
    assert!(real.contains("<td class=\"version\">3</td>"), "{real}");
    assert!(
        real.contains("<tr class=\"push\">"),
        "no push listed: {real}"
    );
    assert!(real.contains("<td class=\"entries\">"), "{real}");
    assert!(real.contains("<td class=\"entries\">3</td>"), "{real}");
    // (The CLI sets no author yet; the page shows "-" for a push without one.)
    // The key never appears in the page (it sits in an HttpOnly cookie).
    assert!(!page.contains(&key));

    // A screenshot of the signed-in page: a real PNG of some size.
    let shot = driver.call(reqwest::Method::GET, "/screenshot", None).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot.as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 10_000,
        "a {}-byte screenshot is suspiciously small",
        png.len()
    );
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("stratahub-page.png");
    std::fs::write(&out, &png).unwrap();
    eprintln!("screenshot: {}", out.display());
}
