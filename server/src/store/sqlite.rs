//! The embedded default store: one SQLite file in WAL mode.
//!
//! Ids are SQLite `AUTOINCREMENT` row ids: they grow with every append and are never
//! reused, even after retention deletes rows. Writes go through one connection and reads
//! through a few others ([`READERS`]), so replaying history does not wait behind appends
//! (WAL readers never block the writer), and reads (history, replays, the overview) do not
//! queue behind one another. Blocking SQLite calls run on tokio's blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use common::Notification;
use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::Semaphore;

use super::{Draft, Entry, Error, EventId, Page, Retention, Store, StoreHealth, StoredStream};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    stream     TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    level      TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_stream ON notifications (stream, id);
-- Per stream, the highest id that retention has deleted: resuming before it needs a reset.
CREATE TABLE IF NOT EXISTS pruned (
    stream  TEXT PRIMARY KEY,
    through INTEGER NOT NULL
);
";

/// Connections that read: a slow read (the overview of many streams, a replay page)
/// leaves the others free.
pub const READERS: usize = 4;

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Readers,
    /// As the latest append found: what fails here is writing (a full disk, a read-only
    /// file), not reading.
    health: StoreHealth,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and its parent folder.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let open = || -> anyhow::Result<Connection> {
            let conn = Connection::open(path)
                .with_context(|| format!("cannot open the database {}", path.display()))?;
            conn.busy_timeout(Duration::from_secs(5))?;
            Ok(conn)
        };
        let writer = open()?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .context("cannot switch the database to WAL mode")?;
        // FULL: an append is on disk before the publisher gets its 201.
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer
            .execute_batch(SCHEMA)
            .with_context(|| format!("{} is not a notify-hub database", path.display()))?;
        // Each read at once, so that every reader holds its files (the WAL and its index)
        // from the start rather than from its first busy moment.
        let readers = (0..READERS)
            .map(|_| {
                let conn = open()?;
                issued(&conn)?;
                Ok(Mutex::new(conn))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            reader: Readers(Arc::new(readers), Arc::new(Semaphore::new(READERS))),
            health: StoreHealth::default(),
        })
    }

    /// Caps the database file at about `max_bytes` (SQLite's `max_page_count`): appends
    /// that would grow it further fail as a full disk would ("database or disk is full"),
    /// without touching what is stored; space that retention frees is used again.
    pub fn limit_size(&self, max_bytes: u64) -> anyhow::Result<()> {
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let page_size: u64 = writer.query_row("PRAGMA page_size", [], |row| row.get(0))?;
        let pages = (max_bytes / page_size.max(1)).max(1);
        writer.pragma_update(None, "max_page_count", pages)?;
        Ok(())
    }
}

/// The reading connections, and a permit for each: a read takes a thread of tokio's
/// blocking pool only once a connection is free for it, so a crowd of reads (16,000 new
/// streams' heads, from a flood of connections) waits in tokio, not in 512 blocking
/// threads each with its own stack and allocator arena (the process stayed 20 MB larger
/// after such a flood).
struct Readers(Arc<Vec<Mutex<Connection>>>, Arc<Semaphore>);

impl Readers {
    /// Runs `work` on a free reading connection, once there is one, in tokio's blocking
    /// pool.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let readers = self.0.clone();
        let permit = self.1.clone().acquire_owned().await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // With a permit, one of them is free (unless a test holds it): the first free.
            let free = readers.iter().find_map(|conn| conn.try_lock().ok());
            let mut conn =
                free.unwrap_or_else(|| readers[0].lock().unwrap_or_else(PoisonError::into_inner));
            work(&mut conn)
        })
        .await
        .context("database task failed")?
        .map_err(Into::into)
    }
}

/// Runs `work` on `conn` in tokio's blocking pool, so SQLite never blocks the runtime.
async fn run_on<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, Error> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut conn)
    })
    .await
    .context("database task failed")?
    .map_err(Into::into)
}

fn id_of(id: i64) -> EventId {
    EventId::new(u64::try_from(id).unwrap_or_default(), 0)
}

/// The SQLite row id for `id`: ids with a minor part never come from this store.
fn rowid(id: EventId) -> i64 {
    i64::try_from(id.major).unwrap_or(i64::MAX)
}

/// The newest id ever issued (0 before the first append); never decreases.
fn issued(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT seq FROM sqlite_sequence WHERE name = 'notifications'",
        [],
        |row| row.get(0),
    )
    .optional()
    .map(Option::unwrap_or_default)
}

/// The entry in a row that starts with [`COLUMNS`].
fn entry(row: &Row<'_>) -> rusqlite::Result<Arc<Entry>> {
    entry_at(row, 0)
}

/// The entry in a row whose [`COLUMNS`] start at column `first`.
fn entry_at(row: &Row<'_>, first: usize) -> rusqlite::Result<Arc<Entry>> {
    let id = id_of(row.get(first)?);
    let level: String = row.get(first + 4)?;
    Ok(Entry::new(
        id,
        Notification {
            id: id.to_string(),
            stream: row.get(first + 1)?,
            title: row.get(first + 2)?,
            body: row.get(first + 3)?,
            level: level.parse().unwrap_or_default(),
            created_at: row.get(first + 5)?,
        },
    ))
}

