//! StrataHub benchmark: each figure beside a baseline measured in the same run.
//!
//! ```text
//! cargo run --release -p strata-hub --example hub_bench [-- --quick] [--cli | --transport]
//! ```
//!
//! - **strata clone** and **strata pull** (the targets, ≤ 1.5×): the real `strata` CLI (built beside
//!   this example, or `STRATA_BIN`) cloning a whole branch, and pulling a modest change (20 versions),
//!   through the hub vs from a folder remote holding the same pushes; alternating, median of runs.
//!   A second clone row moves 8 MiB of values that do not compress much.
//! - **clone transport** (a figure, not a target): read the cursor, list, download every blob through
//!   `HttpRemote` → hub → folder, vs the same blobs straight from a folder remote. The folder read
//!   copies each byte once from the page cache; through the hub each byte is also read by the hub,
//!   copied through the loopback socket and read by the client, so this ratio measures the raw cost of
//!   HTTP on this machine rather than anything a clone spends its time on.
//! - **cursor GET**: requests per second and p99 latency with 64 concurrent clients on one cursor,
//!   vs nginx (Debian) serving the same bytes as a static file: the physical limit of HTTP here.
//! - **push**: put a 4 KiB blob, read the cursor, compare-and-swap it (what a small push does),
//!   p50 and p99, through the hub vs straight on a folder remote.
//!
//! The hub runs in this process on its own runtime, on 127.0.0.1 port 0; nginx, when installed, runs
//! as a child on a free port and is stopped by its PID.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use strata_hub::{Hub, HubConfig};
use strata_remote::{Connector, Remote, RemoteExt, RemotePath};

use strata_remote_http::HttpRemote;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn row(name: &str, figure: String, baseline: String, ratio: f64, target: &str) {
    println!("{name:<34} {figure:>22}  {baseline:>22}  {ratio:>7.2}x  {target}");
}

async fn clone_once(r: &dyn Remote, cursor: &RemotePath) -> (u64, Duration) {
    let t = Instant::now();
    let _ = r.read_cursor(cursor).await.unwrap();
    let mut bytes = 0;
    for b in r.list_blobs("branches").await.unwrap() {
        let chunks: Vec<Bytes> = r
            .get_blob(&b.path)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        bytes += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
    }
    (bytes, t.elapsed())
}

async fn push_latencies(r: &dyn Remote, n: usize, tag: &str) -> Vec<f64> {
    let name = RemotePath::parse(&format!("branches/push-{tag}")).unwrap();
    let mut out = Vec::with_capacity(n);
    let blob = Bytes::from(vec![42u8; 4096]);
    for i in 0..n {
        let t = Instant::now();
        let p = RemotePath::parse(&format!("branches/push-{tag}/deltas/{i}")).unwrap();
        r.put_bytes_if_absent(&p, blob.clone()).await.unwrap();
        let cur = r.read_cursor(&name).await.unwrap();
        r.write_cursor(
            &name,
            Bytes::from(format!("{{\"version\":{}}}", i + 1)),
            cur.as_ref().map(|c| &c.token),
        )
        .await
        .unwrap();
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(f64::total_cmp);
    out
}

/// 64 clients hammering one URL for `secs`: (requests per second, p99 ms).
async fn load(url: &str, bearer: Option<&str>, clients: usize, secs: f64) -> (f64, f64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let http = http.clone();
        let url = url.to_string();
        let bearer = bearer.map(str::to_string);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let mut req = http.get(&url);
                if let Some(b) = &bearer {
                    req = req.bearer_auth(b);
                }
                let resp = req.send().await.unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.bytes().await.unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (all.len() as f64 / elapsed, pct(&all, 0.99))
}

fn start_nginx(root: &std::path::Path) -> Option<(std::process::Child, u16)> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let conf = root.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; worker_processes 1; pid {0}/nginx.pid; error_log {0}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; client_body_temp_path {0}/tmp; proxy_temp_path {0}/tmp;\n\
             fastcgi_temp_path {0}/tmp; uwsgi_temp_path {0}/tmp; scgi_temp_path {0}/tmp;\n\
             server {{ listen 127.0.0.1:{port}; root {0}/www; }} }}\n",
            root.display()
        ),
    )
    .ok()?;
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["-c", conf.to_str()?, "-p", root.to_str()?]);
    if unsafe_is_root() {
        // nginx drops to `nobody` for workers only when started as root; the files are readable.
        cmd.args(["-g", "user root;"]);
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    Some((child, port))
}

