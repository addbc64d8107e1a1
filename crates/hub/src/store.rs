//! What the hub keeps in its storage remote, and nowhere else: keys (as hashes), projects with their
//! members, and each project's blobs and cursors. Every document is a cursor updated by
//! compare-and-swap, so several hub processes over one storage stay consistent.
//!
//! ```text
//! cursor hub/keys/<key id>                 KeyDoc (JSON)
//! cursor hub/projects/<owner>/<name>       ProjectDoc (JSON), members included
//! blob   data/<project id>/<path>          a project's blobs, as the client named them
//! cursor data/<project id>/<name>          a project's cursors
//! ```
//! A project's id is random and fresh at each creation, so a deleted and re-created project starts
//! empty even though cursors cannot be deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_remote::{CursorToken, Remote, RemoteError, RemotePath};

use crate::error::ApiError;

/// The prefix of every hub key.
pub const KEY_PREFIX: &str = "shub_";

/// How many times a read-modify-write of one document retries after losing a race.
const CAS_ATTEMPTS: usize = 32;

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A key's record. The secret itself is never stored, only its SHA-256.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyDoc {
    /// The public part of the key, also its document's name.
    pub id: String,
    /// A label for people.
    pub name: String,
    /// Admin keys may do anything, on every project.
    pub admin: bool,
    /// SHA-256 of the secret part, lowercase hex.
    pub sha256: String,
    /// When it was made.
    pub created_micros: u64,
    /// When it was revoked, if it was.
    #[serde(default)]
    pub revoked_micros: Option<u64>,
}

/// A member's role in a project: read < write < owner.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Pull, clone, list.
    Read,
    /// Also push (and garbage-collect) branches.
    Write,
    /// Also manage members and delete the project.
    Owner,
}

/// A key's membership in a project.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// Its role.
    pub role: Role,
    /// With `Some`, writes are allowed only to branches matching one of these patterns (`*` matches
    /// any run of characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<Vec<String>>,
}

/// A project's record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProjectDoc {
    /// The owner part of its name.
    pub owner: String,
    /// The name part.
    pub name: String,
    /// The random id its data lives under (fresh at each creation).
    pub id: String,
    /// When it was created.
    pub created_micros: u64,
    /// When it was deleted (a deleted project is invisible, and its name can be taken again).
    #[serde(default)]
    pub deleted_micros: Option<u64>,
    /// Members by key id.
    #[serde(default)]
    pub members: BTreeMap<String, Member>,
}

impl ProjectDoc {
    /// The storage path of a path inside the project.
    pub fn data_path(&self, path: &RemotePath) -> Result<RemotePath, ApiError> {
        RemotePath::parse(&format!("data/{}/{}", self.id, path.as_str())).map_err(ApiError::from)
    }

    /// The storage prefix of the project's data (no trailing `/`).
    pub fn data_root(&self) -> String {
        format!("data/{}", self.id)
    }
}

/// Checks an owner or project name: 1-64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit
/// (so never `.` or `..`).
pub fn check_name(what: &str, s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{what} {s:?} is not a valid name: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// A freshly made key: its record and the whole key, to show once.
#[derive(Debug)]
pub struct NewKey {
    /// The record stored.
    pub doc: KeyDoc,
    /// `shub_<id>_<secret><checksum>`: shown once, never stored.
    pub key: String,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn checksum(body: &str) -> String {
    format!("{:08x}", crc32fast::hash(body.as_bytes()))
}

/// Splits a key into its id and secret, checking its shape and checksum (no I/O).
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    if rest.len() < 9 || !rest.is_ascii() {
        return None;
    }
    let (body, sum) = rest.split_at(rest.len() - 8);
    if checksum(body) != sum {
        return None;
    }
    let (id, secret) = body.split_once('_')?;
    let hexish = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hexish(id) || !hexish(secret) || id.len() != 16 {
        return None;
    }
    Some((id, secret))
}

/// The hub's documents in its storage.
#[derive(Clone, Debug)]
pub struct Store {
    remote: Arc<dyn Remote>,
}

fn key_cursor(id: &str) -> RemotePath {
    RemotePath::parse(&format!("hub/keys/{id}")).expect("key ids are hex")
}

fn project_cursor(owner: &str, name: &str) -> RemotePath {
    RemotePath::parse(&format!("hub/projects/{owner}/{name}")).expect("names are checked")
}

fn to_json<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(v).expect("documents serialize"))
}

