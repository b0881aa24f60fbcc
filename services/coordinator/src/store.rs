//! On-disk Raft storage in a data directory:
//!
//! * `log` — append-only JSON lines (`append` / `truncate` / `purge` records), fsynced before an
//!   append is acknowledged; rewritten (temp file + rename) when a prefix is purged. A torn last
//!   line (crash mid-write) is dropped on open; corruption anywhere else is an error.
//! * `vote.json`, `committed.json` — replaced atomically (temp file, fsync, rename, fsync dir).
//! * `snapshot` — the newest snapshot: one JSON line of metadata, then the state as JSON.
//!
//! The state machine lives in memory; on start it is loaded from the snapshot and openraft
//! re-applies the committed log after it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Cursor, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftLogReader, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::state::{Registry, Response};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote};

fn io<E: std::error::Error + 'static>(what: &str, e: E) -> StorageError {
    StorageIOError::write(AnyError::new(&e).add_context(|| what.to_string())).into()
}

fn read_err(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read(AnyError::error(format!("{what}: {e}"))).into()
}

/// Writes `bytes` to `path` atomically and durably.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StorageError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| read_err(&path.display().to_string(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(&path.display().to_string(), e)),
    }
}

/// Externally tagged: an internally tagged enum would buffer the entry, and serde cannot read a
/// membership's integer map keys back from buffered JSON.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LogRecord {
    Append { entry: Entry },
    Truncate { index: u64 },
    Purge { log_id: LogId },
}

struct LogInner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
}

impl LogInner {
    fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn write_records(&mut self, records: &[LogRecord]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }

