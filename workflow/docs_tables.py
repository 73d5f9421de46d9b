"""The docs' tables of options, methods and datasets, generated from the registries.

    python scripts/docs_tables.py            rewrite every generated table in docs/
    python scripts/docs_tables.py --check    exit 1, naming the stale pages, when a table differs from the code

Each table stands in its page between two markers, `<!-- generated: NAME -->` and
`<!-- end of generated NAME -->`; what lies between them is written here, from
`arg_parser.build_parser()` (every option, its group, default and help), `unlearn.METHODS`
and `dataset.DATASETS`, never by hand. `tests/test_docs.py` fails when a page is stale.
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cell(text):
    """Text fit for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def code(value):
    return f"`{value}`"


# ---------------------------------------------------------------- options (docs/commands.md)


def default_of(action):
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if action.default is None:
        return "none"
    if isinstance(action.default, str):
        return code(action.default)
    return code(f"{action.default:g}") if isinstance(action.default, float) else code(action.default)


LISTED_ELSEWHERE = {"dataset": "[data.md](data.md#data)", "unlearn": "[methods.md](methods.md#the-registry)"}


def options_table(parser=None):
    """Every option of the entry scripts: its group, spelling, default and help."""
    import arg_parser

    parser = parser or arg_parser.build_parser()
    rows = ["| group | option | default | meaning |", "|---|---|---|---|"]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and a.help != argparse.SUPPRESS and a.dest != "help"]
        for i, action in enumerate(actions):
            name = group.title if i == 0 else ""
            text = action.help
            if action.dest in LISTED_ELSEWHERE:  # their help lists every record's: the page's own table says it better
                text = f"one of: {', '.join(action.choices)} ({LISTED_ELSEWHERE[action.dest]})"
            elif action.choices:
                text += f" (one of: {', '.join(map(str, action.choices))})"
            spelling = ", ".join(code(s) for s in action.option_strings)
            rows.append(f"| {cell(name)} | {spelling} | {default_of(action)} | {cell(text)} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- methods (docs/methods.md)


def option_default(option):
    return "none" if option.default is None else option.default


def methods_table():
    """Every registered method: its name in the tables, kind, the defaults it sets, its own options, one line of help."""
    from unlearn import METHODS

    rows = [
        "| `--unlearn` | tables call it | kind | left out, it sets | its own options (default) | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for name, record in METHODS.items():
        defaults = ", ".join(f"`--{option} {value:g}`" for option, value in record.resolved_defaults().items()) or "—"
        own = ", ".join(f"`{option.spelling}` ({option_default(option)})" for option in record.options) or "—"
        rows.append(f"| {code(name)} | {cell(record.paper_name)} | {record.kind} | {defaults} | {cell(own)} | {cell(record.help)} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- datasets (docs/data.md)


def datasets_table():
    """Every registered dataset: classes, image side, held in memory or streamed, its own options, what it is."""
    from dataset import DATASETS

    rows = [
        "| `--dataset` | classes | image side | held | its own options (default) | what it is, read from where |",
        "|---|---|---|---|---|---|",
    ]
    for name, record in DATASETS.items():
        classes = record.classes if record.classes is not None else "its folders'"
        side = record.side if record.side is not None else f"`--{record.side_option}`"
        held = "streamed from disk" if record.streamed else "in memory (uint8)"
        own = ", ".join(f"`{option.spelling}` ({option_default(option)})" for option in record.options) or "—"
        rows.append(f"| {code(name)} | {classes} | {side} | {held} | {cell(own)} | {cell(record.help)} |")
    return "\n".join(rows)


TABLES = {
    "options": ("docs/commands.md", options_table),
    "methods": ("docs/methods.md", methods_table),
    "datasets": ("docs/data.md", datasets_table),
}


def start_marker(name):
    return f"<!-- generated: {name} (scripts/docs_tables.py; do not edit by hand) -->"


def end_marker(name):
    return f"<!-- end of generated {name} -->"


def with_table(page, name, table):
    """The page's text with the region of table `name` replaced by `table`."""
    start, end = start_marker(name), end_marker(name)
    if start not in page or end not in page:
        raise ValueError(f"no markers for the {name} table: put {start} and {end} on lines of their own")
    before, rest = page.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{table}\n{end}{after}"


def stale_pages(root=ROOT, tables=None):
    """{page: [table names]} whose generated regions differ from what the code gives now."""
    tables = tables or {name: (page, make()) for name, (page, make) in TABLES.items()}
    stale = {}
    for name, (page, table) in tables.items():
        with open(os.path.join(root, page)) as f:
            text = f.read()
        if with_table(text, name, table) != text:
            stale.setdefault(page, []).append(name)
    return stale


def write_tables(root=ROOT):
    for name, (page, make) in TABLES.items():
        path = os.path.join(root, page)
        with open(path) as f:
            text = f.read()
        updated = with_table(text, name, make())
        if updated != text:
            with open(path, "w") as f:
                f.write(updated)
            print(f"{page}: the {name} table rewritten")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check: exit 1 naming each stale page")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages()
        for page, names in stale.items():
            print(f"{page}: the {', '.join(names)} table is stale: run python scripts/docs_tables.py", file=sys.stderr)
        sys.exit(1 if stale else 0)
    write_tables()
