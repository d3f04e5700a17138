#!/usr/bin/env python3
"""test_config_doc.py - docs/CONFIG.md documents exactly the keys bkvd's parser accepts.

    tests/test_config_doc.py [SOURCE_ROOT] [--config-doc FILE]

The accepted sections and keys are read from the parser's source, not from a list kept by
hand:
  - vault/bkvd/config.c on_entry(): each `strcmp(section, "S")` opens section S, and each
    `strcmp(name, "K")` after it (until the next section) is a key of S;
  - a section whose branch calls on_limits_entry() takes the names of that function's
    `keys[]` table ({"K", offsetof(...)});
  - a section whose branch calls parse_rate_rule() takes every PREFIX.METHOD, PREFIX from
    parse_rate_rule()'s `strncmp(name, "PREFIX.", N)` and METHOD from
    bkv_rate_method_names[] in vault/handlers/ratelimit.c.
A section branch from which no key can be derived fails the test (the parser grew a form
this script does not read), rather than passing with an empty list.

docs/CONFIG.md must have, under a heading `## [S]` for each section, a table row whose first
cell is `K` for each key, and no heading or row for a section or key the parser does not
accept. Defaults: for each key whose default set_defaults() (or
bkv_rate_config_defaults()) gives as a literal, or leaves at zero (0, false, the empty
string: the row must say `0`, `false`, "empty" or "none"), the row's default cell must show
it. Not compared: suites, p256_ake and sealed_keys (enumerations).
"""
import re
import sys
from pathlib import Path


def fail(msg):
    print("config_doc: " + msg, file=sys.stderr)
    sys.exit(2)


def function_body(src, name):
    """The text of C function NAME's body (from its opening brace to the matching one)."""
    m = re.search(r"^[a-z][^\n;]*\b" + re.escape(name) + r"\([^;{]*\)\s*\{", src, re.M)
    if not m:
        fail(f"cannot find function {name}()")
    depth, i = 0, m.end() - 1
    while i < len(src):
        if src[i] == "{":
            depth += 1
        elif src[i] == "}":
            depth -= 1
            if depth == 0:
                return src[m.end():i]
        i += 1
    fail(f"unbalanced braces in {name}()")


def parser_keys(root):
    config_c = (root / "vault/bkvd/config.c").read_text()
    ratelimit_c = (root / "vault/handlers/ratelimit.c").read_text()

    limits = re.findall(r'\{\s*"([a-z0-9_]+)"\s*,\s*offsetof\(\s*bkvd_config\s*,\s*(\w+)\)',
                        function_body(config_c, "on_limits_entry"))
    if not limits:
        fail("no keys found in on_limits_entry()'s table")
    prefixes = re.findall(r'strncmp\(name, "([a-z_]+)\.", \d+\)',
                          function_body(config_c, "parse_rate_rule"))
    m = re.search(r"bkv_rate_method_names\[[A-Z_]+\]\s*=\s*\{(.*?)\};", ratelimit_c, re.S)
    methods = re.findall(r'=\s*"([A-Za-z]+)"', m.group(1)) if m else []
    if not prefixes or not methods:
        fail("cannot read the rate-limit key prefixes or methods")

    sections = {}  # section -> {key: field or None}
    order = []
    body = function_body(config_c, "on_entry")
    # Split on_entry at each section test: each chunk is one section's branch.
    parts = re.split(r'strcmp\(section, "([a-z_]+)"\)', body)
    for i in range(1, len(parts), 2):
        section, branch = parts[i], parts[i + 1]
        keys = {}
        # `strcmp(name, "K")` then, up to the next such test, the field it sets.
        tests = list(re.finditer(r'strcmp\(name, "([a-z0-9_]+)"\)', branch))
        for j, t in enumerate(tests):
            end = tests[j + 1].start() if j + 1 < len(tests) else len(branch)
            code = branch[t.end():end]
            f = re.search(r"STRING\((\w+)\)|&c->([\w.]+)|c->(\w+),", code)
            field = next((g for g in f.groups() if g), None) if f else None
            kind = ("u32" if "parse_u32(" in code else "bool" if "parse_bool(" in code
                    else "string" if "STRING(" in code or "copy_string(" in code else None)
            keys[t.group(1)] = (field, kind) if field else None
        if "on_limits_entry(" in branch:
            keys.update({k: (field, "u32") for k, field in limits})
        if "parse_rate_rule(" in branch:
            keys.update({f"{p}.{meth}": None for p in prefixes for meth in methods})
        if not keys:
            fail(f"no key of [{section}] could be derived from on_entry()")
        sections[section] = keys
        order.append(section)
    if len(sections) < 5:
        fail(f"only {len(sections)} sections derived from on_entry(): {order}")
    return sections, config_c, ratelimit_c, methods


