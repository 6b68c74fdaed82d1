-- constraints: NOT NULL, UNIQUE, PRIMARY KEY, CHECK, FOREIGN KEY actions, conflict clauses, STRICT, rowid and AUTOINCREMENT
----
CREATE TABLE person(
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  age INTEGER CHECK (age BETWEEN 0 AND 150),
  nick TEXT UNIQUE
);
INSERT INTO person(email, age, nick) VALUES ('a@x', 30, 'al'), ('b@x', 40, NULL), ('c@x', NULL, NULL)
----
-- expect error
INSERT INTO person(email, age) VALUES ('a@x', 20)
----
-- expect error
INSERT INTO person(email, age) VALUES ('d@x', 200)
----
-- expect error
INSERT INTO person(id, email) VALUES (1, 'dup-id@x')
----
SELECT * FROM person ORDER BY id
----
-- expect error
-- multi-row insert: OR FAIL keeps rows inserted before the failing one
INSERT OR FAIL INTO person(email, age) VALUES ('e@x', 1), ('f@x', 2), ('a@x', 3), ('g@x', 4)
----
SELECT id, email, age FROM person ORDER BY id
----
-- expect error
-- OR ABORT (the default) undoes the whole statement
INSERT OR ABORT INTO person(email, age) VALUES ('h@x', 1), ('a@x', 2)
----
SELECT count(*), max(id) FROM person
----
INSERT OR IGNORE INTO person(email, age) VALUES ('h@x', 5), ('a@x', 6), ('i@x', 500), ('j@x', 7);
SELECT id, email, age FROM person WHERE id > 5 ORDER BY id
----
-- OR REPLACE deletes every row that conflicts, on any unique constraint
INSERT OR REPLACE INTO person(id, email, age, nick) VALUES (2, 'a@x', 41, 'bee');
SELECT id, email, age, nick FROM person ORDER BY id
----
-- expect error
INSERT OR REPLACE INTO person(email, age) VALUES ('k@x', 999)
----
-- column-level conflict clauses in the schema
CREATE TABLE cc(
  a INTEGER UNIQUE ON CONFLICT IGNORE,
  b TEXT NOT NULL ON CONFLICT REPLACE DEFAULT 'dflt',
  c INTEGER UNIQUE ON CONFLICT REPLACE
);
INSERT INTO cc VALUES (1, 'one', 10), (1, 'dup', 20), (2, NULL, 30), (3, 'three', 10);
SELECT a, b, c FROM cc ORDER BY a
----
-- expect error
-- an explicit statement-level clause overrides the schema one
INSERT OR ABORT INTO cc VALUES (2, 'again', 99)
----
CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT UNIQUE);
CREATE TABLE child_cascade(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES parent(id) ON DELETE CASCADE ON UPDATE CASCADE);
CREATE TABLE child_null(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES parent(id) ON DELETE SET NULL);
CREATE TABLE child_restrict(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES parent(id) ON DELETE RESTRICT);
CREATE TABLE child_default(id INTEGER PRIMARY KEY, pid INTEGER DEFAULT 5 REFERENCES parent(id) ON DELETE SET DEFAULT);
CREATE TABLE child_byname(id INTEGER PRIMARY KEY, pname TEXT REFERENCES parent(name));
INSERT INTO parent VALUES (1, 'p1'), (2, 'p2'), (3, 'p3'), (4, 'p4'), (5, 'p5');
INSERT INTO child_cascade VALUES (10, 1), (11, 2), (12, 2);
INSERT INTO child_null VALUES (20, 2), (21, 3);
INSERT INTO child_restrict VALUES (30, 4);
INSERT INTO child_default VALUES (40, 3);
INSERT INTO child_byname VALUES (50, 'p1'), (51, NULL)
----
-- expect error
INSERT INTO child_cascade VALUES (13, 99)
----
-- a NULL foreign key is always allowed
INSERT INTO child_cascade VALUES (14, NULL);
SELECT id, pid FROM child_cascade ORDER BY id
----
DELETE FROM parent WHERE id = 2;
SELECT 'cascade', id, pid FROM child_cascade UNION ALL SELECT 'null', id, pid FROM child_null ORDER BY 1, 2
----
UPDATE parent SET id = 100 WHERE id = 1;
SELECT id, pid FROM child_cascade ORDER BY id
----
DELETE FROM parent WHERE id = 3;
SELECT 'null', id, pid FROM child_null UNION ALL SELECT 'default', id, pid FROM child_default ORDER BY 1, 2
----
-- expect error
DELETE FROM parent WHERE id = 4
----
-- expect error
-- child_byname still references parent 100 through its name p1
DELETE FROM parent WHERE id = 100
----
-- expect error
DROP TABLE parent
----
SELECT * FROM pragma_foreign_key_list('child_cascade') ORDER BY id, seq
----
-- deferred foreign keys are checked at COMMIT
CREATE TABLE dparent(id INTEGER PRIMARY KEY);
CREATE TABLE dchild(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES dparent(id) DEFERRABLE INITIALLY DEFERRED);
BEGIN;
INSERT INTO dchild VALUES (1, 7);
INSERT INTO dparent VALUES (7);
COMMIT;
SELECT * FROM dchild
----
BEGIN;
INSERT INTO dchild VALUES (2, 8)
----
-- expect error
COMMIT
----
ROLLBACK
----
SELECT count(*) FROM dchild
----
-- rowid behaviour of INTEGER PRIMARY KEY
CREATE TABLE r(id INTEGER PRIMARY KEY, v TEXT);
INSERT INTO r(v) VALUES ('a');
INSERT INTO r(id, v) VALUES (10, 'b');
INSERT INTO r(v) VALUES ('c');
INSERT INTO r(id, v) VALUES ('20', 'd');
INSERT INTO r(id, v) VALUES (-5, 'e');
SELECT rowid, oid, _rowid_, id, typeof(id), v FROM r ORDER BY id
----
-- expect error
INSERT INTO r(id, v) VALUES ('abc', 'x')
----
-- without AUTOINCREMENT the largest rowid can be reused
DELETE FROM r WHERE id = 21;
INSERT INTO r(v) VALUES ('f');
SELECT id, v FROM r WHERE v IN ('c', 'f') ORDER BY id
----
CREATE TABLE ai(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
INSERT INTO ai(v) VALUES ('a'), ('b'), ('c');
DELETE FROM ai WHERE id = 3;
INSERT INTO ai(v) VALUES ('d');
SELECT id, v FROM ai ORDER BY id
----
SELECT name, seq FROM sqlite_sequence ORDER BY name
----
INSERT INTO ai(id, v) VALUES (100, 'e');
DELETE FROM ai;
INSERT INTO ai(v) VALUES ('f');
SELECT id, v FROM ai;
SELECT name, seq FROM sqlite_sequence ORDER BY name
----
UPDATE sqlite_sequence SET seq = 1000 WHERE name = 'ai';
INSERT INTO ai(v) VALUES ('g');
SELECT id, v FROM ai ORDER BY id
----
INSERT INTO ai(id, v) VALUES (9223372036854775807, 'max')
----
-- expect error
INSERT INTO ai(v) VALUES ('overflow')
----
-- expect error
CREATE TABLE bad_ai(id TEXT PRIMARY KEY AUTOINCREMENT)
----
-- legacy quirk: a non-integer PRIMARY KEY of a rowid table accepts NULLs
CREATE TABLE tpk(k TEXT PRIMARY KEY, v INTEGER);
INSERT INTO tpk VALUES (NULL, 1), (NULL, 2), ('a', 3);
SELECT k, v FROM tpk ORDER BY v
----
-- expect error
-- ... but WITHOUT ROWID primary keys are NOT NULL
CREATE TABLE wpk(k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
INSERT INTO wpk VALUES (NULL, 1)
----
CREATE TABLE comp(a INTEGER, b TEXT, v REAL, PRIMARY KEY (a, b));
INSERT INTO comp VALUES (1, 'x', 1.0), (1, 'y', 2.0), (2, 'x', 3.0);
SELECT a, b, v FROM comp ORDER BY a, b
----
CREATE TABLE st(id INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB, a ANY) STRICT;
INSERT INTO st VALUES (1, 1, 1, 'x', x'00', 1), (2, '2', '2.5', 'y', NULL, '2'), (3, 3.0, 3, 4, x'01', 4.5);
SELECT id, i, typeof(i), r, typeof(r), t, typeof(t), a, typeof(a) FROM st ORDER BY id
----
-- expect error
INSERT INTO st(id, i) VALUES (4, 1.5)
----
-- expect error
UPDATE st SET i = x'00' WHERE id = 1
----
-- expect error
-- OR IGNORE does not suppress STRICT datatype errors
INSERT OR IGNORE INTO st(id, i) VALUES (5, 'five'), (6, 6)
----
SELECT count(*), max(id) FROM st
----
CREATE TABLE chk2(lo INTEGER, hi INTEGER, CHECK (lo <= hi), CHECK (lo IS NULL OR typeof(lo) = 'integer'));
INSERT INTO chk2 VALUES (1, 2), (3, 3);
-- NULL makes a CHECK pass
INSERT INTO chk2 VALUES (NULL, 1) ON CONFLICT DO NOTHING;
SELECT lo, hi FROM chk2 ORDER BY hi, lo
----
INSERT INTO chk2 VALUES ('0', 2);
SELECT lo, typeof(lo), hi FROM chk2 WHERE hi = 2 ORDER BY lo
----
-- expect error
INSERT INTO chk2 VALUES ('0.5', 2)
