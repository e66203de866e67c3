"""Crash safety with real processes, real signals, real filesystems (issue 7).

kill -9 at any moment of a large write loses nothing and duplicates nothing. ``crash_writer``
runs a Dagster range backfill of 2.28 M price rows through DuckDBIOManager over a file that already
holds one quarter (225,000 rows, an older version of the same keys), and the test SIGKILLs it at
many moments: from the moment the frame reaches the IO manager to after COMMIT (spread over the
writer's measured write time), and at fixed delays after DuckDB's write-ahead log appears (the
commit itself; duckdb 1.5.5/1.5.6 duplicated every replaced key when killed there). After each kill:

- the file opens through the IO manager (which verifies keys when a ``.wal`` was left);
- it holds exactly the old rows or exactly the new rows;
- no (symbol, date) occurs twice and no ``.unverified`` marker is left;
- a re-run of the same backfill completes and stores exactly the new rows.

Then: duplicates a crash did leave are a loud error until ``trading-assets repair-duckdb``; a run
killed while holding the file lock never blocks the next run, which says at INFO that it waits;
killed runs are marked failed by the ``dead_runs`` sensor and by ``trading-assets dead-runs``; a
full disk and a read-only path fail the write by name and keep the stored rows.
"""

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from trading_assets.cli import instance_yaml
from trading_assets.runs import dead_runs_sensor
from trading_assets.storage.contract import StoredDuplicatesError
from trading_assets.storage.duckdb_integrity import find_duplicates, marker_path, wal_path
from trading_assets.storage.duckdb_io import DuckDBIOManager
from trading_assets_tests import crash_writer

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
OLD = (1, "2002-01-01", "2002-03-31")  # version, first day, last day
NEW = (2, "2000-01-01", "2002-06-30")
# Fractions of the measured write (frame handed over .. run finished) at which to kill.
SPREAD = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# Seconds after the .wal file appears (COMMIT writing the log, then the checkpoint).
AFTER_WAL = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05)


def writer_command(db: Path, version: int, first: str, last: str) -> list[str]:
    module = "trading_assets_tests.crash_writer"
    return [sys.executable, "-m", module, str(db), str(version), first, last]


def start_writer(
    db: Path, version: int, first: str, last: str, env: dict | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        writer_command(db, version, first, last),
        cwd=PROJECT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen, expected: str) -> list[str]:
    """Read the writer's lines up to ``expected``; returns the lines before it."""
    before: list[str] = []
    while (line := proc.stdout.readline().strip()) != expected:
        assert line, f"writer ended (exit {proc.poll()}) before saying {expected!r}: {before}"
        before.append(line)
    return before


def signature(db: Path) -> tuple:
    """(rows, distinct keys, versions, sum of close): read through the IO manager, which runs the
    unclean-shutdown check first."""
    frame = DuckDBIOManager(database=str(db)).read_rows(
        "raw_prices", columns=["symbol", "date", "close", "version"]
    )
    keys = frame[["symbol", "date"]].drop_duplicates()
    return (
        len(frame),
        len(keys),
        tuple(sorted(set(frame["version"]))),
        float(frame["close"].sum()),
    )


def expected_signature(version: int, first: str, last: str) -> tuple:
    frame = crash_writer.prices(version, first, last)
    return (len(frame), len(frame), (version,), float(frame["close"].sum()))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, float]:
    """A file holding OLD, and the writer's measured write time (frame handed over .. exit)."""
    base = tmp_path_factory.mktemp("crash")
    db = base / "pristine.duckdb"
    assert crash_writer.write(str(db), *OLD).success
    probe = base / "probe.duckdb"
    shutil.copy(db, probe)
    writer = start_writer(probe, *NEW)
    wait_for_line(writer, "WRITING")
    started = time.perf_counter()
    wait_for_line(writer, "DONE")
    writer.wait(timeout=120)
    return db, time.perf_counter() - started