fn from_json<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(b)
        .map_err(|e| ApiError::internal(format!("the stored {what} is not valid: {e}")))
}

impl Store {
    /// The documents in `remote`.
    pub fn new(remote: Arc<dyn Remote>) -> Store {
        Store { remote }
    }

    /// The storage remote.
    pub fn remote(&self) -> &Arc<dyn Remote> {
        &self.remote
    }

    /// Makes a key and stores its hash.
    pub async fn create_key(&self, name: &str, admin: bool) -> Result<NewKey, ApiError> {
        if name.len() > 200 || name.chars().any(|c| c.is_control()) {
            return Err(ApiError::invalid(
                "a key name has at most 200 characters and no control characters",
            ));
        }
        let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let body = format!("{id}_{secret}");
        let key = format!("{KEY_PREFIX}{body}{}", checksum(&body));
        let doc = KeyDoc {
            id: id.clone(),
            name: name.to_string(),
            admin,
            sha256: sha256_hex(&secret),
            created_micros: now_micros(),
            revoked_micros: None,
        };
        self.remote
            .write_cursor(&key_cursor(&id), to_json(&doc), None)
            .await?;
        Ok(NewKey { doc, key })
    }

    /// The key a bearer token names, if it is well formed, known, not revoked and its secret matches
    /// (compared in constant time).
    pub async fn authenticate(&self, token: &str) -> Result<Option<KeyDoc>, ApiError> {
        let Some((id, secret)) = parse_key(token) else {
            return Ok(None);
        };
        let Some(c) = self.remote.read_cursor(&key_cursor(id)).await? else {
            return Ok(None);
        };
        let doc: KeyDoc = from_json("key", &c.value)?;
        let want = doc.sha256.as_bytes();
        let got = sha256_hex(secret);
        let same: bool = subtle::ConstantTimeEq::ct_eq(want, got.as_bytes()).into();
        if !same || doc.revoked_micros.is_some() {
            return Ok(None);
        }
        Ok(Some(doc))
    }

