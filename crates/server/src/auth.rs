//! API keys and per-branch permissions.
//!
//! Keys are `ssk_<16 hex id>_<64 hex secret>`. The key file (`server-keys.json` in the data
//! folder) holds each key's id, name, permissions and the SHA-256 of its secret, never the secret;
//! the secret is compared in constant time. A permission is a branch pattern: a name, a prefix
//! ending in `*`, or `*` for every branch. Write implies read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use strata_wire::{Command, ErrorCode, WireError};
use subtle::ConstantTimeEq;

/// The key file's name inside the data folder.
pub const KEYS_FILE: &str = "server-keys.json";

/// One stored key (no secret).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public id (part of the key).
    pub id: String,
    /// A name for people and logs.
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub sha256: String,
    /// Branch patterns the key may read.
    #[serde(default)]
    pub read: Vec<String>,
    /// Branch patterns the key may write (and read).
    #[serde(default)]
    pub write: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<KeyRecord>,
}

/// The keys a server accepts.
#[derive(Clone, Debug, Default)]
pub struct KeyStore {
    keys: Vec<KeyRecord>,
}

/// Who is calling.
#[derive(Clone, Debug)]
pub enum Principal {
    /// `--open`: anyone may do anything.
    Open,
    /// A key.
    Key(KeyRecord),
}

fn matches(patterns: &[String], branch: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => branch.starts_with(prefix),
        None => p == branch,
    })
}

impl Principal {
    /// A name for logs.
    pub fn name(&self) -> &str {
        match self {
            Principal::Open => "(open mode)",
            Principal::Key(k) => &k.name,
        }
    }

    /// Whether it may read `branch`.
    pub fn can_read(&self, branch: &str) -> bool {
        match self {
            Principal::Open => true,
            Principal::Key(k) => matches(&k.read, branch) || matches(&k.write, branch),
        }
    }

    /// Whether it may write `branch`.
    pub fn can_write(&self, branch: &str) -> bool {
        match self {
            Principal::Open => true,
            Principal::Key(k) => matches(&k.write, branch),
        }
    }

    /// Whether it administers the database: a key whose write patterns include `*` (every branch).
    /// Changing settings and remotes needs it.
    pub fn is_admin(&self) -> bool {
        match self {
            Principal::Open => true,
            Principal::Key(k) => k.write.iter().any(|p| p == "*"),
        }
    }

    /// Whether it may read every branch (`*` in its read or write patterns): reading settings and
    /// the remotes' configuration needs it.
    pub fn reads_all(&self) -> bool {
        match self {
            Principal::Open => true,
            Principal::Key(k) => k.read.iter().chain(&k.write).any(|p| p == "*"),
        }
    }

    fn need_admin(&self, write: bool, what: &str) -> Result<(), WireError> {
        let ok = if write {
            self.is_admin()
        } else {
            self.reads_all()
        };
        if ok {
            return Ok(());
        }
        Err(WireError::new(
            ErrorCode::Forbidden,
            format!(
                "key {:?} may not {what}: that needs a key with {} access to every branch; nothing was written. Use one made with `stratadb-server keys add --{} '*'`",
                self.name(),
                if write { "write" } else { "read" },
                if write { "write" } else { "read" },
            ),
        ))
    }

    /// Checks write access to `branch`.
    pub fn check_write(&self, branch: &str) -> Result<(), WireError> {
        self.need(true, branch)
    }

    fn need(&self, write: bool, branch: &str) -> Result<(), WireError> {
        let ok = if write {
            self.can_write(branch)
        } else {
            self.can_read(branch)
        };
        if ok {
            Ok(())
        } else {
            Err(WireError::new(
                ErrorCode::Forbidden,
                format!(
                    "key {:?} may not {} branch {branch:?}; nothing was written. Use a key with {} access to it (stratadb-server keys add --{} {branch})",
                    self.name(),
                    if write { "write" } else { "read" },
                    if write { "write" } else { "read" },
                    if write { "write" } else { "read" },
                ),
            ))
        }
    }

