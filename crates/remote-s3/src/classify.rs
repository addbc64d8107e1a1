//! What a store error means: decided from `object_store`'s typed error, the kind of a transport
//! failure, the HTTP status and the store's error code, never by searching a message for words.
//!
//! `object_store` 0.14 keeps the type that carries the HTTP status and the response body
//! (`client::retry::RequestError`) in a private module, so it cannot be downcast to. What it does
//! expose is used first: the [`object_store::Error`] variant (which `object_store` itself derives from
//! the status for object requests), [`HttpError::kind`] for transport failures, and our own
//! [`CredentialError`]. The status and the body are read only from that private error's own text, at
//! the end of the source chain (it has no source itself), where `object_store` always writes
//! `Server returned non-2xx status code: <status>: <body>`: the status is the number at a fixed
//! place, and the error code is the `Code` element of the XML body (or the `error` member of a JSON
//! one), read with a parser. Nothing else in a message (a URL, a blob name, a duration) is ever
//! looked at.

use std::error::Error as StdError;
use std::fmt;

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
use object_store::client::{HttpError, HttpErrorKind};
use strata_remote::BoxError;

/// What a store error means to Strata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Retrying may succeed: 408, 429, 500, 502, 503, 504, a timeout, a refused or broken connection.
    Transient,
    /// Credentials are missing, wrong or expired: 401, or a 400/403 whose error code says so.
    Credentials,
    /// 403: the credentials are valid but may not do this.
    Forbidden,
    /// 404 whose error code says the bucket (or container) does not exist.
    MissingBucket,
    /// 404: no such object.
    NotFound,
    /// 409 or 412: a condition of the request did not hold (put-if-absent found an object, or a
    /// compare-and-swap lost).
    Condition,
    /// The request is wrong: a bad path, an unsupported operation or setting.
    Invalid,
    /// Anything else.
    Other,
}

/// A store error, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Classified {
    pub(crate) class: Class,
    /// The HTTP status of the failed response, when there was one.
    pub(crate) status: Option<u16>,
    /// The store's error code (`NoSuchBucket`, `SlowDown`, `AuthenticationFailed`…), when the response
    /// body had one.
    pub(crate) code: Option<String>,
    /// What happened, when no response came back ("timed out", "could not connect"…).
    pub(crate) transport: Option<&'static str>,
}

impl Classified {
    /// A short note for a message: `HTTP 503, SlowDown`, `timed out`; empty when nothing is known.
    pub(crate) fn note(&self) -> String {
        match (self.status, &self.code, self.transport) {
            (Some(s), Some(c), _) => format!("HTTP {s}, {c}"),
            (Some(s), None, _) => format!("HTTP {s}"),
            (None, Some(c), _) => c.clone(),
            (None, None, Some(t)) => t.to_string(),
            (None, None, None) => String::new(),
        }
    }
}

/// Error codes that say the credentials are wrong, expired or missing (rather than that valid
/// credentials lack a permission). S3 sends some of these with 400, hence they count on 400 and 403.
const CREDENTIAL_CODES: &[&str] = &[
    // S3
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    // Azure. Not `AuthorizationFailure`: Azure sends it to valid credentials that a firewall rule
    // or a role does not let through (Azurite also sends it for a wrong key).
    "AuthenticationFailed",
    "InvalidAuthenticationInfo",
    "NoAuthenticationInformation",
    // OAuth token endpoints (GCS, Azure AD): JSON `error`
    "invalid_grant",
    "invalid_client",
    "unauthorized_client",
];

/// Error codes of a 404 that say the bucket or container itself is missing.
const MISSING_BUCKET_CODES: &[&str] = &["NoSuchBucket", "ContainerNotFound"];

/// A credential problem Strata found itself: an AWS profile's `credential_process` failed, or there
/// are no credentials anywhere. The message says what was tried and what to do; it never holds a
/// secret. The store returns it as the source of an [`object_store::Error::Generic`].
#[derive(Debug)]
pub(crate) struct CredentialError {
    pub(crate) message: String,
    pub(crate) source: Option<BoxError>,
}

impl CredentialError {
    #[allow(dead_code)] // unused in builds without the `aws` feature
    pub(crate) fn new(message: impl Into<String>, source: Option<BoxError>) -> CredentialError {
        CredentialError {
            message: message.into(),
            source,
        }
    }
}

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for CredentialError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// If `e` is a [`CredentialError`] wrapped by `object_store`, that error; otherwise `e` back.
pub(crate) fn take_credential_error(
    e: object_store::Error,
) -> Result<CredentialError, object_store::Error> {
    match e {
        object_store::Error::Generic { store, source } => {
            match source.downcast::<CredentialError>() {
                Ok(c) => Ok(*c),
                Err(source) => Err(object_store::Error::Generic { store, source }),
            }
        }
        object_store::Error::Unauthenticated { path, source } => {
            match source.downcast::<CredentialError>() {
                Ok(c) => Ok(*c),
                Err(source) => Err(object_store::Error::Unauthenticated { path, source }),
            }
        }
        other => Err(other),
    }
}

