"""The FLOR_* process protocol has one definition: what flor run and flor replay set is
what import flor takes, and the man page lists every variable."""

from __future__ import annotations

from pathlib import Path

from flor_cli.manpages import pages
from flor_cli.runtime import protocol
from flor_cli.runtime.protocol import RecordConfig, ReplayConfig


def test_what_flor_run_sets_is_what_the_script_takes() -> None:
    config = RecordConfig(Path("/j/r.jsonl"), Path("/s"), {"lr": "0.1"}, 1700000000.25)
    env = protocol.record_env(config, {"PATH": "/bin", protocol.REPLAY: "{}"})
    assert protocol.launched(env)
    assert protocol.take_record(env) == config
    assert env == {"PATH": "/bin"}  # taken out, and a stale replay job never passed on


def test_a_replay_job_round_trips_through_the_environment() -> None:
    config = ReplayConfig(names=["grad"], mode="nested", journal="/j", store="/s",
                          range=[2, None], args={"lr": 0.1}, checkpointing=True,
                          ckpts=[{"t": "ckpt", "c": {"epoch": 0}, "i": 0, "objs": {}}])
    env = protocol.replay_env(config, {protocol.JOURNAL: "/other", "HOME": "/h"})
    assert set(env) == {protocol.REPLAY, "HOME"}
    assert protocol.take_replay(env) == config and env == {"HOME": "/h"}
    assert ReplayConfig.from_json('{"names": [], "mode": "skip", "journal": "j", '
                                  '"store": "s", "from_a_newer_flor": 1}').args == {}


def test_processes_that_must_not_record_get_none_of_the_variables() -> None:
    env = {name: "x" for name in protocol.VARIABLES} | {"PATH": "/bin"}
    assert protocol.without_protocol(env) == {"PATH": "/bin"}
    assert not protocol.launched({"PATH": "/bin"})


def test_the_man_page_lists_every_variable() -> None:
    page = pages()["flor.1"]
    environment = page[page.index(".SH ENVIRONMENT"):page.index(".SH SEE ALSO")]
    assert all(name in environment for name in protocol.VARIABLES)
