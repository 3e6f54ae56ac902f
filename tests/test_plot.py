"""flor plot / flor.plot, logged images and files, flor export: over one recorded repo.

Two real runs of fixtures/scripts/curves.py (lr=0.1 with images, a Figure, a PIL image and
a file; lr=0.2), and a replay's records appended to the second run's note as `flor
replay` writes them (a real replay is tested in test_replay.py and costs seconds).
Plots are checked as images: size, ink, and each series' colour among the pixels.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

import conftest
from conftest import append_replayed, fixture_script, flor, git, make_repo

from flor_cli.main import main
from flor_cli.services import plot, query
from flor_cli.services.show import load
from flor_cli.storage.git import Git
from flor_cli.storage.media import parse
from flor_cli.storage.objects import ObjectStore


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    path = make_repo(tmp_path_factory.mktemp("plot") / "repo",
                     files={"train.py": fixture_script("curves.py")})
    flor(path, "run", "train.py", "--kwargs", "lr=0.1", env={"CURVES_RICH": "1"})
    flor(path, "run", "train.py", "--kwargs", "lr=0.2")
    append_replayed(path, 0, "w", [0.5, 0.4, 0.3])
    return path


def cli(repo: Path, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``flor ARGS`` in this process, as the executable runs it: (status, stdout, stderr)."""
    monkeypatch.chdir(repo)
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


def ink_of(png: bytes) -> tuple[tuple[int, int], np.ndarray]:
    image = PILImage.open(io.BytesIO(png)).convert("RGB")
    return image.size, np.asarray(image)


def pixels_of(array: np.ndarray, colour: str) -> int:
    rgb = tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return int(np.all(array == rgb, axis=-1).sum())


def test_png_has_a_panel_per_name_and_a_line_per_run(repo, monkeypatch, capsys, tmp_path):
    out = tmp_path / "plot.png"
    status, _, err = cli(repo, monkeypatch, capsys, "plot", "loss", "acc", "-o", str(out))
    assert status == 0, err
    panels = plot.panels(Git(repo), ["loss", "acc"])
    fig = plot.figure(panels)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["loss", "acc"]
    assert [len(ax.get_lines()) for ax in axes] == [2, 2]
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["lr=0.1", "lr=0.2"]
    size, pixels = ink_of(out.read_bytes())
    assert size == (1280, 420)  # two panels side by side, 6.4 x 4.2 in at 100 dpi
    assert (pixels.min(axis=-1) < 250).mean() > 0.02  # not blank
    from matplotlib.colors import to_hex

    for line in axes[0].get_lines():  # every series is drawn in the image
        assert pixels_of(pixels, to_hex(line.get_color())) > 50


def test_nested_loops_give_a_global_step_and_x_picks_a_loop(repo):
    (loss,) = plot.panels(Git(repo), ["loss"])
    assert loss.xlabel == "global step (epoch, step)"
    assert [s.x for s in loss.series] == [list(range(12))] * 2
    assert loss.series[1].y[0] == pytest.approx(0.8)
    (by_epoch,) = plot.panels(Git(repo), ["loss"], x="epoch")
    assert by_epoch.series[0].x == [0, 1, 2]
    assert by_epoch.series[0].y[0] == pytest.approx(np.mean([0.9 ** k for k in range(1, 5)]))


def test_a_value_per_run_is_points_against_the_arg_that_differs(repo, tmp_path):
    (final,) = plot.panels(Git(repo), ["final"])
    assert (final.kind, final.xlabel) == ("points", "lr")
    assert final.series[0].x == [0.1, 0.2]
    (by_opt,) = plot.panels(Git(repo), ["final"], by=["opt"])
    assert by_opt.xticks == ["sgd"] and by_opt.series[0].x == [0, 0]
    out = tmp_path / "final.png"
    plot.save([final], str(out))
    fig = plot.figure([final])
    assert len(fig.axes[0].collections) == 1  # one series of two points
    size, pixels = ink_of(out.read_bytes())
    assert size == (640, 420) and (pixels.min(axis=-1) < 250).mean() > 0.01


def test_a_run_level_value_of_a_loop_name_is_not_on_the_curve():
    runs = plot.Runs(["r1"], {"r1": {}}, [])
    values = {"r1": {'{"epoch":1}': (0.5, False), '{"epoch":0}': (0.2, False), "{}": (0.9, False)}}
    (series,) = plot._curves("acc", values, runs, None, ()).series
    assert (series.x, series.y) == ([0, 1], [0.2, 0.5])