fn unsafe_is_root() -> bool {
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false)
}

/// The `strata` CLI: `STRATA_BIN`, or the one built beside this example (`target/<profile>/strata`).
fn strata_cli() -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("STRATA_BIN") {
        return Some(p.into());
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("strata");
    p.exists().then_some(p)
}

fn run_cli(cli: &std::path::Path, args: &[&str], token: &str) -> Duration {
    let t = Instant::now();
    let out = std::process::Command::new(cli)
        .env("STRATA_TOKEN", token)
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("run strata");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A source database named `name` holding `keys` versions (`value(i)` at `key:i`), pushed to the hub
/// project `acme/<name>` and to a folder remote: (source, hub URL, folder).
fn cli_source(
    cli: &std::path::Path,
    base: &str,
    key: &str,
    root: &std::path::Path,
    name: &str,
    keys: usize,
    value: impl Fn(usize) -> String,
) -> (String, String, String) {
    let db = root
        .join(format!("{name}-src"))
        .to_string_lossy()
        .into_owned();
    run_cli(cli, &["--db", &db, "init"], key);
    for i in 0..keys {
        let v = value(i);
        run_cli(
            cli,
            &["--db", &db, "kv", "put", &format!("key:{i:05}"), &v],
            key,
        );
    }
    let hub_url = format!("{base}/acme/{name}");
    let folder = root
        .join(format!("{name}-folder-remote"))
        .to_string_lossy()
        .into_owned();
    for (remote, url) in [("hub", &hub_url), ("dir", &folder)] {
        run_cli(cli, &["--db", &db, "remote", "add", remote, url], key);
        run_cli(cli, &["--db", &db, "push", remote], key);
    }
    (db, hub_url, folder)
}

/// Clones `hub_url` and `folder` alternately `reps` times into `<name>-hub-i` / `<name>-dir-i`
/// and prints the medians.
#[allow(clippy::too_many_arguments)]
fn clone_row(
    cli: &std::path::Path,
    key: &str,
    root: &std::path::Path,
    name: &str,
    hub_url: &str,
    folder: &str,
    label: &str,
    reps: usize,
) {
    let (mut via_hub, mut via_dir) = (Vec::new(), Vec::new());
    for i in 0..reps {
        for (url, out, times) in [
            (hub_url, format!("{name}-hub-{i}"), &mut via_hub),
            (folder, format!("{name}-dir-{i}"), &mut via_dir),
        ] {
            let to = root.join(out);
            times.push(run_cli(cli, &["clone", url, to.to_str().unwrap()], key).as_secs_f64());
        }
    }
    let (h, f) = (median(via_hub), median(via_dir));
    row(
        label,
        format!("{:.0} ms", h * 1000.0),
        format!("{:.0} ms folder", f * 1000.0),
        h / f,
        "<= 1.5x",
    );
}

/// What the CLI rows measure: a whole `strata clone`, and `strata pull` of a modest change, through
/// the hub vs from a folder remote holding the same pushes (alternating, median of `reps`).
fn cli_rows(
    cli: &std::path::Path,
    base: &str,
    key: &str,
    root: &std::path::Path,
    keys: usize,
    reps: usize,
) {
    let (db, hub_url, folder) = cli_source(cli, base, key, root, "clone", keys, |_| {
        format!("\"{}\"", "v".repeat(2000))
    });
    let label = format!("strata clone ({keys} keys x 2 KB)");
    clone_row(cli, key, root, "clone", &hub_url, &folder, &label, reps);

    // Pull: the source changes 20 keys (20 versions) and pushes to both; each replica pulls.
    let hub_replica = root.join("clone-hub-0");
    let dir_replica = root.join("clone-dir-0");
    let (mut via_hub, mut via_dir) = (Vec::new(), Vec::new());
    for r in 0..reps {
        for i in 0..20 {
            let k = format!("key:{:05}", (r * 37 + i * 11) % keys);
            let v = format!("\"{}{r}\"", "w".repeat(2000));
            run_cli(cli, &["--db", &db, "kv", "put", &k, &v], key);
        }
        run_cli(cli, &["--db", &db, "push", "hub"], key);
        run_cli(cli, &["--db", &db, "push", "dir"], key);
        for (replica, times) in [(&hub_replica, &mut via_hub), (&dir_replica, &mut via_dir)] {
            let t = run_cli(
                cli,
                &["--db", replica.to_str().unwrap(), "pull", "origin"],
                key,
            );
            if std::env::var_os("HUB_BENCH_VERBOSE").is_some() {
                eprintln!("pull {}: {t:?}", replica.display());
            }
            times.push(t.as_secs_f64());
        }
    }
    let (h, f) = (median(via_hub), median(via_dir));
    row(
        "strata pull (20 versions x 2 KB)",
        format!("{:.1} ms", h * 1000.0),
        format!("{:.1} ms folder", f * 1000.0),
        h / f,
        "<= 1.5x",
    );
}

/// Printable characters zstd cannot shrink much (xorshift into 64 symbols), `n` of them.
fn noise(seed: u64, n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 64) as usize] as char
        })
        .collect()
}

