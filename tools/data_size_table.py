"""Alignment against the number of training videos: ``tools/compare_heldout.py`` tables of one recipe,
each run with ``--train_videos N --train_videos_everywhere`` for another N, gathered into one table.

    python tools/data_size_table.py --table 2=output/data_size/quadruped/n2/table.json \\
        --table 5=output/data_size/quadruped/n5/table.json --table 10=results/alignment_heldout.json \\
        --out results/alignment_heldout_data_size.json

A table run without ``--train_videos`` used every training video; give it as the N it had (10 for the
held-out families). Tables of one N may hold different families. For every family in a table of each
N given, per N and model: the unseen-view alignment error and Kendall's tau after fine-tuning (mean,
sample standard deviation and per-seed values over the seeds the family's tables share) and the
two-sided paired t-test of 3DTRL against the ViT; the start points' values, which do not depend on N,
once. Writes ``--out`` (JSON), the same path with ``.md`` and, as a chart of the alignment error
against N, with ``.png``.
"""
import argparse
import os
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from threedtrl.runtime import UserError, read_json, run_cli, write_json_atomic, write_text_atomic
from threedtrl.tools.seed_stats import format_p, paired, summarise
from threedtrl.visualization.plots import metric_by_size_plot, save_png

MODELS = ("deit_tcn", "vit_3dtrl")
LABELS = {"deit_tcn": "ViT (DeiT+TCN)", "vit_3dtrl": "ViT + 3DTRL"}
MEASURES = ("alignment_error", "kendalls_tau")
SIZE_FLAGS = ("--train_videos", "--train_videos_everywhere")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--table", action="append", required=True, metavar="N=FILE",
                   help="a compare_heldout.py table.json and the number of training videos of its runs")
    p.add_argument("--out", required=True, help="JSON file to write (and the same name with .md and .png)")
    return p


def parse_table_arg(text: str) -> Tuple[int, str]:
    size, sep, path = text.partition("=")
    if not sep or not size.isdigit() or int(size) < 1 or not path:
        raise UserError(f"--table takes N=FILE with N the number of training videos, got {text!r}")
    if not os.path.isfile(path):
        raise UserError(f"no table file {path}")
    return int(size), path


def split_recipe(train_args: str) -> Tuple[Optional[int], List[str]]:
    """``--train_videos``'s value (None when absent) and the recipe's other arguments."""
    try:
        tokens = shlex.split(train_args)
    except ValueError as err:
        raise UserError(f"the recipe {train_args!r} of a table does not parse: {err}") from None
    videos, rest, it = None, [], iter(tokens)
    for token in it:
        if token == "--train_videos":
            value = next(it, "")
            if not value.isdigit():
                raise UserError(f"--train_videos {value!r} in the recipe {train_args!r} is not a number of videos")
            videos = int(value)
        elif token != "--train_videos_everywhere":
            rest.append(token)
    return videos, rest