    /// Rewrites the log file with only what is still needed.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut records = Vec::new();
        if let Some(log_id) = self.last_purged {
            records.push(LogRecord::Purge { log_id });
        }
        records.extend(self.entries.values().map(|e| LogRecord::Append { entry: e.clone() }));
        let mut buf = Vec::new();
        for r in &records {
            serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let path = self.log_path();
        write_atomic(&path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        Ok(())
    }
}

/// The Raft log and vote. Cheap to clone (shared).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the data directory", e))?;
        let path = dir.join("log");
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("opening the log", e))?;
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        let mut good_len: u64 = 0;
        let mut torn = false;
        {
            let mut reader = BufReader::new(&mut file);
            reader.seek(SeekFrom::Start(0)).map_err(|e| io("reading the log", e))?;
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader
                    .read_line(&mut line)
                    .map_err(|e| read_err("reading the log", e))?;
                if n == 0 {
                    break;
                }
                let complete = line.ends_with('\n');
                match serde_json::from_str::<LogRecord>(line.trim_end()) {
                    Ok(rec) if complete => {
                        good_len += n as u64;
                        match rec {
                            LogRecord::Append { entry } => {
                                entries.insert(entry.log_id.index, entry);
                            }
                            LogRecord::Truncate { index } => {
                                entries.split_off(&index);
                            }
                            LogRecord::Purge { log_id } => {
                                entries = entries.split_off(&(log_id.index + 1));
                                last_purged = Some(log_id);
                            }
                        }
                    }
                    _ => {
                        // Only the last line may be incomplete (a crash while appending, before
                        // the append was acknowledged).
                        let mut rest = String::new();
                        reader
                            .read_line(&mut rest)
                            .map_err(|e| read_err("reading the log", e))?;
                        if !rest.is_empty() {
                            return Err(read_err(
                                &format!("{}", path.display()),
                                format!("corrupt record at byte {good_len}"),
                            ));
                        }
                        torn = true;
                        break;
                    }
                }
            }
        }
        if torn {
            tracing::warn!(path = %path.display(), at = good_len, "dropping a torn last record of the Raft log");
            file.set_len(good_len)
                .map_err(|e| io("truncating a torn log record", e))?;
            file.sync_all().map_err(|e| io("syncing the log", e))?;
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file,
                entries,
                last_purged,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.lock().entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let g = self.lock();
        let last = g.entries.values().next_back().map(|e| e.log_id).or(g.last_purged);
        Ok(LogState {
            last_purged_log_id: g.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let dir = self.lock().dir.clone();
        let bytes = serde_json::to_vec(vote).map_err(|e| io("encoding the vote", e))?;
        write_atomic(&dir.join("vote.json"), &bytes).map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let dir = self.lock().dir.clone();
        read_json(&dir.join("vote.json"))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let dir = self.lock().dir.clone();
        let bytes = serde_json::to_vec(&committed).map_err(|e| io("encoding the committed log id", e))?;
        write_atomic(&dir.join("committed.json"), &bytes).map_err(|e| io("saving the committed log id", e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let dir = self.lock().dir.clone();
        Ok(read_json::<Option<LogId>>(&dir.join("committed.json"))?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut g = self.lock();
        let records: Vec<LogRecord> = entries.iter().map(|e| LogRecord::Append { entry: e.clone() }).collect();
        if let Err(e) = g.write_records(&records) {
            let err = io("appending to the log", std::io::Error::new(e.kind(), e.to_string()));
            callback.log_io_completed(Err(e));
            return Err(err);
        }
        for e in entries {
            g.entries.insert(e.log_id.index, e);
        }
        drop(g);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.write_records(&[LogRecord::Truncate { index: log_id.index }])
            .map_err(|e| io("truncating the log", e))?;
        g.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.entries = g.entries.split_off(&(log_id.index + 1));
        g.last_purged = Some(log_id);
        g.rewrite().map_err(|e| io("rewriting the purged log", e))
    }
}

/// What readers see of the state machine; published after every apply.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub last_applied: Option<LogId>,
    pub registry: Registry,
}

struct SmInner {
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    registry: Registry,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    snapshot_seq: u64,
}

/// The in-memory state machine with its snapshot on disk. Cheap to clone (shared).
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<SmInner>>,
    view: Arc<watch::Sender<Arc<View>>>,
}

impl StateMachineStore {
    /// Opens the state machine in `dir`, starting from its snapshot if there is one. `initial`
    /// is the state before any command (used when there is no snapshot).
    pub fn open(dir: &Path, initial: Registry) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the data directory", e))?;
        let mut inner = SmInner {
            dir: dir.to_path_buf(),
            last_applied: None,
            membership: StoredMembership::default(),
            registry: initial,
            snapshot: None,
            snapshot_seq: 0,
        };
        match std::fs::read(dir.join("snapshot")) {
            Ok(bytes) => {
                let (meta, data) = decode_snapshot(&bytes)?;
                inner.registry = serde_json::from_slice(&data).map_err(|e| read_err("snapshot state", e))?;
                inner.last_applied = meta.last_log_id;
                inner.membership = meta.last_membership.clone();
                inner.snapshot = Some((meta, data));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(read_err("reading the snapshot", e)),
        }
        let view = View {
            last_applied: inner.last_applied,
            registry: inner.registry.clone(),
        };
        let (tx, _) = watch::channel(Arc::new(view));
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(inner)),
            view: Arc::new(tx),
        })
    }

    /// The newest applied state, and notifications of changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<View>> {
        self.view.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SmInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, g: &SmInner) {
        self.view.send_replace(Arc::new(View {
            last_applied: g.last_applied,
            registry: g.registry.clone(),
        }));
    }
}

fn encode_snapshot(meta: &SnapshotMeta, data: &[u8]) -> Result<Vec<u8>, StorageError> {
    let mut out = serde_json::to_vec(meta).map_err(|e| io("encoding snapshot metadata", e))?;
    out.push(b'\n');
    out.extend_from_slice(data);
    Ok(out)
}