/// Classifies a store error.
pub(crate) fn classify(e: &object_store::Error) -> Classified {
    let mut status = None;
    let mut code = None;
    let mut transport = None;
    let mut error_body = false;
    let mut credentials = false;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<CredentialError>().is_some() {
            credentials = true;
        }
        #[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
        if let Some(h) = err.downcast_ref::<HttpError>() {
            transport.get_or_insert(transport_kind(h.kind()));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let t = match io.kind() {
                K::TimedOut => Some("timed out"),
                K::ConnectionRefused => Some("could not connect"),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    Some("the connection broke")
                }
                _ => None,
            };
            if let Some(t) = t {
                transport.get_or_insert(t);
            }
        }
        if err.source().is_none() {
            if let Some(r) = parse_request_error(&err.to_string()) {
                status = r.status;
                code = r.body.and_then(error_code);
                error_body = r.status.is_none();
            }
        }
        cur = err.source();
    }
    let code_is = |list: &[&str]| code.as_deref().is_some_and(|c| list.contains(&c));
    use object_store::Error as E;
    let class = if credentials {
        Class::Credentials
    } else if let Some(s) = status {
        match s {
            401 => Class::Credentials,
            400 | 403 if code_is(CREDENTIAL_CODES) => Class::Credentials,
            403 => Class::Forbidden,
            404 if code_is(MISSING_BUCKET_CODES) => Class::MissingBucket,
            404 => Class::NotFound,
            409 | 412 => Class::Condition,
            408 | 429 | 500 | 502 | 503 | 504 => Class::Transient,
            _ => Class::Other,
        }
    } else if error_body {
        // A 200 whose body is an error (S3's InternalError or SlowDown): object_store retried it
        // like a 5xx.
        Class::Transient
    } else {
        match e {
            E::NotFound { .. } => Class::NotFound,
            E::AlreadyExists { .. } | E::Precondition { .. } => Class::Condition,
            E::Unauthenticated { .. } => Class::Credentials,
            E::PermissionDenied { .. } => Class::Forbidden,
            E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::UnknownConfigurationKey { .. } => Class::Invalid,
            _ => match transport {
                Some(t) if TRANSIENT_TRANSPORT.contains(&t) => Class::Transient,
                _ => Class::Other,
            },
        }
    };
    Classified {
        class,
        status,
        code,
        transport,
    }
}

const TRANSIENT_TRANSPORT: &[&str] = &[
    "timed out",
    "could not connect",
    "the connection broke",
    "the request could not be sent",
];

#[cfg(any(feature = "aws", feature = "gcp", feature = "azure"))]
fn transport_kind(k: HttpErrorKind) -> &'static str {
    match k {
        HttpErrorKind::Connect => "could not connect",
        HttpErrorKind::Request => "the request could not be sent",
        HttpErrorKind::Timeout => "timed out",
        HttpErrorKind::Interrupted => "the connection broke",
        HttpErrorKind::Decode => "the response could not be read",
        _ => "the request failed",
    }
}

/// What `object_store`'s private `RequestError` says, read from its text.
#[derive(Debug, PartialEq, Eq)]
struct RequestText<'a> {
    /// `None` for an error body in a successful response.
    status: Option<u16>,
    body: Option<&'a str>,
}

/// Parses the text of `object_store`'s `RequestError` (the last error of a chain), which is written
/// as `Server returned non-2xx status code: 503 Service Unavailable: <body>` or
/// `Server returned error response: <body>`. Anything else is `None`. The status is the three
/// digits right after the fixed prefix, so no other part of any message can be mistaken for it.
fn parse_request_error(text: &str) -> Option<RequestText<'_>> {
    const STATUS: &str = "Server returned non-2xx status code: ";
    const RESPONSE: &str = "Server returned error response: ";
    if let Some(rest) = text.strip_prefix(STATUS) {
        let digits = rest.get(..3)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let after = &rest[3..];
        if !(after.is_empty() || after.starts_with(' ') || after.starts_with(':')) {
            return None;
        }
        // `<reason phrase>: <body>`; reason phrases hold no ": ".
        let body = after
            .split_once(": ")
            .map(|(_, b)| b)
            .filter(|b| !b.is_empty());
        return Some(RequestText {
            status: digits.parse().ok(),
            body,
        });
    }
    text.strip_prefix(RESPONSE).map(|body| RequestText {
        status: None,
        body: Some(body),
    })
}

/// The store's error code in a response body: the `Code` child of an XML `<Error>` root (S3, GCS's
/// XML API, Azure), or a JSON body's `error` (a string for OAuth endpoints; for Google's JSON API
/// an object whose `status` or first `errors[].reason` is the code).
pub(crate) fn error_code(body: &str) -> Option<String> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(trimmed).ok()?;
        let err = v.get("error")?;
        return match err {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o
                .get("status")
                .and_then(|s| s.as_str())
                .or_else(|| {
                    o.get("errors")?
                        .as_array()?
                        .first()?
                        .get("reason")?
                        .as_str()
                })
                .map(str::to_string),
            _ => None,
        };
    }
    xml_error_code(trimmed)
}