/// A whole `strata clone` of a larger branch (`keys` values of 64 KB that do not compress much),
/// through the hub vs from the folder remote: here the transport, not SQLite, takes a real share.
fn cli_large_clone_row(
    cli: &std::path::Path,
    base: &str,
    key: &str,
    root: &std::path::Path,
    keys: usize,
    reps: usize,
) {
    let (_, hub_url, folder) = cli_source(cli, base, key, root, "large", keys, |i| {
        format!("\"{}\"", noise(i as u64, 64 << 10))
    });
    let label = format!("strata clone ({keys} keys x 64 KB)");
    clone_row(cli, key, root, "large", &hub_url, &folder, &label, reps);
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--cli`: only the strata clone and pull rows.
    let cli_only = std::env::args().any(|a| a == "--cli");
    let (blobs, blob_size, pushes, secs) = if quick {
        (8usize, 256 * 1024usize, 30usize, 1.0f64)
    } else {
        (64, 1 << 20, 200, 5.0)
    };
    let dir = tempfile::tempdir().unwrap();
    let storage_path = dir.path().join("hub-storage");
    let folder_path = dir.path().join("folder-remote");
    let connector = strata_remotes::Remotes::persistent();
    let none = BTreeMap::new();
    let storage = connector
        .open(storage_path.to_str().unwrap(), &none)
        .unwrap();
    let folder = connector
        .open(folder_path.to_str().unwrap(), &none)
        .unwrap();

    // The hub on its own runtime (2 workers), as a separate server would be.
    let hub_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hub = Hub::new(storage, HubConfig::default());
    let (key, addr) = hub_rt.block_on(async {
        let k = hub.store().create_key("bench", true).await.unwrap();
        hub.store()
            .create_project("acme", "bench", Some(&k.doc.id))
            .await
            .unwrap();
        for p in ["clone", "large"] {
            hub.store()
                .create_project("acme", p, Some(&k.doc.id))
                .await
                .unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let h = hub.clone();
        tokio::spawn(async move { h.serve(listener, std::future::pending()).await });
        (k.key, addr)
    });
    let base = format!("http://{addr}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if cli_only {
            return;
        }
        let opts = BTreeMap::from([("token".to_string(), key.clone())]);
        let http: Arc<dyn Remote> =
            Arc::new(HttpRemote::open(&format!("{base}/acme/bench"), &opts).unwrap());
        let cursor = RemotePath::parse("branches/main").unwrap();
        let cursor_doc = Bytes::from(format!(
            "{{\"format\":2,\"branch\":\"main\",\"version\":{blobs},\"updated_micros\":1,\"snapshot\":null,\"deltas\":[]}}{}",
            " ".repeat(600)
        ));
        // The same blobs and cursor on both.
        for r in [&http, &folder] {
            for i in 0..blobs {
                let data: Vec<u8> = (0..blob_size).map(|j| ((i * 31 + j) % 251) as u8).collect();
                let p = RemotePath::parse(&format!("branches/main/deltas/{i:04}")).unwrap();
                r.put_bytes_if_absent(&p, Bytes::from(data)).await.unwrap();
            }
            r.write_cursor(&cursor, cursor_doc.clone(), None).await.unwrap();
        }

        println!(
            "{:<34} {:>22}  {:>22}  {:>8}  target",
            "benchmark", "hub", "baseline", "ratio"
        );
        // 1. Clone transport.
        let mut hub_t = Vec::new();
        let mut dir_t = Vec::new();
        let mut moved = 0;
        for _ in 0..3 {
            let (b, t) = clone_once(&*http, &cursor).await;
            moved = b;
            hub_t.push(t.as_secs_f64());
            let (b2, t2) = clone_once(&*folder, &cursor).await;
            assert_eq!(b, b2);
            dir_t.push(t2.as_secs_f64());
        }
        hub_t.sort_by(f64::total_cmp);
        dir_t.sort_by(f64::total_cmp);
        let (h, f) = (hub_t[1], dir_t[1]);
        row(
            &format!("clone transport ({} MiB)", moved >> 20),
            format!("{:.0} ms ({:.0} MB/s)", h * 1000.0, moved as f64 / h / 1e6),
            format!("{:.0} ms folder", f * 1000.0),
            h / f,
            "figure (copies)",
        );

        if std::env::args().any(|a| a == "--transport") {
            return;
        }
        // 2. Cursor GET under 64 concurrent clients, vs nginx serving the same bytes.
        let url = format!("{base}/v1/projects/acme/bench/cursor?name=branches/main");
        let (hub_rps, hub_p99) = load(&url, Some(&key), 64, secs).await;
        let www = dir.path().join("nginx");
        std::fs::create_dir_all(www.join("www")).unwrap();
        std::fs::create_dir_all(www.join("tmp")).unwrap();
        std::fs::write(www.join("www/cursor"), &cursor_doc).unwrap();
        match start_nginx(&www) {
            Some((mut child, port)) => {
                let nurl = format!("http://127.0.0.1:{port}/cursor");
                let ok = {
                    let mut up = false;
                    for _ in 0..50 {
                        if reqwest::get(&nurl).await.is_ok_and(|r| r.status().is_success()) {
                            up = true;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    up
                };
                if ok {
                    let (n_rps, n_p99) = load(&nurl, None, 64, secs).await;
                    row(
                        "cursor GET, 64 clients (req/s)",
                        format!("{hub_rps:.0} req/s"),
                        format!("{n_rps:.0} req/s nginx"),
                        hub_rps / n_rps,
                        "figure (nginx = limit)",
                    );
                    row(
                        "cursor GET, 64 clients (p99)",
                        format!("{hub_p99:.2} ms"),
                        format!("{n_p99:.2} ms nginx"),
                        hub_p99 / n_p99,
                        "figure",
                    );
                } else {
                    println!("cursor GET: nginx did not answer; hub {hub_rps:.0} req/s, p99 {hub_p99:.2} ms");
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            None => println!(
                "cursor GET, 64 clients: hub {hub_rps:.0} req/s, p99 {hub_p99:.2} ms (nginx not installed: no baseline)"
            ),
        }

        // 3. Push latency.
        let hp = push_latencies(&*http, pushes, "hub").await;
        let fp = push_latencies(&*folder, pushes, "folder").await;
        row(
            "push 4 KiB (p50)",
            format!("{:.2} ms", pct(&hp, 0.5)),
            format!("{:.2} ms folder", pct(&fp, 0.5)),
            pct(&hp, 0.5) / pct(&fp, 0.5),
            "figure",
        );
        row(
            "push 4 KiB (p99)",
            format!("{:.2} ms", pct(&hp, 0.99)),
            format!("{:.2} ms folder", pct(&fp, 0.99)),
            pct(&hp, 0.99) / pct(&fp, 0.99),
            "figure",
        );
    });
    if std::env::args().any(|a| a == "--transport") {
        return;
    }
    match strata_cli() {
        Some(cli) => {
            let reps = if quick { 3 } else { 7 };
            cli_rows(
                &cli,
                &base,
                &key,
                dir.path(),
                if quick { 40 } else { 300 },
                reps,
            );
            cli_large_clone_row(
                &cli,
                &base,
                &key,
                dir.path(),
                if quick { 16 } else { 128 },
                reps,
            );
        }
        None => println!(
            "strata clone: no strata CLI beside this example (build it, or set STRATA_BIN)"
        ),
    }
    drop(hub_rt);
}