fn decode_snapshot(bytes: &[u8]) -> Result<(SnapshotMeta, Vec<u8>), StorageError> {
    let nl = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| read_err("snapshot", "no metadata line"))?;
    let meta: SnapshotMeta = serde_json::from_slice(&bytes[..nl]).map_err(|e| read_err("snapshot metadata", e))?;
    Ok((meta, bytes[nl + 1..].to_vec()))
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut g = self.lock();
        let data = serde_json::to_vec(&g.registry).map_err(|e| io("encoding the snapshot", e))?;
        g.snapshot_seq += 1;
        let snapshot_id = match g.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, g.snapshot_seq),
            None => format!("none-{}", g.snapshot_seq),
        };
        let meta = SnapshotMeta {
            last_log_id: g.last_applied,
            last_membership: g.membership.clone(),
            snapshot_id,
        };
        write_atomic(&g.dir.join("snapshot"), &encode_snapshot(&meta, &data)?)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        g.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let g = self.lock();
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut g = self.lock();
        let mut out = Vec::new();
        for e in entries {
            g.last_applied = Some(e.log_id);
            out.push(match e.payload {
                EntryPayload::Blank => Response(None),
                EntryPayload::Normal(cmd) => Response(Some(g.registry.apply(&cmd))),
                EntryPayload::Membership(m) => {
                    g.membership = StoredMembership::new(Some(e.log_id), m);
                    Response(None)
                }
            });
        }
        self.publish(&g);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let registry: Registry = serde_json::from_slice(&data).map_err(|e| read_err("received snapshot", e))?;
        let mut g = self.lock();
        write_atomic(&g.dir.join("snapshot"), &encode_snapshot(meta, &data)?)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)))?;
        g.registry = registry;
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        g.snapshot = Some((meta.clone(), data));
        self.publish(&g);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let g = self.lock();
        Ok(g.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn append(s: &mut LogStore, entries: Vec<Entry>) {
        let mut g = s.lock();
        let recs: Vec<LogRecord> = entries.iter().map(|e| LogRecord::Append { entry: e.clone() }).collect();
        g.write_records(&recs).unwrap();
        for e in entries {
            g.entries.insert(e.log_id.index, e);
        }
    }

    #[tokio::test]
    async fn log_survives_reopen_with_truncate_purge_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = LogStore::open(dir.path()).unwrap();
            let mut first: Vec<Entry> = (1..=6).map(|i| entry(1, i)).collect();
            let nodes: std::collections::BTreeMap<u64, crate::types::Node> =
                [(1, Default::default()), (2, Default::default())].into();
            first[0].payload =
                EntryPayload::Membership(openraft::Membership::new(vec![nodes.keys().copied().collect()], nodes));
            append(&mut s, first);
            s.truncate(LogId::new(CommittedLeaderId::new(1, 1), 5)).await.unwrap();
            append(&mut s, vec![entry(2, 5)]);
            s.purge(LogId::new(CommittedLeaderId::new(1, 1), 2)).await.unwrap();
            append(&mut s, vec![entry(2, 6)]);
            s.save_vote(&Vote::new(2, 1)).await.unwrap();
        }
        // A crash in the middle of an append leaves half a line.
        let mut f = OpenOptions::new().append(true).open(dir.path().join("log")).unwrap();
        f.write_all(b"{\"append\":{\"entry\":{\"log_").unwrap();
        drop(f);
        let mut s = LogStore::open(dir.path()).unwrap();
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id.map(|l| l.index), Some(2));
        assert_eq!(st.last_log_id, Some(entry(2, 6).log_id));
        let got: Vec<_> = s
            .try_get_log_entries(0..100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id)
            .collect();
        assert_eq!(
            got,
            vec![
                entry(1, 3).log_id,
                entry(1, 4).log_id,
                entry(2, 5).log_id,
                entry(2, 6).log_id
            ]
        );
        assert_eq!(s.read_vote().await.unwrap(), Some(Vote::new(2, 1)));
        // Purged entries are gone from the rewritten file; a membership entry round-trips.
        let mut s2 = LogStore::open(dir.path()).unwrap();
        s2.truncate(entry(2, 5).log_id).await.unwrap();
        drop(s2);
        let dir2 = tempfile::tempdir().unwrap();
        {
            let mut m = LogStore::open(dir2.path()).unwrap();
            let nodes: std::collections::BTreeMap<u64, crate::types::Node> = [(7, Default::default())].into();
            let mut e = entry(1, 1);
            e.payload = EntryPayload::Membership(openraft::Membership::new(vec![[7].into()], nodes));
            append(&mut m, vec![e.clone()]);
            drop(m);
            let mut m = LogStore::open(dir2.path()).unwrap();
            assert_eq!(m.try_get_log_entries(..).await.unwrap(), vec![e]);
        }
        let mut s = LogStore::open(dir.path()).unwrap();
        assert_eq!(s.get_log_state().await.unwrap().last_log_id, Some(entry(1, 4).log_id));
        append(&mut s, vec![entry(2, 5), entry(2, 6)]);
        // The torn tail was cut: appending again and reopening works.
        append(&mut s, vec![entry(2, 7)]);
        let mut s = LogStore::open(dir.path()).unwrap();
        assert_eq!(s.get_log_state().await.unwrap().last_log_id, Some(entry(2, 7).log_id));
    }

    #[test]
    fn corruption_before_the_tail_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("log"), b"garbage\n{\"truncate\":{\"index\":1}}\n").unwrap();
        assert!(LogStore::open(dir.path()).is_err());
    }
}
