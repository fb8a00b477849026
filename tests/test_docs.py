"""The docs stay true: every relative link and file path they name exists, every `make` target is
in the Makefile and every command-line flag is one a command of the project accepts."""
import contextlib
import glob
import io
import os
import re
import runpy
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
# the commands whose --help the docs may quote (run from the folder each is documented in)
COMMANDS = [(ROOT, s) for s in ("multiview_video_alignment.py", "imagenet_train.py", "imagenet_val.py", "visualize.py",
                                *sorted(glob.glob("tools/*.py", root_dir=ROOT)),
                                *sorted(glob.glob("benchmarks/*.py", root_dir=ROOT)),
                                "data_pipeline/render_ftpv.py")]
COMMANDS += [(os.path.join(ROOT, "action_recognition"), s)
             for s in sorted(glob.glob("tools/*.py", root_dir=os.path.join(ROOT, "action_recognition")))
             + sorted(glob.glob("benchmarks/*.py", root_dir=os.path.join(ROOT, "action_recognition")))]
COMMANDS = [(folder, script) for folder, script in COMMANDS
            if script not in ("tools/model_check.py", "tools/seed_stats.py")]  # no flags: a check and a library
# flags of other programs the docs quote, and the release's multi-GPU flags, which the alignment script
# refuses in one line (docs/alignment.md says so) and so does not list
FOREIGN_FLAGS = {"--nproc_per_node", "--distributed", "--gpus", "--address", "--port", "--no-",
                 "--no-deps", "--no-build-isolation"}  # the last two: pip's
LINK = re.compile(r"\[[^\]]*\]\(([^)#\s]+)(?:#[^)]*)?\)")
PATH = re.compile(r"`((?:[\w.-]+/)+[\w.-]*\.(?:py|sh|yaml|md|json|csv|png|pth|txt|toml))`")
ANCHORED = re.compile(r"\[[^\]]*\]\(([^)#\s]*\.md|)#([^)\s]+)\)")
HEADING = re.compile(r"^#+ +(.+?) *$", re.M)
MAKE = re.compile(r"`make ([a-z][\w-]*)")
FLAG = re.compile(r"(?<![\w-])(--[a-zA-Z][\w-]*)")


def _text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _placeholder(path):
    return "<" in path or "*" in path or any(part.split(".")[0].isupper() for part in path.split("/"))


def _rel(path):
    return os.path.relpath(path, ROOT)


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_relative_links_and_named_files_exist(doc):
    text = _text(doc)
    missing = [target for target in LINK.findall(text) if "://" not in target and not target.startswith("mailto:")
               and not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(doc), target)))]
    # a path in backquotes is relative to the repository, to action_recognition/ (where its commands run)
    # or to its configs/; output/ and data/ are what commands write, capitals (OUT/, X.yaml) placeholders
    bases = (ROOT, os.path.join(ROOT, "action_recognition"), os.path.join(ROOT, "action_recognition", "configs"))
    missing += [p for p in PATH.findall(text) if not p.startswith(("output/", "data/", "../"))
                and not any(os.path.exists(os.path.join(base, p)) for base in bases) and not _placeholder(p)]
    assert not missing, f"{_rel(doc)} names what does not exist: {missing}"


def heading_anchors(path):
    """The anchors GitHub gives the headings of a Markdown file: lower case, punctuation dropped,
    spaces as hyphens (code blocks skipped)."""
    text = re.sub(r"^```.*?^```", "", _text(path), flags=re.M | re.S)
    text = re.sub(r"^    .*$", "", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in HEADING.findall(text)}


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_links_to_sections_name_a_heading(doc):
    broken = [f"{target}#{anchor}" for target, anchor in ANCHORED.findall(_text(doc))
              if anchor not in heading_anchors(os.path.normpath(os.path.join(os.path.dirname(doc), target))
                                               if target else doc)]
    assert not broken, f"{_rel(doc)} links to sections that are not there: {broken}"


def test_make_targets_exist():
    makefile = _text(os.path.join(ROOT, "Makefile"))
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.M))
    named = {(t, _rel(doc)) for doc in DOCS for t in MAKE.findall(_text(doc))}
    assert {t for t, _ in named} - targets == set(), sorted((t, d) for t, d in named if t not in targets)


def _help(folder, script):
    """The --help text of ``script``, run in this process (one import of torch for all of them)."""
    out, cwd, argv = io.StringIO(), os.getcwd(), sys.argv
    os.chdir(folder)
    sys.argv = [script, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            runpy.run_path(os.path.join(folder, script), run_name="__main__")
    except SystemExit:
        pass
    finally:
        os.chdir(cwd)
        sys.argv = argv
    return out.getvalue()


def test_every_flag_the_docs_name_exists():
    known = set(FOREIGN_FLAGS)
    for folder, script in COMMANDS:
        text = _help(folder, script)
        assert "usage:" in text, f"{script} --help printed no usage"
        known |= set(FLAG.findall(text))
    named = {}
    for doc in DOCS:
        for flag in FLAG.findall(_text(doc)):
            named.setdefault(flag, _rel(doc))
    unknown = {flag: doc for flag, doc in named.items() if flag not in known}
    assert not unknown, f"flags no command accepts: {unknown}"


def test_every_action_config_key_has_a_comment():
    """Each key of the action-recognition defaults says what it does, on its line or the one above."""
    source = _text(os.path.join(ROOT, "action_recognition", "timesformer", "config.py"))
    lines = source[source.index("_DEFAULTS = {"):source.index("\n}\n")].splitlines()
    bare = [m.group(1) for i, line in enumerate(lines) if (m := re.match(r'\s+"([A-Z0-9_]+)": (?!\{)', line))
            and "#" not in line and not lines[i - 1].strip().startswith("#")]
    assert not bare, f"config keys without a comment: {bare}"