    /// Revokes a key; `false` if there is no such key.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, ApiError> {
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        let name = key_cursor(id);
        for _ in 0..CAS_ATTEMPTS {
            let Some(c) = self.remote.read_cursor(&name).await? else {
                return Ok(false);
            };
            let mut doc: KeyDoc = from_json("key", &c.value)?;
            if doc.revoked_micros.is_some() {
                return Ok(true);
            }
            doc.revoked_micros = Some(now_micros());
            match self
                .remote
                .write_cursor(&name, to_json(&doc), Some(&c.token))
                .await
            {
                Ok(_) => return Ok(true),
                Err(RemoteError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::busy())
    }

    /// A live project and the token of its document.
    pub async fn project(
        &self,
        owner: &str,
        name: &str,
    ) -> Result<Option<(ProjectDoc, CursorToken)>, ApiError> {
        let Some(c) = self
            .remote
            .read_cursor(&project_cursor(owner, name))
            .await?
        else {
            return Ok(None);
        };
        let doc: ProjectDoc = from_json("project", &c.value)?;
        if doc.deleted_micros.is_some() {
            return Ok(None);
        }
        Ok(Some((doc, c.token)))
    }

    /// Creates a project with `creator` as its owner (none in `--open` mode); `Ok(None)` if the name
    /// is taken.
    pub async fn create_project(
        &self,
        owner: &str,
        name: &str,
        creator: Option<&str>,
    ) -> Result<Option<ProjectDoc>, ApiError> {
        check_name("owner", owner)?;
        check_name("project", name)?;
        let mut members = BTreeMap::new();
        if let Some(k) = creator {
            members.insert(
                k.to_string(),
                Member {
                    role: Role::Owner,
                    branches: None,
                },
            );
        }
        let doc = ProjectDoc {
            owner: owner.to_string(),
            name: name.to_string(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            created_micros: now_micros(),
            deleted_micros: None,
            members,
        };
        let cname = project_cursor(owner, name);
        for _ in 0..CAS_ATTEMPTS {
            let expected = match self.remote.read_cursor(&cname).await? {
                None => None,
                Some(c) => {
                    let old: ProjectDoc = from_json("project", &c.value)?;
                    if old.deleted_micros.is_none() {
                        return Ok(None);
                    }
                    Some(c.token)
                }
            };
            match self
                .remote
                .write_cursor(&cname, to_json(&doc), expected.as_ref())
                .await
            {
                Ok(_) => return Ok(Some(doc)),
                Err(RemoteError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::busy())
    }

    /// Applies `change` to a live project's document by compare-and-swap; `Ok(None)` if there is no
    /// such project.
    pub async fn update_project(
        &self,
        owner: &str,
        name: &str,
        change: impl Fn(&mut ProjectDoc) -> Result<(), ApiError>,
    ) -> Result<Option<ProjectDoc>, ApiError> {
        let cname = project_cursor(owner, name);
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut doc, token)) = self.project(owner, name).await? else {
                return Ok(None);
            };
            change(&mut doc)?;
            match self
                .remote
                .write_cursor(&cname, to_json(&doc), Some(&token))
                .await
            {
                Ok(_) => return Ok(Some(doc)),
                Err(RemoteError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::busy())
    }

    /// Deletes a project: marks it deleted (it vanishes at once), then deletes its blobs.
    pub async fn delete_project(&self, owner: &str, name: &str) -> Result<bool, ApiError> {
        let Some(doc) = self
            .update_project(owner, name, |d| {
                d.deleted_micros = Some(now_micros());
                Ok(())
            })
            .await?
        else {
            return Ok(false);
        };
        for b in self.remote.list_blobs(&doc.data_root()).await? {
            self.remote.delete_blob(&b.path).await?;
        }
        Ok(true)
    }

    /// Every live project.
    pub async fn projects(&self) -> Result<Vec<ProjectDoc>, ApiError> {
        let mut out = Vec::new();
        for name in self.remote.list_cursors("hub/projects").await? {
            if let Some(c) = self.remote.read_cursor(&name).await? {
                let doc: ProjectDoc = from_json("project", &c.value)?;
                if doc.deleted_micros.is_none() {
                    out.push(doc);
                }
            }
        }
        Ok(out)
    }
}

/// Whether `name` matches a pattern where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_a_checksum() {
        let body = "0123456789abcdef_00ff";
        let key = format!("{KEY_PREFIX}{body}{}", checksum(body));
        assert_eq!(parse_key(&key), Some(("0123456789abcdef", "00ff")));
        let mut bad = key.clone();
        bad.replace_range(8..9, "9");
        assert_eq!(parse_key(&bad), None);
        assert_eq!(parse_key("shub_"), None);
        assert_eq!(parse_key("ghp_abc"), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("agent-*", "agent-1"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("agent-*", "main"));
        assert!(glob_match("main", "main"));
        assert!(!glob_match("main", "main2"));
    }

    #[test]
    fn names() {
        for ok in ["acme", "agent-memory", "a.b_c", "9"] {
            assert!(check_name("x", ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "-a", "a/b", "a b", &"x".repeat(65), "é"] {
            assert!(check_name("x", bad).is_err(), "{bad}");
        }
    }
}
