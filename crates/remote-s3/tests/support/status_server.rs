//! A tiny HTTP server on 127.0.0.1:0 that answers every request as a test function says (a status
//! and a body, or no answer at all), and records what it was asked. Real `object_store` clients
//! talk to it, so the errors they produce are the genuine ones.

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response};

/// How to answer one request.
pub enum Reply {
    /// This status and body (XML unless it starts with `{`).
    Status(u16, String),
    /// Never answer (the client times out).
    Hang,
}

/// One request as seen.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub authorization: Option<String>,
}

type Responder = dyn Fn(&Method, &str) -> Reply + Send + Sync;

pub struct StatusServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl StatusServer {
    /// Starts in the current runtime; `reply(method, path_and_query)` decides each answer.
    pub async fn start(
        reply: impl Fn(&Method, &str) -> Reply + Send + Sync + 'static,
    ) -> StatusServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply: Arc<Responder> = Arc::new(reply);
        let (seen2, reply2) = (seen.clone(), reply.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, reply) = (seen2.clone(), reply2.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<_>| {
                        let (seen, reply) = (seen.clone(), reply.clone());
                        async move { Ok::<_, Infallible>(serve(&seen, &*reply, req).await) }
                    });
                    let io = hyper_util::rt::TokioIo::new(sock);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        StatusServer { addr, seen, accept }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

async fn serve(
    seen: &Mutex<Vec<Seen>>,
    reply: &Responder,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        authorization,
    });
    // Read the whole request body first, as a real server does.
    let _ = req.into_body().collect().await;
    match reply(&method, &target) {
        Reply::Status(status, body) => {
            let ctype = if body.starts_with('{') {
                "application/json"
            } else {
                "application/xml"
            };
            Response::builder()
                .status(status)
                .header("content-type", ctype)
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        }
        Reply::Hang => {
            futures::future::pending::<()>().await;
            unreachable!()
        }
    }
}

/// An S3/Azure/GCS-style XML error body.
pub fn xml_error(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>"
    )
}

/// A port nothing listens on.
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
