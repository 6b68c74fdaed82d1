-- triggers-views: BEFORE/AFTER/INSTEAD OF triggers, WHEN, RAISE, audit tables, views and their triggers
----
CREATE TABLE acct(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL DEFAULT 0);
CREATE TABLE audit(seq INTEGER PRIMARY KEY, action TEXT, acct INTEGER, old_bal INTEGER, new_bal INTEGER)
----
CREATE TRIGGER acct_ins AFTER INSERT ON acct BEGIN
  INSERT INTO audit(action, acct, new_bal) VALUES ('insert', new.id, new.balance);
END
----
CREATE TRIGGER acct_upd AFTER UPDATE OF balance ON acct WHEN old.balance <> new.balance BEGIN
  INSERT INTO audit(action, acct, old_bal, new_bal) VALUES ('update', new.id, old.balance, new.balance);
END;
CREATE TRIGGER acct_del AFTER DELETE ON acct BEGIN
  INSERT INTO audit(action, acct, old_bal) VALUES ('delete', old.id, old.balance);
END
----
INSERT INTO acct(owner, balance) VALUES ('ann', 100), ('bob', 50), ('cat', 0)
----
-- changes() counts only the rows of the statement itself, not trigger work
SELECT changes()
----
UPDATE acct SET balance = balance + 10 WHERE owner IN ('ann', 'bob');
UPDATE acct SET balance = balance WHERE owner = 'cat';
UPDATE acct SET owner = 'CAT' WHERE owner = 'cat';
SELECT * FROM audit ORDER BY seq
----
CREATE TRIGGER no_overdraft BEFORE UPDATE OF balance ON acct WHEN new.balance < 0 BEGIN
  SELECT RAISE(ABORT, 'overdraft');
END
----
-- expect error
UPDATE acct SET balance = balance - 1000 WHERE owner = 'ann'
----
SELECT id, owner, balance FROM acct ORDER BY id
----
-- RAISE(IGNORE) silently skips the offending row only
CREATE TRIGGER skip_zero BEFORE INSERT ON acct WHEN new.balance = 0 BEGIN
  SELECT RAISE(IGNORE);
END;
INSERT INTO acct(owner, balance) VALUES ('dan', 0), ('eve', 5), ('fay', 0);
SELECT id, owner, balance FROM acct ORDER BY id
----
-- RAISE(FAIL) keeps the rows already changed by the statement
CREATE TRIGGER cap BEFORE UPDATE OF balance ON acct WHEN old.owner = 'eve' AND new.balance > old.balance BEGIN
  SELECT RAISE(FAIL, 'eve is capped');
END
----
-- expect error
UPDATE acct SET balance = balance + 1
----
SELECT id, owner, balance FROM acct ORDER BY id
----
-- RAISE(ROLLBACK) ends the whole transaction
CREATE TRIGGER forbid_del BEFORE DELETE ON acct WHEN old.owner = 'ann' BEGIN
  SELECT RAISE(ROLLBACK, 'ann is forever');
END
----
BEGIN;
INSERT INTO acct(owner, balance) VALUES ('gus', 7)
----
-- expect error
DELETE FROM acct WHERE owner = 'ann'
----
-- the transaction was rolled back: no gus, and autocommit is back on
SELECT count(*) FROM acct WHERE owner = 'gus'
----
-- expect error
COMMIT
----
SELECT action, acct, old_bal, new_bal FROM audit ORDER BY seq
----
-- a trigger can reference other tables and use subqueries
CREATE TABLE totals(k TEXT PRIMARY KEY, v INTEGER);
INSERT INTO totals VALUES ('sum', (SELECT sum(balance) FROM acct));
CREATE TRIGGER keep_total AFTER UPDATE OF balance ON acct BEGIN
  UPDATE totals SET v = (SELECT sum(balance) FROM acct) WHERE k = 'sum';
END;
UPDATE acct SET balance = balance - 5 WHERE owner = 'bob';
SELECT k, v, (SELECT sum(balance) FROM acct) FROM totals
----
-- recursive triggers (off by default, enabled here) with a bounded recursion
PRAGMA recursive_triggers = ON;
CREATE TABLE chain(n INTEGER PRIMARY KEY);
CREATE TRIGGER chain_next AFTER INSERT ON chain WHEN new.n < 8 BEGIN
  INSERT INTO chain VALUES (new.n + 1);
