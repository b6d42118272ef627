"""The dataset registry: one spec per dataset, and what is derived from it (download CLI and rule,
config names, planning's published counts, README tables); the npz guard of MedMNIST files."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from datasets_server import dermamnist_npz

from imbench import plan
from imbench.data import dermamnist, download, extract, registry
from imbench.data.errors import DownloadError
from imbench.data.registry import DatasetSpec, Option, Task, published
from imbench.data.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def scratch_registry(monkeypatch):
    """Register into copies of the registries (the real ones are restored afterwards)."""
    monkeypatch.setattr(registry, "TASKS", dict(registry.TASKS))
    monkeypatch.setattr(registry, "DATASETS", dict(registry.DATASETS))


def _spec(name: str, task_dataset: str | None = None, options=()) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        title=name,
        prepare=lambda out, opts, base_urls=(), **kw: out,
        tasks=(
            Task(
                name=f"{name}_task",
                dataset=task_dataset or name,
                kind="multiclass",
                classes=("a", "b"),
                group_key="image",
                build=lambda root: None,
                counts=published({"a": 1, "b": 2}, "made up"),
            ),
        ),
        licence="CC0",
        homepage="https://example.org",
        source="nowhere",
        options=options,
    )


# ----------------------------------------------------------------------------- registry


def test_every_dataset_module_is_registered_with_its_tasks():
    assert registry.dataset_modules() == sorted(registry.DATASETS)
    for name, spec in registry.DATASETS.items():
        assert spec.tasks, name
        for task in spec.tasks:
            assert TASKS[task.name] is task and task.dataset == name
    real = {t.dataset for t in TASKS.values()} - {"synthetic", "synthetic_ml"}
    assert real == set(registry.DATASETS)


def test_a_dataset_registers_once_and_its_tasks_name_it(scratch_registry):
    spec = registry.register_dataset(_spec("toy"))
    assert registry.get_dataset("toy") is spec and registry.get_task("toy_task").dataset == "toy"
    with pytest.raises(ValueError, match="dataset 'toy' registered twice"):
        registry.register_dataset(_spec("toy"))
    with pytest.raises(ValueError, match="dataset 'toy2': task 'toy2_task' says dataset 'other'"):
        registry.register_dataset(_spec("toy2", task_dataset="other"))
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'; known datasets: \["):
        registry.get_dataset("nope")


def test_an_option_shared_by_datasets_must_agree(scratch_registry):
    registry.register_dataset(_spec("toy", options=(Option("size", 99, "toy size", type=int),)))
    with pytest.raises(ValueError, match="dataset 'toy': option 'size' differs"):
        registry.download_options()


# ----------------------------------------------------------------------------- derived: download


def test_download_cli_and_config_keys_come_from_the_specs():
    parser = download.get_args_parser()
    choices = next(a for a in parser._actions if a.dest == "dataset").choices
    assert list(choices) == registry.dataset_names()
    for name, spec in registry.DATASETS.items():
        assert download.config_keys(name) == registry.COMMON_KEYS + tuple(
            o.name for o in spec.options
        )
        for opt in spec.options:  # every recipe option is a flag, with the recipe's default
            assert opt.flag in parser._option_string_actions
            if opt.type is not bool:
                assert parser.get_default(opt.name) == opt.default
    with pytest.raises(DownloadError, match=r"dataset 'nope' is not one of \['"):
        download.cli_args("nope", {})


def test_one_download_rule_serves_every_dataset():
    text = (ROOT / "workflow" / "rules" / "download.smk").read_text()
    assert re.findall(r"^rule (\w+):", text, re.MULTILINE) == ["download"]
    assert 'directory("resources/raw/{dataset}")' in text
    assert 'dataset="|".join(dataset_names())' in text


def test_schema_names_come_from_the_registries():
    from imbench.config import ConfigError, check_schema, schema_with_plugins

    props = schema_with_plugins()["properties"]
    assert props["tasks"]["items"]["anyOf"][0]["enum"] == list(TASKS)
    assert sorted(props["download"]["properties"]) == sorted(registry.DATASETS)
    import yaml

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    check_schema({**config, "download": {"dermamnist": {"size": 28}}})
    with pytest.raises(ConfigError, match="download"):
        check_schema({**config, "download": {"dermamnist2": {}}})


# ----------------------------------------------------------------------------- derived: planning

# The published counts planning used before they moved into the specs (imbench.plan of 1aa02e8).
HAM = {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}
BEFORE = {
    "ham10000": (HAM, None),
    "ham10000_mel": ({"rest": 8902, "mel": 1113}, None),
    "isic2019": (
        {
            "MEL": 4522,
            "NV": 12875,
            "BCC": 3323,
            "AK": 867,
            "BKL": 2624,
            "DF": 239,
            "VASC": 253,
            "SCC": 628,
        },
        None,
    ),
    "odir_eye": (
        {"N": 2873, "D": 1608, "O": 708, "C": 293, "G": 284, "A": 266, "M": 232, "H": 128},
        None,
    ),
    "odir_glaucoma": ({"N": 2873, "G": 284}, None),
    "odir": (
        {"N": 1139, "D": 697, "G": 186, "C": 210, "A": 160, "H": 103, "M": 171, "O": 833},
        None,
    ),
    "dermamnist": (HAM, {"train": 7007, "val": 1003, "test": 2005}),
}


@pytest.mark.parametrize("task", sorted(BEFORE))
def test_published_counts_are_unchanged_and_in_the_same_order(task):
    counts, official, source = plan.task_counts(task)
    want_counts, want_official = BEFORE[task]
    assert list(counts.items()) == list(want_counts.items())
    assert official == want_official and source


def test_every_task_declares_counts_over_its_classes():
    for name, task in TASKS.items():
        counts, official, _ = task.counts({})
        assert set(counts) == set(task.classes), name
        if official:
            assert sum(official.values()) == sum(counts.values()), name


def test_task_without_counts_is_one_clear_error(scratch_registry):
    registry.register_task(
        Task("bare", "bare", "binary", ("n", "p"), "image", build=lambda root: None)
    )
    with pytest.raises(ValueError, match="task 'bare' declares no published counts"):
        plan.task_counts("bare")


# ----------------------------------------------------------------------------- derived: README


def test_readme_tables_are_generated_from_the_registry():
    text = (ROOT / "README.md").read_text()
    assert registry.readme_tables() in text, (
        "README.md's dataset tables are stale: run `python -m imbench.data.registry --write README.md`"
    )
    for spec in registry.DATASETS.values():
        assert f"| `{spec.name}` | {spec.source} | {spec.licence} |" in text


def test_write_rewrites_only_the_generated_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{registry.BEGIN_MARK}\nold\n{registry.END_MARK}\noutro\n")
    assert registry.main(["--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n") and "old" not in text
    assert registry.readme_tables() in text
    readme.write_text("no marks\n")
    with pytest.raises(ValueError, match="README.md: lacks the marks"):
        registry.main(["--write", str(readme)])


# ----------------------------------------------------------------------------- npz guard


def _npz_with(path: Path, members: dict[str, bytes], compress=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compress) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=True)
    return buf.getvalue()


def _small_members(size: int) -> dict[str, bytes]:
    """A complete, well-formed set of DermaMNIST arrays (one image per split)."""
    out = {}
    for split in ("train", "val", "test"):
        out[f"{split}_images.npy"] = _npy(np.zeros((1, size, size, 3), np.uint8))
        out[f"{split}_labels.npy"] = _npy(np.zeros((1, 1), np.uint8))
    return out


@pytest.fixture
def no_np_load(monkeypatch):
    """np.load must not be reached: the guard refuses the file first."""

    def refuse(*a, **k):
        raise AssertionError("np.load called on a file the guard should have refused")

    monkeypatch.setattr(np, "load", refuse)


def test_npz_decompression_bomb_is_refused_before_loading(tmp_path, no_np_load):
    # 64 MiB of zeros deflate to about 64 KiB: a ratio of about 1000
    npz = _npz_with(
        tmp_path / "dermamnist_224.npz",
        {
            **_small_members(224),
            "train_images.npy": _npy(np.zeros((1, 4096, 4096, 4), np.uint8)),
        },
    )
    with pytest.raises(
        DownloadError, match=r"dermamnist_224\.npz: member 'train_images\.npy' inflates .*bomb"
    ):
        dermamnist.read_npz(npz, size=224)


def test_npz_member_larger_than_the_published_arrays_is_refused(tmp_path, no_np_load):
    # Stored (not compressed): no ratio, but more bytes than any 28 px DermaMNIST array.
    big = _npy(np.ones((8000, 28, 28, 3), np.uint8))
    npz = _npz_with(tmp_path / "dermamnist.npz", {"train_images.npy": big}, zipfile.ZIP_STORED)
    with pytest.raises(DownloadError, match=r"member 'train_images\.npy' declares .*more than the"):
        dermamnist.read_npz(npz, size=28)


def test_npz_header_claiming_a_huge_array_is_refused(tmp_path, no_np_load):
    # A small member whose .npy header declares a 10^12-byte array (what np.load would allocate).
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    npz = _npz_with(
        tmp_path / "dermamnist.npz",
        {**_small_members(28), "train_images.npy": header.getvalue() + b"\0" * 64},
    )
    with pytest.raises(DownloadError, match=r"declares an array of 1,000,000,000,000 bytes"):
        dermamnist.read_npz(npz, size=28)


def test_npz_with_objects_or_other_members_is_refused(tmp_path, no_np_load):
    objects = _npz_with(tmp_path / "a.npz", {"train_labels.npy": _npy(np.array([{}, 1], object))})
    with pytest.raises(DownloadError, match="holds Python objects"):
        extract.check_npz(objects, 1 << 20)
    other = _npz_with(tmp_path / "b.npz", {"../evil.npy": b"x", "x.txt": b"y"})
    with pytest.raises(DownloadError, match="is not a .npy array"):
        extract.check_npz(other, 1 << 20)
    broken = tmp_path / "c.npz"
    broken.write_bytes(b"PK\3\4 not really")
    with pytest.raises(DownloadError, match=r"c\.npz: not a readable \.npz file"):
        extract.check_npz(broken, 1 << 20)


def test_real_shaped_npz_passes_the_guard(tmp_path):
    npz = tmp_path / "dermamnist.npz"
    npz.write_bytes(dermamnist_npz())
    extract.check_npz(npz, dermamnist.INFO.max_array_bytes(28))
    arrays = dermamnist.read_npz(npz, size=28)
    assert {s: len(a[0]) for s, a in arrays.items()} == {"train": 14, "val": 7, "test": 7}
