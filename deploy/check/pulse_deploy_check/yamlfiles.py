"""Parsing the YAML files (check `yaml`): every document of every file must load.

The other checks work on the parsed documents collected here, so a file is read once.
"""

import yaml

# libyaml's loader when PyYAML has it: several times faster on the builds.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_text(text):
    return [d for d in yaml.load_all(text, Loader=LOADER) if d is not None]


def load_all(path):
    return load_text(read(path))


def check_yaml(ctx, paths):
    """Loads each file into ctx.docs_by_file; a file that does not parse fails `yaml`."""
    ndocs = 0
    for path in paths:
        try:
            ctx.docs_by_file[path] = load_all(path)
            ndocs += len(ctx.docs_by_file[path])
        except yaml.YAMLError as e:
            ctx.fail("yaml", f"{path} does not parse: {e}")
    if not ctx.report.count("yaml"):
        ctx.say("yaml", f"ok ({len(paths)} files, {ndocs} documents parse)")
