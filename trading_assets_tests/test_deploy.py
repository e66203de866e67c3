"""deploy/: the production instance, the user-code image, the workspace and the IAM policy.

The files are read as their tools would read them (the Dockerfile's instructions, the policy's
JSON, Dagster's own loader for dagster.yaml and workspace.yaml), and the instance is run for real:
a throwaway PostgreSQL cluster (initdb/pg_ctl on a free port of 127.0.0.1) holds the runs, events
and ticks, moto's S3 server holds the compute logs, and `dagster asset materialize` and
`dagster-daemon run` talk to both over their sockets. Only the ECS run launcher is swapped for
Dagster's default launcher, since there is no ECS here.

PostgreSQL is a requirement, never a reason to skip: without initdb/pg_ctl these tests fail with
the install command (`.ci/run` installs it).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg2
import pytest
import yaml
from dagster import DagsterEventType

from trading_assets_tests.conftest import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
INSTANCE_YAML = DEPLOY / "dagster.yaml"
WORKSPACE_YAML = DEPLOY / "workspace.yaml"
IAM_POLICY = DEPLOY / "iam-policy.json"
DEPLOY_DOC = PROJECT_ROOT / "docs" / "deploy.md"

CODE_SERVER_PORT = 4000
LOCATION_NAME = "trading_assets"
DEFINITIONS_MODULE = "trading_assets.definitions"
COMPUTE_LOGS_PREFIX = "dagster/compute-logs"
# A password that must survive URL quoting on its way into dagster-postgres' connection string.
PG_USER = "dagster"
PG_PASSWORD = "s3cr:et@/%pw"
PG_INSTALL = "apt-get install -y postgresql"
PG_START_SECONDS = 60
DAEMON_WAIT_SECONDS = 150  # the scheduler fires on the minute: up to ~60 s plus loading the code
CODE_SERVER_WAIT_SECONDS = 120

BIN = Path(sys.executable).parent


def dagster_cli(name: str = "dagster") -> str:
    return str(BIN / name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# The Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD, or fail."""
        text = self.args.split("CMD", 1)[1] if self.keyword == "HEALTHCHECK" else self.args
        value = json.loads(text.strip())
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value


KNOWN_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions as Docker reads them: comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def of(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in instructions if i.keyword == keyword]


def test_dockerfile_instructions_are_known_and_the_base_image_is_pinned():
    instructions = parse_dockerfile(DOCKERFILE)
    unknown = [i.keyword for i in instructions if i.keyword not in KNOWN_INSTRUCTIONS]
    assert not unknown, f"unknown Dockerfile instructions: {unknown}"
    (base,) = of(instructions, "FROM")
    # A full patch version of the Python the project supports, slim, on a named Debian release:
    # never `latest` or a floating `3.11`.
    match = re.fullmatch(
        r"python:(3\.\d+)\.\d+-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", base.args
    )
    assert match, f"base image not pinned to a patch release: {base.args}"
    requires = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"][
        "requires-python"
    ]
    minor = int(match.group(1).split(".")[1])
    low, high = (int(v) for v in re.findall(r"3\.(\d+)", requires))
    assert low <= minor < high, f"{base.args} is outside requires-python {requires}"


