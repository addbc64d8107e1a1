//! Counting the HTTP requests a bucket remote sends: what a cloud bill charges for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use async_trait::async_trait;
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use object_store::ClientOptions;

/// Counts the HTTP requests of every remote opened with it, by method (`GET`, `PUT`, `POST`, `HEAD`,
/// `DELETE`), retries included. Cheap to clone; clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    log: Arc<Mutex<Vec<RequestRecord>>>,
}

/// One request, as [`RequestCounter::log`] records it: no credentials, only what shows what the
/// request did and on which condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `PUT`…
    pub method: String,
    /// The URL path (the object's key, percent-encoded as sent).
    pub path: String,
    /// The URL's query parameter names (`uploadId`, `partNumber`, `comp`…), without values.
    pub query_keys: Vec<String>,
    /// The conditional and copy headers sent: `if-none-match`, `if-match`,
    /// `x-goog-if-generation-match`, `x-amz-copy-source`, `x-goog-copy-source`, `x-ms-copy-source`.
    pub conditions: BTreeMap<String, String>,
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
const LOGGED_HEADERS: &[&str] = &[
    "if-none-match",
    "if-match",
    "x-goog-if-generation-match",
    "x-amz-copy-source",
    "x-goog-copy-source",
    "x-ms-copy-source",
];

impl RequestCounter {
    /// A counter at zero.
    pub fn new() -> RequestCounter {
        RequestCounter::default()
    }

    /// The requests so far, by method.
    pub fn by_method(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// All requests so far.
    pub fn total(&self) -> u64 {
        self.by_method().values().sum()
    }

    /// Every request so far, in the order sent.
    pub fn log(&self) -> Vec<RequestRecord> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets every count back to zero and empties the log.
    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    pub(crate) fn connector(&self) -> CountingConnector {
        CountingConnector {
            counter: self.clone(),
        }
    }

    #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
    fn record(&self, req: &HttpRequest) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(req.method().to_string())
            .or_default() += 1;
        let uri = req.uri();
        let record = RequestRecord {
            method: req.method().to_string(),
            path: uri.path().to_string(),
            query_keys: uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split('=').next().unwrap_or("").to_string())
                .collect(),
            conditions: LOGGED_HEADERS
                .iter()
                .filter_map(|h| {
                    let v = req.headers().get(*h)?.to_str().ok()?;
                    Some((h.to_string(), v.to_string()))
                })
                .collect(),
        };
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
#[derive(Debug)]
pub(crate) struct CountingConnector {
    counter: RequestCounter,
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
impl HttpConnector for CountingConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(CountingService {
            inner: ReqwestConnector::default().connect(options)?,
            counter: self.counter.clone(),
        }))
    }
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
#[derive(Debug)]
struct CountingService {
    inner: HttpClient,
    counter: RequestCounter,
}

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
#[async_trait]
impl HttpService for CountingService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.counter.record(&req);
        self.inner.execute(req).await
    }
}
