-- dml: INSERT/UPDATE/DELETE variants, RETURNING, UPSERT, conflict resolution and change counters
----
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT UNIQUE, qty INTEGER NOT NULL DEFAULT 0, price REAL);
CREATE TABLE events(id INTEGER PRIMARY KEY, msg TEXT)
----
INSERT INTO items(name, qty, price) VALUES ('apple', 10, 0.5), ('banana', 20, 0.25), ('cherry', 5, 3.0)
----
SELECT changes(), last_insert_rowid(), total_changes()
----
SELECT * FROM items ORDER BY id
----
INSERT INTO items DEFAULT VALUES
----
SELECT id, name, qty, price, last_insert_rowid() FROM items WHERE name IS NULL
----
INSERT INTO items(name, qty) VALUES ('date', 7) RETURNING id, name, qty, price
----
INSERT INTO items(name, qty, price) VALUES ('elder', 1, 9.99), ('fig', 2, 1.5) RETURNING *
----
INSERT INTO items(qty, name) VALUES (3 * 4, 'gr' || 'ape') RETURNING id * 10 AS tenfold, upper(name) AS uname, qty + 0.5
----
INSERT INTO events(msg) SELECT 'have ' || name FROM items WHERE name IS NOT NULL ORDER BY name
----
SELECT changes(), last_insert_rowid()
----
SELECT * FROM events ORDER BY id
----
INSERT INTO events(msg) VALUES ('x'), ('y');
INSERT INTO events(msg) SELECT msg || msg FROM events WHERE msg IN ('x', 'y') ORDER BY id;
SELECT id, msg FROM events WHERE id > 7 ORDER BY id
----
INSERT INTO items(name, qty) VALUES ('apple', 3) ON CONFLICT(name) DO UPDATE SET qty = qty + excluded.qty RETURNING id, name, qty
----
INSERT INTO items(name, qty) VALUES ('banana', 100) ON CONFLICT(name) DO NOTHING
----
SELECT changes(), name, qty FROM items WHERE name = 'banana'
----
INSERT INTO items(name, qty, price) VALUES ('cherry', 1, 4.0)
  ON CONFLICT(name) DO UPDATE SET price = excluded.price WHERE excluded.price > items.price
  RETURNING name, qty, price
----
INSERT INTO items(name, qty, price) VALUES ('cherry', 1, 2.0)
  ON CONFLICT(name) DO UPDATE SET price = excluded.price WHERE excluded.price > items.price
  RETURNING name, qty, price
