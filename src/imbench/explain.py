"""What the trained models look at: t-SNE of penultimate features and Grad-CAM heat-maps.

Both figures re-run trained models (``best.pt``) on the cached test images, so they are
optional extras beside the prediction-based tables and figures of ``aggregate.py``.

t-SNE (``<task>_tsne.png``)
    One panel per cell (usually one per method, one seed, one task/model). Every panel embeds the
    *same* test images: at most ``max_points`` of them, drawn with ``seed`` so that every class keeps
    up to ``max_points // K`` images and the rest of the budget is filled at random (rare classes stay
    visible). Points are coloured by true class: the index's ``label_name`` (for a multi-label task,
    its sampling class, the rarest positive label). Features are the backbone's pooled output
    (``Classifier.features``), reduced by PCA to 50 dimensions when wider, then embedded by
    scikit-learn's ``TSNE`` (PCA initialisation,
    ``random_state=seed``). Same cells + same seed → identical coordinates (:func:`tsne_coordinates`,
    :func:`embed_cells`); with PCA initialisation the seed mostly acts through the image sample.
    Post-hoc cells (no ``best.pt``: they reuse another cell's model) are skipped.

Grad-CAM (``<task>_gradcam.png``)
    Computed with the ``grad-cam`` library (``pytorch_grad_cam.GradCAM``) for the class the model
    predicts, on ``per_class`` test images of every class (drawn with ``seed``); maps are min-max
    scaled to [0, 1] per image and upsampled to the image size by the library.

    Target layer (:func:`find_target_layer`): timm backbones run their children in order and end with
    ``forward_head``, whose first child is ``global_pool`` (ResNet, DenseNet, EfficientNet, MobileNet,
    RegNet …) or ``head`` (ConvNeXt-style heads that pool inside). One dry forward pass with hooks
    on the backbone's direct children records their outputs in execution order; the target is the
    last child *before* that pooling child whose output is a 4-D (N, C, H, W) map: ``layer4`` of a
    ResNet, ``features`` of a DenseNet (it ends with the final norm + ReLU), ``bn2`` of an
    EfficientNet (the activated output of ``conv_head``). That is the feature map global pooling
    averages, the layer Grad-CAM was defined on. When that map is 1×1 (images too small for the
    backbone's stride, e.g. 32-px synthetic images in a ResNet) a Grad-CAM map would be constant, so
    the last child with a larger map is taken instead (``layer3`` of that ResNet); the figure's title
    names the layer and its map size. ``layer=`` (a dotted module name inside the backbone, e.g.
    ``"layer3"``) overrides the choice.

Command line: ``python -m imbench.explain --cells DIR... --cache-dir DIR --split CSV --out-dir DIR``
(see :func:`main`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

# The figure names live in aggregate.py, which planning imports without torch.
from .aggregate import EXPLAIN_FIGURES as FIGURES
from .aggregate import explain_figure_names as figure_names  # noqa: F401
from .io import atomic_path, read_json
from .models import Classifier, create_model
from .train import Settings, Split, load_split, resolve_device, to_input

# ----------------------------------------------------------------------------- loading


def load_cell_model(
    cell_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[Classifier, dict, Settings]:
    """The cell's best model (eval mode, on ``device``), its ``run.json`` and its training settings."""
    from .methods import get_method

    cell_dir = Path(cell_dir)
    run = read_json(cell_dir / "run.json")
    weights = cell_dir / "best.pt"
    if not weights.exists():
        raise FileNotFoundError(
            f"{cell_dir}: no best.pt (a post-hoc cell trains no model; use its base cell)"
        )
    settings = Settings.from_dict(run["settings"])
    head = run.get("method_info", {}).get("head") or get_method(run["method"]).head
    model = create_model(
        run["model"], len(run["classes"]), head=head, pretrained=False, drop_rate=settings.drop_rate
    )
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.to(torch.device(device)).eval(), run, settings


def load_test_split(
    cache_dir: str | Path, split_path: str | Path, image_size: int | None = None
) -> tuple[Split, pd.Series]:
    """The test split and the class name of each of its images (``label_name`` of the index)."""
    images, index = load_split(cache_dir, split_path)
    if image_size is not None and images.shape[1] != image_size:
        raise ValueError(
            f"{cache_dir}: cached images are {images.shape[1]} px but the model was trained on "
            f"{image_size} px"
        )
    rows = np.flatnonzero(index["split"].to_numpy() == "test")
    if len(rows) == 0:
        raise ValueError(f"{split_path}: the test split is empty")
    names = (
        index["label_name"].astype(str)
        if "label_name" in index.columns
        else index["label"].astype(str)
    )
    return Split(images, index, rows), names.iloc[rows].reset_index(drop=True)