END;
INSERT INTO chain VALUES (1);
SELECT group_concat(n) FROM (SELECT n FROM chain ORDER BY n)
----
-- AFTER trigger modifying another row of the same table
CREATE TABLE counters(name TEXT PRIMARY KEY, hits INTEGER);
INSERT INTO counters VALUES ('total', 0);
CREATE TRIGGER count_hits AFTER INSERT ON counters WHEN new.name <> 'total' BEGIN
  UPDATE counters SET hits = hits + new.hits WHERE name = 'total';
END;
INSERT INTO counters VALUES ('a', 3), ('b', 4);
SELECT name, hits FROM counters ORDER BY name
----
CREATE VIEW rich AS SELECT id, owner, balance FROM acct WHERE balance >= 50
----
SELECT * FROM rich ORDER BY id
----
CREATE TABLE txn(id INTEGER PRIMARY KEY, acct INTEGER, amount INTEGER);
INSERT INTO txn(acct, amount) VALUES (1, 10), (1, -3), (2, 7), (2, 8), (2, -1), (4, 2);
CREATE VIEW acct_summary(owner, n, total) AS
  SELECT a.owner, count(t.id), coalesce(sum(t.amount), 0)
  FROM acct a LEFT JOIN txn t ON t.acct = a.id GROUP BY a.id
----
SELECT owner, n, total FROM acct_summary ORDER BY owner
----
SELECT owner FROM acct_summary WHERE total > 5 ORDER BY total DESC
----
-- a view over a view
CREATE VIEW rich_summary AS SELECT s.* FROM acct_summary s JOIN rich r ON r.owner = s.owner;
SELECT owner, n, total FROM rich_summary ORDER BY owner
----
-- expect error
INSERT INTO rich(owner, balance) VALUES ('zed', 500)
----
CREATE TRIGGER rich_ins INSTEAD OF INSERT ON rich BEGIN
  INSERT INTO acct(owner, balance) VALUES (upper(new.owner), max(new.balance, 50));
END;
INSERT INTO rich(owner, balance) VALUES ('zed', 20);
SELECT id, owner, balance FROM acct ORDER BY id
----
CREATE TRIGGER rich_upd INSTEAD OF UPDATE OF balance ON rich BEGIN
  UPDATE acct SET balance = new.balance WHERE id = old.id;
  INSERT INTO audit(action, acct, old_bal, new_bal) VALUES ('via view', old.id, old.balance, new.balance);
END;
UPDATE rich SET balance = 99 WHERE owner = 'ZED';
SELECT action, acct, old_bal, new_bal FROM audit WHERE action = 'via view'
----
CREATE TRIGGER rich_del INSTEAD OF DELETE ON rich BEGIN
  UPDATE acct SET balance = 0 WHERE id = old.id;
END;
DELETE FROM rich WHERE owner = 'ZED';
SELECT id, owner, balance FROM acct ORDER BY id
----
-- expect error
CREATE TRIGGER bad_instead INSTEAD OF INSERT ON acct BEGIN SELECT 1; END
----
-- expect error
CREATE TRIGGER bad_before BEFORE INSERT ON rich BEGIN SELECT 1; END
----
-- expect error
CREATE TRIGGER bad_table AFTER INSERT ON nosuch BEGIN SELECT 1; END
----
SELECT type, name, tbl_name FROM sqlite_schema WHERE type IN ('view', 'trigger') ORDER BY type, name
----
DROP TRIGGER rich_del;
DROP TRIGGER IF EXISTS rich_del;
DROP VIEW rich_summary
----
-- expect error
DROP TRIGGER rich_del
----
-- expect error
DROP TABLE rich
----
-- dropping a table drops its triggers too
DROP TABLE chain;
SELECT count(*) FROM sqlite_schema WHERE name = 'chain_next'
----
DROP VIEW IF EXISTS rich;
SELECT type, name FROM sqlite_schema WHERE type IN ('view', 'trigger') ORDER BY type, name
