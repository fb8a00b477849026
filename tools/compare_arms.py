"""Two recipes ("arms") of one alignment comparison, run with the same seeds: each model's metrics
under both arms and the paired test of the second arm against the first, for every family and group.

Reads the tables ``tools/compare_alignment.py`` writes in the unseen setting (``table.json``; the
held-out comparison ``tools/compare_heldout.py`` keeps one per family in ``OUT/FAMILY/finetuned/``).
Each ``--arm LABEL=PATTERN`` names its tables by a pattern in which ``{family}`` and ``{group}`` stand
for each of ``--families`` and ``--groups`` (a group is what else varies, e.g. the number of
training videos):

    python tools/compare_arms.py --out results/alignment_heldout_budget.json \\
        --arm 640=output/data_size/{family}/n{group}/{family}/finetuned/table.json \\
        --arm 1920=output/data_size_steps3/{family}/n{group}/{family}/finetuned/table.json \\
        --families quadruped stacking --groups 20 45 --seeds 0 1 2 3 4

Per family, group, model and views (``unseen``: the held-out cameras with the first-person view, the
release's metric; ``training``: the training cameras with the first-person view, same test videos)
and for the alignment error and Kendall's tau: mean, sample standard deviation and per-seed values
under each arm, the per-seed differences (second arm - first) with a two-sided paired t-test, and,
where both are there, 3DTRL - ViT per arm. Writes ``--out`` (JSON) and the same path with ``.md``.
"""
import argparse
import os
import shlex
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from threedtrl.alignment.embedder import MODEL_ALIASES
from threedtrl.runtime import UserError, read_json, run_cli, write_json_atomic, write_text_atomic
from threedtrl.tools.seed_stats import format_p, paired, summarise

SHORT_NAMES = {MODEL_ALIASES[short]: short for short in ("deit_tcn", "vit_3dtrl")}  # the README's names
LABELS = {"deit_tcn": "ViT", "vit_3dtrl": "3DTRL"}
MEASURES = ("alignment_error", "kendalls_tau")
VIEWS = {"unseen": "test", "training": "test_seen_views"}  # this tool's name -> compare_alignment's
VIEW_NOTES = {"unseen": "unseen cameras with the first-person view (the release's metric)",
              "training": "training cameras with the first-person view"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--arm", action="append", required=True, metavar="LABEL=PATTERN",
                   help="an arm's label and its tables' path pattern ({family}, {group}); give two, the baseline first")
    p.add_argument("--families", nargs="+", required=True, help="the families ({family} in the patterns)")
    p.add_argument("--groups", nargs="+", default=[""], help="the groups ({group} in the patterns)")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="the seeds to pair (default: those every table holds)")
    p.add_argument("--out", required=True, help="JSON file to write (and the same name with .md)")
    return p


def parse_arms(specs: Sequence[str]) -> List[Tuple[str, str]]:
    arms = []
    for spec in specs:
        label, sep, pattern = spec.partition("=")
        if not sep or not label or not pattern:
            raise UserError(f"--arm takes LABEL=PATTERN, got {spec!r}")
        arms.append((label, pattern))
    if len(arms) != 2 or arms[0][0] == arms[1][0]:
        raise UserError(f"give two --arm with different labels (the baseline first), got {len(arms)}")
    return arms


def read_table(pattern: str, family: str, group: str) -> Tuple[str, Dict]:
    """The compare_alignment table of ``family`` and ``group``, checked for what this tool reads."""
    try:
        path = pattern.format(family=family, group=group)
    except (KeyError, IndexError, ValueError) as err:
        raise UserError(f"--arm pattern {pattern!r}: only {{family}} and {{group}} can be filled in ({err})") from None
    if not os.path.isfile(path):
        raise UserError(f"no table file {path}")
    table = read_json(path)
    views = table.get("table", {}).get("unseen") if isinstance(table, dict) else None
    if not isinstance(views, dict) or set(VIEWS.values()) - set(views):
        raise UserError(f"{path} is not a table.json of tools/compare_alignment.py in the unseen setting")
    return path, table


def seed_values(table: Dict, views: str, model: str, key: str, seeds: Sequence[int]) -> List[float]:
    """Values of ``key`` (a metric, or ``seconds``) for ``seeds``, in that order."""
    row = table["table"]["unseen"][views][model]
    values = row[key] if key == "seconds" else row[key]["values"]
    order = table["settings"]["seeds"]
    return [values[order.index(seed)] for seed in seeds]


