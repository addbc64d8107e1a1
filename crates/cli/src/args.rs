//! The command line, declared with clap's derive API. Doc comments become the `--help` text.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use strata_engine::{Kind, MergeStrategy, Value, DEFAULT_SPACE};

const LONG_ABOUT: &str = "\
Strata: an embedded branched database on SQLite.

A database is a folder. Each branch holds spaces; each space holds key-value pairs, JSON documents,
an append-only event log and state cells. Every write commits a new branch version (1, 2, 3, ...).
Branches fork copy-on-write, diff, and merge three-way; bundles move a branch between databases.

Start with `strata init`. Other commands find the database like git finds .git: --db, then
STRATA_DB, then a .strata folder here or in a parent folder; they never create one.

Data commands (kv, json, event, state, log, history) act on --branch (default main) and --space
(default \"default\"). Read commands also take -b BRANCH@VERSION to read a past version. Branch and
bundle commands name their branches as arguments.

Sync commands (remote, push, pull, fetch, status, clone) move branches through a remote: a folder,
file:///path, or a bucket (s3://bucket/prefix, gs://bucket/prefix, az://container/prefix). Bucket credentials come from the cloud's usual variables (AWS_ACCESS_KEY_ID… or
AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCOUNT_NAME/KEY); for S3-compatible stores
pass -o endpoint=URL. Push, pull and status use the branch's upstream (set by push -u), else the
only remote, else `origin`; and --branch.";

