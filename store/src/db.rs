//! The store database: which store paths are valid, where each came from, and what refers to
//! what.
//!
//! SQLite in WAL mode, so readers never wait for a writer and several envctl processes can share
//! it. The schema is versioned with `pragma user_version`; migrations are applied in one
//! exclusive transaction, in order, and never edited once shipped. A database from a newer envctl
//! is refused, never "upgraded" backwards.
//!
//! A store path is valid exactly when it has a row in `paths`: registration is the commit point of
//! an install, and unregistration the first step of a deletion.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, Result};

/// Migrations, in order; migration `i` moves the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: valid paths, the sources they were installed from, references between paths.
    "CREATE TABLE paths (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,   -- the store path's file name
        package       TEXT NOT NULL,
        version       TEXT NOT NULL,
        tree_hash     TEXT NOT NULL,
        size          INTEGER NOT NULL,
        files         INTEGER NOT NULL,
        registered_at INTEGER NOT NULL        -- unix seconds
    );
    CREATE TABLE sources (
        key     TEXT PRIMARY KEY,             -- sha256 plus unpack options, name and version
        sha256  TEXT NOT NULL,
        url     TEXT NOT NULL,
        path_id INTEGER NOT NULL REFERENCES paths(id) ON DELETE CASCADE
    );
    CREATE INDEX sources_path ON sources(path_id);
    CREATE TABLE refs (
        referrer  INTEGER NOT NULL REFERENCES paths(id) ON DELETE CASCADE,
        reference INTEGER NOT NULL REFERENCES paths(id) ON DELETE RESTRICT,
        PRIMARY KEY (referrer, reference)
    );
    CREATE INDEX refs_reference ON refs(reference);",
    // 2: how each generation was built (its farm's inputs and manifest), so a damaged one can be
    // rebuilt and checked against its registered tree hash.
    "CREATE TABLE builds (
        path_id  INTEGER PRIMARY KEY REFERENCES paths(id) ON DELETE CASCADE,
        profile  TEXT NOT NULL,
        inputs   TEXT NOT NULL,               -- JSON: [{name, path, priority}] in farm order
        manifest TEXT NOT NULL
    );",
    // 3: what optimise has seen, so that it reads each store path once in the store's life: the
    // paths it has scanned, and each of their regular files with the blake3 of its contents once
    // a file of the same size and mode gave a reason to read it.
    "CREATE TABLE optimised_paths (
        path_id INTEGER PRIMARY KEY REFERENCES paths(id) ON DELETE CASCADE
    );
    CREATE TABLE optimised_files (
        path_id    INTEGER NOT NULL REFERENCES paths(id) ON DELETE CASCADE,
        file       BLOB NOT NULL,             -- inside the store path, as its bytes
        size       INTEGER NOT NULL,
        executable INTEGER NOT NULL,
        hash       BLOB                       -- blake3 of the contents; NULL until read
    );
    CREATE INDEX optimised_files_path ON optimised_files(path_id);",
    // 4: the same record as one packed value per store path (see `pack_seen`): a row per file made
    // a first optimise of 180,000 files spend a quarter of its time inserting rows. What schema 3
    // recorded is dropped; the next optimise scans every path once more.
    "DROP TABLE optimised_files;
    DROP TABLE optimised_paths;
    CREATE TABLE optimised_paths (
        path_id INTEGER PRIMARY KEY REFERENCES paths(id) ON DELETE CASCADE,
        files   BLOB NOT NULL                 -- its regular files, packed (see `pack_seen`)
    );",
    // 5: per store path, the directories whose shared objects' run paths climb out of them (see
    // `elf.rs`), found once, when a farm first takes the path.
    "CREATE TABLE climbs (
        path_id INTEGER PRIMARY KEY REFERENCES paths(id) ON DELETE CASCADE,
        dirs    TEXT NOT NULL                 -- JSON: [[dir, levels]], sorted
    );",
];