    /// Checks that the caller may run `cmd` (commands inside a transaction were checked at `begin`).
    pub fn authorize(&self, cmd: &Command) -> Result<(), WireError> {
        if matches!(self, Principal::Open) {
            return Ok(());
        }
        match cmd {
            Command::Ping | Command::ListBranches { .. } => Ok(()),
            Command::Scoped { branch, op, .. } => self.need(op.writes(), branch),
            Command::Begin { branch } => self.need(true, branch),
            Command::InTx { .. }
            | Command::SetMessage { .. }
            | Command::SetAuthor { .. }
            | Command::Commit
            | Command::Rollback => Ok(()),
            Command::CreateBranch { name } | Command::DeleteBranch { name } => {
                self.need(true, name)
            }
            Command::ForkBranch { source, name } => {
                self.need(false, &source.branch)?;
                self.need(true, name)
            }
            Command::BranchInfo { name } | Command::BranchExists { name } => self.need(false, name),
            Command::Log { branch, .. }
            | Command::History { branch, .. }
            | Command::ListSpaces { branch } => self.need(false, branch),
            Command::GetAt { rev, .. } => self.need(false, &rev.branch),
            Command::Diff { a, b } => {
                self.need(false, &a.branch)?;
                self.need(false, &b.branch)
            }
            Command::Merge {
                source,
                target,
                conflict_branch,
                ..
            } => {
                self.need(false, &source.branch)?;
                self.need(true, target)?;
                match conflict_branch {
                    Some(c) => self.need(true, c),
                    None => Ok(()),
                }
            }
            Command::Contains { outer, inner } => {
                self.need(false, &outer.branch)?;
                self.need(false, &inner.branch)
            }
            Command::ListPage { rev, .. } | Command::Changes { rev, .. } => {
                self.need(false, &rev.branch)
            }
            Command::SyncPushDelete { branch, .. } => self.need(true, branch),
            Command::SyncWith {
                op,
                branch,
                conflict_branch,
                ..
            } => {
                self.need(*op != strata_wire::SyncOp::Status, branch)?;
                match conflict_branch {
                    Some(c) => self.need(true, c),
                    None => Ok(()),
                }
            }
            Command::ConfigGet { .. } | Command::ConfigList => {
                self.need_admin(false, "read the database's settings")
            }
            Command::RemoteList | Command::RemoteBranches { .. } => {
                self.need_admin(false, "read the database's remotes")
            }
            Command::ConfigSet { .. } => self.need_admin(true, "change the database's settings"),
            Command::RemoteAdd { .. }
            | Command::RemoteSetUrl { .. }
            | Command::RemoteRename { .. }
            | Command::RemoteRemove { .. }
            | Command::RemoteGc { .. }
            | Command::RemoteCompact { .. } => {
                self.need_admin(true, "change the database's remotes")
            }
            Command::BundleExport { branch, .. } => self.need(false, branch),
            // Push, pull and fetch change the database's sync state (and pull the branch).
            Command::SyncPush { branch, .. }
            | Command::SyncPull { branch, .. }
            | Command::SyncFetch { branch, .. } => self.need(true, branch),
            Command::SyncStatus { branch, .. } => self.need(false, branch),
            Command::SyncRemotes => Ok(()),
            // Transfers belong to their connection; an import is checked once its bundle's branch
            // is known (`check_write`).
            Command::BundleRead { .. }
            | Command::BundleUpload { .. }
            | Command::BundleImport { .. }
            | Command::BundleClose { .. } => Ok(()),
        }
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut out = String::new();
    while out.len() < bytes * 2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(bytes * 2);
    out
}

/// The key file of a data folder.
pub fn keys_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_FILE)
}

impl KeyStore {
    /// Loads the key file (absent: no keys).
    pub fn load(path: &Path) -> anyhow::Result<KeyStore> {
        match std::fs::read(path) {
            Ok(b) => {
                let f: KeyFile = serde_json::from_slice(&b).map_err(|e| {
                    anyhow::anyhow!("key file {} is not valid: {e}", path.display())
                })?;
                Ok(KeyStore { keys: f.keys })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyStore::default()),
            Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes the key file (whole, through a temporary file and a rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let body = serde_json::to_vec_pretty(&KeyFile {
            keys: self.keys.clone(),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// The stored keys.
    pub fn keys(&self) -> &[KeyRecord] {
        &self.keys
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds a key; returns the full key (shown once) and its record.
    pub fn add(
        &mut self,
        name: &str,
        read: Vec<String>,
        write: Vec<String>,
    ) -> (String, KeyRecord) {
        let id = random_hex(8);
        let secret = random_hex(32);
        let rec = KeyRecord {
            id: id.clone(),
            name: name.to_string(),
            sha256: sha256_hex(&secret),
            read,
            write,
        };
        self.keys.push(rec.clone());
        (format!("ssk_{id}_{secret}"), rec)
    }

    /// Removes keys by id or name; returns how many.
    pub fn remove(&mut self, id_or_name: &str) -> usize {
        let before = self.keys.len();
        self.keys
            .retain(|k| k.id != id_or_name && k.name != id_or_name);
        before - self.keys.len()
    }

    /// The key's record if `key` is a valid key of this store.
    pub fn verify(&self, key: &str) -> Option<&KeyRecord> {
        let rest = key.strip_prefix("ssk_")?;
        let (id, secret) = rest.split_once('_')?;
        let rec = self.keys.iter().find(|k| k.id == id)?;
        let got = sha256_hex(secret);
        bool::from(got.as_bytes().ct_eq(rec.sha256.as_bytes())).then_some(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_verify_and_patterns_apply() {
        let mut s = KeyStore::default();
        let (key, _) = s.add("ci", vec!["*".into()], vec!["agent/*".into()]);
        let rec = s.verify(&key).expect("the key verifies").clone();
        assert!(s.verify(&key.replace("ssk_", "ssk_0")).is_none());
        let mut wrong = key.clone();
        wrong.pop();
        wrong.push(if key.ends_with('0') { '1' } else { '0' });
        assert!(s.verify(&wrong).is_none());
        let p = Principal::Key(rec);
        assert!(p.can_read("main") && !p.can_write("main"));
        assert!(p.can_write("agent/7") && !p.can_write("agents"));
        assert!(!serde_json::to_string(&s.keys).unwrap().contains(&key[21..]));
    }
}
