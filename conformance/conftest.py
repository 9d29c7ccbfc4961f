"""Options, fixtures and the runner of the conformance suite.

    python3 -m pytest conformance --url nats://host:4222 [--subject-prefix acme.shop]
    python3 -m pytest conformance --jetsource-bin PATH --nats-server-bin PATH [--subject-prefix acme.shop]

Tests are `async def` functions; each runs in its own `asyncio.run`
(hook below), bounded by TEST_DEADLINE, so no pytest plugin is needed.
"""

import asyncio
import inspect
from pathlib import Path

import pytest

from support.deployment import Deployment
from support.managed import Managed
from support.names import InvalidPrefix, Names
from support.schemas import DEFAULT_DIR, Schemas

# No test may take longer: a hang fails the test instead of the run.
TEST_DEADLINE = 120.0

MANAGED_ONLY = "needs managed mode (--jetsource-bin and --nats-server-bin)"


def pytest_addoption(parser):
    group = parser.getgroup("jetsource", "jetsource wire contract conformance")
    group.addoption("--url", default=None,
                    help="NATS URL of a running jetsource deployment (the reference application)")
    group.addoption("--subject-prefix", default="",
                    help="the deployment's subject prefix (default none)")
    group.addoption("--jetsource-bin", default=None,
                    help="managed mode: the jetsource binary to start (`jetsource run`)")
    group.addoption("--nats-server-bin", default=None,
                    help="managed mode: the nats-server binary to start")
    group.addoption("--schemas", default=str(DEFAULT_DIR),
                    help="the folder of the contract's JSON Schemas (default: the checkout's schemas/json)")


def pytest_configure(config):
    config.addinivalue_line("markers", f"managed(why): {MANAGED_ONLY}; `why` is what it does "
                                       "that a deployment given by URL should not take")
    config.addinivalue_line("markers", "disruptive: stops jetsource or nats-server abruptly; runs last")


def managed_mode(config) -> bool:
    return bool(config.getoption("--jetsource-bin") or config.getoption("--nats-server-bin"))


def pytest_collection_modifyitems(config, items):
    # Disruptive tests go last: a process stopped abruptly leaves events
    # unacknowledged with the command index's consumer for its ack_wait
    # (30 s), which would hold up the tests that wait for the index.
    items.sort(key=lambda item: "disruptive" in item.keywords)
    if managed_mode(config):
        return
    for item in items:
        marker = item.get_closest_marker("managed")
        if marker is not None:
            why = ": it " + marker.args[0] if marker.args else ""
            item.add_marker(pytest.mark.skip(reason=MANAGED_ONLY + why))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Runs an `async def` test in a fresh event loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def bounded():
        await asyncio.wait_for(pyfuncitem.obj(**args), TEST_DEADLINE)

    asyncio.run(bounded())
    return True


@pytest.fixture(scope="session")
def deployment(request):
    config = request.config
    prefix = config.getoption("--subject-prefix")
    try:
        names = Names(prefix)
    except InvalidPrefix as e:
        raise pytest.UsageError(f"--subject-prefix: {e}")
    schemas = Schemas(Path(config.getoption("--schemas")))
    if managed_mode(config):
        jetsource_bin = config.getoption("--jetsource-bin")
        nats_server_bin = config.getoption("--nats-server-bin")
        if not (jetsource_bin and nats_server_bin):
            raise pytest.UsageError("managed mode needs both --jetsource-bin and --nats-server-bin")
        managed = Managed(jetsource_bin, nats_server_bin, prefix)
        config._conformance_managed = managed
        try:
            managed.start()
        except Exception:
            managed.close(keep=True)
            raise
        yield Deployment(managed.url, names, schemas, managed)
        failed = request.session.testsfailed > 0
        managed.close(keep=failed)
        return
    url = config.getoption("--url")
    if not url:
        raise pytest.UsageError("give --url nats://host:port of a deployment, "
                                "or --jetsource-bin and --nats-server-bin for managed mode")
    yield Deployment(url, names, schemas, None)


@pytest.fixture
def names(deployment) -> Names:
    return deployment.names


@pytest.fixture
def schemas(deployment) -> Schemas:
    return deployment.schemas


@pytest.fixture
def restores_jetsource(deployment):
    """For managed tests whose input may stop jetsource: afterwards, a
    jetsource that no longer answers is replaced, so later tests run."""
    yield
    asyncio.run(deployment.make_serving())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    managed = getattr(config, "_conformance_managed", None)
    if managed is not None and exitstatus != 0:
        terminalreporter.write_sep("-", "managed children")
        terminalreporter.write_line(managed.logs())
        terminalreporter.write_line(f"(kept in {managed.dir})")
