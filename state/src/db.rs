//! The process's RocksDB database and its memory budget.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rocksdb::{BlockBasedOptions, Cache, Options, WriteBufferManager, DB};

use crate::commit::{offset_key, Commit};
use crate::error::{Result, StateError};

/// The registry of store names: `n\0<name>` → the store's id.
fn registry_key(name: &str) -> Vec<u8> {
    let mut k = b"n\0".to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// The next store id to give.
const NEXT_ID: &[u8] = b"c\0next-store-id";
use crate::store::Store;

/// How much memory the state layer may use.
#[derive(Clone, Debug)]
pub struct StateOptions {
    /// The cap on RocksDB's block cache and memtables together, for the whole process. Half
    /// goes to the block cache, half to write buffers; the write-buffer memory is charged to
    /// the cache, so the total stays under this figure.
    pub memory_bytes: usize,
    /// fsync RocksDB's write-ahead log on every commit. Without it a commit survives a crash
    /// of the process (the OS still has the write) but not of the machine.
    pub sync: bool,
}

impl Default for StateOptions {
    fn default() -> Self {
        StateOptions {
            memory_bytes: 256 << 20,
            sync: false,
        }
    }
}

/// One RocksDB database holding every store of the process.
#[derive(Clone)]
pub struct StateDb {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    path: PathBuf,
    sync: bool,
    /// Held while a store id is allocated or a registry entry removed.
    registry: parking_lot::Mutex<()>,
    /// Bytes of every commit so far (keys, values and RocksDB's framing), for measurements.
    committed_bytes: AtomicU64,
}

/// Whether RocksDB failed for want of disk space.
fn is_no_space(e: &rocksdb::Error) -> bool {
    e.kind() == rocksdb::ErrorKind::IOError && e.as_ref().contains("No space left on device")
}

impl StateDb {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: impl AsRef<Path>, options: StateOptions) -> Result<StateDb> {
        let cache = Cache::new_lru_cache(options.memory_bytes / 2);
        let buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            options.memory_bytes / 2,
            true,
            cache.clone(),
        );
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_manager(&buffers);
        opts.set_write_buffer_size((options.memory_bytes / 8).clamp(1 << 20, 64 << 20));
        // Stores are small next to the log; a couple of background jobs is plenty on a small
        // machine and keeps compaction from competing with queries.
        opts.increase_parallelism(2);
        opts.set_max_background_jobs(2);
        // State is mostly short-lived (windows, join buffers), rewritten by the first
        // compactions soon after it is flushed: compressing it there costs CPU that a 2-core
        // machine needs for the queries (a fifth of a stream-stream join's background work),
        // so only the deeper levels, where long-lived state settles, are compressed.
        {
            use rocksdb::DBCompressionType::{Lz4, None as Plain};
            opts.set_compression_per_level(&[Plain, Plain, Lz4, Lz4, Lz4, Lz4, Lz4]);
        }
        // A record cut off at the end of the write-ahead log was never acknowledged (a crash
        // mid-write) and is dropped; damage before the end fails the open (`Damaged`), where
        // RocksDB's default would silently drop every commit after it, as a torn tail.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::TolerateCorruptedTailRecords);
        let path = dir.as_ref().to_path_buf();
        // The default column family opened by name, so that its handle is at hand for
        // batched lookups (`Store::get_many`).
        let default =
            rocksdb::ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, opts.clone());
        let db = DB::open_cf_descriptors(&opts, &path, [default]).map_err(|e| match e.kind() {
            rocksdb::ErrorKind::Corruption => StateError::Damaged {
                path: path.clone(),
                reason: e.into_string(),
            },
            _ => StateError::RocksDb(e),
        })?;
        Ok(StateDb {
            inner: Arc::new(Inner {
                db,
                path,
                sync: options.sync,
                committed_bytes: AtomicU64::new(0),
                registry: parking_lot::Mutex::new(()),
            }),
        })
    }

    /// How many bytes all commits so far wrote to RocksDB (before compression and compaction).
    pub fn committed_bytes(&self) -> u64 {
        self.inner.committed_bytes.load(Ordering::Relaxed)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The store named `name` (`<query>/<operator>`), empty if it was never written. A new
    /// name is given the next store id, recorded in the registry (`n\0<name>` → id).
    pub fn store(&self, name: &str) -> Result<Store> {
        let _allocating = self.inner.registry.lock();
        let entry = registry_key(name);
        let id = match self.inner.db.get(&entry)? {
            Some(v) => {
                u32::from_be_bytes(v.as_slice().try_into().map_err(|_| StateError::Corrupt {
                    store: name.to_string(),
                    message: "a store id is not four bytes".into(),
                })?)
            }
            None => {
                let next = match self.inner.db.get(NEXT_ID)? {
                    Some(v) => u32::from_be_bytes(v.as_slice().try_into().unwrap_or([0; 4])),
                    None => 0,
                };
                let mut batch = rocksdb::WriteBatch::default();
                batch.put(&entry, next.to_be_bytes());
                batch.put(NEXT_ID, (next + 1).to_be_bytes());
                self.inner.db.write(batch)?;
                next
            }
        };
        Ok(Store::new(self.clone(), name, id))
    }

    pub(crate) fn db(&self) -> &DB {
        &self.inner.db
    }

    /// Applies `commit` atomically: all its writes and offsets, or none of them.
    pub fn commit(&self, commit: Commit) -> Result<()> {
        if commit.is_empty() {
            return Ok(());
        }
        let mut opts = rocksdb::WriteOptions::default();
        opts.set_sync(self.inner.sync);
        let batch = commit.into_batch();
        self.inner
            .committed_bytes
            .fetch_add(batch.size_in_bytes() as u64, Ordering::Relaxed);
        if !eddy_log::space::is_waiting() {
            self.inner.db.write_opt(batch, &opts)?;
            return Ok(());
        }
        // On a stream thread a full disk is waited out (`eddy_log::space`): RocksDB stops
        // writing after the failure and resumes by itself once it finds room for its write
        // buffers (it looks every 5 s). The batch applied whole or not at all, so it is
        // written again as it was; the write consumes it, hence the copy.
        let data = batch.data().to_vec();
        let mut first = Some(batch);
        eddy_log::space::retry_while_full(is_no_space, || {
            let batch = first
                .take()
                .unwrap_or_else(|| rocksdb::WriteBatch::from_data(&data));
            self.inner.db.write_opt(batch, &opts)
        })?;
        Ok(())
    }

    /// The position stored for `owner` (a query) under `name` (such as `topic/partition`), if
    /// a commit recorded one.
    pub fn offset(&self, owner: &str, name: &str) -> Result<Option<u64>> {
        Ok(self
            .inner
            .db
            .get_pinned(offset_key(owner, name))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    /// Each store's name with the approximate bytes its keys take in RocksDB's files (what has
    /// been flushed from the write buffers), in name order.
    pub fn store_sizes(&self) -> Result<Vec<(String, u64)>> {
        let mut stores = Vec::new();
        let prefix = registry_key("");
        for item in self.inner.db.prefix_iterator(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            if let Ok(id) = <[u8; 4]>::try_from(v.as_ref()) {
                let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                stores.push((name, u32::from_be_bytes(id)));
            }
        }
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = stores
            .iter()
            .map(|(_, id)| (Store::prefix_of(*id), Store::prefix_of(*id + 1)))
            .collect();
        let ranges: Vec<rocksdb::Range<'_>> = ranges
            .iter()
            .map(|(a, b)| rocksdb::Range::new(a, b))
            .collect();
        let sizes = self.inner.db.get_approximate_sizes(&ranges);
        Ok(stores
            .into_iter()
            .zip(sizes)
            .map(|((name, _), size)| (name, size))
            .collect())
    }

    /// Whether `owner` has committed any position.
    pub fn has_owner(&self, owner: &str) -> Result<bool> {
        let prefix = offset_key(owner, "");
        let found = self.inner.db.prefix_iterator(&prefix).next();
        Ok(match found {
            Some(item) => item?.0.starts_with(&prefix),
            None => false,
        })
    }

    /// Every position whose name starts with `prefix`, of every owner: `(owner, name, offset)`.
    pub fn positions_named(&self, prefix: &str) -> Result<Vec<(String, String, u64)>> {
        let all = b"o\0".to_vec();
        let mut out = Vec::new();
        for item in self.inner.db.prefix_iterator(&all) {
            let (k, v) = item?;
            if !k.starts_with(&all) {
                break;
            }
            let rest = &k[all.len()..];
            let Some(split) = rest.iter().position(|&b| b == 0) else {
                continue;
            };
            let name = String::from_utf8_lossy(&rest[split + 1..]);
            if !name.starts_with(prefix) {
                continue;
            }
            if let Ok(offset) = <[u8; 8]>::try_from(v.as_ref()) {
                let owner = String::from_utf8_lossy(&rest[..split]).into_owned();
                out.push((owner, name.into_owned(), u64::from_be_bytes(offset)));
            }
        }
        Ok(out)
    }

    /// Removes everything a query kept: its stores and its offsets.
    pub fn drop_owner(&self, owner: &str) -> Result<()> {
        let _allocating = self.inner.registry.lock();
        let mut batch = rocksdb::WriteBatch::default();
        let stores = registry_key(&format!("{owner}/"));
        for item in self.inner.db.prefix_iterator(&stores) {
            let (k, v) = item?;
            if !k.starts_with(&stores) {
                break;
            }
            if let Ok(id) = <[u8; 4]>::try_from(v.as_ref()) {
                let id = u32::from_be_bytes(id);
                batch.delete_range(Store::prefix_of(id), Store::prefix_of(id + 1));
            }
            batch.delete(&k);
        }
        let offsets = offset_key(owner, "");
        let mut end = offsets.clone();
        end.push(0xff);
        batch.delete_range(&offsets, &end);
        self.inner.db.write(batch)?;
        Ok(())
    }
}
