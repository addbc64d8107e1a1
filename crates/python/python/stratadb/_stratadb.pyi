# Type stubs for the extension module (hand-written; keep in step with crates/python/src).
from __future__ import annotations

import os
from types import TracebackType
from typing import overload, Any, Dict, Iterator, List, Literal, Optional, Tuple, Type, TypedDict, Union

__version__: str

# A stored value: what goes in comes back with the same Python types (tuples come back as lists).
Value = Union[None, bool, int, float, str, bytes, List[Any], Dict[str, Any]]
PathLike = Union[str, "os.PathLike[str]"]
Strategy = Literal["theirs", "ours", "strict", "lww"]
Kind = Literal["kv", "doc", "json", "event", "state"]

class StrataError(Exception):
    """Base class of every error Strata raises."""

    retryable: bool

class NotFound(StrataError):
    """A branch, version, remote or remote branch does not exist."""

class Conflict(TypedDict):
    space: str
    kind: str
    key: str
    ancestor: Any
    source: Any
    target: Any

class MergeConflict(StrataError):
    """A strict merge or pull found keys changed on both sides; nothing was written."""

    conflicts: List[Conflict]

class PushRejected(StrataError):
    """The remote has changes this database has not pulled: pull, then push again."""

    remote_version: Optional[int]

class Corrupt(StrataError):
    """Stored data, a bundle or a remote blob is damaged; nothing was applied."""

class Busy(StrataError):
    """Another writer holds the database, or a branch moved during the operation: retry."""

class InvalidArgument(StrataError):
    """A name, value, option or argument is not acceptable."""

class Unauthorized(StrataError):
    """The remote refused the credentials: missing, wrong or expired (a hub's API key: ``token=`` or STRATA_TOKEN)."""

class PermissionDenied(StrataError):
    """The credentials are valid but may not do this (e.g. a hub key that is not a writing member)."""

class SyncStatus(TypedDict):
    branch: str
    ahead: int
    behind: int
    ahead_versions: int
    behind_versions: int
    remote_version: Optional[int]
    mirror_version: int
    last_synced: Optional[float]

class PushReport(TypedDict):
    branch: str
    remote_version: int
    up_to_date: bool
    versions: int
    entries: int
    bytes: int
    blob: Optional[str]
    packed: Optional[str]

class FetchReport(TypedDict):
    branch: str
    remote_version: int
    versions: int
    entries: int
    bytes: int

class PullReport(TypedDict):
    fetch: FetchReport
    merged_version: Optional[int]
    applied: int
    conflicts_resolved: int
    created: bool
    fast_forward: bool

class BranchInfo(TypedDict):
    name: str
    head: int
    parent: Optional[str]
    fork_version: Optional[int]
    created_micros: int
    internal: bool

class CommitInfo(TypedDict):
    version: int
    timestamp: float
    kind: str
    message: str
    author: Optional[str]
    entries: int

class HistoryEntry(TypedDict):
    version: int
    value: Any
    timestamp: float
    deleted: bool

class EventRecord(TypedDict):
    seq: int
    type: str
    payload: Any
    timestamp: float
    id: int

class DiffEntry(TypedDict):
    space: str
    change: Literal["added", "removed", "modified"]
    kind: str
    key: str
    a: Any
    b: Any

class ChangeSet(TypedDict):
    version: int
    timestamp: float
    puts: List[Tuple[str, str, str, Any]]
    deletes: List[Tuple[str, str, str]]

class RemoteInfo(TypedDict):
    name: str
    url: str
    options: Dict[str, str]

class ListIterator(Iterator[Tuple[str, Any]]):
    """(key, value) pairs in key order, read a page at a time at one version."""

    @property
    def pages_fetched(self) -> int: ...
    @property
    def version(self) -> Optional[int]: ...
    def __iter__(self) -> ListIterator: ...
    def __next__(self) -> Tuple[str, Any]: ...

class ChangeIterator(Iterator[ChangeSet]):
    def __iter__(self) -> ChangeIterator: ...
    def __next__(self) -> ChangeSet: ...

class DiffIterator(Iterator[DiffEntry]):
    def __iter__(self) -> DiffIterator: ...
    def __next__(self) -> DiffEntry: ...

class DiffStream(Iterator[DiffEntry]):
    """A diff read entry by entry with bounded memory."""

    def __iter__(self) -> DiffStream: ...
    def __next__(self) -> DiffEntry: ...

