-- transactions: BEGIN/COMMIT/ROLLBACK across entries, IMMEDIATE/EXCLUSIVE, nested savepoints and error behaviour
----
CREATE TABLE acct(id INTEGER PRIMARY KEY, owner TEXT UNIQUE, bal INTEGER NOT NULL CHECK (bal >= 0));
INSERT INTO acct VALUES (1, 'ann', 100), (2, 'bob', 50)
----
BEGIN
----
UPDATE acct SET bal = bal - 30 WHERE id = 1;
UPDATE acct SET bal = bal + 30 WHERE id = 2
----
-- inside the transaction the changes are visible
SELECT id, bal FROM acct ORDER BY id
----
INSERT INTO acct VALUES (3, 'cat', 5)
----
ROLLBACK
----
SELECT id, owner, bal FROM acct ORDER BY id
----
BEGIN;
UPDATE acct SET bal = bal - 30 WHERE id = 1;
UPDATE acct SET bal = bal + 30 WHERE id = 2;
COMMIT
----
SELECT id, bal FROM acct ORDER BY id
----
-- expect error
COMMIT
----
-- expect error
ROLLBACK
----
BEGIN IMMEDIATE
----
-- expect error
BEGIN
----
-- the failed BEGIN did not end the open transaction
INSERT INTO acct VALUES (3, 'cat', 5)
----
COMMIT
----
BEGIN EXCLUSIVE TRANSACTION;
UPDATE acct SET bal = bal * 2;
END TRANSACTION
----
BEGIN DEFERRED;
SELECT count(*), sum(bal) FROM acct;
COMMIT TRANSACTION
----
-- a failing statement inside a transaction rolls back only itself
BEGIN
----
INSERT INTO acct VALUES (4, 'dan', 40)
----
-- expect error
UPDATE acct SET bal = bal - 100 WHERE id IN (3, 4)
----
SELECT id, owner, bal FROM acct ORDER BY id
----
-- expect error
INSERT INTO acct VALUES (5, 'ann', 1)
----
UPDATE acct SET bal = bal + 1 WHERE id = 4
----
COMMIT
----
SELECT id, owner, bal FROM acct ORDER BY id
----
-- ON CONFLICT ROLLBACK aborts the statement and ends the whole transaction
BEGIN
----
INSERT INTO acct VALUES (6, 'eve', 60)
----
-- expect error
INSERT OR ROLLBACK INTO acct VALUES (7, 'bob', 70)
----
-- expect error
COMMIT
----
SELECT count(*), max(id) FROM acct
----
-- expect error
-- outside an explicit transaction OR ROLLBACK behaves like ABORT
INSERT OR ROLLBACK INTO acct VALUES (7, 'bob', 70)
----
SAVEPOINT outer_sp
----
INSERT INTO acct VALUES (10, 'p10', 10)
----
SAVEPOINT inner_sp
----
INSERT INTO acct VALUES (11, 'p11', 11)
----
SELECT group_concat(id) FROM (SELECT id FROM acct WHERE id >= 10 ORDER BY id)
----
ROLLBACK TO inner_sp
----
SELECT group_concat(id) FROM (SELECT id FROM acct WHERE id >= 10 ORDER BY id)
----
-- the savepoint survives ROLLBACK TO and can be used again
INSERT INTO acct VALUES (12, 'p12', 12);
ROLLBACK TO SAVEPOINT inner_sp;
INSERT INTO acct VALUES (13, 'p13', 13)
----
-- expect error
ROLLBACK TO nosuch
----
RELEASE inner_sp
----
-- releasing the outermost savepoint commits
RELEASE SAVEPOINT outer_sp
----
SELECT id, owner, bal FROM acct WHERE id >= 10 ORDER BY id
----
-- savepoints nested in BEGIN; rolling back to an outer savepoint discards the inner ones
BEGIN;
SAVEPOINT a;
INSERT INTO acct VALUES (20, 'p20', 20);
SAVEPOINT b;
INSERT INTO acct VALUES (21, 'p21', 21);
SAVEPOINT c;
INSERT INTO acct VALUES (22, 'p22', 22);
RELEASE c;
ROLLBACK TO a;
INSERT INTO acct VALUES (23, 'p23', 23)
----
-- expect error
RELEASE b
----
-- same-named savepoints: ROLLBACK TO picks the most recent one
SAVEPOINT a;
INSERT INTO acct VALUES (24, 'p24', 24);
SAVEPOINT a;
INSERT INTO acct VALUES (25, 'p25', 25);
ROLLBACK TO a;
RELEASE a
----
SELECT group_concat(id) FROM (SELECT id FROM acct WHERE id >= 20 ORDER BY id)
----
-- ROLLBACK undoes everything back to BEGIN, whatever savepoints remain
ROLLBACK
----
SELECT count(*) FROM acct WHERE id >= 20
----
-- DDL is transactional too
BEGIN;
CREATE TABLE scratch(x);
INSERT INTO scratch VALUES (1);
ALTER TABLE acct ADD COLUMN note TEXT;
ROLLBACK
----
SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name
----
SELECT * FROM acct WHERE id = 1
----
-- expect error
-- an error in the middle of a script leaves the earlier statements applied and the transaction open
BEGIN;
INSERT INTO acct VALUES (30, 'p30', 30);
INSERT INTO acct VALUES (31, NULL, -1);
INSERT INTO acct VALUES (32, 'p32', 32)
----
SELECT group_concat(id) FROM (SELECT id FROM acct WHERE id >= 30 ORDER BY id)
----
ROLLBACK
----
SELECT count(*), sum(bal), total_changes() > 0 FROM acct
----
-- deferred transaction with only reads, then an explicit write upgrade
BEGIN;
SELECT count(*) FROM acct;
UPDATE acct SET bal = bal + 1 WHERE owner = 'ann';
SELECT changes();
COMMIT;
SELECT owner, bal FROM acct WHERE owner = 'ann'