def test_a_legend_names_a_run_by_its_differing_args_then_its_tags(repo, tmp_path):
    tagged = tmp_path / "tagged"
    shutil.copytree(repo, tagged, symlinks=True)
    first = plot.select_runs(Git(tagged)).ids[0]
    conftest.cli(tagged, "tag", first, "best", "v1")
    runs = plot.select_runs(Git(tagged))
    assert [runs.label(run) for run in runs.ids] == ["lr=0.1 [best v1]", "lr=0.2"]
    alike = plot.Runs(["r1", "r2"], {"r1": {}, "r2": {}}, [], {"r1": ["best"]})
    assert [alike.label(run) for run in alike.ids] == ["best", "r2"]


def test_replayed_values_are_drawn_alike_and_marked(repo):
    (w,) = plot.panels(Git(repo), ["w"])
    assert [(s.label, s.replayed) for s in w.series] == [("lr=0.2 (replayed)", True)]
    assert w.series[0].x == [0, 1, 2]


def test_terminal_plot_is_text_without_colour_codes(repo, monkeypatch, capsys):
    status, out, err = cli(repo, monkeypatch, capsys, "plot", "loss,acc", "--where", "lr > 0.15")
    assert status == 0, err
    assert "loss" in out and "acc" in out and "\x1b[" not in out
    assert "lr=0.2" not in out  # one run: no arg differs, the legend is its run id


def test_flor_plot_returns_a_figure(repo, monkeypatch, tmp_path):
    import flor
    from matplotlib.figure import Figure

    monkeypatch.chdir(repo)
    fig = flor.plot("acc", "final", by=["lr"])
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 2
    fig.savefig(tmp_path / "nb.svg")
    assert (tmp_path / "nb.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize("args, message", [
    (("nope",), "nothing logged under 'nope'"),
    (("loss", "-o", "plot.txt"), "-o: write a .png"),
    (("loss", "--by", "nope"), "--by: no arg named 'nope'"),
    (("loss", "--x", "nope"), "--x: 'loss' was not logged inside a loop named 'nope'"),
    (("loss", "--where", "lr >"), "--where"),
    (("grid",), "no numeric values of 'grid'"),
])
def test_plot_errors_are_one_line(repo, monkeypatch, capsys, args, message):
    status, out, err = cli(repo, monkeypatch, capsys, "plot", *args)
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err
    assert not (repo / "plot.txt").exists()


# -- logged images and files ------------------------------------------------------------

def refs_of(repo: Path, run: str) -> dict[str, list]:
    """name -> [(record type, value)] of a run's log records, as its note holds them."""
    found: dict[str, list] = {}
    with load(Git(repo), run) as (_, batches):
        for r in (r for batch in batches() for r in batch):
            if r.get("t") == "log":
                found.setdefault(r["n"], []).append((r.get("ty"), r.get("v")))
    return found


def first_run(repo: Path) -> str:
    return query.sql(Git(repo), "SELECT run FROM runs ORDER BY start")[1][0][0]


def test_images_and_files_are_stored_by_digest_and_listed(repo, monkeypatch, capsys):
    logged = refs_of(repo, first_run(repo))
    store = ObjectStore(repo / ".git" / "flor" / "objects")
    kinds = {name: {ty for ty, _ in logged[name]} for name in ("grid", "fig", "pil", "notes")}
    assert kinds == {"grid": {"flor.Image"}, "fig": {"flor.Image"}, "pil": {"flor.Image"},
                     "notes": {"flor.File"}}
    for name in kinds:
        for _, value in logged[name]:
            ref = parse(value)
            assert ref is not None and store.has(ref.sha)
    assert parse(logged["pil"][0][1]).width == 5 and parse(logged["pil"][0][1]).height == 7
    assert logged["weights"] == [("numpy.ndarray", [0, 1, 2, 3])]  # an array stays data
    status, table, _ = cli(repo, monkeypatch, capsys, "show", first_run(repo))
    files = table[table.index("== files =="):]
    assert all(word in files for word in ("grid.png", "fig.png", "pil.png", "notes.txt"))


