"""The runtime is imported into every training script and the CLI into every shell
command: neither may drag in the heavy libraries until something needs them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pandas", "libcst", "torch", "pygit2", "tabulate", "numpy", "cloudpickle", "matplotlib",
         "PIL", "plotext", "playwright")


def imported_after(code: str, cwd=None) -> set[str]:
    probe = f"{code}\nimport sys; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=cwd).stdout.split()
    return {m.split(".")[0] for m in out} & set(HEAVY)


def test_import_flor_is_light() -> None:
    assert imported_after("import flor") == set()


def test_logging_in_a_recording_run_stays_light(repo) -> None:
    code = ("import flor\nfor i in flor.loop('epoch', range(2)):\n"
            "    flor.log('x', i / 2)\nflor.arg('lr', 0.1)")
    assert imported_after(code, cwd=repo) == set()


def test_cli_help_is_light() -> None:
    code = ("import sys\nfrom flor_cli.main import cli\n"
            "try:\n    cli.main(['--help'], prog_name='flor')\nexcept SystemExit:\n    pass")
    assert imported_after(code) == set()
