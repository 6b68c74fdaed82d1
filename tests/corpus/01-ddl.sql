-- ddl: CREATE/ALTER/DROP TABLE variants, STRICT, WITHOUT ROWID, generated columns and sqlite_schema inspection
----
CREATE TABLE t1(a INTEGER, b TEXT, c REAL, d BLOB, e NUMERIC, f)
----
SELECT name, type, tbl_name, sql FROM sqlite_schema ORDER BY name
----
-- column affinities decide the stored type
INSERT INTO t1 VALUES ('12', 12, '12', '12', '12.0', '12');
INSERT INTO t1 VALUES (3.0, 3.5, 3, x'33', '1e2', 3.25);
SELECT a, typeof(a), b, typeof(b), c, typeof(c), d, typeof(d), e, typeof(e), f, typeof(f) FROM t1 ORDER BY rowid
----
CREATE TABLE t2(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL DEFAULT 'anon',
  score REAL DEFAULT 0.5,
  flag INTEGER DEFAULT (1 + 1),
  created TEXT DEFAULT '2024-01-01',
  neg INTEGER DEFAULT -7,
  hexv INTEGER DEFAULT 0x10,
  note TEXT DEFAULT NULL
)
----
INSERT INTO t2(id) VALUES (1);
INSERT INTO t2 DEFAULT VALUES;
SELECT * FROM t2 ORDER BY id
----
SELECT cid, name, type, "notnull", dflt_value, pk FROM pragma_table_info('t2') ORDER BY cid
----
CREATE TABLE kv(k TEXT PRIMARY KEY, v ANY) WITHOUT ROWID
----
INSERT INTO kv VALUES ('b', 2), ('a', 'x'), ('c', x'00ff'), ('d', 1.5), ('e', NULL);
SELECT k, v, typeof(v) FROM kv ORDER BY k
----
-- expect error
-- WITHOUT ROWID tables must have a PRIMARY KEY
CREATE TABLE nopk(a, b) WITHOUT ROWID
----
CREATE TABLE s1(id INTEGER PRIMARY KEY, n INT, r REAL, t TEXT, b BLOB, a ANY) STRICT
----
INSERT INTO s1 VALUES (1, 10, 2, 'x', x'01', 3.5), (2, '20', '2.5', 7, NULL, 'y'), (3, NULL, NULL, NULL, NULL, '42');
SELECT id, n, typeof(n), r, typeof(r), t, typeof(t), b, typeof(b), a, typeof(a) FROM s1 ORDER BY id
----
-- expect error
CREATE TABLE s2(a FOOTYPE) STRICT
----
-- expect error
INSERT INTO s1(id, n) VALUES (4, 'abc')
----
CREATE TABLE g(
  a INTEGER,
  b INTEGER,
  c INTEGER GENERATED ALWAYS AS (a * b) VIRTUAL,
  d TEXT AS (a || '-' || b) STORED
)
----
INSERT INTO g(a, b) VALUES (2, 3), (4, 5), (NULL, 1);
SELECT rowid, a, b, c, d FROM g ORDER BY rowid
----
-- expect error
INSERT INTO g(a, b, c) VALUES (1, 1, 1)
----
UPDATE g SET a = 10 WHERE rowid = 1;
SELECT a, b, c, d FROM g WHERE rowid = 1
----
SELECT cid, name, type, hidden FROM pragma_table_xinfo('g') ORDER BY cid
----
CREATE TABLE ck(x INTEGER CHECK (x > 0), y TEXT, CONSTRAINT y_len CHECK (length(y) <= 3));
INSERT INTO ck VALUES (1, 'abc');
SELECT * FROM ck
----
-- expect error
INSERT INTO ck VALUES (2, 'abcd')
----
CREATE TABLE "weird name"("col 1" INTEGER, [col 2] TEXT, `col 3` REAL, "select" INTEGER);
INSERT INTO "weird name" VALUES (1, 'one', 1.5, 9);
SELECT "col 1", [col 2], `col 3`, "select" FROM "weird name"
----
ALTER TABLE t1 ADD COLUMN g TEXT DEFAULT 'gee'
----
INSERT INTO t1(a) VALUES (1);
SELECT a, b, g FROM t1 ORDER BY rowid
----
ALTER TABLE t1 ADD COLUMN h INTEGER CHECK (h IS NULL OR h > 0) DEFAULT NULL
----
-- expect error
ALTER TABLE t1 ADD COLUMN pk INTEGER PRIMARY KEY
----
ALTER TABLE t1 ADD COLUMN vt INTEGER AS (a + 1) VIRTUAL;
SELECT a, vt FROM t1 ORDER BY rowid
----
ALTER TABLE t1 RENAME COLUMN b TO bee
----
ALTER TABLE t1 RENAME TO t1_renamed
----
SELECT name, type, sql FROM sqlite_schema WHERE name LIKE 't1%' ORDER BY name
----
ALTER TABLE t1_renamed DROP COLUMN f;
SELECT * FROM t1_renamed ORDER BY rowid
----
-- expect error
ALTER TABLE t2 DROP COLUMN id
----
CREATE INDEX t2_score ON t2(score)
----
-- expect error
ALTER TABLE t2 DROP COLUMN score
----
-- expect error
SELECT * FROM t1
----
CREATE TABLE IF NOT EXISTS t2(x)
----
-- expect error
CREATE TABLE t2(x)
----
-- expect error
CREATE TABLE dupcol(a INTEGER, a TEXT)
----
CREATE TABLE copy AS SELECT id, name, score, flag + 0.5 AS half FROM t2;
SELECT sql FROM sqlite_schema WHERE name = 'copy'
----
SELECT * FROM copy ORDER BY id
----
DROP TABLE copy
----
DROP TABLE IF EXISTS copy
----
SELECT name, type, tbl_name, sql FROM sqlite_schema ORDER BY name
----
SELECT type, count(*) FROM sqlite_schema GROUP BY type ORDER BY type