def _entry(obj, *keys):
    """``obj[k1][k2]...``, or None where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _numbers(values, count: int) -> bool:
    return (isinstance(values, list) and len(values) == count
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values))


def check_table(table, path: str) -> None:
    """Refuse, naming the file, anything but a table.json of compare_heldout.py with both models'
    start and per-seed fine-tuned values."""
    seeds = _entry(table, "settings", "seeds")
    settings_ok = (isinstance(_entry(table, "settings", "train_args"), str)
                   and isinstance(_entry(table, "settings", "inits"), list)
                   and isinstance(seeds, list) and isinstance(_entry(table, "families"), dict))
    if not settings_ok or not all(
            isinstance(_entry(rows, model, "start", metric, "mean"), (int, float))
            and _numbers(_entry(rows, model, "finetuned", metric, "values"), len(seeds))
            for rows in table["families"].values() for model in MODELS for metric in MEASURES):
        raise UserError(f"{path} is not a table.json of tools/compare_heldout.py (settings, and both models' "
                        f"start and fine-tuned values per family)")


def read_tables(specs: Sequence[str]) -> List[Tuple[int, str, Dict]]:
    """Each ``(N, file, table)``, checked: one recipe and one pair of start points, and N as its runs
    were given."""
    tables, recipe = [], None
    for spec in specs:
        size, path = parse_table_arg(spec)
        table = read_json(path)
        check_table(table, path)
        videos, rest = split_recipe(table["settings"]["train_args"])
        if videos is not None and videos != size:
            raise UserError(f"{path} was run with --train_videos {videos}, not {size}")
        this = (rest, sorted(table["settings"]["inits"]))
        if recipe is not None and this != recipe:
            raise UserError(f"{path} was run with another recipe or other start points than the first table "
                            f"(besides {' and '.join(SIZE_FLAGS)})")
        recipe = this
        tables.append((size, path, table))
    return tables


def tables_by_family(tables: Sequence[Tuple[int, str, Dict]]) -> Dict[str, Dict[int, Dict]]:
    """Per family that every N given has: N -> the table holding it (one per N)."""
    sizes = sorted({size for size, _, _ in tables})
    families: Dict[str, Dict[int, Dict]] = {}
    for size, path, table in sorted(tables, key=lambda t: t[0]):
        for family in table["families"]:
            if size in families.setdefault(family, {}):
                raise UserError(f"two tables for {size} training videos hold {family} ({path} is the second)")
            families[family][size] = table
    complete = {family: by_size for family, by_size in families.items() if list(by_size) == sizes}
    if not complete:
        raise UserError(f"no family is in a table of every size given ({', '.join(map(str, sizes))})")
    return complete


def seed_values(table: Dict, family: str, model: str, metric: str, seeds: Sequence[int]) -> List[float]:
    values = table["families"][family][model]["finetuned"][metric]["values"]
    by_seed = dict(zip(table["settings"]["seeds"], values))
    return [by_seed[s] for s in seeds]


def family_rows(family: str, by_size: Dict[int, Dict]) -> Dict:
    """The start points' values and, per N, each model's and the paired test's, over the seeds every
    N's table has."""
    seeds = sorted(set.intersection(*(set(t["settings"]["seeds"]) for t in by_size.values())))
    if not seeds:
        raise UserError(f"the tables of {family} share no seed")
    sizes = {}
    for size, table in by_size.items():
        sizes[size] = {}
        for metric in MEASURES:
            base, trl = (seed_values(table, family, model, metric, seeds) for model in MODELS)
            sizes[size][metric] = {"deit_tcn": summarise(base), "vit_3dtrl": summarise(trl),
                                   "paired": paired(base, trl)}
    first = next(iter(by_size.values()))["families"][family]
    return {"seeds": seeds, "sizes": sizes,
            "start": {model: {m: first[model]["start"][m]["mean"] for m in MEASURES} for model in MODELS}}


def markdown(families: Dict) -> str:
    lines = ["Unseen cameras of the test split; mean ± standard deviation over the seeds; p: two-sided paired "
             "t-test of 3DTRL against the ViT.", "",
             "| family | training videos | AE ViT | AE 3DTRL | p (AE) | tau ViT | tau 3DTRL | p (tau) | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for family, rows in families.items():
        start = rows["start"]
        lines.append(f"| {family} | start point | {start['deit_tcn']['alignment_error']:.3f} | "
                     f"{start['vit_3dtrl']['alignment_error']:.3f} | | {start['deit_tcn']['kendalls_tau']:.3f} | "
                     f"{start['vit_3dtrl']['kendalls_tau']:.3f} | | |")
        for size, row in rows["sizes"].items():
            cells = []
            for metric in MEASURES:
                r = row[metric]
                cells += [f"{r[m]['mean']:.3f} ± {r[m]['std']:.3f}" for m in MODELS]
                cells.append(format_p(r["paired"]["p_value"]))
            lines.append(f"| {family} | {size} | {' | '.join(cells)} | {', '.join(map(str, rows['seeds']))} |")
    return "\n".join(lines) + "\n"


def error_plot(families: Dict) -> np.ndarray:
    """``(H, W, 3)`` uint8: the alignment error against the number of training videos, per family."""
    def mean_std(entry: Dict) -> Tuple[float, float]:
        return entry["mean"], entry["std"]
    panels = {family: {LABELS[model]: {size: mean_std(row["alignment_error"][model])
                                       for size, row in rows["sizes"].items()}
                       for model in MODELS} for family, rows in families.items()}
    starts = {family: {LABELS[model]: rows["start"][model]["alignment_error"] for model in MODELS}
              for family, rows in families.items()}
    return metric_by_size_plot(panels, starts, "alignment error (unseen cameras)")


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    tables = read_tables(args.table)
    families = {family: family_rows(family, by_size) for family, by_size in tables_by_family(tables).items()}
    result = {"families": families, "tables": [{"training_videos": size, "file": path} for size, path, _ in tables]}
    text = markdown(families)
    write_json_atomic(result, args.out)
    stem = os.path.splitext(args.out)[0]
    write_text_atomic(text, stem + ".md")
    save_png(error_plot(families), stem + ".png")
    print(text)


if __name__ == "__main__":
    run_cli(main)
