"""forager's in-container evaluation driver (stdlib only; run as `python3 -I -S -c <this file>`).

Read by rewards/evaluate.ts and sent to the container; the repository cannot shadow its
modules (-I -S: no current directory, no site packages on the path). Configuration comes as
JSON on stdin; the result is one JSON object on the last line of stdout.

One mode, `prepare` (run as root before the tests; nothing of forager's runs in the container
after the test command starts): record the base commit, the base pytest configuration (kept
outside the tree) and the pytest plugins installed at the base state; apply the model patch (the
apply commands in order, the tree reset between attempts); refuse a patch that wrote outside the
tree or into .git; reset what the patch changed that is protected (test-like files, pytest and
import-path hooks, packaging metadata, bytecode) to the base commit by writing blobs (batched git
calls); apply the hidden test patch; write canary tests (clones of the files' own tests);
remove bytecode the base commit does not track; move .git out of the tree; make the unprivileged
test user and give it the tree; install the guard (rewards/driver/guard.py, pytest_plugin.py)
and the results channel (a FIFO only root reads).

A path the patch names that cannot be reset is the patch's failure (`resetProblems`, graded
patch_apply_failed by evaluate.ts), never an environment error.

forager's git commands run with config and attribute sources pinned: no system or global
config, no hooks, no fsmonitor, no attributes file, literal pathspecs; files are reset from
blobs (`git cat-file blob`), so no filter or attribute of the tree applies.
"""
import ast
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys

cfg = json.loads(sys.stdin.buffer.read().decode("utf-8"))
wd = os.path.realpath(cfg["workdir"])
d = cfg["dir"]
out = {}

GIT_ENV = {
    k: v for k, v in os.environ.items() if not k.startswith("GIT_")
}
GIT_ENV.update({
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_LITERAL_PATHSPECS": "1",
    "HOME": "/nonexistent",
    "LC_ALL": "C",
})
GIT_OPTS = [
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.attributesFile=/dev/null",
    "-c", "core.autocrlf=false",
    "-c", "core.safecrlf=false",
    "-c", "core.symlinks=true",
    "-c", "safe.directory=*",
]


def run(argv, stdin=None, env=None, limit=20000):
    r = subprocess.run(argv, cwd=wd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    return r.returncode, r.stdout.decode("utf-8", "replace")[-limit:] if limit else r.stdout.decode("utf-8", "replace")


def git(*args):
    r = subprocess.run(["git", *GIT_OPTS, *args], cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=GIT_ENV)
    return r.returncode, r.stdout.decode("utf-8", "surrogateescape"), r.stderr.decode("utf-8", "replace")


def git_bytes(*args):
    r = subprocess.run(["git", *GIT_OPTS, *args], cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=GIT_ENV)
    return r.returncode, r.stdout


def zlist(text):
    return [p for p in text.split("\0") if p]


def inside(path):
    """Is `path` (absolute, symlinks resolved) inside the tree and outside .git?"""
    real = os.path.realpath(path)
    if real != wd and not real.startswith(wd + os.sep):
        return False
    rel = os.path.relpath(real, wd)
    return rel.split(os.sep)[0].lower().rstrip(". ") != ".git"


def remove(full):
    try:
        if os.path.islink(full) or os.path.isfile(full):
            os.unlink(full)
        elif os.path.isdir(full):
            shutil.rmtree(full)
    except FileNotFoundError:
        pass


def real_parent(rel):
    """Make every parent of `rel` a real directory inside the tree (a symlink or file in the way is removed)."""
    parts = rel.split("/")[:-1]
    cur = wd
    for part in parts:
        cur = os.path.join(cur, part)
        if os.path.islink(cur) or (os.path.exists(cur) and not os.path.isdir(cur)):
            remove(cur)
        if not os.path.isdir(cur):
            os.mkdir(cur)



def chunks(xs, n):
    for i in range(0, len(xs), n):
        yield xs[i:i + n]


def tree_entries(base, rels):
    """{rel: (mode, type, sha)} at `base` for the given paths, in batched `git ls-tree` calls."""
    out = {}
    for part in chunks(sorted(set(rels)), 400):
        code, text, _ = git("ls-tree", "-z", "--full-tree", base, "--", *part)
        if code != 0:
            # One bad path (too long, say) fails the batch: ask one by one.
            if len(part) > 1:
                for rel in part:
                    out.update(tree_entries(base, [rel]))
            continue
        for rec in zlist(text):
            meta, _, p = rec.partition("\t")
            mode, typ, sha = meta.split()
            out[p] = (mode, typ, sha)
    return out


def blobs(shas):
    """{sha: bytes} through one `git cat-file --batch`."""
    shas = sorted(set(shas))
    if not shas:
        return {}
    r = subprocess.run(["git", *GIT_OPTS, "cat-file", "--batch"], cwd=wd, input=("\n".join(shas) + "\n").encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=GIT_ENV)
    data = r.stdout
    out = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        header = data[i:nl].decode().split()
        i = nl + 1
        if len(header) < 3 or header[1] == "missing":
            continue
        size = int(header[2])
        out[header[0]] = data[i:i + size]
        i += size + 1
    return out


def reset_paths(base, rels):
    """Reset each path to its blob at `base` (removed when absent there). Returns the problems."""
    problems = []
    rels = sorted(set(rels))
    entries = tree_entries(base, rels)
    contents = blobs([e[2] for e in entries.values() if e[1] == "blob"])
    for rel in rels:
        try:
            if rel.startswith("/") or ".." in rel.split("/"):
                problems.append(rel[:200] + ": unsafe path")
                continue
            full = os.path.join(wd, rel)
            real_parent(rel)
            remove(full)
            entry = entries.get(rel)
            if entry is None or entry[1] != "blob":
                continue
            mode, _, sha = entry
            data = contents.get(sha)
            if data is None:
                problems.append(rel[:200] + ": git cat-file failed")
                continue
            if mode == "120000":
                os.symlink(data.decode("utf-8", "surrogateescape"), full)
            else:
                fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o755 if mode == "100755" else 0o644)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(full, 0o755 if mode == "100755" else 0o644)
        except OSError as e:
            problems.append(rel[:200] + ": " + (e.strerror or str(e)))
    return problems