/// A regular file of a store path that optimise has seen (see [`Database::optimised_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenFile {
    /// Its place inside the store path, as bytes.
    pub file: Vec<u8>,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it is executable.
    pub executable: bool,
    /// blake3 of its contents, once read.
    pub hash: Option<[u8; 32]>,
}

/// A file optimise recorded: the store path it is in, and its place in that path's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeenAt {
    path_id: i64,
    index: u32,
}

/// Packs the files optimise saw in one store path into the value it records: for each file, the
/// length of its place (u32) and the place, its size (u64), a flags byte (1: executable, 2: hash
/// follows) and the blake3 of its contents when known; integers little-endian.
fn pack_seen(files: &[SeenFile]) -> Vec<u8> {
    let mut out = Vec::with_capacity(files.iter().map(|f| f.file.len() + 45).sum());
    for f in files {
        out.extend_from_slice(&(f.file.len() as u32).to_le_bytes());
        out.extend_from_slice(&f.file);
        out.extend_from_slice(&f.size.to_le_bytes());
        out.push(u8::from(f.executable) | if f.hash.is_some() { 2 } else { 0 });
        if let Some(hash) = &f.hash {
            out.extend_from_slice(hash);
        }
    }
    out
}

/// Reads back what [`pack_seen`] wrote; `None` for a value it cannot have written.
fn unpack_seen(mut bytes: &[u8]) -> Option<Vec<SeenFile>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = bytes.split_at_checked(n)?;
        *bytes = tail;
        Some(head)
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().ok()?) as usize;
        let file = take(&mut bytes, len)?.to_vec();
        let size = u64::from_le_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        let flags = take(&mut bytes, 1)?[0];
        if flags & !3 != 0 {
            return None;
        }
        let hash = if flags & 2 != 0 { Some(take(&mut bytes, 32)?.try_into().ok()?) } else { None };
        out.push(SeenFile { file, size, executable: flags & 1 != 0, hash });
    }
    Some(out)
}

/// What a path must escape inside an SQLite `file:` URI.
const URI_PATH: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b'%').add(b'?').add(b'#').add(b' ');

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// One valid store path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PathRecord {
    /// The store path's file name.
    pub name: String,
    /// Package name.
    pub package: String,
    /// Package version.
    pub version: String,
    /// Canonical tree hash (hex).
    pub tree_hash: String,
    /// Bytes in regular files.
    pub size: u64,
    /// Regular files and symlinks.
    pub files: u64,
    /// When it was registered (unix seconds).
    pub registered_at: i64,
}

/// A source that produced a path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceRecord {
    /// The sha256 of the fetched artifact.
    pub sha256: String,
    /// Where it was fetched from the first time.
    pub url: String,
}

/// An open store database.
pub struct Database {
    conn: Connection,
    path: PathBuf,
}