/// The text of `/Error/Code` in an XML document, read with an XML parser.
fn xml_error_code(xml: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0usize;
    let mut in_code = false;
    let mut code = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(s) => {
                depth += 1;
                let name = s.local_name();
                if depth == 1 && name.as_ref() != b"Error" {
                    return None;
                }
                in_code = depth == 2 && name.as_ref() == b"Code";
            }
            Event::Text(t) if in_code => code.push_str(&t.decode().ok()?),
            Event::End(_) => {
                if in_code {
                    let c = code.trim();
                    return (!c.is_empty()).then(|| c.to_string());
                }
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return None;
                }
            }
            Event::Empty(_) if depth == 0 => return None,
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_error_text_is_parsed_at_fixed_places_only() {
        let r = parse_request_error(
            "Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>",
        )
        .unwrap();
        assert_eq!(r.status, Some(503));
        assert_eq!(r.body, Some("<Error><Code>SlowDown</Code></Error>"));
        let r =
            parse_request_error("Server returned non-2xx status code: 404 Not Found: ").unwrap();
        assert_eq!((r.status, r.body), (Some(404), None));
        let r = parse_request_error("Server returned error response: <Error/>").unwrap();
        assert_eq!((r.status, r.body), (None, Some("<Error/>")));
        for text in [
            // Another error that merely mentions a status, a duration or a name with digits.
            "Error performing GET http://h/b/blobs/500 in 1.500ms - connection closed",
            "Server returned non-2xx status code: 5000 nonsense",
            "Server returned non-2xx status code: abc",
            "prefix Server returned non-2xx status code: 503 Service Unavailable: x",
        ] {
            assert_eq!(parse_request_error(text), None, "{text}");
        }
    }

    #[test]
    fn error_codes_come_from_the_code_element_or_json_error() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Message>The bucket NoSuchBucket-not is here; InvalidAccessKeyId</Message><Code>AccessDenied</Code><Resource>/b</Resource></Error>"#;
        assert_eq!(error_code(xml).as_deref(), Some("AccessDenied"));
        // A Code element that is not the child of the Error root does not count.
        assert_eq!(
            error_code("<Error><Details><Code>NoSuchBucket</Code></Details></Error>"),
            None
        );
        assert_eq!(error_code("<Other><Code>NoSuchBucket</Code></Other>"), None);
        assert_eq!(error_code("NoSuchBucket"), None);
        assert_eq!(
            error_code("<Error><Code>  NoSuchKey </Code></Error>").as_deref(),
            Some("NoSuchKey")
        );
        assert_eq!(
            error_code(r#"{"error":"invalid_grant","error_description":"bad"}"#).as_deref(),
            Some("invalid_grant")
        );
        assert_eq!(
            error_code(r#"{"error":{"code":401,"status":"UNAUTHENTICATED","message":"x"}}"#)
                .as_deref(),
            Some("UNAUTHENTICATED")
        );
        assert_eq!(
            error_code(r#"{"error":{"code":403,"errors":[{"reason":"forbidden"}]}}"#).as_deref(),
            Some("forbidden")
        );
        assert_eq!(error_code(r#"{"message":"NoSuchBucket"}"#), None);
    }

    #[test]
    fn typed_errors_without_a_response_follow_their_variant() {
        let generic = |msg: &str| object_store::Error::Generic {
            store: "S3",
            source: msg.to_string().into(),
        };
        // Text never classifies: these mention statuses, timeouts and connections.
        for msg in [
            "Error performing GET http://h/blobs/500 in 1.500ms",
            "connection to blob 503-timeout failed: 401 Unauthorized 403 Forbidden NoSuchBucket",
        ] {
            assert_eq!(classify(&generic(msg)).class, Class::Other, "{msg}");
        }
        let nf = object_store::Error::NotFound {
            path: "blobs/500".into(),
            source: "timed out, connection reset".into(),
        };
        assert_eq!(classify(&nf).class, Class::NotFound);
        let pre = object_store::Error::Precondition {
            path: "x".into(),
            source: "x".into(),
        };
        assert_eq!(classify(&pre).class, Class::Condition);
        let io = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        };
        let c = classify(&io);
        assert_eq!(
            (c.class, c.transport),
            (Class::Transient, Some("timed out"))
        );
        let cred = object_store::Error::Generic {
            store: "S3",
            source: Box::new(CredentialError::new("no credentials", None)),
        };
        assert_eq!(classify(&cred).class, Class::Credentials);
        let taken = take_credential_error(cred).unwrap();
        assert_eq!(taken.message, "no credentials");
        assert!(take_credential_error(io).is_err());
    }
}