def write(name, text):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(text.encode("utf-8", "surrogateescape"))
    return p


def git_state_digest():
    """A digest of what in .git could change how git or the tests behave (config, hooks, info, HEAD)."""
    h = hashlib.sha256()
    g = os.path.join(wd, ".git")
    for rel in ["config", "HEAD", "info/attributes", "info/exclude", "info/sparse-checkout", "commondir"]:
        p = os.path.join(g, rel)
        h.update(rel.encode())
        if os.path.lexists(p):
            try:
                h.update(b"L" + os.readlink(p).encode() if os.path.islink(p) else open(p, "rb").read())
            except OSError:
                h.update(b"?")
    hooks = os.path.join(g, "hooks")
    if os.path.isdir(hooks):
        for n in sorted(os.listdir(hooks)):
            h.update(b"hook:" + n.encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The base state: pytest configuration and plugins

PLUGIN_PROBE = r"""
import json, sys
out = {"version": None, "plugins": None, "configNames": None}
try:
    import pytest
    out["version"] = pytest.__version__
except Exception:
    pass
try:
    src = ""
    for name in ("_pytest.config.findpaths", "_pytest.config"):
        try:
            mod = __import__(name, fromlist=["x"])
            f = mod.__file__
            if f.endswith(".pyc"):
                f = f[:-1]
            src = open(f, encoding="utf-8").read()
            break
        except Exception:
            continue
    if src:
        out["configNames"] = [n for n in ["pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"] if n in src]
except Exception:
    pass
try:
    import site as _site
    out["site"] = list(_site.getsitepackages())
except Exception:
    out["site"] = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
try:
    import pytest as _pt
    out["pytestFile"] = _pt.__file__
except Exception:
    out["pytestFile"] = None
mods = set()
try:
    try:
        import importlib.metadata as md
        eps = md.entry_points()
        group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", [])
        for ep in group:
            mods.add((ep.name, ep.value.split(":")[0].strip()))
    except ImportError:
        import pkg_resources
        for ep in pkg_resources.iter_entry_points("pytest11"):
            mods.add((ep.name, ep.module_name))
    out["plugins"] = sorted(mods)
except Exception as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


def probe_pytest(preamble):
    script = "\n".join(["exec 2>/dev/null", "cd " + shlex_quote(wd), *preamble,
                        "PY=$(command -v python3 || command -v python)", '"$PY" -c ' + shlex_quote(PLUGIN_PROBE)])
    try:
        r = subprocess.run(["bash", "-c", script], cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=120)
        last = r.stdout.decode("utf-8", "replace").strip().splitlines()[-1]
        return json.loads(last)
    except Exception as e:
        return {"version": None, "plugins": None, "error": str(e)}


def shlex_quote(s):
    return "'" + s.replace("'", "'\"'\"'") + "'"


def version_tuple(v):
    parts = []
    for p in (v or "0").split(".")[:2]:
        m = re.match(r"\d+", p)
        parts.append(int(m.group(0)) if m else 0)
    return tuple(parts + [0] * (2 - len(parts)))


CONFIG_SECTIONS = {
    "pytest.ini": None,
    ".pytest.ini": None,
    "pyproject.toml": r"^\s*\[tool\.pytest\.ini_options\]",
    "tox.ini": r"^\s*\[pytest\]",
    "setup.cfg": r"^\s*\[tool:pytest\]",
}


def base_pytest_config(version, names=None):
    """Copy the configuration pytest would read at the base state to <dir>/cfg/ (outside the tree).

    The file names this pytest knows come from its own source (`names`, found by the probe), in
    pytest's precedence order; without them, from its version."""
    if not names:
        v = version_tuple(version)
        names = ["pytest.ini"] + ([".pytest.ini"] if v >= (7, 0) else []) + (["pyproject.toml"] if v >= (6, 0) else []) + ["tox.ini", "setup.cfg"]
    candidates = [(n, CONFIG_SECTIONS[n]) for n in CONFIG_SECTIONS if n in names]
    cdir = os.path.join(d, "cfg")
    os.makedirs(cdir, mode=0o755, exist_ok=True)
    for name, pattern in candidates:
        p = os.path.join(wd, name)
        if os.path.isfile(p) and not os.path.islink(p):
            text = open(p, "rb").read()
            if pattern is None or re.search(pattern, text.decode("utf-8", "replace"), re.M):
                with open(os.path.join(cdir, name), "wb") as f:
                    f.write(text)
                return name, text.decode("utf-8", "replace")
    with open(os.path.join(cdir, "pytest.ini"), "w") as f:
        f.write("[pytest]\n")
    return None, ""



# ---------------------------------------------------------------------------------------------
# Canary tests (round 3): clones of each hidden test file's own tests

SELF_REFERENCE = re.compile(r"\b(request|pytester|testdir|_testMethodName|__name__|_getframe|inspect|nodeid|node\.name|"
                            r"PYTEST_CURRENT_TEST|id\(\)|subTest|yield)\b")
ORDERING = re.compile(r"\b(order|dependency|run|first|last|incremental|flaky|repeat|xfail|expectedFailure)\b")
PURE_NODES = (ast.Compare, ast.Name, ast.Attribute, ast.Constant if hasattr(ast, "Constant") else ast.Num,
              ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Subscript, ast.Tuple, ast.List, ast.Load, ast.cmpop,
              ast.boolop, ast.unaryop, ast.operator, ast.expr_context)
FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


def is_pure(expr):
    for n in ast.walk(expr):
        if isinstance(n, (ast.Index, ast.Slice)) if hasattr(ast, "Index") else isinstance(n, ast.Slice):
            continue
        if not isinstance(n, PURE_NODES):
            return False
    return True


def has_own_return(fn):
    stack = list(fn.body)
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.Return, ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(n, FUNCS + (ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(n))
    return False


def test_scopes(tree):
    """[(class node or None, [test function nodes])] of a module: module-level `test*` functions,
    and the `test*` methods of test classes (Test* without __init__, or *TestCase subclasses)."""
    out = []
    mod = [n for n in tree.body if isinstance(n, FUNCS) and n.name.startswith("test")]
    if mod:
        out.append((None, mod))
    for n in tree.body:
        if not isinstance(n, ast.ClassDef) or n.decorator_list:
            continue
        bases = [getattr(b, "attr", getattr(b, "id", "")) for b in n.bases]
        test_case = any(str(b).endswith("TestCase") for b in bases)
        if not (n.name.startswith("Test") or test_case):
            continue
        if not test_case and any(isinstance(m, FUNCS) and m.name == "__init__" for m in n.body):
            continue
        ms = [m for m in n.body if isinstance(m, FUNCS) and m.name.startswith("test")]
        if ms:
            out.append((n, ms))
    return out


def first_line(node):
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def node_text(lines, node):
    return "".join(lines[first_line(node) - 1:node.end_lineno])


def name_words(names):
    ws = []
    for name in names:
        for w in re.split(r"_+|(?<=[a-z])(?=[A-Z])", name):
            w = w.lower()
            if w.isalpha() and w != "test" and 2 <= len(w) <= 16:
                ws.append(w)
    return sorted(set(ws)) or ["value", "result", "case", "basic", "simple", "check"]


def fresh_test_name(rng, words, prefix, taken):
    """A test name in the file's own style (`test_a_b` or `testAB`) from its test names' words,
    not in `taken` (which it joins)."""
    for i in range(400):
        parts = [rng.choice(words) for _ in range(rng.choice([2, 2, 3, 3, 4]))]
        if len(set(parts)) < len(parts) and i < 300:
            continue
        name = "test_" + "_".join(parts) if prefix == "test_" else "test" + "".join(p.capitalize() for p in parts)
        if name not in taken and name.isidentifier():
            taken.add(name)
            return name
    name = "test_%s_%d" % (rng.choice(words), rng.randrange(10, 99))
    taken.add(name)
    return name


def name_prefix(names):
    return "test_" if all(n.startswith("test_") for n in names) else "test"


def imported_modules(tree):
    """Names bound at module level by `import x` / `import x as y` (modules: never None)."""
    out = []
    for n in tree.body:
        if isinstance(n, ast.Import):
            for a in n.names:
                out.append(a.asname or a.name.split(".")[0])
    return [x for x in out if x.isidentifier()]


def must_fail_text(lines, fn, indent_of_body, modules=()):
    """The clone's body made to fail in every honest run, or None. Forms: the last top-level
    `assert X == Y` compared with a fresh object() (no honest value equals one); or, when the body
    ends with a pure assertion, that assertion negated right after it; or an always-false
    identity assertion appended."""
    body = fn.body
    last = body[-1]
    start = first_line(fn) - 1
    text_lines = lines[start:fn.end_lineno]
    src = "".join(lines)

    def rel(n):
        return n - 1 - start
    eqs = [s for s in body if isinstance(s, ast.Assert) and isinstance(s.test, ast.Compare)
           and len(s.test.ops) == 1 and isinstance(s.test.ops[0], ast.Eq)]
    if eqs:
        s = eqs[-1]
        left = ast.get_source_segment(src, s.test.left)
        if left is not None:
            ind = re.match(r"[ \t]*", lines[s.lineno - 1]).group(0)
            new = text_lines[:rel(s.lineno)] + [ind + "assert (" + left.replace("\n", " ") + ") == object()\n"] + text_lines[rel(s.end_lineno) + 1:]
            return "".join(new), "eq-object"
    if isinstance(last, ast.Assert) and is_pure(last.test) and not has_own_return(fn):
        cond = ast.get_source_segment(src, last.test)
        if cond is not None:
            return "".join(text_lines).rstrip("\n") + "\n" + indent_of_body + "assert not (" + cond.replace("\n", " ") + ")\n", "negated"
    if has_own_return(fn):
        return None
    args = [a.arg for a in fn.args.args]
    if args:
        a = args[0]
        stmt = "assert %s is None" % a if a == "self" else "assert %s is not %s" % (a, a)
    elif modules:
        stmt = "assert %s is None" % modules[0]
    else:
        return None
    return "".join(text_lines).rstrip("\n") + "\n" + indent_of_body + stmt + "\n", "identity"


def rename_def(text, old, new):
    return re.sub(r"(^\s*(?:async\s+)?def\s+)" + re.escape(old) + r"(\s*\()", lambda m: m.group(1) + new + m.group(2), text, count=1, flags=re.M)


def repo_test_names(limit_bytes=64 * 1024 * 1024):
    """Names the repository's tests define or mention (test function names, test_* tokens), and
    the base names of every file and directory of the tree: a canary or the extra file must not
    take one (pytest's own tests name files after the test function, for instance)."""
    names, bases = set(), set()
    seen = 0
    tok = re.compile(r"\btest\w*")
    for root, dirs, files in os.walk(wd):
        if ".git" in dirs:
            dirs.remove(".git")
        for d_ in dirs:
            bases.add(d_.split(".")[0])
        for f in files:
            bases.add(f.split(".")[0])
            if not f.endswith(".py") or seen > limit_bytes:
                continue
            p = os.path.join(root, f)
            rel_ = os.path.relpath(p, wd)
            if not (f.startswith("test") or f.endswith("_test.py") or "test" in rel_.split(os.sep)[0].lower() or "/test" in rel_):
                continue
            try:
                text = open(p, "rb").read().decode("utf-8", "replace")
            except OSError:
                continue
            seen += len(text)
            names.update(tok.findall(text))
    return names, bases


def write_canaries(files, fail_ok, rng, sources_first, stdlib):
    """Clones of each hidden test file's own tests, at random places among them, and one extra
    test file of clones beside a random hidden file. Returns the plan (ids are function-level
    pytest node ids; `source` is the id of the test a clone copies)."""
    plan = {"canaries": [], "extraFile": None, "skipped": []}
    repo_names, bases = repo_test_names()
    parsed = []
    for rel in files:
        full = os.path.join(wd, rel)
        if not rel.endswith(".py") or not os.path.isfile(full) or os.path.islink(full) or not inside(full):
            continue
        try:
            src = open(full, "rb").read().decode("utf-8")
            tree = ast.parse(src)
        except (SyntaxError, UnicodeDecodeError, ValueError) as e:
            plan["skipped"].append("%s: %s" % (rel, type(e).__name__))
            continue
        if not hasattr(tree.body[0] if tree.body else ast.Pass(), "end_lineno") and tree.body:
            plan["skipped"].append("%s: Python < 3.8 (no end positions)" % rel)
            continue
        scopes = test_scopes(tree)
        if not scopes:
            plan["skipped"].append(rel + ": no test functions or test classes")
            continue
        parsed.append((rel, full, src, tree, scopes))
    for rel, full, src, tree, scopes in parsed:
        lines = src.splitlines(True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        taken = set(repo_names)
        taken |= {n.name for n in ast.walk(tree) if isinstance(n, FUNCS + (ast.ClassDef,))}
        taken |= {t.id for t in ast.walk(tree) if isinstance(t, ast.Name)}
        all_tests = [t for _, ts in scopes for t in ts]
        words = name_words([t.name for t in all_tests])
        edits = []
        kinds = ["match"] + (["fail"] if fail_ok else []) + [rng.choice(["match", "fail"] if fail_ok else ["match"]) for _ in range(rng.randrange(0, 2))]
        rng.shuffle(kinds)
        for kind in kinds:
            weights = [len(ts) for _, ts in scopes]
            cls, tests = rng.choices(scopes, weights=weights)[0] if hasattr(rng, "choices") else scopes[0]
            # A must-fail clone fails whatever its body does; an unchanged clone must behave as its
            # source, so tests that depend on their own name or place are not cloned unchanged.
            cands = [t for t in tests if (kind == "fail" or not SELF_REFERENCE.search(node_text(lines, t)))
                     and not any(ORDERING.search(ast.get_source_segment(src, d) or "") for d in t.decorator_list)
                     and t.end_lineno - first_line(t) < 200]
            if kind == "match":
                prio = [t for t in cands if ("%s::%s" % (rel + ("::" + cls.name if cls else ""), t.name)) in sources_first]
                cands = prio or cands
            if not cands:
                plan["skipped"].append("%s: no test to clone (%s)" % (rel, kind))
                continue
            t = rng.choice(cands)
            body_indent = re.match(r"[ \t]*", lines[t.body[0].lineno - 1]).group(0)
            if kind == "fail":
                made = must_fail_text(lines, t, body_indent, imported_modules(tree))
                if made is None:
                    plan["skipped"].append("%s::%s: no must-fail form" % (rel, t.name))
                    continue
                text, form = made
            else:
                text, form = node_text(lines, t), "clone"
            name = fresh_test_name(rng, words, name_prefix([x.name for x in tests]), taken)
            text = rename_def(text, t.name, name)
            siblings = sorted(tests, key=first_line)
            slot = rng.randrange(0, len(siblings) + 1)
            at = first_line(siblings[slot]) - 1 if slot < len(siblings) else siblings[-1].end_lineno
            edits.append((at, "\n" + text + "\n"))
            scope = rel + ("::" + cls.name if cls else "")
            plan["canaries"].append({"id": scope + "::" + name, "kind": kind, "form": form, "source": scope + "::" + t.name})
        for at, text in sorted(edits, key=lambda e: -e[0]):
            lines.insert(at, text)
        with open(full, "w", encoding="utf-8") as f:
            f.write("".join(lines))
    # The extra file: a random hidden file's module-level code and clones of its tests.
    module_level = [p for p in parsed if p[4][0][0] is None]
    if module_level:
        rel, full, src, tree, scopes = rng.choice(module_level)
        lines = src.splitlines(True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        folder, base = os.path.split(rel)
        tests = scopes[0][1]
        words = name_words([t.name for t in tests])
        suffix_style = base.endswith("_test.py") and not base.startswith("test")
        erel = None
        avoid = repo_names | bases | set(stdlib)
        for _ in range(100):
            stem = "_".join(rng.choice(words) for _ in range(rng.choice([1, 2])))
            fname = ("%s_test.py" % stem) if suffix_style else ("test_%s.py" % stem)
            mod = fname[:-3]
            cand = os.path.join(folder, fname) if folder else fname
            if mod in avoid or os.path.lexists(os.path.join(wd, cand)):
                continue
            erel = cand
            break
        if erel is None:
            plan["skipped"].append("extra file: no free name")
        else:
            keep = []
            for n in tree.body:
                if isinstance(n, FUNCS) and n.name.startswith("test"):
                    continue
                if isinstance(n, ast.ClassDef) and any(n is c for c, _ in scopes):
                    continue
                keep.append("".join(lines[first_line(n) - 1:n.end_lineno]))
            text = "".join(x if x.endswith("\n") else x + "\n" for x in keep)
            taken = set(repo_names) | {n.name for n in ast.walk(tree) if isinstance(n, FUNCS + (ast.ClassDef,))}
            kinds = ["match", "match"] + (["fail"] if fail_ok else [])
            rng.shuffle(kinds)
            plain = [t for t in tests if not any(ORDERING.search(ast.get_source_segment(src, d) or "") for d in t.decorator_list)]
            added = 0
            for kind in kinds:
                cands = [t for t in plain if kind == "fail" or not SELF_REFERENCE.search(node_text(lines, t))]
                if not cands:
                    continue
                t = rng.choice(cands)
                if kind == "fail":
                    made = must_fail_text(lines, t, re.match(r"[ \t]*", lines[t.body[0].lineno - 1]).group(0), imported_modules(tree))
                    if made is None:
                        continue
                    ctext, form = made
                else:
                    ctext, form = node_text(lines, t), "clone"
                name = fresh_test_name(rng, words, name_prefix([x.name for x in tests]), taken)
                text += "\n\n" + rename_def(ctext, t.name, name)
                plan["canaries"].append({"id": erel + "::" + name, "kind": kind, "form": form, "source": rel + "::" + t.name})
                added += 1
            if added:
                real_parent(erel)
                with open(os.path.join(wd, erel), "w", encoding="utf-8") as f:
                    f.write(text)
                plan["extraFile"] = erel
    return plan


# ---------------------------------------------------------------------------------------------
# The run's environment: bytecode, .git, the test user, the guard

def purge_bytecode(base):
    """Remove bytecode the base commit does not track (a patch's .pyc, caches of the original
    source); tracked bytecode a patch changed was reset with the protected paths."""
    tracked = set(p for p in zlist(git("ls-files", "-z")[1]) if p.endswith((".pyc", ".pyo")) or "/__pycache__/" in "/" + p)
    removed = 0
    for root, dirs, files in os.walk(wd):
        if root == wd and ".git" in dirs:
            dirs.remove(".git")
        for d_ in list(dirs):
            if d_ == "__pycache__":
                full = os.path.join(root, d_)
                rel_ = os.path.relpath(full, wd)
                if not any(t.startswith(rel_ + "/") for t in tracked):
                    shutil.rmtree(full, ignore_errors=True)
                    dirs.remove(d_)
                    removed += 1
        for f in files:
            if f.endswith((".pyc", ".pyo")):
                rel_ = os.path.relpath(os.path.join(root, f), wd)
                if rel_ not in tracked:
                    remove(os.path.join(root, f))
                    removed += 1
    return removed


def pick_user(want):
    """A uid/gid free in /etc/passwd and /etc/group (from `want` upwards); entries are added."""
    def ids(path):
        out = set()
        try:
            for line in open(path, encoding="utf-8", errors="replace"):
                parts = line.split(":")
                if len(parts) > 2 and parts[2].isdigit():
                    out.add(int(parts[2]))
        except OSError:
            pass
        return out
    used = ids("/etc/passwd") | ids("/etc/group")
    uid = want
    while uid in used:
        uid += 1
    return uid


def setup_user(uid, home):
    name = "forager-test"
    try:
        with open("/etc/group", "a") as f:
            f.write("%s:x:%d:\n" % (name, uid))
        with open("/etc/passwd", "a") as f:
            f.write("%s:x:%d:%d:forager test user:%s:/bin/sh\n" % (name, uid, uid, home))
    except OSError:
        pass
    os.makedirs(home, mode=0o755, exist_ok=True)
    os.chown(home, uid, uid)
    # Only what the test user does not own yet: changing an owner copies the file up on overlayfs,
    # and forager's instance images already give the tree to this uid.
    n = 0
    for root, dirs, files in os.walk(wd):
        for x in dirs + files:
            p = os.path.join(root, x)
            try:
                if os.lstat(p).st_uid != uid:
                    os.lchown(p, uid, uid)
                    n += 1
            except OSError:
                pass
    os.lchown(wd, uid, uid)
    return name, n


def protect(paths, runner_files):
    """Give the files the grading trusts (hidden test files, the canary file, conftest.py files,
    test packages' __init__.py, the runner files) to root, read-only for the test user, and make
    every directory above them root's with the sticky bit (mode 1777): the test user may still
    create and remove its own files there, but can neither change, replace, rename nor remove
    these. Their directories get a root-owned __pycache__, so no bytecode cache of a test module
    can be planted for a later import. Returns how many files were protected."""
    n = 0
    dirs = set()
    for rel in sorted(set(paths)):
        full = os.path.join(wd, rel)
        if not os.path.isfile(full) or os.path.islink(full) or not inside(full):
            continue
        try:
            os.chown(full, 0, 0)
            os.chmod(full, 0o755 if rel in runner_files and os.access(full, os.X_OK) else 0o644)
            n += 1
        except OSError:
            continue
        parent = os.path.dirname(full)
        dirs.add(parent)
        while parent != wd and parent.startswith(wd + os.sep):
            dirs.add(parent)
            parent = os.path.dirname(parent)
    dirs.add(wd)
    for dd in dirs:
        try:
            os.chown(dd, 0, 0)
            os.chmod(dd, 0o1777)
        except OSError:
            pass
    for dd in dirs:
        if dd == wd:
            continue
        cache = os.path.join(dd, "__pycache__")
        try:
            if not os.path.lexists(cache):
                os.mkdir(cache, 0o755)
            if os.path.isdir(cache) and not os.path.islink(cache):
                os.chown(cache, 0, 0)
                os.chmod(cache, 0o755)
        except OSError:
            pass
    return n


def trusted_files(hidden, runner_files):
    """Hidden test files, every conftest.py, the __init__.py of every package holding a hidden
    file, and the runner files of the test command."""
    out = set(hidden) | set(runner_files)
    for root, dirs, files in os.walk(wd):
        if root == wd and ".git" in dirs:
            dirs.remove(".git")
        if "conftest.py" in files:
            out.add(os.path.relpath(os.path.join(root, "conftest.py"), wd))
    for rel in list(hidden):
        parent = os.path.dirname(rel)
        while parent:
            if os.path.isfile(os.path.join(wd, parent, "__init__.py")):
                out.add(parent + "/__init__.py")
            parent = os.path.dirname(parent)
    return sorted(out)


GUARD_SOURCES = ("guard", "pytest_plugin")


def install_guard(g, site):
    """Write the guard, the plugin and their configuration into a root-owned directory, the
    channel FIFO (mode 0622: the test user may write, only root may read), and a .pth file that
    imports the guard at interpreter start into the first existing site-packages directory."""
    gdir = g["dir"]
    os.makedirs(gdir, mode=0o755, exist_ok=True)
    os.chmod(gdir, 0o755)
    tag = g["tag"]
    for key, modname in (("guardSource", "_forager_guard_" + tag), ("pluginSource", "_forager_pytest_" + tag)):
        with open(os.path.join(gdir, modname + ".py"), "w", encoding="utf-8") as f:
            f.write(g[key])
    conf = dict(g["config"])
    conf["sitePackages"] = site
    with open(os.path.join(gdir, "_forager_guard_" + tag + ".json"), "w") as f:
        json.dump(conf, f)
    chdir_ = os.path.dirname(g["config"]["channel"])
    os.makedirs(chdir_, mode=0o711, exist_ok=True)
    os.chmod(chdir_, 0o711)
    if os.path.lexists(g["config"]["channel"]):
        os.unlink(g["config"]["channel"])
    os.mkfifo(g["config"]["channel"], 0o600)
    os.chmod(g["config"]["channel"], 0o622)
    for p in site:
        if os.path.isdir(p):
            with open(os.path.join(p, "00_forager_guard_" + tag + ".pth"), "w") as f:
                f.write(gdir + "\nimport _forager_guard_" + tag + "\n")
            return p
    return None


# ---------------------------------------------------------------------------------------------

if cfg["mode"] != "prepare":
    print(json.dumps({"error": "unknown mode " + str(cfg["mode"])}))
    sys.exit(0)

import time
_t0 = time.perf_counter()
_timings = {}
out["timings"] = _timings


def lap(name):
    global _t0
    now = time.perf_counter()
    _timings[name] = round(now - _t0, 4)
    _t0 = now


os.makedirs(d, mode=0o700, exist_ok=True)
os.chmod(d, 0o700)
code, base, err = git("rev-parse", "HEAD")
base = base.strip()
if code != 0:
    print(json.dumps({"error": "git rev-parse HEAD failed: " + base + err}))
    sys.exit(0)
out["base"] = base
probe = None
if cfg.get("pytest") or cfg.get("guard"):
    # The probe depends only on the image: forager passes a cached answer when it has one.
    probe = cfg.get("probe") or probe_pytest(cfg.get("preamble", []))
    out["probe"] = probe
if cfg.get("pytest"):
    out["pytestVersion"] = probe.get("version")
    out["plugins"] = probe.get("plugins")
    name, text = base_pytest_config(probe.get("version"), probe.get("configNames"))
    out["configFile"] = name
    out["configText"] = text[:20000]
lap("probe")
# Symlinks already in the tree that a patch path would go through (the patch could write outside).
for rel in cfg["modelPaths"]:
    cur = wd
    for part in rel.split("/")[:-1]:
        cur = os.path.join(cur, part)
        if os.path.islink(cur) and not inside(cur):
            print(json.dumps({**out, "refused": "the patch writes through the symlink " + os.path.relpath(cur, wd) + ", which leaves the tree"}))
            sys.exit(0)
before = set(zlist(git("ls-files", "--others", "-z")[1]))
git_before = git_state_digest()
mp = write("model.diff", cfg["model"])
attempts = []
method = "none" if cfg.get("emptyRun") else None
for name, argv in ([] if method else cfg["applyCommands"]):
    if argv[0] == "git":
        argv = ["git", *GIT_OPTS, *argv[1:]]
    r = subprocess.run(argv + [mp], cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=GIT_ENV)
    attempts.append({"method": name, "exitCode": r.returncode, "output": r.stdout.decode("utf-8", "replace")[-20000:]})
    if r.returncode == 0:
        method = name
        break
    git("reset", "-q", "--hard", base)
    git("clean", "-fdq")
os.unlink(mp)
lap("apply")
out["attempts"] = attempts
out["method"] = method
if method is None:
    print(json.dumps(out))
    sys.exit(0)
changed = zlist(git("diff", "--name-only", "--no-renames", "-z", base)[1])
created = sorted(set(zlist(git("ls-files", "--others", "-z")[1])) - before)


def lexists(rel):
    try:
        return os.path.lexists(os.path.join(wd, rel))
    except (OSError, ValueError):
        return False


touched = sorted(set(changed) | set(created) | set(p for p in cfg["modelPaths"] if lexists(p)))
escaped = []
for p in touched:
    try:
        if os.path.lexists(os.path.join(wd, p)) and not inside(os.path.join(wd, p)):
            escaped.append(p)
    except (OSError, ValueError):
        pass
if git_state_digest() != git_before:
    escaped.append(".git")
if escaped:
    git("reset", "-q", "--hard", base)
    git("clean", "-fdq")
    out["refused"] = "the patch wrote outside the tree or into .git: " + ", ".join(p[:200] for p in escaped[:5])
    print(json.dumps(out))
    sys.exit(0)
test_like = re.compile(cfg["testLike"])
protected = re.compile(cfg["protected"])
shadow = re.compile(cfg["shadow"])
test_files = cfg["testFiles"]
reset = []
shadow_candidates = []
for p in touched:
    if p in test_files or test_like.search(p) or protected.search(p):
        reset.append(p)
        continue
    m = shadow.match(p)
    if m:
        shadow_candidates.append((p, m.group(1)))
if shadow_candidates:
    present = tree_entries(base, [top for _, top in shadow_candidates])
    reset += [p for p, top in shadow_candidates if top not in present]
out["touched"] = [p[:300] for p in touched[:2000]]
out["reset"] = sorted(p[:300] for p in reset)
# The patch's own paths that cannot be reset are its failure; the hidden test files are forager's.
problems = reset_paths(base, reset)
out["resetProblems"] = problems
# A hidden test file that cannot be reset can only be the patch's doing (the same reset works on
# the base tree): its failure too.
problems += reset_paths(base, [p for p in test_files if p not in reset])
out["resetProblems"] = problems
lap("reset")
if problems:
    print(json.dumps(out))
    sys.exit(0)
tp = write("test.diff", cfg["test"])
if cfg["test"].strip():
    r = subprocess.run(["git", *GIT_OPTS, "apply", "--verbose", tp], cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=GIT_ENV)
    out["testApply"] = {"exitCode": r.returncode, "output": r.stdout.decode("utf-8", "replace")[-20000:]}
os.unlink(tp)
if problems or out.get("testApply", {"exitCode": 0})["exitCode"] != 0:
    print(json.dumps(out))
    sys.exit(0)
lap("test patch")
if cfg.get("canaries"):
    rng = random.Random(cfg["seed"])
    stdlib = list(getattr(sys, "stdlib_module_names", []))
    out["canaries"] = write_canaries(cfg["canaryFiles"], cfg.get("mustFail", True), rng, set(cfg.get("sourcesFirst", [])), stdlib)
lap("canaries")
out["bytecodeRemoved"] = purge_bytecode(base)
lap("bytecode")
user = cfg.get("user")
uid = pick_user(int(user["want"])) if user else None
g = cfg.get("guard")
if g:
    pytest_file = (probe or {}).get("pytestFile") or ""
    runner_in_tree = bool(pytest_file) and (os.path.realpath(pytest_file) + os.sep).startswith(wd + os.sep)
    g["config"]["runnerInTree"] = runner_in_tree
    g["config"]["testUid"] = uid
    extra = (out.get("canaries") or {}).get("extraFile")
    if extra:
        g["config"]["hiddenFiles"] = list(g["config"].get("hiddenFiles", [])) + [extra]
    site = [p for p in ((probe or {}).get("site") or []) if isinstance(p, str)]
    out["guardPth"] = install_guard(g, site)
    out["runnerInTree"] = runner_in_tree
lap("guard")
if cfg.get("hideGit"):
    gd = os.path.join(wd, ".git")
    if os.path.lexists(gd):
        shutil.move(gd, os.path.join(d, "git"))
        out["gitHidden"] = True
if user:
    name, n = setup_user(uid, user["home"])
    hidden = list(cfg.get("hiddenFiles", []))
    extra = (out.get("canaries") or {}).get("extraFile")
    if extra:
        hidden.append(extra)
    protected_n = protect(trusted_files(hidden, cfg.get("runnerFiles", [])), cfg.get("runnerFiles", []))
    out["user"] = {"uid": uid, "gid": uid, "name": name, "home": user["home"], "chowned": n, "protected": protected_n}
lap("user")
if cfg.get("pytest"):
    # The base configuration, readable by the test user (pytest reads it with -c): beside the guard.
    cdir = g["dir"] if g else os.path.join(os.path.dirname(d), os.path.basename(d) + "-cfg")
    os.makedirs(cdir, mode=0o755, exist_ok=True)
    for f in os.listdir(os.path.join(d, "cfg")):
        shutil.copy(os.path.join(d, "cfg", f), os.path.join(cdir, f))
    out["configDir"] = cdir
print(json.dumps(out))