----
-- upsert targeting the rowid primary key
INSERT INTO items(id, name, qty) VALUES (1, 'apricot', 1) ON CONFLICT(id) DO UPDATE SET qty = items.qty * 100;
SELECT id, name, qty FROM items WHERE id = 1
----
INSERT OR REPLACE INTO items(id, name, qty, price) VALUES (2, 'blueberry', 50, 6.0)
----
SELECT * FROM items ORDER BY id
----
INSERT OR IGNORE INTO items(id, name, qty) VALUES (1, 'dup', 0), (100, 'kiwi', 12)
----
SELECT changes(), last_insert_rowid()
----
-- expect error
INSERT INTO items(name, qty) VALUES ('apple', 1)
----
-- expect error
INSERT INTO items(name, qty) VALUES ('lime', NULL)
----
-- expect error
INSERT INTO items(name, qty) VALUES ('lime')
----
-- expect error
INSERT INTO items(nosuchcol) VALUES (1)
----
-- expect error
UPDATE nosuch SET x = 1
----
UPDATE items SET qty = qty * 2 WHERE qty < 6 RETURNING id, name, qty
----
CREATE TABLE price_updates(name TEXT PRIMARY KEY, new_price REAL);
INSERT INTO price_updates VALUES ('apple', 0.75), ('fig', 1.25), ('nothing', 99.0)
----
UPDATE items SET price = u.new_price FROM price_updates AS u WHERE u.name = items.name
----
SELECT changes(), total_changes()
----
SELECT id, name, price FROM items WHERE name IN ('apple', 'fig') ORDER BY id
----
-- UPDATE ... FROM with an aggregate subquery
CREATE TABLE orders(item TEXT, n INTEGER);
INSERT INTO orders VALUES ('banana', 2), ('banana', 3), ('date', 1), ('kiwi', 4), ('kiwi', 6);
UPDATE items SET qty = items.qty - o.total FROM (SELECT item, sum(n) AS total FROM orders GROUP BY item) AS o WHERE o.item = items.name;
SELECT name, qty FROM items WHERE name IN ('banana', 'date', 'kiwi') ORDER BY name
----
UPDATE items SET qty = qty + 1, price = coalesce(price, 0) + 1 WHERE name IS NULL RETURNING id, qty, price
----
UPDATE items SET name = upper(name) WHERE id IN (SELECT id FROM items WHERE qty > 15)
----
SELECT * FROM items ORDER BY id
----
UPDATE OR IGNORE items SET name = 'date' WHERE name = 'elder'
----
SELECT changes(), name FROM items WHERE id = 6
----
-- expect error
UPDATE items SET name = 'date' WHERE name = 'elder'
----
UPDATE OR REPLACE items SET name = 'date' WHERE name = 'elder';
SELECT id, name, qty FROM items WHERE name IN ('date', 'elder') ORDER BY id
----
DELETE FROM items WHERE qty <= 2 RETURNING id, name
----
DELETE FROM events WHERE id % 2 = 0
----
SELECT changes(), total_changes()
----
SELECT id, msg FROM events ORDER BY id
----
DELETE FROM events
----
SELECT count(*), changes() FROM events
----
INSERT INTO events(msg) VALUES ('after delete');
SELECT id, msg FROM events
----
REPLACE INTO items(id, name, qty) VALUES (1, 'APPLE2', 1)
----
SELECT * FROM items ORDER BY id
----
CREATE TABLE pairs(a INTEGER, b INTEGER, c TEXT, UNIQUE(a, b));
INSERT INTO pairs VALUES (1, 1, 'one'), (1, 2, 'two'), (2, NULL, 'n1'), (2, NULL, 'n2')
----
INSERT INTO pairs VALUES (1, 1, 'uno'), (1, 3, 'tres') ON CONFLICT(a, b) DO UPDATE SET c = c || '/' || excluded.c;
SELECT * FROM pairs ORDER BY a, b, c
----
-- expect error
INSERT INTO pairs VALUES (1, 1, 'x') ON CONFLICT(c) DO NOTHING
----
-- a bare DO NOTHING covers every uniqueness constraint
INSERT INTO pairs VALUES (1, 2, 'dos') ON CONFLICT DO NOTHING;
SELECT changes(), c FROM pairs WHERE a = 1 AND b = 2
----
VALUES (1, 'a', 1.5), (2, NULL, x'ff'), (3, 'c', -0.25)
----
-- INSERT ... SELECT from the table itself doubles it
CREATE TABLE dbl(v INTEGER);
INSERT INTO dbl VALUES (1), (2);
INSERT INTO dbl SELECT v + 10 FROM dbl;
INSERT INTO dbl SELECT v + 100 FROM dbl;
SELECT v FROM dbl ORDER BY v
----
SELECT total_changes() > 0, changes()
----
UPDATE items SET (qty, price) = (5, 5.5) WHERE name = 'fig' RETURNING *
----
UPDATE items SET (qty, price) = (SELECT count(*), avg(qty) FROM items) WHERE name = 'grape' RETURNING name, qty, price
----
INSERT INTO events(msg) VALUES (printf('%d items', (SELECT count(*) FROM items))) RETURNING id, msg
----
DELETE FROM items WHERE id = (SELECT max(id) FROM items) RETURNING id, name
----
SELECT changes(), (SELECT count(*) FROM items), (SELECT group_concat(name, ',') FROM (SELECT name FROM items ORDER BY id))
