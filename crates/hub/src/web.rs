//! The read-only page at `/`: server-rendered HTML, no JavaScript. Signing in with a key sets an
//! HttpOnly, SameSite=Strict cookie holding it; the page then lists the projects the key may read,
//! each project's branches with their versions, and each branch's recent pushes (when, author,
//! message, entries), all read from the branch cursors' summary fields, never from a blob.

use std::fmt::Write;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::{branches, key_caller, visible_projects, Caller};
use crate::error::ApiError;
use crate::Hub;

const COOKIE: &str = "stratahub_key";

pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/", get(page))
        .route("/signin", post(sign_in))
        .route("/signout", post(sign_out))
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn cookie_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem;color:#222}\
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.3rem .6rem;\
text-align:left}th{background:#f3f3f3}h2{margin-top:2rem}.muted{color:#777}";

fn shell(title: &str, content: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body><h1>StrataHub</h1>{content}</body></html>",
        escape(title)
    )
}

fn sign_in_form(note: &str) -> String {
    shell(
        "StrataHub: sign in",
        &format!(
            "{note}<form method=\"post\" action=\"/signin\"><label>API key \
             <input type=\"password\" name=\"key\" id=\"key\" autocomplete=\"off\" size=\"60\"></label> \
             <button type=\"submit\" id=\"signin\">Sign in</button></form>"
        ),
    )
}

/// A time in microseconds since the epoch, as `YYYY-MM-DD HH:MM:SS UTC`.
fn when(micros: u64) -> String {
    if micros == 0 {
        return "-".into();
    }
    let secs = micros / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

async fn page(State(hub): State<Hub>, headers: HeaderMap) -> Response {
    let caller = if hub.config.open {
        Some(Caller::Open)
    } else {
        match cookie_key(&headers) {
            None => None,
            Some(k) => key_caller(&hub, &k).await.ok(),
        }
    };
    let Some(caller) = caller else {
        return html(StatusCode::OK, sign_in_form(""));
    };
    match render(&hub, &caller).await {
        Ok(body) => html(StatusCode::OK, body),
        Err(e) => html(
            e.status,
            shell(
                "StrataHub: error",
                &format!("<p>{}</p>", escape(&e.message)),
            ),
        ),
    }
}

async fn render(hub: &Hub, caller: &Caller) -> Result<String, ApiError> {
    let mut c = String::new();
    let who = match caller {
        Caller::Open => "open mode (no authentication)".to_string(),
        Caller::Key(k) => format!("key {} ({})", k.name, k.id),
    };
    let _ = write!(
        c,
        "<p class=\"muted\">Signed in with {}. <form method=\"post\" action=\"/signout\" \
         style=\"display:inline\"><button type=\"submit\">Sign out</button></form></p>",
        escape(&who)
    );
    let mut projects = visible_projects(hub, caller).await?;
    projects.sort_by(|a, b| (&a.owner, &a.name).cmp(&(&b.owner, &b.name)));
    if projects.is_empty() {
        c.push_str("<p id=\"no-projects\">No projects yet.</p>");
    }
    for p in &projects {
        let full = format!("{}/{}", p.owner, p.name);
        let _ = write!(
            c,
            "<section class=\"project\" data-project=\"{0}\"><h2>{0}</h2>",
            escape(&full)
        );
        let mut list = branches(hub, p).await?;
        list.sort_by(|a, b| a.name.cmp(&b.name));
        if list.is_empty() {
            c.push_str("<p class=\"muted\">No branches pushed yet.</p>");
        } else {
            c.push_str(
                "<table class=\"branches\"><tr><th>Branch</th><th>Version</th><th>Updated</th></tr>",
            );
            for b in &list {
                let _ = write!(
                    c,
                    "<tr class=\"branch\" data-branch=\"{0}\"><td>{0}</td><td class=\"version\">{1}</td><td>{2}</td></tr>",
                    escape(&b.name),
                    b.version,
                    when(b.updated_micros)
                );
            }
            c.push_str("</table>");
        }
        for b in list.iter().filter(|b| !b.pushes.is_empty()) {
            let _ = write!(
                c,
                "<h3>Recent pushes to {}</h3><table class=\"pushes\" data-branch=\"{}\">\
                 <tr><th>When</th><th>Author</th><th>Message</th><th>Entries</th><th>Versions</th></tr>",
                escape(&b.name),
                escape(&b.name)
            );
            for push in b.pushes.iter().rev() {
                let _ = write!(
                    c,
                    "<tr class=\"push\"><td>{}</td><td class=\"author\">{}</td><td class=\"message\">{}</td>\
                     <td class=\"entries\">{}</td><td>{}&rarr;{}</td></tr>",
                    when(push.time_micros),
                    escape(push.author.as_deref().unwrap_or("-")),
                    escape(push.message.as_deref().unwrap_or("")),
                    push.entries,
                    push.from,
                    push.to
                );
            }
            c.push_str("</table>");
        }
        c.push_str("</section>");
    }
    Ok(shell("StrataHub", &c))
}

async fn sign_in(State(hub): State<Hub>, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 10).await else {
        return html(StatusCode::PAYLOAD_TOO_LARGE, sign_in_form(""));
    };
    let key = form_urlencoded_key(&bytes).unwrap_or_default();
    if key_caller(&hub, &key).await.is_err() {
        return html(
            StatusCode::UNAUTHORIZED,
            sign_in_form("<p id=\"error\">That key is not valid.</p>"),
        );
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}={key}; HttpOnly; SameSite=Strict; Path=/"),
            ),
        ],
    )
        .into_response()
}

async fn sign_out() -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
            ),
        ],
    )
        .into_response()
}

/// The `key` field of an `application/x-www-form-urlencoded` body. Keys use only `[a-z0-9_]`, so
/// anything else is refused rather than decoded.
fn form_urlencoded_key(body: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "key")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(when(0), "-");
        assert_eq!(when(1_700_000_000_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn escapes() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
