"""Where a sweep's study lives, which folder holds its trials, and the lock its workers take turns under.

One machine: the study is a journal file in the sweep folder, and workers take turns through a `flock` on
`SWEEP/.lock`. Several machines: the study is in a database (`--storage postgresql://...`), and workers take
turns through a lock in that database (PostgreSQL's `pg_advisory_xact_lock`), which every machine sees and
which the server releases when its holder's connection ends (a worker killed in mid-turn frees it at once).

The trial folders live in the sweep folder, which every worker must reach (a shared filesystem), so that a
trial retried on another machine resumes from the checkpoint its first worker wrote. The study records the
folder it was started in and an id that `SWEEP/study.json` repeats: a worker whose sweep folder does not
hold that id (a local folder, another sweep of the same name) is refused before it trains anything, and a
worker given no `--sweeps-dir` uses the study's own folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
import uuid
from pathlib import Path

from slovo.errors import SlovoError
from slovo.utils import atomic_write_json, read_json_dict

STORAGE_FILE = "optuna.journal"
STUDY_FILE = "study.json"  # {"study", "id", "storage", "created_on", "created"}: which study the folder holds
CONNECT_TIMEOUT_S = 10  # a database that does not answer is an error after this, not a hang
# The server ends a lock holder's session after this long idle in its transaction (a machine that vanished
# while holding the lock): longer than any turn takes, short enough that the sweep goes on without it.
LOCK_IDLE_TIMEOUT_S = 300
_POSTGRES_DRIVERS = (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2"))
_POSTGRES_HINT = "pip install 'slovo-lm[postgres]'"


def import_optuna():
    """optuna, imported when a sweep needs it and told to stay quiet."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # slovo prints its own one line per trial
    return optuna


STORAGE_ENV = "SLOVO_STORAGE"  # the storage URL when --storage is not given; how spawned workers receive it


def storage_url(arg: str | None) -> str | None:
    """--storage, else $SLOVO_STORAGE. A URL with no password in it leaves the password to libpq (PGPASSWORD,
    ~/.pgpass), so the password need be on no command line: one there is seen by `ps` and recorded by shells."""
    return arg or os.environ.get(STORAGE_ENV) or None


def is_database_url(url: str | None) -> bool:
    return bool(url) and "://" in url


def shown_url(url: str) -> str:
    """The URL with its password masked, for messages and study.json: SQLAlchemy renders it, so a password in
    any encoding (`p%40ss`) is masked. A URL it cannot parse is shown as its scheme only."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy can parse (or no SQLAlchemy): the error says so
        return url.split("://", 1)[0] + "://..."


def _without_password(text: str, url) -> str:
    """`text` (a driver's error message) with the URL's password masked, in the forms a message could hold."""
    from urllib.parse import quote

    password = url.password
    if password:
        for form in {str(password), quote(str(password), safe="")}:
            text = text.replace(form, "***")
    return text


def _database_url(url: str):
    """The SQLAlchemy URL for --storage. A bare `postgresql://` gets the driver that is installed, psycopg 3
    (the `postgres` extra) first: SQLAlchemy 2.0 would take it as psycopg2, 2.1 as psycopg 3."""
    import importlib.util

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - sqlalchemy.exc.ArgumentError and friends
        raise SlovoError(f"--storage {shown_url(url)}: not a database URL that SQLAlchemy can parse") from None
    if parsed.drivername in ("postgresql", "postgres"):
        for module, drivername in _POSTGRES_DRIVERS:
            if importlib.util.find_spec(module) is not None:
                return parsed.set(drivername=drivername)
        raise SlovoError(f"--storage {shown_url(url)}: needs the PostgreSQL driver psycopg; {_POSTGRES_HINT}")
    return parsed


def open_storage(url: str | None, sweep_dir: Path | None):
    """The study's storage: a journal file in the sweep folder, or a database URL (postgresql://, sqlite:///)."""
    optuna = import_optuna()
    if is_database_url(url):
        parsed = _database_url(url)
        engine_kwargs: dict = {"pool_pre_ping": True}  # a trial takes hours; the server may drop idle connections
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        try:
            return _rdb_storage(parsed.render_as_string(hide_password=False), engine_kwargs)
        except ImportError as e:
            missing = getattr(e.__cause__, "name", None) or str(e.__cause__ or e)
            if parsed.drivername == "postgresql+psycopg2":
                hint = f"pip install psycopg2-binary, or use postgresql:// after {_POSTGRES_HINT}"
            elif parsed.get_backend_name() == "postgresql":
                hint = _POSTGRES_HINT
            else:
                hint = f"install the Python package that provides {missing}"
            raise SlovoError(f"--storage {shown_url(url)}: needs the database driver {missing}; {hint}") from None
        except Exception as e:  # noqa: BLE001 - any connection problem is the user's to fix
            reason = " ".join(str(getattr(e, "orig", None) or e).split())  # one line, without SQLAlchemy's links
            reason = _without_password(reason, parsed)
            raise SlovoError(
                f"--storage {shown_url(url)}: cannot open the database ({type(e).__name__}: {reason[:300]})"
            ) from None
    from optuna.storages.journal import JournalFileBackend

    path = Path(url) if url else sweep_dir / STORAGE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _rdb_storage(url: str, engine_kwargs: dict, tries: int = 5):
    """Optuna's RDBStorage. Machines starting a sweep at once on an empty database race to create Optuna's
    tables (one gets "already exists"); whoever loses tries again and finds them made."""
    import sqlalchemy.exc

    optuna = import_optuna()
    for attempt in range(tries):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=dict(engine_kwargs))
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == tries - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def _engine(storage):
    """The SQLAlchemy engine of a database storage, or None for a journal file."""
    return getattr(storage, "engine", None)