impl Database {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Database> {
        let err = |e| Error::db(path, e);
        // Someone who may only read the store opens the database read-only (and never migrates).
        let read_only = path.exists() && std::fs::OpenOptions::new().write(true).open(path).is_err();
        if read_only {
            // WAL needs a writable directory even to read; such a user reads the database as its
            // owner last checkpointed it (every envctl command does when it ends), without locks.
            let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
                | rusqlite::OpenFlags::SQLITE_OPEN_URI;
            let uri = format!(
                "file:{}?immutable=1",
                percent_encoding::utf8_percent_encode(&path.to_string_lossy(), URI_PATH)
            );
            let conn = Connection::open_with_flags(uri, flags).map_err(err)?;
            conn.busy_timeout(Duration::from_secs(60)).map_err(err)?;
            let db = Database { conn, path: path.to_path_buf() };
            let found = db.user_version().map_err(err)?;
            if found > SCHEMA_VERSION {
                return Err(Error::TooNew { path: path.to_path_buf(), found, supported: SCHEMA_VERSION });
            }
            return Ok(db);
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(err)?;
        let mut db = Database { conn, path: path.to_path_buf() };
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&mut self) -> Result<()> {
        let path = self.path.clone();
        let err = |e| Error::db(&path, e);
        let current = self.user_version().map_err(err)?;
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Exclusive).map_err(err)?;
        // Re-read inside the lock: another process may have migrated meanwhile.
        let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
        if current > SCHEMA_VERSION {
            return Err(Error::TooNew { path, found: current, supported: SCHEMA_VERSION });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", i as i64 + 1).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn user_version(&self) -> rusqlite::Result<i64> {
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0))
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        |e| Error::db(&self.path, e)
    }

    /// The path a source key was installed as, if any.
    pub fn path_for_source(&self, key: &str) -> Result<Option<PathRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM paths p JOIN sources s ON s.path_id = p.id WHERE s.key = ?1"),
                [key],
                record,
            )
            .optional()
            .map_err(self.err())
    }

    /// The sources recorded for a valid path: `(key, url)` pairs, oldest first.
    pub fn sources_of(&self, name: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT s.key, s.url FROM sources s JOIN paths p ON s.path_id = p.id WHERE p.name = ?1 ORDER BY s.rowid")
            .map_err(self.err())?;
        let rows = stmt.query_map([name], |r| Ok((r.get(0)?, r.get(1)?))).map_err(self.err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.err())
    }

    /// The sources that produced a path, with their keys, by key.
    pub fn keyed_sources(&self, name: &str) -> Result<Vec<(String, SourceRecord)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.key, s.sha256, s.url FROM sources s JOIN paths p ON s.path_id = p.id
                 WHERE p.name = ?1 ORDER BY s.key",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([name], |r| Ok((r.get(0)?, SourceRecord { sha256: r.get(1)?, url: r.get(2)? })))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Records how a generation was built, unless it already has a record.
    pub fn record_build(&self, name: &str, profile: &str, inputs: &str, manifest: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO builds (path_id, profile, inputs, manifest)
                 SELECT id, ?2, ?3, ?4 FROM paths WHERE name = ?1",
                params![name, profile, inputs, manifest],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// What [`Database::record_climbs`] recorded for `name`.
    pub fn climbs(&self, name: &str) -> Result<Option<Vec<(String, u32)>>> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT c.dirs FROM climbs c JOIN paths p ON c.path_id = p.id WHERE p.name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        // A value this build cannot read is found again.
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Records the directories of `name` whose shared objects climb out of them.
    pub fn record_climbs(&self, name: &str, dirs: &[(String, u32)]) -> Result<()> {
        let text = serde_json::to_string(dirs).map_err(std::io::Error::other)?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO climbs (path_id, dirs) SELECT id, ?2 FROM paths WHERE name = ?1",
                params![name, text],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// How a generation was built: its profile, farm inputs (JSON) and manifest.
    pub fn build_of(&self, name: &str) -> Result<Option<(String, String, String)>> {
        self.conn
            .query_row(
                "SELECT b.profile, b.inputs, b.manifest FROM builds b JOIN paths p ON b.path_id = p.id WHERE p.name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.err())
    }

    /// The name of every valid path, in no order.
    pub fn names(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT name FROM paths").map_err(self.err())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// The size of every valid path, by name.
    pub fn sizes(&self) -> Result<std::collections::HashMap<String, u64>> {
        let mut stmt = self.conn.prepare("SELECT name, size FROM paths").map_err(self.err())?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))).map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// The record of a valid path.
    pub fn get(&self, name: &str) -> Result<Option<PathRecord>> {
        self.conn
            .query_row(&format!("SELECT {COLUMNS} FROM paths p WHERE p.name = ?1"), [name], record)
            .optional()
            .map_err(self.err())
    }

    /// Every valid path, by name.
    pub fn list(&self) -> Result<Vec<PathRecord>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM paths p ORDER BY p.name"))
            .map_err(self.err())?;
        let rows = stmt.query_map([], record).map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// The sources recorded for a path.
    pub fn sources(&self, name: &str) -> Result<Vec<SourceRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.sha256, s.url FROM sources s JOIN paths p ON s.path_id = p.id
                 WHERE p.name = ?1 ORDER BY s.sha256, s.url",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([name], |r| Ok(SourceRecord { sha256: r.get(0)?, url: r.get(1)? }))
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// The paths `name` refers to.
    pub fn references(&self, name: &str) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.name FROM refs r JOIN paths f ON r.referrer = f.id JOIN paths t ON r.reference = t.id
                 WHERE f.name = ?1 ORDER BY t.name",
            )
            .map_err(self.err())?;
        let rows = stmt.query_map([name], |r| r.get(0)).map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Registers a path, the source it came from and its references, in one transaction. A path
    /// that is already valid only gains the source.
    pub fn register(
        &mut self,
        rec: &PathRecord,
        source: Option<(&str, &SourceRecord)>,
        references: &[String],
    ) -> Result<()> {
        let path = self.path.clone();
        let err = |e| Error::db(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        tx.execute(
            "INSERT INTO paths (name, package, version, tree_hash, size, files, registered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(name) DO NOTHING",
            params![
                rec.name,
                rec.package,
                rec.version,
                rec.tree_hash,
                rec.size as i64,
                rec.files as i64,
                rec.registered_at
            ],
        )
        .map_err(err)?;
        let id: i64 =
            tx.query_row("SELECT id FROM paths WHERE name = ?1", [&rec.name], |r| r.get(0)).map_err(err)?;
        if let Some((key, src)) = source {
            tx.execute(
                "INSERT INTO sources (key, sha256, url, path_id) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(key) DO UPDATE SET path_id = excluded.path_id",
                params![key, src.sha256, src.url, id],
            )
            .map_err(err)?;
        }
        for reference in references {
            let rid: Option<i64> = tx
                .query_row("SELECT id FROM paths WHERE name = ?1", [reference], |r| r.get(0))
                .optional()
                .map_err(err)?;
            let rid = rid.ok_or_else(|| Error::NotInStore(reference.clone()))?;
            tx.execute("INSERT OR IGNORE INTO refs (referrer, reference) VALUES (?1, ?2)", params![id, rid])
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Valid paths optimise has not scanned yet.
    pub fn unoptimised(&self) -> Result<Vec<PathRecord>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM paths p WHERE p.id NOT IN (SELECT path_id FROM optimised_paths) ORDER BY p.name"
            ))
            .map_err(self.err())?;
        let rows = stmt.query_map([], record).map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// The files optimise has seen whose size and mode are among `shapes`, in paths still valid,
    /// with the name of the path each is in. A record that cannot be read (it cannot come from
    /// envctl) is left out with a warning: its path is never linked to, nothing else is lost.
    pub fn optimised_files(
        &self,
        shapes: &std::collections::HashSet<(u64, bool)>,
    ) -> Result<Vec<(SeenAt, std::rc::Rc<str>, SeenFile)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT o.path_id, p.name, o.files FROM optimised_paths o JOIN paths p ON o.path_id = p.id",
            )
            .map_err(self.err())?;
        let mut rows = stmt.query([]).map_err(self.err())?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(self.err())? {
            let path_id: i64 = r.get(0).map_err(self.err())?;
            let name: std::rc::Rc<str> = r.get::<_, String>(1).map_err(self.err())?.into();
            let Some(files) = unpack_seen(r.get_ref(2).map_err(self.err())?.as_blob().unwrap_or(&[])) else {
                tracing::warn!(db = %self.path.display(), path = %name, "optimise's record of this store path is unreadable; it is left out");
                continue;
            };
            for (index, f) in files.into_iter().enumerate() {
                if shapes.contains(&(f.size, f.executable)) {
                    out.push((SeenAt { path_id, index: index as u32 }, name.clone(), f));
                }
            }
        }
        Ok(out)
    }

    /// Records, in one transaction, what an optimise saw: each scanned path (by name) with the
    /// files found in it, and hashes `learned` of files seen before.
    pub fn record_optimised(
        &mut self,
        scanned: &[(&str, Vec<SeenFile>)],
        learned: &[(SeenAt, [u8; 32])],
    ) -> Result<()> {
        let path = self.path.clone();
        let err = |e| Error::db(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        {
            // A path collected meanwhile has nothing to record.
            let mut path_row = tx
                .prepare(
                    "INSERT OR REPLACE INTO optimised_paths (path_id, files) SELECT id, ?2 FROM paths WHERE name = ?1",
                )
                .map_err(err)?;
            for (name, files) in scanned {
                path_row.execute(params![name, pack_seen(files)]).map_err(err)?;
            }
            let mut by_path: HashMap<i64, Vec<(u32, [u8; 32])>> = HashMap::new();
            for (at, hash) in learned {
                by_path.entry(at.path_id).or_default().push((at.index, *hash));
            }
            let mut read = tx.prepare("SELECT files FROM optimised_paths WHERE path_id = ?1").map_err(err)?;
            let mut write =
                tx.prepare("UPDATE optimised_paths SET files = ?2 WHERE path_id = ?1").map_err(err)?;
            for (path_id, hashes) in by_path {
                let packed: Option<Vec<u8>> =
                    read.query_row([path_id], |r| r.get(0)).optional().map_err(err)?;
                let Some(mut files) = packed.as_deref().and_then(unpack_seen) else { continue };
                for (index, hash) in hashes {
                    if let Some(f) = files.get_mut(index as usize) {
                        f.hash = Some(hash);
                    }
                }
                write.execute(params![path_id, pack_seen(&files)]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Forgets a path (its sources and outgoing references go with it). Fails while another valid
    /// path still refers to it.
    #[cfg(test)]
    pub fn unregister(&mut self, name: &str) -> Result<()> {
        self.conn.execute("DELETE FROM paths WHERE name = ?1", [name]).map_err(self.err())?;
        Ok(())
    }

    /// Forgets a set of paths in one transaction; references among them go first. Fails (and
    /// forgets nothing) if a path outside the set still refers to one of them.
    pub fn unregister_all(&mut self, names: &[String]) -> Result<()> {
        let path = self.path.clone();
        let err = |e| Error::db(&path, e);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        for n in names {
            tx.execute("DELETE FROM refs WHERE referrer = (SELECT id FROM paths WHERE name = ?1)", [n])
                .map_err(err)?;
        }
        for n in names {
            tx.execute("DELETE FROM paths WHERE name = ?1", [n]).map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

const COLUMNS: &str = "p.name, p.package, p.version, p.tree_hash, p.size, p.files, p.registered_at";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<PathRecord> {
    Ok(PathRecord {
        name: r.get(0)?,
        package: r.get(1)?,
        version: r.get(2)?,
        tree_hash: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        files: r.get::<_, i64>(5)? as u64,
        registered_at: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> PathRecord {
        PathRecord {
            name: name.into(),
            package: "p".into(),
            version: "1".into(),
            tree_hash: "00".into(),
            size: 1,
            files: 1,
            registered_at: 0,
        }
    }

    #[test]
    fn a_newer_schema_is_refused_by_name() {
        let dir = envctl_testkit::tempdir();
        let path = dir.path().join("db.sqlite");
        drop(Database::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = Database::open(&path).err().expect("newer schema accepted");
        let msg = err.to_string();
        assert!(msg.contains("db.sqlite") && msg.contains("99"), "{msg}");
    }

    #[test]
    fn optimise_records_read_back_as_written_and_a_damaged_one_is_left_out() {
        let dir = envctl_testkit::tempdir();
        let mut db = Database::open(&dir.path().join("db.sqlite")).unwrap();
        db.register(&rec("a"), None, &[]).unwrap();
        db.register(&rec("b"), None, &[]).unwrap();
        let seen =
            |file: &str, size, executable, hash| SeenFile { file: file.into(), size, executable, hash };
        let a = vec![
            seen("lib/x", 3, false, None),
            seen("bin/\u{e9}", 7, true, Some([9; 32])),
            seen("", 0, false, None),
        ];
        db.record_optimised(&[("a", a.clone()), ("b", vec![seen("y", 3, false, None)])], &[]).unwrap();
        assert!(db.unoptimised().unwrap().is_empty());
        let shapes = [(3, false), (7, true), (0, false)].into_iter().collect();
        let mut found = db.optimised_files(&shapes).unwrap();
        found.sort_by(|x, y| (&*x.1, &x.2.file).cmp(&(&*y.1, &y.2.file)));
        let got: Vec<_> = found.iter().map(|(_, p, f)| (p.to_string(), f.clone())).collect();
        let mut want: Vec<_> = a.iter().map(|f| ("a".to_string(), f.clone())).collect();
        want.sort_by(|x, y| x.1.file.cmp(&y.1.file));
        want.push(("b".into(), seen("y", 3, false, None)));
        assert_eq!(got, want);

        // A hash learned later lands on its file.
        let at = found.iter().find(|(_, p, f)| &**p == "b" && f.file == b"y").unwrap().0;
        db.record_optimised(&[], &[(at, [5; 32])]).unwrap();
        let shapes = [(3, false)].into_iter().collect();
        let hashes: Vec<_> = db
            .optimised_files(&shapes)
            .unwrap()
            .into_iter()
            .map(|(_, p, f)| (p.to_string(), f.hash))
            .collect();
        assert!(
            hashes.contains(&("b".into(), Some([5; 32]))) && hashes.contains(&("a".into(), None)),
            "{hashes:?}"
        );

        // A value envctl cannot have written: that path is left out, the other is still read.
        for bad in [&b"\x05\0\0\0ab"[..], &b"\x01\0\0\0y\x03\0\0\0\0\0\0\0\x04"[..]] {
            db.conn.execute("UPDATE optimised_paths SET files = ?1 WHERE path_id = (SELECT id FROM paths WHERE name = 'a')", [bad]).unwrap();
            let left: Vec<_> =
                db.optimised_files(&shapes).unwrap().into_iter().map(|(_, p, _)| p.to_string()).collect();
            assert_eq!(left, vec!["b".to_string()]);
        }
        // The record goes with its path.
        db.unregister("b").unwrap();
        assert!(db.optimised_files(&shapes).unwrap().is_empty());
    }

    #[test]
    fn a_schema_3_store_keeps_its_paths_and_optimise_scans_them_again() {
        let dir = envctl_testkit::tempdir();
        let path = dir.path().join("db.sqlite");
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "INSERT INTO paths VALUES (1, 'a', 'p', '1', '00', 1, 1, 0);
             INSERT INTO optimised_paths VALUES (1);
             INSERT INTO optimised_files VALUES (1, CAST('f' AS BLOB), 1, 0, NULL);
             PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(conn);
        let db = Database::open(&path).unwrap();
        assert_eq!(db.user_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(db.get("a").unwrap().unwrap(), rec("a"));
        let names: Vec<_> = db.unoptimised().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, vec!["a".to_string()]);
    }

    #[test]
    fn sources_and_references_follow_their_path() {
        let dir = envctl_testkit::tempdir();
        let mut db = Database::open(&dir.path().join("db.sqlite")).unwrap();
        let src = SourceRecord { sha256: "ab".into(), url: "http://x/a".into() };
        db.register(&rec("a"), Some(("k1", &src)), &[]).unwrap();
        db.register(&rec("b"), None, &["a".into()]).unwrap();
        assert_eq!(db.path_for_source("k1").unwrap().unwrap().name, "a");
        assert_eq!(db.references("b").unwrap(), vec!["a".to_string()]);
        // `a` is still referred to by `b`.
        assert!(db.unregister("a").is_err());
        db.unregister("b").unwrap();
        db.unregister("a").unwrap();
        assert!(db.path_for_source("k1").unwrap().is_none());
        assert!(db.list().unwrap().is_empty());
        // A reference to an unknown path is refused, and nothing is half-registered.
        assert!(db.register(&rec("c"), None, &["nope".into()]).is_err());
        assert!(db.get("c").unwrap().is_none());
    }
}