def common_seeds(tables: Sequence[Tuple[str, Dict]], wanted: Optional[Sequence[int]]) -> List[int]:
    held = [set(table["settings"]["seeds"]) for _, table in tables]
    shared = sorted(set.intersection(*held))
    if wanted is None:
        if len(shared) < 2:
            raise UserError(f"the tables share {len(shared)} seed(s); pairing needs at least 2")
        return shared
    for (path, table), seeds in zip(tables, held):
        missing = sorted(set(wanted) - seeds)
        if missing:
            raise UserError(f"{path} holds no run of seed(s) {missing}")
    return list(wanted)


def common_models(tables: Sequence[Tuple[str, Dict]]) -> List[str]:
    first_path, first = tables[0]
    models = list(first["table"]["unseen"]["test"])
    for path, table in tables[1:]:
        if list(table["table"]["unseen"]["test"]) != models:
            raise UserError(f"{path} compares other models than {first_path}")
    return models


def group_rows(arms: Sequence[Tuple[str, Dict]], models: Sequence[str], seeds: Sequence[int]) -> Dict:
    """One family and group: per model, views and metric each arm's summary and the paired test."""
    (base, _), (other, _) = arms
    rows: Dict[str, Dict] = {}
    for model in models:
        key = SHORT_NAMES.get(model, model)
        for name, views in VIEWS.items():
            cell: Dict[str, Dict] = {}
            for measure in MEASURES:
                cell[measure] = {label: summarise(seed_values(table, views, model, measure, seeds))
                                 for label, table in arms}
                cell[measure]["paired"] = paired(cell[measure][base]["values"], cell[measure][other]["values"])
            cell["seconds"] = {label: seed_values(table, views, model, "seconds", seeds) for label, table in arms}
            rows.setdefault(key, {})[name] = cell
    if {"deit_tcn", "vit_3dtrl"} <= set(rows):
        rows["3dtrl_vs_vit"] = {name: {measure: {label: paired(rows["deit_tcn"][name][measure][label]["values"],
                                                               rows["vit_3dtrl"][name][measure][label]["values"])
                                                 for label, _ in arms}
                                       for measure in MEASURES}
                                for name in VIEWS}
    return rows


def markdown(families: Dict, arms: Sequence[str], seeds: Sequence[int]) -> str:
    base, other = arms
    lines = [f"Mean ± standard deviation over seeds {', '.join(map(str, seeds))}; p: two-sided paired t-test of "
             f"{other} against {base}. AE: alignment error (lower is better); tau: Kendall's tau.", "",
             f"| family | group | model | cameras | AE {base} | AE {other} | p | tau {base} | tau {other} | p |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for family, groups in families.items():
        for group, rows in groups.items():
            for key in (k for k in rows if k != "3dtrl_vs_vit"):
                for name, cell in rows[key].items():
                    cells = []
                    for measure in MEASURES:
                        cells += [f"{cell[measure][label]['mean']:.3f} ± {cell[measure][label]['std']:.3f}"
                                  for label in arms]
                        cells.append(format_p(cell[measure]["paired"]["p_value"]))
                    lines.append(f"| {family} | {group} | {LABELS.get(key, key)} | {name} | " + " | ".join(cells) + " |")
    lines += ["", f"3DTRL - ViT, alignment error (mean difference, p) under {base} and {other}:", "",
              f"| family | group | cameras | {base} | {other} |", "|---|---|---|---|---|"]
    for family, groups in families.items():
        for group, rows in groups.items():
            for name, cell in rows.get("3dtrl_vs_vit", {}).items():
                lines.append(f"| {family} | {group} | {name} | " + " | ".join(
                    f"{cell['alignment_error'][label]['mean_difference']:+.3f} "
                    f"(p {format_p(cell['alignment_error'][label]['p_value'])})" for label in arms) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    arms = parse_arms(args.arm)
    tables = {(label, family, group): read_table(pattern, family, group)
              for label, pattern in arms for family in args.families for group in args.groups}
    seeds = common_seeds(list(tables.values()), args.seeds)
    models = common_models(list(tables.values()))
    families = {family: {group: group_rows([(label, tables[label, family, group][1]) for label, _ in arms],
                                           models, seeds)
                         for group in args.groups}
                for family in args.families}
    settings = {"command": shlex.join(["python", "tools/compare_arms.py", *argv]), "arms": dict(arms), "baseline": arms[0][0], "families": args.families, "groups": args.groups,
                "seeds": seeds, "views": VIEW_NOTES,
                "train_args": {label: sorted({table["settings"].get("train_args", "")
                                              for (arm, _, _), (_, table) in tables.items() if arm == label})
                               for label, _ in arms},
                "layout": "families[FAMILY][GROUP][model or 3dtrl_vs_vit][views][metric][arm label or paired]"}
    text = markdown(families, [label for label, _ in arms], seeds)
    write_json_atomic({"settings": settings, "families": families}, args.out)
    write_text_atomic(text, os.path.splitext(args.out)[0] + ".md")
    print(text)


if __name__ == "__main__":
    run_cli(main)