def source_defaults(config_c, ratelimit_c, methods):
    """field -> default text, for the defaults set_defaults() writes as literals."""
    body = function_body(config_c, "set_defaults")
    d = {}
    for m in re.finditer(r'snprintf\(c->(\w+), sizeof\(c->\w+\), "([^"]*)"\)', body):
        d[m.group(1)] = m.group(2)
    for m in re.finditer(r"c->(\w+) = ([0-9][0-9 *]*);", body):
        d[m.group(1)] = str(eval(m.group(2)))  # only digits, blanks and '*' matched
    for m in re.finditer(r'memcpy\(c->(\w+), "([^"]*)", \d+\)', body):
        d[m.group(1)] = m.group(2)
    m = re.search(r"c->ksf = \(opaque_ksf\)\{\w+, (\d+), (\d+), (\d+)\}", body)
    if m:
        d["ksf.iterations"], d["ksf.memory_kib"], d["ksf.parallelism"] = m.groups()
    rbody = function_body(ratelimit_c, "bkv_rate_config_defaults")
    units = {"1": "s", "60": "min", "3600": "h"}
    rate = {}
    for m in re.finditer(r"c->(per_\w+)\[BKV_RATE_(\w+)\] = \(bkv_rate_rule\)\{(\d+), (\d+), (\d+)\}",
                         rbody):
        method = "".join(w.capitalize() for w in m.group(2).split("_"))
        rate[f"{m.group(1)}.{method}"] = f"{m.group(3)}/{units[m.group(4)]} burst {m.group(5)}"
    if "c->enabled = true" in rbody:
        rate["enabled"] = "true"
    for p in ("per_account", "per_address"):
        for meth in methods:
            rate.setdefault(f"{p}.{meth}", "off")
    return d, rate


def doc_tables(text):
    """section -> {key: default cell}, from `## [S]` headings and `| `K` | DEFAULT |` rows."""
    doc, section = {}, None
    for line in text.splitlines():
        h = re.match(r"##\s+(.*)$", line)
        if h:
            s = re.fullmatch(r"\[([a-z_]+)\]\s*", h.group(1))
            section = s.group(1) if s else None
            if section is not None:
                if section in doc:
                    fail(f"CONFIG.md has two ## [{section}] headings")
                doc[section] = {}
            continue
        row = re.match(r"\|\s*`([^`]+)`\s*\|([^|]*)\|", line)
        if row and section is not None:
            if row.group(1) in doc[section]:
                print(f"[{section}] {row.group(1)} has two rows in CONFIG.md")
                doc[section]["\0dup"] = ""
            doc[section][row.group(1)] = row.group(2).strip()
    return doc


def main():
    args = sys.argv[1:]
    doc_path = None
    if "--config-doc" in args:
        i = args.index("--config-doc")
        doc_path = Path(args[i + 1])
        del args[i:i + 2]
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    doc_path = doc_path or root / "docs/CONFIG.md"
    sections, config_c, ratelimit_c, methods = parser_keys(root)
    defaults, rate_defaults = source_defaults(config_c, ratelimit_c, methods)
    doc = doc_tables(doc_path.read_text())

    problems = []
    nkeys = ndefaults = 0
    for section, keys in sections.items():
        if section not in doc:
            problems.append(f"[{section}]: no '## [{section}]' section in CONFIG.md")
            continue
        for key, field in keys.items():
            nkeys += 1
            if key not in doc[section]:
                problems.append(f"[{section}] {key}: accepted by the parser, no row in CONFIG.md")
                continue
            if section == "rate_limit":
                want = rate_defaults.get(key)
            elif field is None:
                want = None
            else:
                # set_defaults() starts from memset 0: a field it does not set is 0, false
                # or the empty string.
                zero = {"u32": "0", "bool": "false", "string": ""}.get(field[1])
                want = defaults.get(field[0], zero)
            if want is None:
                continue
            ndefaults += 1
            cell = doc[section][key]
            shown = re.findall(r"`([^`]*)`", cell)
            if want == "" and (cell.startswith("empty") or cell.startswith("none")):
                continue
            if want not in shown and not (want == "-" and "`-`" in cell):
                problems.append(f"[{section}] {key}: the source's default is '{want}', "
                                f"CONFIG.md says '{cell}'")
    for section, rows in doc.items():
        if section not in sections:
            problems.append(f"CONFIG.md documents a section [{section}] the parser does not accept")
            continue
        for key in rows:
            if key == "\0dup":
                problems.append(f"[{section}]: a key has two rows in CONFIG.md")
            elif key not in sections[section]:
                problems.append(f"CONFIG.md documents [{section}] {key}, which the parser "
                                "does not accept")
    print(f"{len(sections)} sections, {nkeys} keys derived from the parser; "
          f"{ndefaults} defaults compared")
    for p in problems:
        print("FAIL " + p)
    if problems:
        sys.exit(1)
    print("ok CONFIG.md documents exactly the accepted keys")


if __name__ == "__main__":
    main()