class Diff:
    """The structured difference between two revisions; iterate for the entries."""

    @property
    def added(self) -> int: ...
    @property
    def removed(self) -> int: ...
    @property
    def modified(self) -> int: ...
    @property
    def spaces(self) -> List[str]: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def __iter__(self) -> DiffIterator: ...

class Transaction:
    """A write transaction on one branch; a context manager that commits or rolls back."""

    @property
    def branch(self) -> str: ...
    @property
    def version(self) -> Optional[int]: ...
    @property
    def open(self) -> bool: ...
    def set_message(self, message: str) -> None: ...
    def set_author(self, author: str) -> None: ...
    def commit(self) -> Optional[int]: ...
    def rollback(self) -> None: ...
    def __enter__(self) -> Transaction: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    def kv_put(self, key: str, value: Value, *, space: str = "default") -> None: ...
    def kv_get(self, key: str, *, space: str = "default") -> Any: ...
    def kv_delete(self, key: str, *, space: str = "default") -> bool: ...
    def kv_list(self, prefix: str = "", *, space: str = "default") -> List[Tuple[str, Any]]: ...
    def doc_put(self, id: str, doc: Value, *, space: str = "default") -> None: ...
    def doc_get(self, id: str, path: Optional[str] = None, *, space: str = "default") -> Any: ...
    def doc_set(self, id: str, path: str, value: Value, *, space: str = "default") -> None: ...
    def doc_delete(self, id: str, *, space: str = "default") -> bool: ...
    def doc_list(self, prefix: str = "", *, space: str = "default") -> List[Tuple[str, Any]]: ...
    def event_append(self, event_type: str, payload: Value = None, *, space: str = "default") -> int: ...
    def event_read(
        self, start: int = 1, limit: Optional[int] = None, *, space: str = "default"
    ) -> List[EventRecord]: ...
    def state_set(self, cell: str, value: Value, *, space: str = "default") -> None: ...
    def state_get(self, cell: str, *, space: str = "default") -> Any: ...
    def state_init(self, cell: str, value: Value, *, space: str = "default") -> bool: ...
    def state_cas(self, cell: str, expected: Value, new: Value, *, space: str = "default") -> bool: ...
    def state_delete(self, cell: str, *, space: str = "default") -> bool: ...