def sample_rows(labels: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of at most ``max_points`` items: each class keeps up to ``max_points // K``
    (all of a smaller class), the remaining budget is drawn uniformly from the rest."""
    labels = np.asarray(labels)
    n = len(labels)
    if max_points < 1:
        raise ValueError(f"max_points must be ≥ 1, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    quota = max_points // len(classes)
    chosen: list[int] = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        chosen.extend(rng.choice(idx, size=min(len(idx), quota), replace=False).tolist())
    rest = np.setdiff1d(np.arange(n), chosen)
    chosen.extend(rng.choice(rest, size=max_points - len(chosen), replace=False).tolist())
    return np.sort(np.asarray(chosen, dtype=int))


@torch.no_grad()
def penultimate_features(
    model: Classifier,
    images_u8: torch.Tensor,
    settings: Settings,
    device: torch.device,
    batch_size: int = 128,
) -> np.ndarray:
    """Pooled backbone features (N, D) of uint8 NHWC images, preprocessed as in training (no flips)."""
    model.eval()
    out = [
        model.features(to_input(images_u8[s : s + batch_size], settings, device)).float().cpu()
        for s in range(0, len(images_u8), batch_size)
    ]
    return torch.cat(out).numpy().astype(np.float64)


# ----------------------------------------------------------------------------- t-SNE


def tsne_coordinates(
    features: np.ndarray, seed: int = 0, perplexity: float = 30.0, threads: int = 1
) -> np.ndarray:
    """2-D t-SNE embedding (N, 2) of ``features``; deterministic given ``seed`` and ``threads``.

    Features wider than 50 are first reduced by PCA (full SVD) to 50 dimensions; the perplexity is
    capped at (N − 1) / 3 so that small sets still embed. ``threads`` caps the OpenMP/BLAS threads
    (scikit-learn's Barnes-Hut gradient is OpenMP-parallel and slows down badly on a busy machine).
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 4:
        raise ValueError(
            f"t-SNE needs a 2-D feature array with at least 4 rows, got shape {x.shape}"
        )
    with threadpool_limits(limits=max(1, int(threads))):
        if x.shape[1] > 50 and len(x) > 50:
            x = PCA(n_components=50, svd_solver="full", random_state=seed).fit_transform(x)
        perplexity = float(min(perplexity, (len(x) - 1) / 3))
        tsne = TSNE(
            n_components=2,
            perplexity=perplexity,
            init="pca",
            learning_rate="auto",
            random_state=seed,
        )
        return tsne.fit_transform(x)


def embed_cells(
    cells,
    cache_dir: str | Path,
    split_path: str | Path,
    max_points: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    threads: int = 1,
    log=print,
) -> pd.DataFrame:
    """t-SNE coordinates of the same test images for every cell with a trained model.

    Returns one row per (cell, image): ``task, model, method, seed, image_id, label, label_name, x, y``.
    All cells must share task and model; cells without ``best.pt`` (post-hoc) are skipped.
    """
    cells = [Path(c) for c in cells]
    runs = [read_json(c / "run.json") for c in cells]
    for key in ("task", "model"):
        values = sorted({str(r[key]) for r in runs})
        if len(values) > 1:
            raise ValueError(
                f"explain: the cells mix {key}s {values}; give the cells of one task and model"
            )
    trained = [(c, r) for c, r in zip(cells, runs) if (c / "best.pt").exists()]
    skipped = [str(c) for c in cells if not (c / "best.pt").exists()]
    if skipped:
        log(
            f"t-SNE: skipping {len(skipped)} cell(s) without best.pt (post-hoc): {', '.join(skipped)}"
        )
    if not trained:
        raise ValueError("explain: no cell with a trained model (best.pt) among the cells given")
    dev = resolve_device(device)
    split, names = load_test_split(
        cache_dir, split_path, Settings.from_dict(trained[0][1]["settings"]).image_size
    )
    labels = split.labels.numpy()
    rows = sample_rows(labels, max_points, seed)
    frames = []
    for cell, run in trained:
        model, run, settings = load_cell_model(cell, dev)
        if settings.image_size != split.images.shape[1]:
            raise ValueError(
                f"{cell}: trained on {settings.image_size} px, the cache holds "
                f"{split.images.shape[1]} px images"
            )
        feats = penultimate_features(model, split.images[torch.as_tensor(rows)], settings, dev)
        xy = tsne_coordinates(feats, seed=seed, threads=threads)
        frames.append(
            pd.DataFrame(
                {
                    "task": run["task"],
                    "model": run["model"],
                    "method": run["method"],
                    "seed": run["seed"],
                    "image_id": split.image_id[rows],
                    "label": labels[rows],
                    "label_name": names.to_numpy()[rows],
                    "x": xy[:, 0],
                    "y": xy[:, 1],
                }
            )
        )
        log(f"t-SNE: {run['method']} ({len(rows)} test images, {feats.shape[1]} features)")
    return pd.concat(frames, ignore_index=True)


def _style():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")


def class_palette(class_names) -> dict:
    """One fixed colour per class, in class order (tab10 up to 10 classes, else tab20)."""
    import seaborn as sns

    class_names = list(dict.fromkeys(class_names))
    colours = sns.color_palette("tab10" if len(class_names) <= 10 else "tab20", len(class_names))
    return dict(zip(class_names, colours))


def plot_tsne(coords: pd.DataFrame, out_png: str | Path) -> Path:
    """Draw :func:`embed_cells` output: one panel per method, points coloured by true class."""
    plt, _ = _style()
    out_png = Path(out_png)
    methods = list(dict.fromkeys(coords["method"]))
    order = coords.drop_duplicates("label").sort_values("label")["label_name"].tolist()
    palette = class_palette(order)
    first = coords[coords.method == methods[0]]
    counts = first["label_name"].value_counts()
    n = len(methods)
    cols = min(5, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.4 * rows + 0.6), squeeze=False)
    size = float(np.clip(3000 / max(1, len(first)), 4, 30))
    for ax, meth in zip(axes.flat, methods):
        d = coords[coords.method == meth]
        for name in order:  # frequent classes first would hide rare ones: draw in class order
            part = d[d.label_name == name]
            ax.scatter(
                part.x, part.y, s=size, color=palette[name], alpha=0.75, linewidths=0, label=name
            )
        ax.set_title(meth, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles = [
        plt.Line2D(
            [],
            [],
            marker="o",
            ls="",
            color=palette[c],
            markersize=7,
            label=f"{c} ({counts.get(c, 0)})",
        )
        for c in order
    ]
    fig.legend(
        handles=handles,
        title="true class (images)",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=9,
        title_fontsize=9,
        frameon=False,
    )
    task, model = first["task"].iloc[0], first["model"].iloc[0]
    fig.suptitle(
        f"{task} / {model}: t-SNE of penultimate features, {len(first)} test images", fontsize=12
    )
    fig.tight_layout()
    _save(fig, out_png)
    plt.close(fig)
    return out_png


def tsne_figure(
    cells,
    cache_dir: str | Path,
    split_path: str | Path,
    out_png: str | Path,
    max_points: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    threads: int = 1,
    log=print,
) -> pd.DataFrame:
    """Embed the cells' test features (:func:`embed_cells`), write the figure, return the coordinates."""
    coords = embed_cells(
        cells,
        cache_dir,
        split_path,
        max_points=max_points,
        seed=seed,
        device=device,
        threads=threads,
        log=log,
    )
    plot_tsne(coords, out_png)
    return coords


# ----------------------------------------------------------------------------- Grad-CAM


def find_target_layer(
    backbone: nn.Module, image_size: int, layer: str | None = None
) -> tuple[str, nn.Module, tuple]:
    """Grad-CAM target of a timm backbone: ``(name, module, output shape)``; see the module docstring.

    ``layer`` (dotted name inside ``backbone``) overrides the automatic choice.
    """
    calls: list[tuple[str, tuple | None]] = []
    children = dict(backbone.named_children())
    if layer is not None:
        children = {layer: backbone.get_submodule(layer)}

    def hook(name):
        def record(_module, _inputs, output):
            calls.append((name, tuple(output.shape) if isinstance(output, torch.Tensor) else None))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in children.items()]
    was_training = backbone.training
    try:
        backbone.eval()
        device = next(backbone.parameters()).device
        with torch.no_grad():
            backbone(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for h in handles:
            h.remove()
        backbone.train(was_training)
    if layer is not None:
        if not calls or calls[-1][1] is None or len(calls[-1][1]) != 4:
            raise ValueError(f"Grad-CAM layer {layer!r} does not output a 4-D feature map")
        return layer, children[layer], calls[-1][1]
    before_pool = []
    for name, shape in calls:
        if name in ("global_pool", "head"):
            break
        before_pool.append((name, shape))
    spatial = [(n, s) for n, s in before_pool if s is not None and len(s) == 4]
    if not spatial:
        raise ValueError(
            f"{type(backbone).__name__}: no child outputs a 4-D feature map before global pooling; "
            "Grad-CAM needs a convolutional backbone (pass layer= to choose one)"
        )
    last_4d = max(i for i, (_, s) in enumerate(before_pool) if s is not None and len(s) == 4)
    if any(s is not None and len(s) != 4 for _, s in before_pool[last_4d + 1 :]):
        raise ValueError(
            f"{type(backbone).__name__}: its feature maps turn into tokens before pooling (a "
            "transformer?); automatic Grad-CAM supports convolutional backbones (pass layer=)"
        )
    larger = [(n, s) for n, s in spatial if s[2] * s[3] > 1]
    name, shape = (larger or spatial)[
        -1
    ]  # a 1×1 map (input too small for the stride) has no spatial map
    return name, children[name], shape


def gradcam_maps(model: nn.Module, x: torch.Tensor, target_layer: nn.Module, targets) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] of the classes ``targets`` for the preprocessed batch ``x``."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    with GradCAM(model=model, target_layers=[target_layer]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return np.clip(np.asarray(maps, dtype=np.float32), 0.0, 1.0)


def pick_examples(labels: np.ndarray, per_class: int, seed: int = 0) -> list[int]:
    """Up to ``per_class`` positions per class (in class order), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out.extend(sorted(rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist()))
    return out


def gradcam_examples(
    cell_dir: str | Path,
    cache_dir: str | Path,
    split_path: str | Path,
    per_class: int = 2,
    seed: int = 0,
    device: str = "cpu",
    layer: str | None = None,
) -> dict:
    """Grad-CAM of the predicted class on ``per_class`` test images per class.

    Returns ``images`` (N, H, W, 3 uint8), ``maps`` (N, H, W in [0, 1]), ``label``/``pred`` (class
    indices), ``label_name``/``pred_name``, ``image_id``, ``layer`` (name), ``map_shape`` (C, H, W of the
    target layer's output) and the cell's ``run``.
    """
    dev = resolve_device(device)
    model, run, settings = load_cell_model(cell_dir, dev)
    split, names = load_test_split(cache_dir, split_path, settings.image_size)
    labels = split.labels.numpy()
    pos = pick_examples(labels, per_class, seed)
    images = split.images[torch.as_tensor(pos, dtype=torch.long)]
    x = to_input(images, settings, dev)
    with torch.no_grad():
        pred = model(x).argmax(1).cpu().numpy()
    layer_name, module, shape = find_target_layer(model.backbone, settings.image_size, layer)
    maps = gradcam_maps(model, x, module, pred)
    classes = list(run["classes"])
    return {
        "images": images.numpy(),
        "maps": maps,
        "label": labels[pos],
        "pred": pred,
        "label_name": names.to_numpy()[pos],
        "pred_name": np.array([classes[p] for p in pred]),
        "image_id": split.image_id[pos],
        "layer": layer_name,
        "map_shape": shape[1:],
        "run": run,
    }


def plot_gradcam(ex: dict, out_png: str | Path) -> Path:
    """Rows = true classes; per example the image and its Grad-CAM overlay (true/predicted class)."""
    plt, _ = _style()
    out_png = Path(out_png)
    groups = list(dict.fromkeys(ex["label"].tolist()))
    per_row = max(int((ex["label"] == g).sum()) for g in groups)
    cols = 2 * per_row
    fig, axes = plt.subplots(
        len(groups),
        cols,
        figsize=(2.1 * cols + 1.0, 2.3 * len(groups) + 0.8),
        squeeze=False,
        layout="constrained",
    )
    for r, g in enumerate(groups):
        idx = np.flatnonzero(ex["label"] == g)
        for k in range(per_row):
            a_img, a_cam = axes[r][2 * k], axes[r][2 * k + 1]
            for a in (a_img, a_cam):
                a.set_xticks([])
                a.set_yticks([])
                a.grid(False)
            if k >= len(idx):
                a_img.axis("off")
                a_cam.axis("off")
                continue
            i = idx[k]
            a_img.imshow(ex["images"][i], interpolation="bilinear")
            a_img.set_title(str(ex["image_id"][i]), fontsize=8)
            a_cam.imshow(ex["images"][i], interpolation="bilinear")
            a_cam.imshow(
                ex["maps"][i], cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear"
            )
            ok = ex["pred"][i] == ex["label"][i]
            a_cam.set_title(
                f"true {ex['label_name'][i]}\npred {ex['pred_name'][i]} {'✓' if ok else '✗'}",
                fontsize=9,
                color="darkgreen" if ok else "firebrick",
            )
        axes[r][0].set_ylabel(str(ex["label_name"][idx[0]]), fontsize=11)
    scale = plt.cm.ScalarMappable(norm=plt.Normalize(0, 1), cmap="jet")
    fig.colorbar(
        scale,
        ax=axes,
        shrink=min(0.6, 2.0 / len(groups) + 0.15),
        label="Grad-CAM (scaled per image)",
    )
    run = ex["run"]
    h, w = ex["map_shape"][-2:]
    fig.suptitle(
        f"{run['task']} / {run['model']} / {run['method']} (seed {run['seed']}), test images\n"
        f"Grad-CAM of the predicted class at {ex['layer']} ({h}×{w} map); rows = true class",
        fontsize=11,
    )
    _save(fig, out_png)
    plt.close(fig)
    return out_png


def gradcam_figure(
    cell_dir: str | Path,
    cache_dir: str | Path,
    split_path: str | Path,
    out_png: str | Path,
    per_class: int = 2,
    seed: int = 0,
    device: str = "cpu",
    layer: str | None = None,
) -> dict:
    """Compute (:func:`gradcam_examples`) and draw (:func:`plot_gradcam`) the Grad-CAM figure; return the data."""
    ex = gradcam_examples(
        cell_dir, cache_dir, split_path, per_class=per_class, seed=seed, device=device, layer=layer
    )
    plot_gradcam(ex, out_png)
    return ex


# ----------------------------------------------------------------------------- entry point


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="imbench explain",
        description="t-SNE of penultimate features and Grad-CAM examples of trained cells",
    )
    p.add_argument(
        "--cells",
        required=True,
        nargs="+",
        type=Path,
        help="cell folders of one task and model (e.g. every method, one seed)",
    )
    p.add_argument("--cache-dir", required=True, type=Path)
    p.add_argument(
        "--split", required=True, type=Path, help="split CSV (same rows as the cache index)"
    )
    p.add_argument(
        "--out-dir",
        required=True,
        type=Path,
        help="writes <task>_tsne.png and <task>_gradcam.png here",
    )
    p.add_argument(
        "--figures", nargs="+", choices=FIGURES, default=list(FIGURES), help="which figures to draw"
    )
    p.add_argument(
        "--max-points", type=int, default=1000, help="t-SNE: test images embedded per cell"
    )
    p.add_argument("--per-class", type=int, default=2, help="Grad-CAM: test images per class")
    p.add_argument(
        "--gradcam-method",
        default=None,
        help="Grad-CAM: the method whose cell is explained (default: ce if given, else the first "
        "cell with best.pt)",
    )
    p.add_argument(
        "--gradcam-layer",
        default=None,
        help="Grad-CAM: dotted module name inside the backbone (default: last map before pooling)",
    )
    p.add_argument("--seed", type=int, default=0, help="image sampling and t-SNE seed")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch and t-SNE)")
    from .plugins import add_plugin_arguments

    add_plugin_arguments(p)  # plug-ins' datasets and model families
    return p


def main(argv: list[str] | None = None) -> int:
    from .plugins import PluginError, load_job_plugins

    args = get_args_parser().parse_args(argv)
    try:
        load_job_plugins(args.plugins, args.plugin_sha256)
    except PluginError as exc:
        raise SystemExit(f"imbench explain: error: {exc}") from None
    torch.set_num_threads(args.threads)
    runs = {c: read_json(c / "run.json") for c in args.cells}
    tasks = sorted({r["task"] for r in runs.values()})
    if len(tasks) != 1:
        raise SystemExit(f"explain: the cells mix tasks {tasks}")
    task = tasks[0]
    out = args.out_dir
    if "tsne" in args.figures:
        tsne_figure(
            args.cells,
            args.cache_dir,
            args.split,
            out / f"{task}_tsne.png",
            max_points=args.max_points,
            seed=args.seed,
            device=args.device,
            threads=args.threads,
        )
    if "gradcam" in args.figures:
        trained = [c for c in args.cells if (c / "best.pt").exists()]
        wanted = args.gradcam_method
        if wanted is None and any(runs[c]["method"] == "ce" for c in trained):
            wanted = "ce"
        if wanted is not None:
            trained = [c for c in trained if runs[c]["method"] == wanted]
        if not trained:
            raise SystemExit(
                "explain: no cell with best.pt" + (f" for method {wanted!r}" if wanted else "")
            )
        gradcam_figure(
            trained[0],
            args.cache_dir,
            args.split,
            out / f"{task}_gradcam.png",
            per_class=args.per_class,
            seed=args.seed,
            device=args.device,
            layer=args.gradcam_layer,
        )
    print(f"explain: wrote {', '.join(figure_names(task, args.figures))} into {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