def test_export_writes_every_file_whole(repo, monkeypatch, capsys, tmp_path):
    out = tmp_path / "exported"
    status, stdout, err = cli(repo, monkeypatch, capsys, "export", "grid,pil", "notes",
                              "--where", "lr < 0.15", "-o", str(out))
    assert status == 0, err
    run = first_run(repo)
    names = sorted(p.name for p in (out / run).iterdir())
    assert names == ["grid.epoch-0.png", "grid.epoch-1.png", "grid.epoch-2.png", "notes.2.txt",
                     "notes.txt", "pil.png"]
    assert len(stdout.splitlines()) == 6 and [p.name for p in out.iterdir()] == [run]
    grid = np.asarray(PILImage.open(out / run / "grid.epoch-2.png"))
    assert grid.shape == (3, 4) and (grid == np.arange(12).reshape(3, 4) * 20 + 2).all()
    red = np.asarray(PILImage.open(out / run / "pil.png").convert("RGB"))
    assert red.shape == (7, 5, 3) and (red == [255, 0, 0]).all()
    assert (out / run / "notes.txt").read_text() == "hello from the run\n"
    status, _, err = cli(repo, monkeypatch, capsys, "export", "loss", "-o", str(out))
    assert status == 2 and "no images or files logged under 'loss'" in err


def test_dataframe_cells_display_the_image(repo, monkeypatch):
    import flor

    monkeypatch.chdir(repo)
    frame = flor.dataframe("grid", "acc")
    cell = frame["grid"].iloc[0]
    assert cell._repr_png_().startswith(b"\x89PNG") and cell.path.is_file()
    assert "grid.png 4x3" in repr(cell)
    assert isinstance(frame["acc"].iloc[0], float)


def test_push_copies_logged_files_to_the_shared_store(repo, tmp_path):
    remote, store = tmp_path / "remote.git", tmp_path / "shared"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(repo, "remote", "add", "shared-test", str(remote))
    git(repo, "config", "flor.store", str(store))
    try:
        flor(repo, "push", "shared-test")
    finally:
        git(repo, "config", "--unset", "flor.store")
    shas = {parse(v).sha for values in refs_of(repo, first_run(repo)).values()
            for ty, v in values if ty in ("flor.Image", "flor.File")}
    assert len(shas) == 6 and all((store / s[:2] / s[2:]).is_file() for s in shas)

    # another clone pulls the runs; their images come from the shared store
    git(repo, "push", "-q", "shared-test", "main")
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(remote), str(other))
    flor(other, "pull", "origin")
    missing = flor(other, "export", "grid", "-o", str(tmp_path / "none"))
    assert missing.stdout == "" and missing.stderr.count("not in any object store") == 6
    git(other, "config", "flor.store", str(store))
    exported = flor(other, "export", "grid", "-o", str(tmp_path / "out")).stdout.split()
    assert len(exported) == 6 and all(Path(p).read_bytes().startswith(b"\x89PNG") for p in exported)


def test_image_wrapper_checks_its_input():
    import flor
    from flor_cli.runtime.media import encode_png

    with pytest.raises(ValueError, match="H×W×C"):
        flor.Image(np.zeros((2, 2, 5))).png()
    with pytest.raises(TypeError, match="expected an array"):
        flor.Image("not an image").png()
    rgba = (np.arange(2 * 3 * 4) * 10).astype(np.uint8).reshape(2, 3, 4)
    assert (np.asarray(PILImage.open(io.BytesIO(encode_png(rgba)))) == rgba).all()
    floats = np.asarray(PILImage.open(io.BytesIO(flor.Image(np.array([[0.0, 1.0]])).png())))
    assert floats.tolist() == [[0, 255]]
    import torch
    tensor = np.asarray(PILImage.open(io.BytesIO(flor.Image(torch.ones(2, 3, 3)).png())))
    assert tensor.shape == (2, 3, 3) and (tensor == 255).all()


@pytest.mark.parametrize("value", [
    {"sha": "ab" * 32, "file": "../../evil.png", "mime": "image/png", "bytes": 1},
    {"sha": "../" * 10, "file": "x.png", "mime": "image/png", "bytes": 1},
    {"sha": "ab" * 32, "file": ".hidden", "mime": "image/png", "bytes": 1},
    {"sha": "ab" * 32, "file": "x.png", "mime": "image/png", "bytes": "1"},
    "not json",
])
def test_a_reference_from_a_pulled_note_is_checked(value):
    assert parse(value if isinstance(value, str) else json.dumps(value)) is None