def test_dockerfile_copies_only_files_of_the_repository_that_the_context_keeps():
    instructions = parse_dockerfile(DOCKERFILE)
    kept = {
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copies = of(instructions, "COPY")
    assert copies and not of(instructions, "ADD")  # ADD fetches URLs and unpacks archives
    for copy in copies:
        parts = [p for p in shlex.split(copy.args) if not p.startswith("--")]
        sources, _destination = parts[:-1], parts[-1]
        for source in sources:
            assert (PROJECT_ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") in kept, f"COPY {source}: excluded by Dockerfile.dockerignore"
    # The package build needs the file pyproject.toml names as its readme.
    readme = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert any(readme in shlex.split(c.args) for c in copies)


def test_dockerfile_installs_the_project_and_serves_it_unprivileged():
    instructions = parse_dockerfile(DOCKERFILE)
    assert any(re.search(r"\bpip install \.(\s|$)", i.args) for i in of(instructions, "RUN"))
    users = of(instructions, "USER")
    assert users and users[-1].args.split(":")[0] not in ("root", "0")
    # The user is created with a fixed, unprivileged uid.
    assert any(re.search(r"useradd .*--uid (\d{4,})", i.args) for i in of(instructions, "RUN"))
    env = " ".join(i.args for i in of(instructions, "ENV"))
    assert "TRADING_ASSETS_DEPLOYMENT=prod" in env
    home = re.search(r"DAGSTER_HOME=(\S+)", env).group(1)
    assert any(
        "deploy/dagster.yaml" in c.args and c.args.rstrip("/").endswith(home)
        for c in of(instructions, "COPY")
    )
    # ECS run tasks replace the command with `dagster api execute_run ...`: an ENTRYPOINT would
    # turn that into arguments of the code server.
    assert not of(instructions, "ENTRYPOINT")
    cmd = of(instructions, "CMD")[-1].exec_form()
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-m") + 1] == DEFINITIONS_MODULE
    assert cmd[cmd.index("-p") + 1] == str(CODE_SERVER_PORT)
    assert (
        cmd[cmd.index("-h") + 1] == "0.0.0.0"
    )  # reachable from the webserver's and daemon's tasks
    assert cmd[cmd.index("--location-name") + 1] == LOCATION_NAME
    assert str(CODE_SERVER_PORT) in of(instructions, "EXPOSE")[-1].args.split()
    health = of(instructions, "HEALTHCHECK")[-1].exec_form()
    assert health[:3] == ["dagster", "api", "grpc-health-check"]
    assert health[health.index("-p") + 1] == str(CODE_SERVER_PORT)


def _on_port(argv: list[str], host: str | None, port: int) -> list[str]:
    argv = list(argv)
    argv[argv.index("-p") + 1] = str(port)
    if host is not None and "-h" in argv:
        argv[argv.index("-h") + 1] = host
    return [dagster_cli(argv[0]), *argv[1:]]


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process group started with start_new_session (the process and its children)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.slow
def test_the_image_command_serves_the_code_location_the_workspace_names(tmp_path):
    """The Dockerfile's CMD, HEALTHCHECK and deploy/workspace.yaml, run as written (on a free port
    instead of 4000): the code server answers its health check and the workspace loads the
    project's jobs from it over gRPC."""
    instructions = parse_dockerfile(DOCKERFILE)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TRADING_ASSETS_DEPLOYMENT"}
    # TRADING_ASSETS_DEPLOYMENT=prod (the image's default) needs the S3 IO manager's settings;
    # the local deployment loads the same assets, jobs, schedules and sensors.
    env["TRADING_ASSETS_DUCKDB_PATH"] = str(tmp_path / "trading_assets.duckdb")
    log = tmp_path / "code_server.log"
    server = subprocess.Popen(
        _on_port(of(instructions, "CMD")[-1].exec_form(), "127.0.0.1", port),
        env=env,
        cwd=tmp_path,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        health = _on_port(of(instructions, "HEALTHCHECK")[-1].exec_form(), None, port)
        deadline = time.monotonic() + CODE_SERVER_WAIT_SECONDS
        while True:
            assert server.poll() is None, f"code server exited: {log.read_text()[-3000:]}"
            check = subprocess.run(health, env=env, capture_output=True, text=True)
            if check.returncode == 0:
                break
            assert time.monotonic() < deadline, (
                f"no health within the wait: {log.read_text()[-3000:]}"
            )
            time.sleep(1)
        workspace = yaml.safe_load(WORKSPACE_YAML.read_text())
        (entry,) = workspace["load_from"]
        assert entry["grpc_server"]["port"] == CODE_SERVER_PORT
        assert entry["grpc_server"]["location_name"] == LOCATION_NAME
        host_var = entry["grpc_server"]["host"]["env"]
        entry["grpc_server"]["port"] = port
        local_workspace = tmp_path / "workspace.yaml"
        local_workspace.write_text(yaml.safe_dump(workspace))
        listed = subprocess.run(
            [dagster_cli(), "job", "list", "-w", str(local_workspace)],
            env={**env, host_var: "127.0.0.1"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr[-3000:]
        for job in ("main_job", "portfolio_job", "ingest_job", "weekly_environment_job"):
            assert f"Job: {job}" in listed.stdout, listed.stdout
    finally:
        _kill_group(server)


# ---------------------------------------------------------------------------------------------
# The IAM policy

PLACEHOLDERS = {
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-west-1",
    "BUCKET": "trading-assets-prod",
    "DATA_PREFIX": "trading_assets",
    "COMPUTE_LOGS_PREFIX": COMPUTE_LOGS_PREFIX,
    "ALERTS_TOPIC": "trading-assets-alerts",
    "SES_IDENTITY": "alerts@example.com",
    "SECRET_NAME": "trading-assets/prod",
}
# Every action the project's processes call, and on what: nothing else is granted.
EXPECTED_GRANTS = {
    "s3:ListBucket": {"arn:aws:s3:::trading-assets-prod"},
    **{
        action: {
            "arn:aws:s3:::trading-assets-prod/trading_assets/*",
            f"arn:aws:s3:::trading-assets-prod/{COMPUTE_LOGS_PREFIX}/*",
        }
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")
    },
    "sns:Publish": {"arn:aws:sns:eu-west-1:123456789012:trading-assets-alerts"},
    "ses:SendEmail": {"arn:aws:ses:eu-west-1:123456789012:identity/alerts@example.com"},
    "secretsmanager:GetSecretValue": {
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:trading-assets/prod-??????"
    },
}


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def test_iam_policy_grants_only_the_needed_actions_on_scoped_resources():
    text = IAM_POLICY.read_text()
    policy = json.loads(text)
    assert policy["Version"] == "2012-10-17"
    # Only the documented placeholders, so nothing is taken for an IAM policy variable.
    assert set(re.findall(r"\$\{([^}]*)\}", text)) == set(PLACEHOLDERS)
    filled = json.loads(re.sub(r"\$\{(\w+)\}", lambda m: PLACEHOLDERS[m.group(1)], text))
    grants: dict[str, set[str]] = {}
    for statement in filled["Statement"]:
        assert statement["Effect"] == "Allow"
        assert not {"NotAction", "NotResource", "Principal"} & set(statement), statement
        for action in _listed(statement["Action"]):
            assert "*" not in action, f"wildcard action {action}"
            for resource in _listed(statement["Resource"]):
                assert resource != "*" and resource.startswith("arn:aws:"), resource
                grants.setdefault(action, set()).add(resource)
    assert grants == EXPECTED_GRANTS
    # Listing the bucket is limited to the two prefixes.
    (listing,) = [s for s in filled["Statement"] if s["Action"] == "s3:ListBucket"]
    prefixes = listing["Condition"]["StringLike"]["s3:prefix"]
    assert {p.split("/")[0] for p in prefixes} == {"trading_assets", "dagster"}
    assert all(p.startswith(("trading_assets", COMPUTE_LOGS_PREFIX)) for p in prefixes)


# ---------------------------------------------------------------------------------------------
# The production instance's configuration

PROD_ENV = {
    "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": PG_PASSWORD,
    "DAGSTER_PG_HOST": "db.internal",
    "DAGSTER_PG_DB": "dagster",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_COMPUTE_LOGS_BUCKET": "trading-assets-prod",
    "DAGSTER_COMPUTE_LOGS_PREFIX": COMPUTE_LOGS_PREFIX,
    "DAGSTER_RUN_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/trading-assets-run",
    "DAGSTER_RUN_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/trading-assets-execution",
    "DAGSTER_RUN_LOG_GROUP": "/ecs/trading-assets-runs",
    "DAGSTER_PG_PASSWORD_SECRET_ARN": (
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:trading-assets/prod-AbCdEf"
    ),
}


def env_names(node: object) -> set[str]:
    """Every variable named by an {env: NAME} in a loaded YAML tree."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            return {node["env"]}
        return set().union(*(env_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(env_names(v) for v in node))
    return set()


def test_production_instance_config_loads_with_the_documented_variables(
    tmp_path, aws_env, monkeypatch
):
    """Dagster's own loader accepts deploy/dagster.yaml and builds every class it names from the
    documented variables (the ECS launcher too: it calls no AWS API until a run is launched), no
    S3 endpoint variable is required, and each ECS run task receives what loading the instance
    needs there."""
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_aws.ecs import EcsRunLauncher
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_postgres import DagsterPostgresStorage

    config = yaml.safe_load(INSTANCE_YAML.read_text())
    assert env_names(config) == set(PROD_ENV)
    documented = DEPLOY_DOC.read_text()
    needed = set(PROD_ENV) | env_names(yaml.safe_load(WORKSPACE_YAML.read_text()))
    assert not [n for n in needed if n not in documented], "variables missing from docs/deploy.md"
    assert "endpoint_url" not in config["compute_logs"]["config"]
    assert config["run_monitoring"]["enabled"] is True

    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)
    shutil.copy(INSTANCE_YAML, tmp_path / "dagster.yaml")
    ref = InstanceRef.from_dir(str(tmp_path))
    assert ref.storage_data.class_name == "DagsterPostgresStorage"
    postgres = yaml.safe_load(ref.storage_data.config_yaml)["postgres_db"]
    assert postgres["scheme"] == "postgresql+psycopg2"
    assert all(
        isinstance(postgres[k], dict)
        for k in ("username", "password", "hostname", "db_name", "port")
    )

    logs = ref.compute_logs_data.rehydrate(S3ComputeLogManager)
    assert isinstance(logs, S3ComputeLogManager)
    assert logs._s3_session.meta.endpoint_url == aws_env  # boto3's own AWS_ENDPOINT_URL
    coordinator = ref.run_coordinator_data.rehydrate(QueuedRunCoordinator)
    limits = {
        limit["key"]: limit for limit in coordinator.get_run_queue_config().tag_concurrency_limits
    }
    assert limits["trading_assets/writer"] == {
        "key": "trading_assets/writer", "value": {"applyLimitPerUniqueValue": True}, "limit": 1
    }  # fmt: skip
    assert limits["dagster/backfill"]["limit"] == 1

    launcher = ref.run_launcher_data.rehydrate(EcsRunLauncher)
    assert isinstance(launcher, EcsRunLauncher)
    assert launcher.secrets_tags == []  # no secretsmanager:ListSecrets
    storage_and_logs = env_names(config["storage"]) | env_names(config["compute_logs"])
    reaches_run_task = set(launcher.env_vars) | {s["name"] for s in launcher.secrets}
    assert storage_and_logs <= reaches_run_task, storage_and_logs - reaches_run_task

    # Without the variables of one section the instance refuses to load rather than guessing.
    monkeypatch.delenv("DAGSTER_PG_HOST")
    with pytest.raises(Exception, match="DAGSTER_PG_HOST"):
        ref.storage_data.rehydrate(DagsterPostgresStorage)


# ---------------------------------------------------------------------------------------------
# A real PostgreSQL


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    password: str

    def connect(self, dbname: str = "postgres"):
        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=dbname
        )

    def create_database(self, name: str) -> str:
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return name


def postgres_binary(name: str) -> str | None:
    """initdb/pg_ctl from PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(re.search(r"/postgresql/(\d+)/", p).group(1)),
    )
    return candidates[-1] if candidates else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A throwaway PostgreSQL cluster on a free port of 127.0.0.1, stopped at the end."""
    initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.fail(
            f"PostgreSQL's server programs (initdb, pg_ctl) are missing: install them with "
            f"`{PG_INSTALL}` (.ci/run does)",
            pytrace=False,
        )
    as_owner: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail(f"running as root and no `postgres` user: `{PG_INSTALL}` creates it")
        as_owner = ["runuser", "-u", "postgres", "--"]
    # Not under pytest's tmp_path: its parents are private to this user, and the cluster's owner
    # must reach its own directory.
    base = Path(tempfile.mkdtemp(prefix="trading-assets-pg-"))
    data, log, pwfile = base / "data", base / "postgres.log", base / "pwfile"
    pwfile.write_text(PG_PASSWORD + "\n")
    if owner is not None:
        for path in (base, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    started = False
    try:
        subprocess.run(
            [*as_owner, initdb, "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        started = True
        start = subprocess.run(
            [*as_owner, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", str(PG_START_SECONDS),
             "-o", f"-F -h 127.0.0.1 -p {port} -k {base}", "start"],
            capture_output=True, text=True,
        )  # fmt: skip
        if start.returncode != 0:
            pytest.fail(f"pg_ctl start failed: {start.stdout}{start.stderr}{_tail(log)}")
        yield Postgres("127.0.0.1", port, PG_USER, PG_PASSWORD)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"{exc.cmd[len(as_owner)]} failed: {exc.stdout}{exc.stderr}")
    finally:
        if started:
            subprocess.run(
                [*as_owner, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
            )
        shutil.rmtree(base, ignore_errors=True)


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


@dataclass(frozen=True)
class ProdInstance:
    home: Path
    env: dict[str, str]
    database: str
    bucket: str


def prod_instance(tmp_path: Path, postgres: Postgres, name: str) -> ProdInstance:
    """DAGSTER_HOME with deploy/dagster.yaml, on a new database of the cluster and a new bucket
    of moto's S3. Two changes, both forced by this machine: the ECS launcher becomes Dagster's
    default launcher (no ECS here), and the compute logs are staged in the test's own directory.
    The QueuedRunCoordinator stays: the daemon test's scheduled run goes through its queue
    (`dagster asset materialize` executes in its own process and never consults it)."""
    config = yaml.safe_load(INSTANCE_YAML.read_text())
    assert config["run_launcher"]["class"] == "EcsRunLauncher"
    config["run_launcher"] = {"module": "dagster.core.launcher", "class": "DefaultRunLauncher"}
    config["compute_logs"]["config"]["local_dir"] = str(tmp_path / "compute_logs")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    bucket = name.replace("_", "-")
    boto3.client("s3").create_bucket(Bucket=bucket)
    database = postgres.create_database(name)
    env = {k: v for k, v in os.environ.items() if k != "TRADING_ASSETS_DEPLOYMENT"}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_PG_USERNAME=postgres.user,
        DAGSTER_PG_PASSWORD=postgres.password,
        DAGSTER_PG_HOST=postgres.host,
        DAGSTER_PG_PORT=str(postgres.port),
        DAGSTER_PG_DB=database,
        DAGSTER_COMPUTE_LOGS_BUCKET=bucket,
        DAGSTER_COMPUTE_LOGS_PREFIX=COMPUTE_LOGS_PREFIX,
        # The local deployment: DuckDB in the test's directory (the instance is what is tested).
        TRADING_ASSETS_DUCKDB_PATH=str(tmp_path / "trading_assets.duckdb"),
        TRADING_ASSETS_REPORTS_DIR=str(tmp_path / "reports"),
    )
    return ProdInstance(home, env, database, bucket)


def query(postgres: Postgres, database: str, sql: str, *params) -> list[tuple]:
    conn = postgres.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def compute_log_objects(bucket: str, run_id: str) -> dict[str, bytes]:
    """The run's compute-log files in the bucket: {key: content}."""
    s3 = boto3.client("s3")
    prefix = f"{COMPUTE_LOGS_PREFIX}/storage/{run_id}/"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def assert_complete_compute_logs(bucket: str, run_id: str, step_output: str) -> None:
    objects = compute_log_objects(bucket, run_id)
    complete = {k for k in objects if not k.endswith(".partial")}
    assert {Path(k).suffix for k in complete} == {".out", ".err"}, sorted(objects)
    captured = b"".join(objects[k] for k in complete).decode()
    assert step_output in captured, captured[-2000:]


@pytest.mark.slow
def test_materialisation_is_recorded_in_postgres_with_its_compute_logs_in_s3(
    tmp_path, aws_env, postgres
):
    instance = prod_instance(tmp_path, postgres, "materialise_symbols")
    run = subprocess.run(
        [dagster_cli(), "asset", "materialize", "-m", DEFINITIONS_MODULE, "--select", "symbols"],
        env=instance.env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]

    runs = query(postgres, instance.database, "SELECT run_id, status FROM runs")
    assert len(runs) == 1 and runs[0][1] == "SUCCESS", runs
    run_id = runs[0][0]
    events = query(
        postgres,
        instance.database,
        "SELECT dagster_event_type, step_key, asset_key FROM event_logs WHERE run_id = %s",
        run_id,
    )
    kinds = {kind for kind, _, _ in events}
    expected = {
        DagsterEventType.RUN_START, DagsterEventType.STEP_START,
        DagsterEventType.STEP_SUCCESS, DagsterEventType.RUN_SUCCESS,
    }  # fmt: skip
    assert {e.value for e in expected} <= kinds, (
        kinds
    )  # stored by value: RUN_START is PIPELINE_START
    materialised = {
        asset for kind, _, asset in events if kind == DagsterEventType.ASSET_MATERIALIZATION.value
    }
    assert materialised == {'["symbols"]'}, events
    # The asset index of the event log (what the UI's asset page reads) knows it too.
    assert query(
        postgres,
        instance.database,
        "SELECT count(*) FROM asset_keys WHERE asset_key = %s",
        '["symbols"]',
    ) == [(1,)]
    # The step's stdout/stderr, complete, in the bucket under the compute-log prefix: the
    # S3ComputeLogManager uploads them when the step's capture ends.
    assert_complete_compute_logs(instance.bucket, run_id, 'Started execution of step "symbols"')


TICK_LOCATION = '''
"""A test-only code location: a schedule that fires every minute and a job that prints."""
import dagster as dg

TICK_OUTPUT = "deploy test: scheduled run executed"


@dg.op
def say_tick():
    print(TICK_OUTPUT)


@dg.job(tags={"trading_assets/writer": "deploy_test"})
def tick_job():
    say_tick()


@dg.schedule(
    name="every_minute",
    cron_schedule="* * * * *",
    job=tick_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def every_minute(context):
    return dg.RunRequest(run_key=context.scheduled_execution_time.isoformat())


defs = dg.Definitions(jobs=[tick_job], schedules=[every_minute])
'''
PROJECT_SENSORS = ("dead_runs", "portfolio_after_daily")


def query_once_created(postgres: Postgres, database: str, sql: str, *params) -> list[tuple]:
    """``query``, or no rows while the daemon has not yet created Dagster's tables."""
    try:
        return query(postgres, database, sql, *params)
    except psycopg2.errors.UndefinedTable:
        return []


def ticks(postgres: Postgres, database: str) -> list[dict]:
    """Every tick in job_ticks as {type, status, name, run_ids} (the body is Dagster's TickData)."""
    from dagster._core.scheduler.instigation import TickData
    from dagster._serdes import deserialize_value

    rows = query_once_created(postgres, database, "SELECT type, status, tick_body FROM job_ticks")
    found = []
    for kind, status, body in rows:
        data = deserialize_value(body, TickData)
        found.append(
            {"type": kind, "status": status, "name": data.instigator_name, "run_ids": data.run_ids}
        )
    return found


@pytest.mark.slow
def test_daemon_records_schedule_and_sensor_ticks_and_runs_the_queue_in_postgres(
    tmp_path, aws_env, postgres
):
    """`dagster-daemon run` on the production instance: the project's sensors (RUNNING by default)
    tick, a test-only every-minute schedule ticks, and its run goes through the
    QueuedRunCoordinator's queue to SUCCESS, all recorded in PostgreSQL, its step's logs in S3."""
    instance = prod_instance(tmp_path, postgres, "daemon_ticks")
    (tmp_path / "tick_location.py").write_text(TICK_LOCATION)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"python_module": {"module_name": DEFINITIONS_MODULE, "location_name": LOCATION_NAME}},
                    {"python_file": {"relative_path": "tick_location.py", "location_name": "deploy_test"}},
                ]
            }
        )
    )  # fmt: skip
    log = tmp_path / "daemon.log"
    # Its own process group: the daemon and the code servers and run workers it starts are
    # killed together at the end (dagster-daemon does not always stop on SIGTERM).
    daemon = subprocess.Popen(
        [dagster_cli("dagster-daemon"), "run", "-w", str(workspace)],
        env=instance.env,
        cwd=tmp_path,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + DAEMON_WAIT_SECONDS
        while True:
            assert daemon.poll() is None, f"dagster-daemon exited: {_tail(log)}"
            seen = ticks(postgres, instance.database)
            sensors = {t["name"] for t in seen if t["type"] == "SENSOR"}
            scheduled = [t for t in seen if t["type"] == "SCHEDULE" and t["name"] == "every_minute"]
            runs = query_once_created(
                postgres,
                instance.database,
                "SELECT run_id, status FROM runs WHERE pipeline_name = 'tick_job'",
            )
            if (
                set(PROJECT_SENSORS) <= sensors
                and any(t["status"] == "SUCCESS" for t in scheduled)
                and any(status in ("SUCCESS", "FAILURE") for _, status in runs)
            ):
                break
            assert time.monotonic() < deadline, (
                f"after {DAEMON_WAIT_SECONDS} s: ticks {seen}, runs {runs}; daemon: {_tail(log)}"
            )
            time.sleep(1)
    finally:
        _kill_group(daemon)

    finished = [(run_id, status) for run_id, status in runs if status in ("SUCCESS", "FAILURE")]
    run_id, status = finished[0]
    assert status == "SUCCESS", query(
        postgres,
        instance.database,
        "SELECT dagster_event_type, event FROM event_logs WHERE run_id = %s ORDER BY id",
        run_id,
    )
    kinds = [
        kind
        for (kind,) in query(
            postgres,
            instance.database,
            "SELECT dagster_event_type FROM event_logs WHERE run_id = %s ORDER BY id",
            run_id,
        )
    ]
    # Queued, then launched by the daemon's queue (RUN_STARTING), then run by its worker: the
    # QueuedRunCoordinator's path, not an immediate launch.
    path = (
        DagsterEventType.RUN_ENQUEUED, DagsterEventType.RUN_STARTING,
        DagsterEventType.RUN_START, DagsterEventType.RUN_SUCCESS,
    )  # fmt: skip
    assert [kind for kind in kinds if kind in {e.value for e in path}] == [e.value for e in path]
    # The schedule's tick names the run it requested.
    assert any(run_id in t["run_ids"] for t in scheduled), scheduled
    assert_complete_compute_logs(instance.bucket, run_id, "deploy test: scheduled run executed")