def kill_and_check(pristine_db: Path, work: Path, name: str, kill_when) -> str:
    db = work / f"{name}.duckdb"
    shutil.copy(pristine_db, db)
    writer = start_writer(db, *NEW)
    try:
        wait_for_line(writer, "WRITING")
        kill_when(db, writer)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait(timeout=120)  # reaped: the pid is gone, the OS has freed the file lock
    left_wal = wal_path(db).exists()

    old, new = expected_signature(*OLD), expected_signature(*NEW)
    found = signature(db)
    assert found in (old, new), f"{name}: neither the old nor the new rows: {found}"
    with duckdb.connect(str(db), read_only=True) as con:
        assert find_duplicates(con) == []
        (dupes,) = con.execute(
            "SELECT count(*) FROM (SELECT 1 FROM raw_prices GROUP BY symbol, date HAVING count(*) > 1)"
        ).fetchone()
    assert dupes == 0
    assert not marker_path(db).exists()

    assert crash_writer.write(str(db), *NEW).success  # a re-run completes...
    assert signature(db) == new  # ...and stores exactly the new rows
    outcome = "old" if found == old else "new"
    db.unlink()
    return f"{name}: {'wal ' if left_wal else ''}{outcome}"


def test_sigkill_at_any_moment_of_a_large_write_leaves_old_or_new_rows(pristine, tmp_path):
    pristine_db, write_seconds = pristine
    outcomes: list[str] = []

    for fraction in SPREAD:

        def after_delay(db, writer, delay=fraction * write_seconds):
            time.sleep(delay)

        outcomes.append(
            kill_and_check(
                pristine_db, tmp_path, f"t+{fraction:.1f}x{write_seconds:.1f}s", after_delay
            )
        )

    for delay in AFTER_WAL:

        def after_wal(db, writer, delay=delay):
            wal = wal_path(db)
            deadline = time.monotonic() + 120
            while not wal.exists() and writer.poll() is None and time.monotonic() < deadline:
                time.sleep(0.0005)
            time.sleep(delay)

        outcomes.append(
            kill_and_check(pristine_db, tmp_path, f"wal+{delay * 1000:.0f}ms", after_wal)
        )

    print("\n".join(outcomes))  # the kill points and outcomes (pytest -s shows them)
    # The loop covered both sides of COMMIT: some kills left the old rows, some the new.
    assert any(o.endswith(" old") for o in outcomes) and any(o.endswith(" new") for o in outcomes)


# --- a file that does hold duplicates after a crash: a loud error, then the repair command ------

# Appends copies of stored keys straight through DuckDB (as a replay bug would), commits, and
# dies by SIGKILL before closing: the rows live only in the write-ahead log it leaves.
DUPLICATE_AND_DIE = """
import os, signal, sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("INSERT INTO raw_prices SELECT * FROM raw_prices WHERE date = DATE '2002-01-02'")
con.execute(
    "INSERT INTO raw_prices SELECT symbol, date, close + 0.5, 9 FROM raw_prices "
    "WHERE date = DATE '2002-01-03' AND symbol < 'S010'"
)
os.kill(os.getpid(), signal.SIGKILL)
"""


def stored_count(db: Path) -> tuple[int, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "SELECT count(*), count(DISTINCT (symbol, date)) FROM raw_prices"
        ).fetchall()[0]


def test_duplicates_left_by_a_crash_are_a_loud_error_until_repaired(tmp_path):
    db = tmp_path / "trading.duckdb"
    assert crash_writer.write(str(db), 1, "2002-01-01", "2002-01-04").success
    rows = 4 * crash_writer.SYMBOLS
    died = subprocess.run([sys.executable, "-c", DUPLICATE_AND_DIE, str(db)])
    assert died.returncode == -signal.SIGKILL
    assert wal_path(db).exists()  # the killed process never closed the file

    io = DuckDBIOManager(database=str(db))
    with pytest.raises(StoredDuplicatesError) as raised:
        io.read_rows("raw_prices")
    message = str(raised.value)
    assert "main.raw_prices: 2510 key(s) of ['symbol', 'date'] occur more than once" in message
    assert f"trading-assets repair-duckdb {db}" in message
    assert marker_path(db).exists()
    # A writer is refused as well, and writes nothing; the marker keeps it so on every open.
    result = crash_writer.write(str(db), 2, "2002-01-04", "2002-01-04")
    assert not result.success
    assert stored_count(db) == (rows + crash_writer.SYMBOLS + 10, rows)
    with pytest.raises(StoredDuplicatesError):
        io.read_rows("raw_prices")

    repair = subprocess.run(
        ["trading-assets", "repair-duckdb", str(db)], capture_output=True, text=True, cwd=tmp_path
    )
    assert repair.returncode == 0, repair.stderr
    assert "removed 2500 exact duplicate row(s); deleted 10 key(s) whose copies differed" in (
        repair.stdout
    )
    assert (
        "--select raw_prices --partition-range 2002-01-03...2002-01-03" in repair.stdout
    )  # what to materialise again
    assert not marker_path(db).exists()
    assert stored_count(db) == (rows - 10, rows - 10)  # the 10 undecidable keys are gone
    # The printed re-run restores them.
    assert crash_writer.write(str(db), 1, "2002-01-03", "2002-01-03").success
    assert stored_count(db) == (rows, rows)


