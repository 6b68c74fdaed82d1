-- indexes: plain/unique/partial/expression indexes, INDEXED BY, NOT INDEXED, REINDEX, ANALYZE and DROP INDEX
----
CREATE TABLE big(id INTEGER PRIMARY KEY, cat INTEGER, name TEXT, score REAL, flag INTEGER);
WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 300)
INSERT INTO big SELECT n, n % 7, 'name' || ((n * 37) % 101), ((n * 53) % 97) / 4.0, n % 10 = 0 FROM s
----
SELECT count(*), count(DISTINCT cat), count(DISTINCT name), sum(flag), min(score), max(score) FROM big
----
CREATE INDEX big_cat ON big(cat)
----
SELECT count(*), sum(id) FROM big WHERE cat = 3
----
SELECT id, name FROM big WHERE cat = 3 AND id < 40 ORDER BY id
----
CREATE INDEX big_cat_score ON big(cat, score DESC)
----
-- covered by (cat, score): no table lookup needed
SELECT cat, score FROM big WHERE cat = 5 AND score > 20 ORDER BY score DESC, cat
----
SELECT cat, max(score), min(score) FROM big GROUP BY cat ORDER BY cat
----
SELECT id, cat, score FROM big WHERE cat IN (1, 2) AND score BETWEEN 10 AND 11 ORDER BY id
----
CREATE INDEX big_name ON big(name COLLATE NOCASE)
----
SELECT id, name FROM big WHERE name = 'NAME10' COLLATE NOCASE ORDER BY id
----
SELECT id, name FROM big WHERE name LIKE 'name9%' ORDER BY name, id
----
-- expression index
CREATE INDEX big_expr ON big(length(name), score * 2);
SELECT length(name) AS len, count(*) FROM big WHERE length(name) >= 5 GROUP BY len ORDER BY len
----
SELECT id, score * 2 FROM big WHERE length(name) = 5 AND score * 2 > 40 ORDER BY id
----
-- partial index
CREATE INDEX big_flagged ON big(score) WHERE flag = 1;
SELECT id, score FROM big WHERE flag = 1 AND score > 15 ORDER BY score, id
----
SELECT id FROM big INDEXED BY big_cat WHERE cat = 6 AND id > 280 ORDER BY id
----
SELECT id FROM big INDEXED BY big_flagged WHERE flag = 1 AND score < 3 ORDER BY id
----
SELECT count(*) FROM big NOT INDEXED WHERE cat = 6
----
-- expect error
SELECT id FROM big INDEXED BY nosuch_index WHERE cat = 1
----
-- expect error
-- the partial index cannot serve a query without its WHERE term
SELECT id FROM big INDEXED BY big_flagged WHERE score < 3
----
CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT, tenant INTEGER, deleted INTEGER DEFAULT 0);
CREATE UNIQUE INDEX u_email ON u(email);
INSERT INTO u(email, tenant) VALUES ('a@x', 1), ('b@x', 1), ('c@x', 2), (NULL, 2), (NULL, 3)
----
-- expect error
INSERT INTO u(email, tenant) VALUES ('a@x', 9)
----
-- case-insensitive uniqueness through an expression index
CREATE UNIQUE INDEX u_email_ci ON u(lower(email))
----
-- expect error
INSERT INTO u(email, tenant) VALUES ('A@X', 4)
----
-- a partial unique index enforces uniqueness only on matching rows
UPDATE u SET deleted = 1 WHERE id = 4;
CREATE UNIQUE INDEX u_live_tenant ON u(tenant) WHERE deleted = 0 AND tenant > 1;
INSERT INTO u(email, tenant, deleted) VALUES ('d@x', 2, 1), ('e@x', 1, 0);
SELECT id, email, tenant, deleted FROM u ORDER BY id
----
-- expect error
INSERT INTO u(email, tenant) VALUES ('f@x', 3)
----
-- expect error
CREATE UNIQUE INDEX u_tenant ON u(tenant)
----
CREATE INDEX IF NOT EXISTS big_cat ON big(name)
----
-- expect error
CREATE INDEX bad_expr ON big((SELECT 1))
----
SELECT name, tbl_name, sql FROM sqlite_schema WHERE type = 'index' ORDER BY name
----
SELECT name, "unique", origin, partial FROM pragma_index_list('u') ORDER BY name
----
SELECT seqno, cid, name FROM pragma_index_info('big_cat_score') ORDER BY seqno
----
SELECT seqno, cid, name, "desc", coll, key FROM pragma_index_xinfo('big_name') ORDER BY seqno
----
REINDEX big_name;
REINDEX big;
REINDEX NOCASE;
SELECT count(*) FROM big WHERE name = 'name50' COLLATE NOCASE
----
PRAGMA integrity_check
----
ANALYZE
----
SELECT * FROM sqlite_stat1 ORDER BY 1, 2
----
-- query results do not depend on the statistics
SELECT cat, count(*), round(avg(score), 6) FROM big WHERE cat BETWEEN 2 AND 4 GROUP BY cat ORDER BY cat
----
SELECT b.id, u.email FROM big b JOIN u ON u.id = b.cat WHERE b.id <= 20 ORDER BY b.id
----
DROP INDEX big_expr;
DROP INDEX IF EXISTS big_expr;
SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'big'
----
-- expect error
DROP INDEX big_expr
----
-- expect error
-- indexes created by UNIQUE/PRIMARY KEY constraints cannot be dropped
CREATE TABLE uc(a TEXT UNIQUE);
DROP INDEX sqlite_autoindex_uc_1
----
-- dropping the table drops its indexes
DROP TABLE u;
SELECT name FROM sqlite_schema WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name