const AFTER_HELP: &str = "\
Values:
  VALUE arguments are parsed as JSON (42, 1.5, true, null, \"text\", [1,2], {\"a\":1}); other text
  (plain words) is stored as a string. Text that starts like JSON ({, [ or \") but does not parse is
  an error. --string stores the text as a string, as written. `-` reads the value from stdin and
  @FILE from a file (any size). Values are printed as JSON; bytes appear as {\"$bytes\": \"<base64>\"}.

Revisions:
  A revision is BRANCH (its head) or BRANCH@VERSION (a past version), e.g. main@4.

Output:
  Human-readable text by default. With --json, one JSON document on stdout:
  {\"ok\":true,\"data\":...} or {\"ok\":false,\"error\":{\"code\":...,\"exit\":N,\"message\":...}}
  (docs/cli-json.md describes every command's data). Errors also go to stderr as `error: <message>`.

Exit codes:
  0  success
  1  error not listed below
  2  usage: bad arguments, an invalid branch name (git's ref rules), space name, key or JSON
     path, a bad remote name or URL (e.g. an unsupported scheme), a value that starts like JSON
     but does not parse, a bad import line, a write to BRANCH@VERSION, or a branch delete that
     needs --force
  3  not found: no database (run strata init), branch, version, bundle file, remote, remote
     branch, a location that is not a Strata remote, or the key, document, path, cell or event
     that a get, del or history needs
  4  strict merge conflicts: nothing was merged; the conflict list is printed (also for pull
     --strategy strict)
  5  write conflict: the database is busy (another writer holds the lock) or a state cas did not match
  6  corrupt data: a damaged or unsupported bundle, a stored value that cannot be decoded, or a
     damaged blob or cursor on a remote
  7  rejected: remote has changes; pull first (a push found work on the remote it has not merged)

Environment:
  STRATA_DB       the database folder or strata:// server (as --db)
  STRATA_API_KEY  the API key for a strata:// server (as --api-key)
  RUST_LOG   diagnostics on stderr (default: warn), e.g. RUST_LOG=strata_engine=debug";

/// An API key: kept out of `Debug` output so it is never printed.
#[derive(Clone)]
pub struct ApiKey(pub String);

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ApiKey(s.to_string()))
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The `strata` command line.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about = "Strata: an embedded branched database on SQLite",
    long_about = LONG_ABOUT, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after any subcommand.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Database folder (default: .strata here or in the nearest parent folder that has one), or a
    /// server as strata://HOST:PORT (every command but init, clone and demo acts on the server's
    /// database; settings and remotes need a key that writes every branch)
    #[arg(
        long,
        env = "STRATA_DB",
        global = true,
        value_name = "PATH",
        help_heading = "Global options"
    )]
    pub db: Option<PathBuf>,
    /// API key for a strata:// server (never printed)
    #[arg(
        long,
        env = "STRATA_API_KEY",
        hide_env_values = true,
        global = true,
        value_name = "KEY",
        help_heading = "Global options"
    )]
    pub api_key: Option<ApiKey>,
    /// Print one JSON document on stdout instead of text
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Branch that data commands read and write, and that sync commands default to (default: main);
    /// read commands also take BRANCH@VERSION (a past version); clone -b clones only this branch
    #[arg(
        short,
        long,
        global = true,
        value_name = "NAME[@VERSION]",
        help_heading = "Global options"
    )]
    pub branch: Option<String>,
    /// Space within the branch that data commands use (default: "default"; export: every space)
    #[arg(
        short,
        long,
        global = true,
        value_name = "NAME",
        help_heading = "Global options"
    )]
    pub space: Option<String>,
    /// How long a write waits for another writer before failing with exit code 5
    #[arg(
        long,
        global = true,
        default_value_t = 10_000,
        value_name = "MS",
        help_heading = "Global options"
    )]
    pub busy_timeout: u64,
    /// The message of the version a write command commits (shown by `log`, carried by sync)
    #[arg(
        short = 'm',
        long,
        global = true,
        value_name = "MSG",
        help_heading = "Global options"
    )]
    pub message: Option<String>,
    /// Who the version a write command commits is by (default: the database's `user.name`, see
    /// `strata config`)
    #[arg(
        long,
        env = "STRATA_AUTHOR",
        global = true,
        value_name = "NAME",
        help_heading = "Global options"
    )]
    pub author: Option<String>,
    /// Print nothing on success (errors still go to stderr; --json output is still printed)
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// Show progress bars on stderr even when it is not a terminal
    #[arg(
        long,
        global = true,
        overrides_with = "no_progress",
        help_heading = "Global options"
    )]
    pub progress: bool,
    /// Never show progress bars
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an empty database in DIR/.strata (default: the current folder), or at --db
    Init {
        /// The folder to create `.strata` in (created if missing)
        dir: Option<PathBuf>,
    },
    /// Key-value pairs: put, get, delete, list
    #[command(subcommand)]
    Kv(KvCmd),
    /// JSON documents, whole or at a JSON Pointer path
    #[command(subcommand)]
    Json(JsonCmd),
    /// The space's append-only event log
    #[command(subcommand)]
    Event(EventCmd),
    /// State cells with init and compare-and-swap
    #[command(subcommand)]
    State(StateCmd),
    /// Create, fork, list, delete, diff and merge branches
    #[command(subcommand)]
    Branch(BranchCmd),
    /// Export, import and verify .branchbundle.tar.zst files
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// Show or change this database's settings: `strata config user.name "Ada"` sets the author
    /// that commits record by default; `strata config user.name` shows it; `strata config` lists all
    Config {
        /// The setting, e.g. user.name
        key: Option<String>,
        /// Its new value (omit to show the current one)
        value: Option<String>,
        /// Remove the setting
        #[arg(long, conflicts_with = "value")]
        unset: bool,
    },
    /// Show the versions of --branch, newest first, with their messages and authors
    Log {
        /// Show at most N versions
        #[arg(short = 'n', long, default_value_t = 20, value_name = "N")]
        limit: usize,
    },
    /// Show every value an entry has had on --branch, newest first (exit 3 if it never existed)
    History {
        /// The key, document id, cell name, or event sequence number
        key: String,
        /// Which primitive the key belongs to
        #[arg(long, value_enum, default_value_t = KindArg::Kv)]
        kind: KindArg,
    },
    /// Load entries from a JSONL file (one {"space","kind","key","value"} a line) into --branch, as
    /// one version
    Import {
        /// The JSONL file (`-` for stdin), as written by `strata export`
        file: PathBuf,
    },
    /// Write every entry of --branch (or BRANCH@VERSION) as JSONL, one {"space","kind","key","value"}
    /// a line; with --space, only that space
    Export {
        /// The file to write (default `-`: stdout; --json then needs a FILE for its summary)
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Manage remotes: add, list (-v), show, rename, set-url, remove; list a remote's branches; gc and
    /// compact it
    Remote(RemoteArgs),
    /// Upload a branch's new versions to a remote (exit 7 if the remote has changes: pull first)
    Push {
        #[command(flatten)]
        target: SyncTarget,
        /// Push every local branch (except internal ones), continuing past failures
        #[arg(long, conflicts_with = "branch_name")]
        all: bool,
        /// Record REMOTE as the branch's upstream: later bare push, pull and status use it
        #[arg(short = 'u', long)]
        set_upstream: bool,
        /// Delete BRANCH on REMOTE (as `git push --delete`): clones and pulls no longer see it,
        /// `remote gc` reclaims its blobs; the local branch stays
        #[arg(short = 'd', long, conflicts_with_all = ["all", "set_upstream"])]
        delete: bool,
    },
    /// Fetch a branch from a remote and merge it into the local branch (exit 4 on strict conflicts)
    Pull {
        #[command(flatten)]
        target: SyncTarget,
        /// Pull every branch the remote has, continuing past failures
        #[arg(long, conflicts_with = "branch_name")]
        all: bool,
        /// On keys changed on both sides: theirs takes the remote's value, ours keeps the local one;
        /// strict fails, leaves the branch unchanged and prints the conflicts
        #[arg(long, value_enum, default_value_t = StrategyArg::Theirs)]
        strategy: StrategyArg,
        /// With --strategy strict: save the conflicts to this new branch (forked from the local
        /// branch, space `conflicts`); with --all, to NAME/BRANCH per branch
        #[arg(long, value_name = "NAME")]
        conflict_branch: Option<String>,
    },
    /// Download a branch's new remote versions into its origin mirror, without merging
    Fetch {
        #[command(flatten)]
        target: SyncTarget,
        /// Fetch every branch the remote has, continuing past failures
        #[arg(long, conflicts_with = "branch_name")]
        all: bool,
    },
    /// Show how far a branch is ahead of and behind a remote, and when it last synced
    Status {
        #[command(flatten)]
        target: SyncTarget,
        /// Show every local branch (except internal ones)
        #[arg(long, conflicts_with = "branch_name")]
        all: bool,
    },
    /// Create a new database at DIR from the remote at URL (as remote `origin`), with every branch
    /// (or only -b BRANCH)
    Clone {
        /// The remote: a folder path, file:///path, s3://bucket/prefix, gs://bucket/prefix or
        /// az://container/prefix
        url: String,
        /// The new database folder (must not exist, or be empty; default: the URL's last path
        /// segment); --db is not used
        dir: Option<PathBuf>,
        /// A backend option KEY=VALUE (repeatable), saved with `origin`: for buckets endpoint=URL
        /// (S3-compatible stores, Azurite), region, allow_http, timeout, max_retries, part_size…
        /// Credentials are never options: they come from AWS_*, GOOGLE_* or AZURE_STORAGE_*
        #[arg(short = 'o', long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// A shallow clone: start each branch from the remote's state snapshot (written by `remote
        /// compact`) when it leaves at most N versions after it; otherwise the whole history is cloned
        #[arg(long, value_name = "N")]
        depth: Option<u64>,
    },
    /// Print a shell completion script: `strata completions bash > /etc/bash_completion.d/strata`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `strata man > strata.1 && man ./strata.1`
    Man,
    /// Run a guided tour: write, fork, diff, merge, conflict, bundles, then two agents syncing
    Demo {
        /// Keep the demo databases and bundle in DIR (default: a temporary folder, removed afterwards)
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

impl Global {
    /// The branch (or `branch@version`) data commands use: --branch, else `main`.
    pub fn branch(&self) -> &str {
        self.branch.as_deref().unwrap_or("main")
    }

    /// The space data commands use: --space, else `default`.
    pub fn space(&self) -> &str {
        self.space.as_deref().unwrap_or(DEFAULT_SPACE)
    }
}

/// Which remote and branch a sync command acts on.
#[derive(Debug, Clone, Args)]
pub struct SyncTarget {
    /// The remote's name (default: the branch's upstream, else the only remote, else origin)
    #[arg(value_name = "REMOTE")]
    pub remote: Option<String>,
    /// The branch (default: --branch, which defaults to main)
    #[arg(value_name = "BRANCH")]
    pub branch_name: Option<String>,
}

/// `strata remote [-v] [SUBCOMMAND]`: with no subcommand, lists remote names (with -v, their URLs).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RemoteArgs {
    /// With no subcommand: show each remote's URL too
    #[arg(short, long)]
    pub verbose: bool,
    #[command(subcommand)]
    pub cmd: Option<RemoteCmd>,
}

#[derive(Debug, Subcommand)]
pub enum RemoteCmd {
    /// Add a remote: NAME and URL (a folder path, file:///path, s3://bucket/prefix,
    /// gs://bucket/prefix or az://container/prefix)
    Add {
        /// The remote's name, e.g. origin (letters, digits, '.', '_', '-')
        name: String,
        /// Where it is; a plain folder path is stored as an absolute path
        url: String,
        /// A backend option KEY=VALUE (repeatable). Buckets take endpoint=URL (S3-compatible stores
        /// such as MinIO, R2 or moto; Azurite), region, allow_http, virtual_hosted_style, account,
        /// use_emulator, timeout, connect_timeout, max_retries, retry_timeout, part_size,
        /// upload_concurrency. Credentials are never options: they come from the cloud's standard
        /// variables (AWS_ACCESS_KEY_ID…/AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS,
        /// AZURE_STORAGE_ACCOUNT_NAME/KEY)
        #[arg(short = 'o', long = "option", value_name = "KEY=VALUE")]
        options: Vec<String>,
        /// API key of a StrataHub remote (http:// or https://), kept in this database only (never
        /// pushed, shown as ***); without it the STRATA_TOKEN environment variable is used
        #[arg(long, value_name = "KEY")]
        token: Option<String>,
    },
    /// List remotes with their URLs and options (secret values shown as ***)
    #[command(visible_alias = "ls")]
    List,
    /// Remove a remote, its sync state and its origin mirror branches (the remote is untouched)
    #[command(visible_aliases = ["rm", "delete"])]
    Remove {
        /// The remote's name
        name: String,
    },
    /// Change a remote's URL (its options and sync state stay)
    SetUrl {
        /// The remote's name
        name: String,
        /// The new URL; a plain folder path is stored as an absolute path
        url: String,
    },
    /// Rename a remote, with its sync state, upstreams and origin mirror branches
    Rename {
        /// The remote's name
        old: String,
        /// Its new name
        new: String,
    },
    /// Show a remote: URL, options, and each branch it holds with where the local branch stands
    Show {
        /// The remote's name
        name: String,
    },
    /// List the branches a remote holds: name, version, last update, blob count
    Branches {
        /// The remote's name
        name: String,
    },
    /// Delete blobs on a remote that no branch references and that are older than --grace
    Gc {
        /// The remote's name
        name: String,
        /// Keep unreferenced blobs younger than this many seconds (a push in progress may need them)
        #[arg(long, default_value_t = 3600, value_name = "SECS")]
        grace: u64,
    },
    /// Pack a branch's blobs on a remote into one (every version kept) and write a snapshot for
    /// shallow clones; with --squash-before V, drop the versions before V
    Compact {
        /// The remote's name
        name: String,
        /// The branch (default: --branch, which defaults to main)
        #[arg(value_name = "BRANCH")]
        branch_name: Option<String>,
        /// Drop the remote's versions before V: its history then starts from a state snapshot at V
        /// (clones no longer see older versions; nothing else ever drops them)
        #[arg(long, value_name = "V")]
        squash_before: Option<u64>,
    },
}

/// How VALUE arguments are read.
#[derive(Debug, Clone, Copy, Args)]
pub struct ValueOpts {
    /// Store VALUE as a string as written, without parsing it as JSON
    #[arg(long)]
    pub string: bool,
}

impl ValueOpts {
    /// Parses VALUE text (already read from stdin or a file if so given): see [`parse_value`].
    pub fn parse(self, text: &str) -> Result<Value, String> {
        parse_value(text, self.string)
    }
}

/// Parses VALUE text: as a string when `as_string`; else JSON if it parses; else, unless it starts
/// like JSON (`{`, `[` or `"`) and so is a typo, as a plain string.
pub fn parse_value(text: &str, as_string: bool) -> Result<Value, String> {
    if as_string {
        return Ok(Value::String(text.to_string()));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(j) => Ok(Value::from_json(&j)),
        Err(e) if looks_like_json(text) => Err(format!(
            "value is not valid JSON ({e}); fix it, or pass --string to store the text as written"
        )),
        Err(_) => Ok(Value::String(text.to_string())),
    }
}

fn looks_like_json(text: &str) -> bool {
    matches!(
        text.trim_start().as_bytes().first(),
        Some(b'{' | b'[' | b'"')
    )
}

#[derive(Debug, Subcommand)]
pub enum KvCmd {
    /// Set KEY to VALUE
    Put {
        /// The key
        key: String,
        /// The value (JSON, or a plain string; - reads stdin, @FILE a file)
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        opts: ValueOpts,
    },
    /// Print KEY's value as JSON (exit 3 if missing)
    Get {
        /// The key
        key: String,
    },
    /// Delete KEY (exit 3 if missing)
    #[command(visible_alias = "delete")]
    Del {
        /// The key
        key: String,
    },
    /// List keys and values, in key order
    List {
        /// Only keys starting with PREFIX
        #[arg(default_value = "")]
        prefix: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum JsonCmd {
    /// Store a whole document
    Put {
        /// The document id
        id: String,
        /// The document (JSON, or a plain string; - reads stdin, @FILE a file)
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        opts: ValueOpts,
    },
    /// Print a document, or the part at --path (exit 3 if missing)
    Get {
        /// The document id
        id: String,
        /// JSON Pointer into the document, e.g. /a/b/0
        #[arg(long, value_name = "POINTER")]
        path: Option<String>,
    },
    /// Set the part of a document at PATH, creating the document and missing objects
    Set {
        /// The document id
        id: String,
        /// JSON Pointer, e.g. /a/b/0; an array index may be the length or `-` to append
        path: String,
        /// The value (JSON, or a plain string; - reads stdin, @FILE a file)
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        opts: ValueOpts,
    },
    /// Delete a document (exit 3 if missing)
    #[command(visible_alias = "delete")]
    Del {
        /// The document id
        id: String,
    },
    /// List documents, in id order
    List {
        /// Only ids starting with PREFIX
        #[arg(default_value = "")]
        prefix: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventCmd {
    /// Append an event and print its sequence number
    Append {
        /// The event type, e.g. task_completed
        #[arg(value_name = "TYPE")]
        event_type: String,
        /// The payload (JSON, or a plain string; - reads stdin, @FILE a file)
        #[arg(allow_hyphen_values = true)]
        payload: String,
        #[command(flatten)]
        opts: ValueOpts,
    },
    /// Print events in sequence order
    Read {
        /// Start at sequence number SEQ
        #[arg(long, default_value_t = 1, value_name = "SEQ")]
        from: u64,
        /// Print at most N events
        #[arg(short = 'n', long, value_name = "N")]
        limit: Option<usize>,
        /// Only events of type T
        #[arg(long = "type", value_name = "T")]
        event_type: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Set CELL to VALUE
    Set {
        /// The cell name
        cell: String,
        /// The value (JSON, or a plain string; - reads stdin, @FILE a file)
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        opts: ValueOpts,
    },
    /// Print CELL's value as JSON (exit 3 if missing)
    Get {
        /// The cell name
        cell: String,
    },
    /// Set CELL to VALUE only if it is absent (exit 0 either way; reports whether it was set)
    Init {
        /// The cell name
        cell: String,
        /// The value (JSON, or a plain string; - reads stdin, @FILE a file)
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        opts: ValueOpts,
    },
    /// Compare-and-swap: set CELL to NEW only if it holds --expected (or is --absent); exit 5 if not
    #[command(group(ArgGroup::new("expect").required(true).args(["expected", "absent"])))]
    Cas {
        /// The cell name
        cell: String,
        /// The value CELL must hold now (JSON, or a plain string)
        #[arg(long, allow_hyphen_values = true, value_name = "VALUE")]
        expected: Option<String>,
        /// CELL must not exist now
        #[arg(long)]
        absent: bool,
        /// The new value (JSON, or a plain string)
        #[arg(
            allow_hyphen_values = true,
            required_unless_present = "delete",
            value_name = "NEW"
        )]
        new: Option<String>,
        /// Delete CELL instead of setting it
        #[arg(long, conflicts_with = "new")]
        delete: bool,
        #[command(flatten)]
        opts: ValueOpts,
    },
    /// Delete CELL (exit 3 if missing)
    #[command(visible_alias = "delete")]
    Del {
        /// The cell name
        cell: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BranchCmd {
    /// Create an empty branch
    Create {
        /// The new branch's name (names starting with `_` are reserved)
        name: String,
    },
    /// Fork a new branch from SOURCE[@VERSION] (copy-on-write, instant)
    Fork {
        /// The branch (or branch@version) to fork from
        #[arg(value_name = "SOURCE[@VERSION]")]
        source: String,
        /// The new branch's name
        name: String,
    },
    /// List branches with their head version and parent
    List {
        /// Include internal branches (names starting with `_`)
        #[arg(long)]
        all: bool,
    },
    /// Delete a branch; refuses the current branch (--branch) and a branch whose versions --branch
    /// does not contain, unless --force
    #[command(visible_alias = "del")]
    Delete {
        /// The branch to delete
        name: String,
        /// Delete even the current branch or a branch with unmerged versions
        #[arg(short, long)]
        force: bool,
    },
    /// Show what B added, removed and modified relative to A, per space
    Diff {
        /// One side: a branch or branch@version
        #[arg(value_name = "A[@VERSION]")]
        a: String,
        /// The other side: a branch or branch@version
        #[arg(value_name = "B[@VERSION]")]
        b: String,
    },
    /// Three-way merge SOURCE into TARGET as one new TARGET version (exit 4 on strict conflicts)
    Merge {
        /// The branch (or branch@version) to merge from
        #[arg(value_name = "SOURCE[@VERSION]")]
        source: String,
        /// The branch to merge into
        target: String,
        /// On keys changed on both sides: theirs takes SOURCE's value, ours keeps TARGET's; strict
        /// fails and writes nothing
        #[arg(long, value_enum, default_value_t = StrategyArg::Theirs)]
        strategy: StrategyArg,
        /// With --strategy strict: save the conflicts to this new branch (forked from TARGET, space
        /// `conflicts`, one KV entry per conflict)
        #[arg(long, value_name = "NAME")]
        conflict_branch: Option<String>,
    },
    /// Show one branch's metadata and spaces
    Info {
        /// The branch (default: --branch)
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BundleCmd {
    /// Export a branch's versions to a bundle file
    Export {
        /// The branch to export
        branch: String,
        /// The bundle file to write, e.g. main.branchbundle.tar.zst
        file: PathBuf,
        /// Include only versions after V (default 0)
        #[arg(long, value_name = "V")]
        from: Option<u64>,
        /// Include versions up to V (default: the head)
        #[arg(long, value_name = "V")]
        to: Option<u64>,
    },
    /// Import a bundle, creating the branch or extending it from its head
    Import {
        /// The bundle file
        file: PathBuf,
        /// Import into this branch (default: the bundle's branch name)
        #[arg(long, value_name = "BRANCH")]
        into: Option<String>,
    },
    /// Check every checksum of a bundle without opening a database (exit 6 if corrupt)
    Verify {
        /// The bundle file
        file: PathBuf,
    },
}

/// A primitive, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Key-value pairs
    Kv,
    /// JSON documents
    Json,
    /// State cells
    State,
    /// Events (the key is the sequence number)
    Event,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Kind {
        match k {
            KindArg::Kv => Kind::Kv,
            KindArg::Json => Kind::Json,
            KindArg::State => Kind::State,
            KindArg::Event => Kind::Event,
        }
    }
}

/// A merge strategy, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// The source's (the remote's) value wins on conflicting keys (alias: lww)
    #[value(alias = "lww", alias = "last-writer-wins")]
    Theirs,
    /// The target's (the local) value wins on conflicting keys
    Ours,
    /// Any conflicting key fails the merge with the conflict list; nothing is written
    Strict,
}

impl From<StrategyArg> for MergeStrategy {
    fn from(s: StrategyArg) -> MergeStrategy {
        match s {
            StrategyArg::Theirs => MergeStrategy::LastWriterWins,
            StrategyArg::Ours => MergeStrategy::Ours,
            StrategyArg::Strict => MergeStrategy::Strict,
        }
    }
}