# --- a killed run never blocks the next one -----------------------------------------------------


def holds_lock(db: Path) -> bool:
    try:
        duckdb.connect(str(db), read_only=True).close()
    except duckdb.IOException as exc:
        return "Could not set lock" in str(exc)
    return False


def run_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.dagster_event is None]


def test_a_killed_run_holding_the_lock_never_blocks_the_next_run(pristine, tmp_path):
    pristine_db, _ = pristine
    db = tmp_path / "trading.duckdb"
    shutil.copy(pristine_db, db)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home))  # the project's instance config
    env = {**os.environ, "CRASH_WRITER_HOME": str(home)}

    first = start_writer(db, *NEW, env=env)
    (run_line,) = wait_for_line(first, "WRITING")
    killed_run = run_line.split()[1]
    deadline = time.monotonic() + 120
    while not holds_lock(db):  # the IO manager has opened the file and is writing
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    # Frozen mid-write (as a hung writer is, until the OOM killer or an operator kills it), so the
    # second run surely finds the lock held.
    first.send_signal(signal.SIGSTOP)
    second = start_writer(db, 3, OLD[1], OLD[2], env=env)
    (second_line,) = wait_for_line(second, "WRITING")
    second_run = second_line.split()[1]
    waiting = f"waiting for the lock on DuckDB file {db}: PID {first.pid}"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        # The second run says in its own log, at INFO, that it waits and for whom.
        while not any(m.startswith(waiting) for m in run_messages(instance, second_run)):
            assert second.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # killed while holding the lock, mid-write
    first.wait(timeout=30)

    out, _ = second.communicate(timeout=300)  # completes, no manual step
    assert out.strip().splitlines()[-1] == "DONE"
    # The killed write left nothing; the second run's rows replaced the old quarter.
    assert signature(db) == expected_signature(3, OLD[1], OLD[2])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        said = run_messages(instance, second_run)
        assert any(m.startswith(f"got the lock on DuckDB file {db}") for m in said), said
        # The killed run is still STARTED: nothing recorded its end...
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.STARTED
        # ...until the dead_runs sensor (under the daemon) marks it failed, with the reason.
        skip = dead_runs_sensor(dg.build_sensor_context(instance=instance))
        assert skip.skip_message == "marked 1 dead run(s) failed"
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE
        failure = instance.all_logs(killed_run, of_type=dg.DagsterEventType.RUN_FAILURE)
        assert f"process {first.pid} no longer exists" in failure[0].dagster_event.message