class Strata:
    """An open Strata database (a folder). Share one handle between threads."""

    @classmethod
    def open(
        cls,
        path: PathLike,
        *,
        durability: Literal["full", "normal"] = "full",
        busy_timeout: float = 10.0,
    ) -> Strata: ...
    @property
    def path(self) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> Strata: ...
    def __exit__(self, *args: object) -> bool: ...
    # KV
    def kv_put(self, key: str, value: Value, *, branch: str = "main", space: str = "default") -> Optional[int]: ...
    def kv_get(self, key: str, *, branch: str = "main", space: str = "default") -> Any: ...
    def kv_delete(self, key: str, *, branch: str = "main", space: str = "default") -> bool: ...
    def kv_list(
        self, prefix: str = "", *, branch: str = "main", space: str = "default", page_size: int = 1000
    ) -> ListIterator: ...
    # documents
    def doc_put(self, id: str, doc: Value, *, branch: str = "main", space: str = "default") -> Optional[int]: ...
    def doc_get(
        self, id: str, path: Optional[str] = None, *, branch: str = "main", space: str = "default"
    ) -> Any: ...
    def doc_set(
        self, id: str, path: str, value: Value, *, branch: str = "main", space: str = "default"
    ) -> Optional[int]: ...
    def doc_delete(self, id: str, *, branch: str = "main", space: str = "default") -> bool: ...
    def doc_list(
        self, prefix: str = "", *, branch: str = "main", space: str = "default", page_size: int = 1000
    ) -> ListIterator: ...
    # events
    def event_append(
        self, event_type: str, payload: Value = None, *, branch: str = "main", space: str = "default"
    ) -> int: ...
    def event_read(
        self,
        start: int = 1,
        limit: Optional[int] = None,
        *,
        event_type: Optional[str] = None,
        branch: str = "main",
        space: str = "default",
    ) -> List[EventRecord]: ...
    def event_len(self, *, branch: str = "main", space: str = "default") -> int: ...
    # state
    def state_set(self, cell: str, value: Value, *, branch: str = "main", space: str = "default") -> Optional[int]: ...
    def state_get(self, cell: str, *, branch: str = "main", space: str = "default") -> Any: ...
    def state_init(self, cell: str, value: Value, *, branch: str = "main", space: str = "default") -> bool: ...
    def state_cas(
        self, cell: str, expected: Value, new: Value, *, branch: str = "main", space: str = "default"
    ) -> bool: ...
    def state_delete(self, cell: str, *, branch: str = "main", space: str = "default") -> bool: ...
    # transactions
    def transaction(
        self, branch: str = "main", *, message: Optional[str] = None, author: Optional[str] = None
    ) -> Transaction: ...
    # settings
    def config(self, key: str) -> Optional[str]: ...
    def set_config(self, key: str, value: Optional[str]) -> None: ...
    def config_list(self) -> Dict[str, str]: ...
    # branches and versions
    def branches(self, *, internal: bool = False) -> List[BranchInfo]: ...
    def branch_info(self, name: str) -> BranchInfo: ...
    def create_branch(self, name: str) -> BranchInfo: ...
    def fork_branch(self, source: str, name: str) -> BranchInfo: ...
    def delete_branch(self, name: str) -> None: ...
    def spaces(self, branch: str = "main") -> List[str]: ...
    def diff(self, a: str, b: str) -> Diff: ...
    def diff_iter(self, a: str, b: str) -> DiffStream: ...
    def merge(self, source: str, target: str = "main", *, strategy: Strategy = "theirs") -> Dict[str, Any]: ...
    def log(self, branch: str = "main", *, limit: int = 100) -> List[CommitInfo]: ...
    def history(
        self, key: str, *, kind: Kind = "kv", branch: str = "main", space: str = "default"
    ) -> List[HistoryEntry]: ...
    def changes_since(self, branch: str = "main", version: int = 0) -> ChangeIterator: ...
    # bundles
    def export_bundle(
        self,
        branch: str,
        path: PathLike,
        *,
        from_version: Optional[int] = None,
        to_version: Optional[int] = None,
    ) -> Dict[str, Any]: ...
    def import_bundle(self, path: PathLike, *, target: Optional[str] = None) -> Dict[str, Any]: ...
    # sync
    def remote_add(self, name: str, url: str, token: Optional[str] = None, **options: Union[str, int, float, bool]) -> None: ...
    def remotes(self) -> List[RemoteInfo]: ...
    def remote_remove(self, name: str) -> None: ...
    def remote_compact(
        self, remote: str = "origin", branch: str = "main", *, squash_before: Optional[int] = None
    ) -> Dict[str, Any]: ...
    @overload
    def push(self, remote: str = "origin", branch: str = "main", *, all: Literal[False] = False) -> PushReport: ...
    @overload
    def push(self, remote: str = "origin", branch: str = "main", *, all: Literal[True]) -> List[PushReport]: ...
    @overload
    def pull(
        self,
        remote: str = "origin",
        branch: str = "main",
        *,
        strategy: Strategy = "theirs",
        conflict_branch: Optional[str] = None,
        all: Literal[False] = False,
    ) -> PullReport: ...
    @overload
    def pull(
        self,
        remote: str = "origin",
        branch: str = "main",
        *,
        strategy: Strategy = "theirs",
        conflict_branch: Optional[str] = None,
        all: Literal[True],
    ) -> List[PullReport]: ...
    @overload
    def fetch(self, remote: str = "origin", branch: str = "main", *, all: Literal[False] = False) -> FetchReport: ...
    @overload
    def fetch(self, remote: str = "origin", branch: str = "main", *, all: Literal[True]) -> List[FetchReport]: ...
    @overload
    def sync_status(
        self, remote: str = "origin", branch: str = "main", *, all: Literal[False] = False
    ) -> SyncStatus: ...
    @overload
    def sync_status(self, remote: str = "origin", branch: str = "main", *, all: Literal[True]) -> List[SyncStatus]: ...

def clone(
    url: str,
    path: PathLike,
    token: Optional[str] = None,
    *,
    branch: Optional[str] = None,
    depth: Optional[int] = None,
    **options: Union[str, int, float, bool],
) -> Strata: ...
def _after_fork_in_child() -> None: ...