const COLUMNS: &str = "id, stream, title, body, level, created_at";

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, drafts: Vec<Draft>) -> Result<Vec<Arc<Entry>>, Error> {
        let appended = run_on(&self.writer, move |conn| {
            let tx = conn.transaction()?;
            let created_at = crate::timestamp::now();
            let mut entries = Vec::with_capacity(drafts.len());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO notifications (stream, title, body, level, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for draft in drafts {
                    insert.execute(params![
                        draft.stream,
                        draft.title,
                        draft.body,
                        draft.level.as_str(),
                        created_at
                    ])?;
                    let id = id_of(tx.last_insert_rowid());
                    entries.push(Entry::new(
                        id,
                        draft.stored(id.to_string(), created_at.clone()),
                    ));
                }
            }
            tx.commit()?;
            Ok(entries)
        })
        .await;
        self.health.track(appended)
    }

    fn problem(&self) -> Option<String> {
        self.health.problem()
    }

    async fn streams(&self) -> Result<Vec<StoredStream>, Error> {
        self.reader
            .run(|conn| {
                // One pass over the (stream, id) index, then one lookup per stream.
                let mut query = conn.prepare_cached(&format!(
                    "SELECT counts.count, {COLUMNS} FROM
                   (SELECT stream AS name, COUNT(*) AS count, MAX(id) AS newest
                    FROM notifications GROUP BY stream) AS counts
                 JOIN notifications ON notifications.id = counts.newest
                 ORDER BY stream"
                ))?;
                let streams = query
                    .query_map([], |row| {
                        let count: i64 = row.get(0)?;
                        let newest = entry_at(row, 1)?;
                        Ok(StoredStream {
                            stream: newest.notification.stream.clone(),
                            count: count as u64,
                            newest,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(streams)
            })
            .await
    }

    async fn after(&self, stream: &str, after: EventId, limit: usize) -> Result<Page, Error> {
        let stream = stream.to_owned();
        self.reader
            .run(move |conn| {
                // One read transaction: the rows and the retention mark come from one snapshot,
                // so a prune between the two cannot hide a gap.
                let tx = conn.transaction()?;
                let pruned: i64 = tx
                    .query_row(
                        "SELECT through FROM pruned WHERE stream = ?1",
                        [&stream],
                        |row| row.get(0),
                    )
                    .optional()?
                    .unwrap_or(0);
                let issued = issued(&tx)?;
                let position = rowid(after);
                if position < pruned || position > issued || after.minor != 0 {
                    return Ok(Page {
                        entries: Vec::new(),
                        reset_to: Some(id_of(issued)),
                    });
                }
                let mut query = tx.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM notifications WHERE stream = ?1 AND id > ?2
                 ORDER BY id LIMIT ?3"
                ))?;
                let entries = query
                    .query_map(params![stream, position, limit as i64], entry)?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(Page {
                    entries,
                    reset_to: None,
                })
            })
            .await
    }

    async fn head(&self, _stream: &str) -> Result<EventId, Error> {
        // The newest id issued in any stream: retention never marks a stream pruned past it.
        self.reader.run(|conn| issued(conn).map(id_of)).await
    }

    async fn clock(&self) -> Result<EventId, Error> {
        // Ids are one sequence over every stream.
        self.reader.run(|conn| issued(conn).map(id_of)).await
    }

    async fn stream_names(&self) -> Result<Vec<String>, Error> {
        self.reader
            .run(|conn| {
                let mut query = conn.prepare_cached("SELECT DISTINCT stream FROM notifications")?;
                let names = query
                    .query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                Ok(names)
            })
            .await
    }

    async fn latest(&self, stream: &str, limit: usize) -> Result<Vec<Arc<Entry>>, Error> {
        let stream = stream.to_owned();
        self.reader
            .run(move |conn| {
                let mut query = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM (SELECT * FROM notifications WHERE stream = ?1
                 ORDER BY id DESC LIMIT ?2) ORDER BY id"
                ))?;
                let rows = query.query_map(params![stream, limit as i64], entry)?;
                rows.collect()
            })
            .await
    }

    async fn prune(&self, retention: &Retention) -> Result<u64, Error> {
        let retention = retention.clone();
        run_on(&self.writer, move |conn| {
            let tx = conn.transaction()?;
            // An age too large to subtract from now keeps everything.
            let oldest_kept = retention.max_age.and_then(|age| {
                let age = chrono::Duration::from_std(age).ok()?;
                let cutoff = chrono::Utc::now().checked_sub_signed(age)?;
                Some(crate::timestamp::format(cutoff))
            });
            let streams: Vec<String> = tx
                .prepare("SELECT DISTINCT stream FROM notifications")?
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut deleted = 0;
            for stream in streams {
                // The highest id to drop: by count, and by age (ids grow with time).
                let by_count: Option<i64> = match retention.cap(&stream) {
                    Some(cap) => tx
                        .query_row(
                            "SELECT id FROM notifications WHERE stream = ?1
                             ORDER BY id DESC LIMIT 1 OFFSET ?2",
                            params![stream, i64::try_from(cap).unwrap_or(i64::MAX)],
                            |row| row.get(0),
                        )
                        .optional()?,
                    None => None,
                };
                let by_age: Option<i64> = match &oldest_kept {
                    Some(cutoff) => tx.query_row(
                        "SELECT MAX(id) FROM notifications WHERE stream = ?1 AND created_at < ?2",
                        params![stream, cutoff],
                        |row| row.get(0),
                    )?,
                    None => None,
                };
                let Some(through) = by_count.max(by_age) else {
                    continue;
                };
                deleted += tx.execute(
                    "DELETE FROM notifications WHERE stream = ?1 AND id <= ?2",
                    params![stream, through],
                )? as u64;
                tx.execute(
                    "INSERT INTO pruned (stream, through) VALUES (?1, ?2)
                     ON CONFLICT (stream) DO UPDATE SET through = MAX(through, excluded.through)",
                    params![stream, through],
                )?;
            }
            tx.commit()?;
            Ok(deleted)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::Level;

    fn draft(stream: &str, title: &str) -> Draft {
        Draft {
            stream: stream.into(),
            title: title.into(),
            body: String::new(),
            level: Level::Info,
        }
    }

    async fn append_one(store: &SqliteStore, draft: Draft) -> Arc<Entry> {
        store.append(vec![draft]).await.unwrap().pop().unwrap()
    }

    #[tokio::test]
    async fn a_batch_is_stored_in_order_with_growing_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hub.db")).unwrap();
        let batch = (0..5).map(|n| draft(if n % 2 == 0 { "a" } else { "b" }, &n.to_string()));
        let entries = store.append(batch.collect()).await.unwrap();
        let titles: Vec<_> = entries
            .iter()
            .map(|e| e.notification.title.as_str())
            .collect();
        assert_eq!(titles, ["0", "1", "2", "3", "4"]);
        assert!(entries.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(store.latest("a", 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn appends_reads_prunes_and_knows_when_to_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("nested/hub.db")).unwrap();
        let mut ids = Vec::new();
        for n in 0..5 {
            ids.push(append_one(&store, draft("a", &format!("a{n}"))).await.id);
            append_one(&store, draft("b", "b")).await;
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));

        let after = store.after("a", ids[1], 10).await.unwrap();
        assert_eq!(after.reset_to, None);
        let titles: Vec<_> = after
            .entries
            .iter()
            .map(|e| e.notification.title.as_str())
            .collect();
        assert_eq!(titles, ["a2", "a3", "a4"]);
        let latest = store.latest("a", 2).await.unwrap();
        assert_eq!(latest.iter().map(|e| e.id).collect::<Vec<_>>(), ids[3..]);

        assert_eq!(store.after("a", ids[0], 1).await.unwrap().entries.len(), 1);
        let retention = Retention {
            per_stream: vec![("b".into(), 1)],
            ..Retention::new(Some(2), None)
        };
        assert_eq!(store.prune(&retention).await.unwrap(), 3 + 4);
        // Pruned past the position, or a position never issued: start over from the newest id.
        let newest = Some(EventId::new(10, 0));
        assert_eq!(store.after("a", ids[0], 10).await.unwrap().reset_to, newest);
        assert_eq!(
            store
                .after("a", EventId::new(10_000, 0), 10)
                .await
                .unwrap()
                .reset_to,
            newest
        );
        assert_eq!(
            store
                .after("a", EventId::new(3, 1), 10)
                .await
                .unwrap()
                .reset_to,
            newest
        );
        let kept = store.after("a", ids[2], 10).await.unwrap();
        assert_eq!((kept.entries.len(), kept.reset_to), (2, None));

        // Reopening keeps everything, and ids keep growing past deleted ones.
        drop(store);
        let store = SqliteStore::open(&dir.path().join("nested/hub.db")).unwrap();
        assert_eq!(store.latest("a", 10).await.unwrap().len(), 2);
        let next = append_one(&store, draft("a", "again")).await;
        assert!(next.id > ids[4]);
        assert_eq!(next.notification.created_at.len(), 30);
    }

    #[tokio::test]
    async fn prunes_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hub.db")).unwrap();
        append_one(&store, draft("a", "old")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let retention = Retention {
            max_age: Some(Duration::from_millis(10)),
            ..Retention::new(None, None)
        };
        assert_eq!(store.prune(&retention).await.unwrap(), 1);
        assert!(store.latest("a", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_read_does_not_wait_for_a_busy_reader() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("hub.db")).unwrap();
        store.append(vec![draft("s", "one")]).await.unwrap();
        // Every reader but one busy (as with a long overview and replays): reads go on.
        let busy: Vec<_> = (store.reader.0.iter().skip(1))
            .map(|conn| conn.lock().unwrap())
            .collect();
        let page = tokio::time::timeout(
            Duration::from_secs(5),
            store.after("s", EventId::default(), 10),
        )
        .await
        .expect("a read waited for a busy reader")
        .unwrap();
        assert_eq!(page.entries.len(), 1);
        drop(busy);
    }
}