def _lock_key(name: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks, the same on every machine for one sweep."""
    digest = hashlib.blake2b(f"slovo-sweep:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextlib.contextmanager
def sweep_lock(storage, sweep_dir: Path, name: str):
    """Workers take turns choosing trials, so the run cap and the grid are never overrun and a lost trial is
    retried once. In the database when the study is in PostgreSQL (every machine sees it), else a flock on
    SWEEP/.lock (one machine: the journal file, SQLite)."""
    engine = _engine(storage)
    if engine is not None and engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.begin() as conn:  # the lock ends with this transaction, or with the connection if we die
            conn.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = '{LOCK_IDLE_TIMEOUT_S}s'"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(name)})
            yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: journal writes are still locked by Optuna; only the choice may race
        yield
        return
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# the study's sweep folder


def study_folder(study) -> str | None:
    """The sweep folder the study was started in (absolute path on the machine that started it)."""
    return study.user_attrs.get("slovo_sweep_dir")


def find_sweep_dir(study, sweeps_dir: str | Path | None, name: str) -> Path:
    """This worker's path to the study's sweep folder: SWEEPS_DIR/NAME when --sweeps-dir is given, else the
    folder the study records when this machine reaches it (the same mount point), else sweeps/NAME."""
    if sweeps_dir is not None:
        return Path(sweeps_dir) / name
    recorded = study_folder(study)
    if recorded and read_json_dict(Path(recorded) / STUDY_FILE).get("id") == study.user_attrs.get("slovo_sweep_id"):
        return Path(recorded)
    return Path("sweeps") / name


def bind_sweep_folder(study, sweep_dir: Path, storage_url: str | None) -> None:
    """Tie the study to its sweep folder on first use; afterwards refuse a folder that is not the study's.

    Call under `sweep_lock`, so two machines starting the same sweep at once agree on one id."""
    study_id = study.user_attrs.get("slovo_sweep_id")
    marker = read_json_dict(sweep_dir / STUDY_FILE)
    if study_id is None:
        if marker.get("id"):
            raise SlovoError(
                f"{sweep_dir}: holds the trials of another study ({marker.get('storage')}); "
                f"give this sweep a new --name or another --sweeps-dir"
            )
        study_id = uuid.uuid4().hex
        sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            sweep_dir / STUDY_FILE,
            {
                "study": study.study_name,
                "id": study_id,
                "storage": shown_url(storage_url) if is_database_url(storage_url) else STORAGE_FILE,
                "created_on": socket.gethostname(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        study.set_user_attr("slovo_sweep_dir", str(sweep_dir.resolve()))
        study.set_user_attr("slovo_sweep_id", study_id)
        return
    check_sweep_folder(study, sweep_dir)


def check_sweep_folder(study, sweep_dir: Path) -> None:
    """A one-line error unless `sweep_dir` is the folder holding this study's trials."""
    study_id = study.user_attrs.get("slovo_sweep_id")
    if study_id is None or read_json_dict(sweep_dir / STUDY_FILE).get("id") == study_id:
        return
    raise SlovoError(
        f"{sweep_dir}: not the sweep folder of study {study.study_name!r}, whose trials are in "
        f"{study_folder(study)} on the machine that started it; every worker needs that folder (a shared "
        f"filesystem) so a retried trial finds its checkpoint: give --sweeps-dir the folder holding "
        f"{study.study_name!r} as this machine mounts it"
    )


def worker_name() -> str:
    """host:pid, how trials name the worker that runs them."""
    return f"{socket.gethostname()}:{os.getpid()}"
