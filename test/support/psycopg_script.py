# Drives psycopg 3 against a PostgreSQL-speaking port and prints one JSON report line (used by the client-matrix tests).

import json
import sys

import psycopg
from psycopg import errors

UNICODE = "héllo wörld ☃ 🐘 ünïcødé"
BYTEA = bytes([0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0xFF, 0x0A, 0x5C])
BIG = ("abcdefghij€" * 100000)[: 1024 * 1024]


def connect(port, db, autocommit=True):
    return psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname=db, autocommit=autocommit, connect_timeout=10)


def encode(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"hex": bytes(v).hex()}
    return v


def values_report(row):
    out = [encode(v) for v in row[:4]]
    big = row[4]
    return {"row": out, "big_len": len(big), "big_ok": big == BIG}


def matrix(port, db):
    rep = {}
    with connect(port, db) as conn:
        # Simple query protocol (no parameters): literals in the text.
        lit_big = BIG.replace("'", "''")
        row = conn.execute(
            f"SELECT 42::int4, '{UNICODE}'::text, NULL::text, '\\x{BYTEA.hex()}'::bytea, '{lit_big}'::text"
        ).fetchone()
        rep["simple"] = values_report(row)

        # Server-side binding: extended protocol, unnamed statement.
        q = "SELECT %s::int4, %s::text, %s::text, %s::bytea, %s::text"
        params = (42, UNICODE, None, BYTEA, BIG)
        rep["params"] = values_report(conn.execute(q, params).fetchone())

        # Named prepared statement, executed several times.
        runs = []
        for i in range(5):
            row = conn.execute("SELECT %s::int4 * 2, %s::text", (i, UNICODE), prepare=True).fetchone()
            runs.append([row[0], row[1] == UNICODE])
        rep["prepared"] = runs
        rep["prepared_big"] = values_report(conn.execute(q, params, prepare=True).fetchone())

        # Pipeline mode: many statements, one Sync.
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int4 + 1000", (i,)) for i in range(60)]
        rep["pipeline"] = [c.fetchone()[0] for c in curs]

        # Pipeline with an error in the middle.
        err = None
        c1 = c3 = None
        try:
            with conn.pipeline():
                c1 = conn.execute("SELECT 'before'")
                conn.execute("SELECT 1 / %s::int4", (0,))
                c3 = conn.execute("SELECT 'after'")
        except errors.DivisionByZero as e:
            err = e.sqlstate
        first = c1.fetchone()[0]
        aborted = "skipped"
        if c3 is not None:
            try:
                aborted = c3.fetchone()[0]
            except psycopg.Error:
                aborted = "skipped"
        rep["pipeline_error"] = {"sqlstate": err, "first": first, "after": aborted}
        rep["recovered"] = conn.execute("SELECT 'recovered', %s::int4", (7,)).fetchone()
        rep["tx_status"] = conn.info.transaction_status.name

        # Pipeline with several syncs, an error in the second segment only.
        seg = {}
        try:
            with conn.pipeline() as p:
                a = conn.execute("SELECT 1")
                p.sync()
                conn.execute("SELECT * FROM clients_matrix_no_such_table")
                p.sync()
        except errors.UndefinedTable as e:
            seg["sqlstate"] = e.sqlstate
        seg["first"] = a.fetchone()[0]
        seg["then"] = conn.execute("SELECT 'ok'").fetchone()[0]
        rep["pipeline_segments"] = seg

        # Pipeline of prepared statements.
        with conn.pipeline():
            curs = [conn.execute("SELECT %s::int4 * 3", (i,), prepare=True) for i in range(20)]
        rep["pipeline_prepared"] = [c.fetchone()[0] for c in curs]
    return rep


def transaction(port, db):
    """Default (non-autocommit) psycopg: every statement runs inside BEGIN ... COMMIT."""
    rep = {}
    conn = connect(port, db, autocommit=False)
    try:
        rep["value"] = conn.execute("SELECT 41 + %s::int4", (1,)).fetchone()[0]
        conn.commit()
        rep["ok"] = True
    except psycopg.Error as e:
        rep["ok"] = False
        rep["sqlstate"] = e.sqlstate
        rep["error"] = type(e).__name__
        rep["message"] = str(e)
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001
            pass
    return rep


class Hang(Exception):
    pass


def _hang(signum, frame):
    raise Hang()


def ledger_loop(port, db):
    """Autocommit INSERTs into ledger for LEDGER_SECONDS, reconnecting after errors; a statement that
    takes longer than LEDGER_WATCHDOG seconds counts as a hang. Reports acknowledged ids with their time."""
    import os
    import signal
    import time

    seconds = float(os.environ.get("LEDGER_SECONDS", "5"))
    writer = int(os.environ.get("LEDGER_WRITER", "80"))
    watchdog = int(os.environ.get("LEDGER_WATCHDOG", "10"))
    signal.signal(signal.SIGALRM, _hang)
    acked, errors, hangs = [], [], 0
    conn = None
    seq = 0
    end = time.time() + seconds
    while time.time() < end:
        seq += 1
        ident = writer * 1_000_000 + seq
        signal.alarm(watchdog)
        try:
            if conn is None:
                conn = connect(port, db)
            conn.execute("INSERT INTO ledger (id, writer) VALUES (%s, %s)", (ident, writer))
            signal.alarm(0)
            acked.append([ident, time.time() * 1000])
        except Hang:
            hangs += 1
            conn = None
        except psycopg.Error as e:
            signal.alarm(0)
            errors.append(e.sqlstate or type(e).__name__)
            try:
                if conn is not None:
                    conn.close()
            except Exception:  # noqa: BLE001
                pass
            conn = None
        finally:
            signal.alarm(0)
        time.sleep(0.005)
    if conn is not None:
        conn.close()
    return {"acked": acked, "errors": errors, "hangs": hangs}


def cache(port, db):
    """The same reads three times each (text, binary, server-side parameters), a write, the read again."""
    rep = {}
    with connect(port, db) as conn:
        q = "SELECT id, name, note, price, data FROM items WHERE id <= %s ORDER BY id"
        rep["text"] = [[encode(v) for v in r] for _ in range(3) for r in [conn.execute(q, (6,)).fetchall()]]
        with conn.cursor(binary=True) as cur:
            rep["binary"] = [[encode(v) for v in r] for _ in range(3) for r in [cur.execute(q, (6,)).fetchall()]]
        conn.execute("UPDATE items SET name = %s WHERE id = 6", ("psycopg",))
        rep["after_write"] = conn.execute("SELECT name FROM items WHERE id = %s", (6,)).fetchone()[0]
        conn.execute("UPDATE items SET name = 'item 6' WHERE id = 6")
    return rep


SCENARIOS = {"matrix": matrix, "transaction": transaction, "ledger_loop": ledger_loop, "cache": cache}

if __name__ == "__main__":
    scenario, port, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(json.dumps(SCENARIOS[scenario](port, db), default=str))