def test_trading_assets_marks_a_killed_run_failed_without_a_daemon(tmp_path):
    db = tmp_path / "trading.duckdb"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home))
    writer = start_writer(db, *NEW, env={**os.environ, "CRASH_WRITER_HOME": str(home)})
    (run_line,) = wait_for_line(writer, "WRITING")
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    killed_run = run_line.split()[1]

    cli = subprocess.run(
        ["trading-assets", "dead-runs"],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 0, cli.stderr
    assert (
        f"marked run {killed_run} (__ephemeral_asset_job__) failed: process {writer.pid} no longer exists"
        in cli.stdout
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_by_id(killed_run).status == dg.DagsterRunStatus.FAILURE
    again = subprocess.run(
        ["trading-assets", "dead-runs"],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
    )
    assert again.stdout.strip().endswith("0 dead run(s) marked failed")


# --- a full disk, a read-only path --------------------------------------------------------------


def run_writer(
    db: Path, version: int, first: str, last: str, **popen
) -> subprocess.CompletedProcess:
    return subprocess.run(
        writer_command(db, version, first, last),
        cwd=PROJECT,
        capture_output=True,
        text=True,
        **popen,
    )


def test_a_full_disk_fails_the_write_by_name_and_keeps_the_stored_rows(pristine, tmp_path):
    pristine_db, _ = pristine
    db = tmp_path / "trading.duckdb"
    shutil.copy(pristine_db, db)
    limit = db.stat().st_size + 4 * 2**20  # 4 MiB of room: the 2.28 M-row write needs more

    def no_room():  # the writer's files may not grow past `limit`: writes fail as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = run_writer(db, *NEW, preexec_fn=no_room)
    assert full.stdout.strip().splitlines()[-1] == "FAILED"
    assert (
        f"DatabaseWriteError: asset raw_prices partitions 2000-01-01...2002-06-30: writing DuckDB file {db} failed"
        in full.stderr
    )
    assert "stored rows are unchanged" in full.stderr
    assert signature(db) == expected_signature(*OLD)  # exactly the old rows, no duplicates
    assert crash_writer.write(str(db), *NEW).success  # with room again, the re-run completes
    assert signature(db) == expected_signature(*NEW)


READ_ONLY = (
    "mount --bind {dir} {dir} && mount -o remount,bind,ro {dir} && "
    "{python} -m trading_assets_tests.crash_writer {db} 2 2002-01-01 2002-01-02; "
    "{python} -c 'import sys; from trading_assets.storage.duckdb_io import DuckDBIOManager; "
    'print("READ", len(DuckDBIOManager(database=sys.argv[1]).read_rows("raw_prices")))'
    "' {db}"
)


def test_a_read_only_path_refuses_writes_by_name_and_still_serves_reads(pristine, tmp_path):
    pristine_db, _ = pristine
    folder = tmp_path / "readonly"
    folder.mkdir()
    db = folder / "trading.duckdb"
    shutil.copy(pristine_db, db)
    before = db.read_bytes()
    # A read-only bind mount of the folder, in a user and mount namespace of its own (no root
    # needed, nothing left mounted): the real EROFS a read-only volume gives.
    script = READ_ONLY.format(dir=folder, db=db, python=sys.executable)
    ran = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        cwd=PROJECT,
        capture_output=True,
        text=True,
    )
    lines = ran.stdout.strip().splitlines()
    assert "FAILED" in lines, ran.stdout + ran.stderr[-2000:]
    assert (
        f"DatabaseWriteError: cannot open DuckDB file {db} for writing (a read-only path"
        in ran.stderr
    )
    assert "Read-only file system" in ran.stderr
    assert lines[-1] == f"READ {expected_signature(*OLD)[0]}"  # reads still work
    assert db.read_bytes() == before


# --- the same through the project's own CLI ---------------------------------------------------


def test_trading_assets_main_goes_on_after_the_run_holding_the_lock_is_killed(tmp_path):
    db = tmp_path / "trading.duckdb"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "TRADING_ASSETS_DUCKDB_PATH": str(db),
    }
    main = ["trading-assets", "main", "--select", "symbols,raw_prices"]
    first = subprocess.Popen(main, env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not holds_lock(db):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    first.send_signal(signal.SIGSTOP)  # frozen holding the lock
    second = subprocess.Popen(main, env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    seen: list[str] = []
    while not any("waiting for the lock on DuckDB file" in line for line in seen):
        line = second.stdout.readline()
        assert line, f"the second run ended without waiting: {seen}"
        seen.append(line)
    assert f"PID {first.pid}" in seen[-1]  # the console says whom it waits for
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    rest, _ = second.communicate(timeout=600)
    assert second.returncode == 0, "".join(seen) + rest
    assert "succeeded" in rest and "got the lock on DuckDB file" in rest

    dead = subprocess.run(
        ["trading-assets", "dead-runs"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert f"failed: process {first.pid} no longer exists" in dead.stdout, dead.stdout
    with duckdb.connect(str(db), read_only=True) as con:
        (dupes,) = con.execute(
            "SELECT count(*) FROM (SELECT 1 FROM raw_prices GROUP BY symbol, date HAVING count(*) > 1)"
        ).fetchall()[0]
    assert dupes == 0
