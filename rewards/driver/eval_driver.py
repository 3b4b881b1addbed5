"""forager's in-container evaluation driver (stdlib only; run as `python3 -I -S -c <this file>`).

Read by rewards/evaluate.ts and sent to the container; the repository cannot shadow its
modules (-I -S: no current directory, no site packages on the path). Configuration comes as
JSON on stdin; the result is one JSON object on the last line of stdout.

Modes:
  prepare  record the base commit, the base pytest configuration (kept outside the tree) and the
           pytest plugins installed at the base state; apply the model patch (the apply commands
           in order, the tree reset between attempts); refuse a patch that wrote outside the tree
           or into .git; reset protected files the patch touched (test-like files, pytest and
           import-path hooks, packaging metadata) to the base commit by writing blobs; apply the
           hidden test patch; write canary tests.
  collect  read the JUnit report (bounded) and reset the hidden test files again.

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


def tree_entry(base, rel):
    code, text, _ = git("ls-tree", "-z", base, "--", rel)
    if code != 0:
        return None
    for rec in zlist(text):
        meta, _, p = rec.partition("\t")
        if p == rel:
            mode, typ, sha = meta.split()
            return mode, typ, sha
    return None


def reset_path(base, rel):
    """Reset `rel` to its blob at `base` (removed when absent there). Returns (ok, message)."""
    if rel.startswith("/") or ".." in rel.split("/"):
        return False, "unsafe path"
    full = os.path.join(wd, rel)
    try:
        real_parent(rel)
        entry = tree_entry(base, rel)
        remove(full)
        if entry is None:
            return True, ""
        mode, typ, sha = entry
        if typ != "blob":
            return True, ""
        code, data = git_bytes("cat-file", "blob", sha)
        if code != 0:
            return False, "git cat-file failed"
        if mode == "120000":
            os.symlink(data.decode("utf-8", "surrogateescape"), full)
        else:
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o755 if mode == "100755" else 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(full, 0o755 if mode == "100755" else 0o644)
        return True, ""
    except OSError as e:
        return False, str(e)


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
# Canary tests

def bound_names(tree):
    names = []
    for n in tree.body:
        if isinstance(n, ast.ImportFrom) and n.module != "__future__":
            for a in n.names:
                if a.name != "*":
                    names.append(a.asname or a.name)
        elif isinstance(n, ast.Import):
            for a in n.names:
                names.append(a.asname or a.name.split(".")[0])
    return [x for x in names if x not in ("pytest", "unittest", "mock") and x.isidentifier()]


def import_lines(src, tree):
    lines = src.splitlines()
    out_lines = []
    for n in tree.body:
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            end = getattr(n, "end_lineno", n.lineno)
            out_lines.append("\n".join(lines[n.lineno - 1:end]))
    return out_lines


def words_of(tree):
    ws = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for w in re.split(r"_+", n.name.lower()):
                if w.isalpha() and w != "test" and 2 <= len(w) <= 14:
                    ws.add(w)
    return sorted(ws) or ["value", "result", "case", "basic", "simple"]


def module_tests(tree):
    return [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test")]


def fresh_name(rng, words, taken, prefix):
    for _ in range(200):
        k = rng.choice([2, 2, 3])
        name = prefix + "_".join(rng.choice(words) for _ in range(k))
        if name not in taken and name.isidentifier():
            taken.add(name)
            return name
    name = prefix + rng.choice(words) + "_" + str(rng.randrange(100, 999))
    taken.add(name)
    return name


def canary_bodies(rng, names, words, kind):
    if kind == "pass":
        if names:
            n = rng.choice(names)
            return rng.choice(["assert %s is not None" % n, "assert %s is not None, %r" % (n, rng.choice(words))])
        w = rng.choice(words)
        return "assert len(%r) == %d" % (w, len(w))
    if names:
        n = rng.choice(names)
        return rng.choice(["assert %s is None" % n, "assert %s is None, %r" % (n, rng.choice(words)),
                           "assert isinstance(%s, type(None))" % n])
    w = rng.choice(words)
    return "assert len(%r) == %d" % (w, len(w) + rng.randrange(1, 4))


def canary_source(name, body):
    return "\n\n\ndef %s():\n    %s\n" % (name, body)


def write_canaries(files, want_fail, rng):
    """Append canaries to test files; one extra file beside the first. Returns the plan."""
    plan = {"mustFail": [], "mustPass": [], "extraFile": None, "skipped": []}
    sources = []
    for rel in files[:3]:
        full = os.path.join(wd, rel)
        if not rel.endswith(".py") or not os.path.isfile(full) or os.path.islink(full) or not inside(full):
            continue
        try:
            src = open(full, "rb").read().decode("utf-8")
            tree = ast.parse(src)
        except (SyntaxError, UnicodeDecodeError, ValueError) as e:
            plan["skipped"].append("%s: %s" % (rel, type(e).__name__))
            continue
        tests = module_tests(tree)
        taken = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        taken |= {t.id for t in ast.walk(tree) if isinstance(t, ast.Name)}
        words = words_of(tree)
        names = bound_names(tree)
        kinds = ["pass"] + (["fail"] if want_fail else [])
        rng.shuffle(kinds)
        if not tests:
            # Class-style tests (class Test…: / unittest.TestCase): canary methods in the last such class.
            cls = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.startswith("Test")
                   and any(isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name.startswith("test") for m in n.body)
                   and not n.decorator_list]
            end = getattr(cls[-1], "end_lineno", None) if cls else None
            if not cls or end is None:
                plan["skipped"].append(rel + ": no module-level test functions or Test classes")
                continue
            c = cls[-1]
            methods = [m for m in c.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name.startswith("test")]
            prefix = "test_" if all(m.name.startswith("test_") for m in methods) else "test"
            indent = " " * methods[0].col_offset
            lines = src.splitlines(True)
            add = ""
            for kind in kinds:
                name = fresh_name(rng, words, taken, prefix)
                body = canary_bodies(rng, names, words, kind)
                add += "\n%sdef %s(self):\n%s    %s\n" % (indent, name, indent, body)
                plan["mustFail" if kind == "fail" else "mustPass"].append(rel + "::" + c.name + "::" + name)
            if end > len(lines):
                end = len(lines)
            if lines and not lines[end - 1].endswith("\n"):
                lines[end - 1] += "\n"
            lines.insert(end, add)
            with open(full, "w", encoding="utf-8") as f:
                f.write("".join(lines))
            continue
        prefix = "test_" if all(t.name.startswith("test_") for t in tests) else "test"
        add = ""
        for kind in kinds:
            name = fresh_name(rng, words, taken, prefix)
            add += canary_source(name, canary_bodies(rng, names, words, kind))
            plan["mustFail" if kind == "fail" else "mustPass"].append(rel + "::" + name)
        with open(full, "ab") as f:
            f.write(("\n" if not src.endswith("\n") else "") .encode() + add.encode("utf-8"))
        sources.append((rel, src, tree, words, names, prefix))
    if sources:
        rel, src, tree, words, names, prefix = sources[0]
        folder, base = os.path.split(rel)
        if base.startswith("test_") or base.endswith("_test.py"):
            taken = set()
            for _ in range(50):
                stem = "_".join(rng.choice(words) for _ in range(rng.choice([1, 2])))
                fname = ("test_%s.py" % stem) if base.startswith("test_") else ("%s_test.py" % stem)
                erel = os.path.join(folder, fname) if folder else fname
                if not os.path.lexists(os.path.join(wd, erel)):
                    break
            else:
                erel = None
            if erel:
                head = import_lines(src, tree)
                text = "\n".join(head) + "\n"
                kinds = ["pass"] + (["fail"] if want_fail else [])
                rng.shuffle(kinds)
                for kind in kinds:
                    name = fresh_name(rng, words, taken, prefix)
                    text += canary_source(name, canary_bodies(rng, names, words, kind))
                    plan["mustFail" if kind == "fail" else "mustPass"].append(erel + "::" + name)
                real_parent(erel)
                with open(os.path.join(wd, erel), "w") as f:
                    f.write(text)
                plan["extraFile"] = erel
    return plan


# ---------------------------------------------------------------------------------------------

mode = cfg["mode"]
if mode == "prepare":
    os.makedirs(d, mode=0o755, exist_ok=True)
    code, base, err = git("rev-parse", "HEAD")
    base = base.strip()
    if code != 0:
        print(json.dumps({"error": "git rev-parse HEAD failed: " + base + err}))
        sys.exit(0)
    out["base"] = base
    if cfg.get("pytest"):
        # The probe depends only on the image: forager passes a cached answer when it has one.
        probe = cfg.get("probe") or probe_pytest(cfg.get("preamble", []))
        out["probe"] = probe
        out["pytestVersion"] = probe.get("version")
        out["plugins"] = probe.get("plugins")
        name, text = base_pytest_config(probe.get("version"), probe.get("configNames"))
        out["configFile"] = name
        out["configText"] = text[:20000]
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
    out["attempts"] = attempts
    out["method"] = method
    if method is None:
        print(json.dumps(out))
        sys.exit(0)
    changed = zlist(git("diff", "--name-only", "--no-renames", "-z", base)[1])
    created = sorted(set(zlist(git("ls-files", "--others", "-z")[1])) - before)
    touched = sorted(set(changed) | set(created) | set(cfg["modelPaths"]))
    escaped = [p for p in touched if os.path.lexists(os.path.join(wd, p)) and not inside(os.path.join(wd, p))]
    if git_state_digest() != git_before:
        escaped.append(".git")
    if escaped:
        git("reset", "-q", "--hard", base)
        git("clean", "-fdq")
        out["refused"] = "the patch wrote outside the tree or into .git: " + ", ".join(escaped[:5])
        print(json.dumps(out))
        sys.exit(0)
    test_like = re.compile(cfg["testLike"])
    protected = re.compile(cfg["protected"])
    shadow = re.compile(cfg["shadow"])
    test_files = cfg["testFiles"]
    reset = []
    for p in touched:
        if p in test_files or test_like.search(p) or protected.search(p):
            reset.append(p)
            continue
        m = shadow.match(p)
        if m and tree_entry(base, m.group(1)) is None:
            reset.append(p)
    out["touched"] = touched
    out["reset"] = sorted(reset)
    problems = []
    for p in sorted(set(reset) | set(test_files)):
        ok, text = reset_path(base, p)
        if not ok:
            problems.append(p + ": " + text.strip())
    out["resetProblems"] = problems
    tp = write("test.diff", cfg["test"])
    if cfg["test"].strip():
        r = subprocess.run(["git", *GIT_OPTS, "apply", "--verbose", tp], cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=GIT_ENV)
        out["testApply"] = {"exitCode": r.returncode, "output": r.stdout.decode("utf-8", "replace")[-20000:]}
    if cfg.get("canaries") and not problems and out.get("testApply", {"exitCode": 0})["exitCode"] == 0:
        rng = random.SystemRandom()
        out["canaries"] = write_canaries(cfg["canaryFiles"], cfg.get("mustFail", True), rng)
    jd = cfg.get("junitDir")
    if jd:
        os.makedirs(jd, mode=0o777)
        os.chmod(jd, 0o777)
elif mode == "collect":
    jp = cfg.get("junitPath")
    limit = int(cfg.get("junitLimit", 32 * 1024 * 1024))
    if jp and os.path.isfile(jp) and not os.path.islink(jp):
        size = os.path.getsize(jp)
        if size > limit:
            out["junit"] = None
            out["junitTooLarge"] = size
        else:
            with open(jp, "rb") as f:
                out["junit"] = f.read(limit).decode("utf-8", "replace")
    else:
        out["junit"] = None
    problems = []
    for p in cfg["testFiles"]:
        ok, text = reset_path(cfg["base"], p)
        if not ok:
            problems.append(p + ": " + text.strip())
    out["resetProblems"] = problems
print(json.dumps(out))
