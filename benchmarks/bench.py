"""Benchmark gitcert's plan and apply on cert repos with thousands of certificates.

What it measures, each command as a separate subprocess (wall time, CPU time and peak RSS,
from wait4 in a small launcher process):

1. ``gitcert --version``: the start-up cost (imports) every command pays.
2. ``gitcert plan`` on repos holding N already issued certificates (Secrets and status
   records committed, so the plan is "No changes"), for each N and manifest layout: the
   median of a few runs after one warm-up run (which also checks the plan is empty).
3. ``gitcert apply`` issuing a batch of new CA-signed certificates (one commit; one sops
   process per certificate), once.
4. At the largest N: the phases of the plan (imports, manifests, gather, decisions) timed
   in-process, and a cProfile of ``gitcert plan`` (top functions by cumulative and by own
   time).

How the big repos are built, quickly and honestly: ``gitcert apply`` issues a root CA into
a seed repo; its key is decrypted with sops into memory only. Leaf certificates are then
signed in-process with gitcert's own ``pki`` functions, and the Secret and status files
are rendered with gitcert's own ``state`` functions, exactly as ``reconcile._issue`` does.
Every leaf shares one private key, encrypted once by the real sops binary; the same ENC
value and sops metadata go into every Secret (sops' MAC covers only the encrypted values
under ``mac_only_encrypted``, so each Secret still decrypts). ``plan`` never decrypts, so
this changes nothing it measures. The files are committed with ``git fast-import``.

No plaintext private key is ever written to a file: the age identity is generated at run
time into a private (0700) temporary directory, which is deleted at the end.

Run: ``python benchmarks/bench.py`` (about five minutes on 2 cores) or ``--quick``.
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from pyrage import x25519

import gitcert
from gitcert import pki, policies, reconcile, state
from gitcert.clock import parse_instant
from gitcert.model import CertificateSpec, Config, FileSource
from gitcert.sops import Sops, encryption_problem

ISSUED_AT = "2026-06-01T12:00:00Z"
PLAN_AT = "2026-06-02T12:00:00Z"  # one day later: nothing is due, so the plan is empty
NAMESPACES = 10  # the default spread; --namespaces changes it
ROOT_SECRET = "secrets/cert-manager/root-ca.yaml"

PKI = """\
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: selfsigned
spec:
  selfSigned: {}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: root-ca
  namespace: cert-manager
spec:
  isCA: true
  commonName: Bench Root CA
  secretName: root-ca
  duration: 87600h
  privateKey: {algorithm: ECDSA, size: 384}
  issuerRef: {name: selfsigned, kind: ClusterIssuer}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: ca
spec:
  ca:
    secretName: root-ca
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- running gitcert and measuring it --------------------------------------------------------


@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    max_rss_mib: float
    returncode: int
    output: str


@dataclass
class Result:
    label: str
    runs: list[Run] = field(default_factory=list)
    count: int = 0  # certificates involved, for per-certificate cost

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.runs))


class Env:
    """The private work directory, the age identity and the environment for subprocesses."""

    def __init__(self, root: Path) -> None:
        self.root = root
        identity = x25519.Identity.generate()
        self.recipient = str(identity.to_public())
        self.key_file = root / "age" / "keys.txt"
        self.key_file.parent.mkdir(mode=0o700)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(f"{identity}\n")
        (root / "home").mkdir()
        self.vars = {
            **os.environ,
            "SOPS_AGE_KEY_FILE": str(self.key_file),
            "HOME": str(root / "home"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@localhost",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@localhost",
        }
        for name in ("GITCERT_NOW", "SOPS_AGE_KEY", "PYTHONDONTWRITEBYTECODE"):
            self.vars.pop(name, None)
        # Bytecode is cached as an installed package's would be, but in the scratch
        # directory, so the source tree is left as it is.
        self.vars["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        os.environ["SOPS_AGE_KEY_FILE"] = str(self.key_file)  # for this process' own sops


def gitcert_command() -> list[str]:
    """The installed ``gitcert`` script beside this interpreter, else ``python -m gitcert``."""
    script = Path(sys.executable).with_name("gitcert")
    if script.exists():
        return [str(script)]
    found = shutil.which("gitcert")
    return [found] if found else [sys.executable, "-m", "gitcert"]


# Peak RSS needs a small parent. Linux records the parent's memory high-water mark as the
# child's ru_maxrss when the child execs after a (v)fork, so a child of this process (which
# holds thousands of rendered files) would report this process' size, not its own. The
# launcher, a bare interpreter of about 10 MiB, starts the command and reports its rusage.
LAUNCHER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
with open(report, "w") as f:
    json.dump([wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
               os.waitstatus_to_exitcode(status)], f)
"""


def measure(argv: Sequence[str], env: Env) -> Run:
    """Run one command; wall, CPU and peak RSS cover it and the processes it waits for."""
    report = env.root / "rusage.json"
    with tempfile.TemporaryFile(dir=env.root) as out:
        launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(report), *argv]
        subprocess.run(launcher, stdout=out, stderr=subprocess.STDOUT, env=env.vars, check=True)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    wall, cpu, max_rss_kib, returncode = json.loads(report.read_text())
    return Run(wall, cpu, max_rss_kib / 1024, returncode, text)


def git(env: Env, cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        env=env.vars,
        input=stdin,
        capture_output=True,
        check=True,
    )
    return result.stdout.decode()


def expect(run: Run, codes: Sequence[int], what: str) -> None:
    if run.returncode not in codes:
        raise SystemExit(f"{what} exited {run.returncode}:\n{run.output[-4000:]}")


# --- the seed repo: a root CA issued by gitcert itself ---------------------------------------


def make_seed(env: Env) -> Path:
    """``gitcert init`` (its settings and sops rules), our PKI manifests, a real apply."""
    seed, gitcert_ = env.root / "seed", gitcert_command()
    expect(
        measure([*gitcert_, "init", str(seed), "--age-recipient", env.recipient], env), [0], "init"
    )
    shutil.rmtree(seed / "manifests")
    (seed / "manifests").mkdir()
    (seed / "manifests" / "pki.yaml").write_text(PKI, encoding="utf-8")
    git(env, seed, "add", "-A")
    git(env, seed, "commit", "-q", "-m", "bench: root CA and CA issuer")
    run = measure([*gitcert_, "apply", "--repo", str(seed), "--now", ISSUED_AT], env)
    expect(run, [0], "gitcert apply (root CA)")
    return seed


def tree_files(env: Env, repo: Path) -> dict[str, bytes]:
    """Every file at HEAD of ``repo``, read from git."""
    names = git(env, repo, "ls-tree", "-r", "-z", "--name-only", "HEAD").split("\0")
    return {n: subprocess.check_output(["git", "show", f"HEAD:{n}"], cwd=repo) for n in names if n}


class DictTree(FileSource):
    """An in-memory FileSource, so gitcert can parse manifests before anything is committed."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read(self, path: str) -> bytes | None:
        return self.files.get(path)

    def walk(self, prefix: str) -> list[tuple[str, str]]:
        start = prefix.rstrip("/") + "/"
        return sorted((p, state.blob_id(d)) for p, d in self.files.items() if p.startswith(start))

    def blob_id(self, path: str) -> str | None:
        data = self.files.get(path)
        return state.blob_id(data) if data is not None else None


# --- manifests ------------------------------------------------------------------------------


def leaf_name(i: int, namespaces: int) -> tuple[str, str]:
    return f"svc-{i:05d}", f"team-{i % namespaces:02d}"


def leaf_manifest(i: int, namespaces: int) -> str:
    name, namespace = leaf_name(i, namespaces)
    document = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "secretName": f"{name}-tls",
            "commonName": f"{name}.example.test",
            "dnsNames": [f"{name}.example.test", f"{name}.{namespace}.svc.cluster.local"],
            "duration": "2160h",
            "issuerRef": {"name": "ca", "kind": "ClusterIssuer"},
        },
    }
    return "---\n" + yaml.safe_dump(document, sort_keys=False)


def manifest_files(count: int, per_file: int, namespaces: int) -> dict[str, bytes]:
    """``count`` Certificates spread over ``namespaces``, ``per_file`` documents per file.

    Files go to ``manifests/<namespace>/``: ``<name>.yaml`` with one Certificate per file,
    else ``certs-NNNN.yaml``.
    """
    by_namespace: dict[str, list[int]] = {}
    for i in range(count):
        by_namespace.setdefault(leaf_name(i, namespaces)[1], []).append(i)
    files = {}
    for namespace, indexes in by_namespace.items():
        for start in range(0, len(indexes), per_file):
            chunk = indexes[start : start + per_file]
            stem = (
                leaf_name(chunk[0], namespaces)[0]
                if per_file == 1
                else f"certs-{start // per_file:04d}"
            )
            text = "".join(leaf_manifest(i, namespaces) for i in chunk)
            files[f"manifests/{namespace}/{stem}.yaml"] = text.encode()
    return files


# --- issuing leaves in-process ----------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """The root CA (key decrypted into memory) and the one shared, sops-encrypted leaf key."""

    ca: x509.Certificate
    ca_key: pki.PrivateKey
    leaf_key: pki.PrivateKey
    encrypted_key: str
    sops_metadata: dict[str, object]


def load_ca(seed: dict[str, bytes]) -> tuple[x509.Certificate, pki.PrivateKey]:
    data = seed[ROOT_SECRET]
    values = state.secret_values(state.load(data))
    with Sops(seed[".sops.yaml"]) as sops:
        pem = sops.decrypt_value(data, ROOT_SECRET, ["stringData", "tls.key"])
    return pki.load_pem_chain(values["tls.crt"])[0], pki.load_key(pem)


def make_signer(seed: dict[str, bytes], spec: CertificateSpec, config: Config) -> Signer:
    """Encrypt one leaf key with the real sops, as reconcile._encrypt_secret does."""
    ca, ca_key = load_ca(seed)
    leaf_key = pki.generate_key(spec.private_key)
    pem = pki.key_to_pem(leaf_key, spec.private_key.encoding).decode()
    labels, annotations = state.desired_metadata(spec, state.managed_annotations(spec))
    plain = state.render_secret(spec, labels, annotations, {"tls.key": pem}, None)
    path = state.secret_path(config, spec.namespace, spec.secret_name)
    with Sops(seed[".sops.yaml"]) as sops:
        encrypted = state.load(sops.encrypt(plain, path))  # plaintext goes to sops on stdin
    problem = encryption_problem(encrypted)
    if problem or not encrypted["sops"].get("mac_only_encrypted"):
        raise SystemExit(f"sops did not encrypt as gitcert expects: {problem}")
    value = encrypted["stringData"]["tls.key"]
    return Signer(ca, ca_key, leaf_key, value, encrypted["sops"])


def issue(signer: Signer, spec: CertificateSpec, config: Config) -> dict[str, bytes]:
    """The Secret and status files gitcert's apply would write for ``spec`` (see _issue)."""
    now, ca = parse_instant(ISSUED_AT), signer.ca
    csr = pki.build_csr(spec.request, signer.leaf_key)
    not_after = min(now + spec.request.duration, ca.not_valid_after_utc)
    template = pki.SigningTemplate(request=spec.request, not_before=now, not_after=not_after)
    cert = pki.sign_certificate(csr, template, ca.subject, signer.ca_key, ca.public_key())
    values = {
        "tls.crt": pki.cert_to_pem(cert),
        "ca.crt": pki.cert_to_pem(ca),
        "tls.key": signer.encrypted_key,
    }
    labels, annotations = state.desired_metadata(spec, state.managed_annotations(spec))
    secret = state.render_secret(spec, labels, annotations, values, signer.sops_metadata)
    status = issued_status(spec, secret)
    return {
        state.secret_path(config, spec.namespace, spec.secret_name): secret,
        state.status_path(config, spec.namespace, spec.name): state.render_status(spec.key, status),
    }


def issued_status(spec: CertificateSpec, secret: bytes) -> state.Status:
    return state.issued_status(spec, secret, revision=1, reason=policies.SECRET_MISSING)


def issued_files(seed: dict[str, bytes], count: int, namespaces: int) -> dict[str, bytes]:
    """Secrets and status records of ``count`` issued leaves, via gitcert's own parser."""
    desired, _ = reconcile.validate(DictTree({**seed, **manifest_files(count, 1, namespaces)}))
    leaves = [c for c in desired.certificates if c.name.startswith("svc-")]
    signer = make_signer(seed, leaves[0], desired.config)
    files: dict[str, bytes] = {}
    for spec in leaves:
        files.update(issue(signer, spec, desired.config))
    return files


# --- committing -----------------------------------------------------------------------------


def fast_import_stream(files: dict[str, bytes], message: str) -> Iterator[bytes]:
    text = message.encode()
    yield b"commit refs/heads/main\ncommitter bench <bench@localhost> 1780315200 +0000\n"
    yield b"data %d\n%s\nfrom refs/heads/main^0\n" % (len(text), text)
    for path, data in sorted(files.items()):
        yield b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data)
    yield b"done\n"


def commit_on_seed(env: Env, seed: Path, name: str, files: dict[str, bytes]) -> Path:
    """A clone of the seed (no work tree checkout) with ``files`` added in one commit."""
    repo = env.root / name
    git(env, env.root, "clone", "-q", "--no-checkout", str(seed), str(repo))
    git(env, repo, "remote", "remove", "origin")
    stream = b"".join(fast_import_stream(files, f"bench: {name}\n"))
    git(env, repo, "fast-import", "--quiet", "--done", stdin=stream)
    return repo


# --- the benchmarks ---------------------------------------------------------------------------


def bench_startup(env: Env, repeat: int) -> Result:
    result = Result("gitcert --version (start-up)")
    measure([*gitcert_command(), "--version"], env)  # warm-up: fills the bytecode cache
    for _ in range(repeat):
        result.runs.append(measure([*gitcert_command(), "--version"], env))
    return result


def plan_argv(repo: Path, *extra: str) -> list[str]:
    return [*gitcert_command(), "plan", "--repo", str(repo), "--now", PLAN_AT, *extra]


def bench_plan(env: Env, repo: Path, label: str, count: int, repeat: int) -> Result:
    warm = measure(plan_argv(repo, "--detailed-exitcode"), env)
    expect(warm, [0], f"plan of {label} (expected no changes)")
    if f"{count + 1} certificate(s) up to date" not in warm.output:
        raise SystemExit(f"unexpected plan for {label}: {warm.output}")
    result = Result(label, count=count)
    for _ in range(repeat):
        run = measure(plan_argv(repo), env)
        expect(run, [0], f"plan of {label}")
        result.runs.append(run)
    log(f"{label}: median {result.median('wall'):.2f} s, {result.median('max_rss_mib'):.0f} MiB")
    return result


def check_decrypts(repo_files: dict[str, bytes], seed: dict[str, bytes]) -> None:
    """A generated Secret must be a real sops file whose key matches its certificate."""
    path = random.choice(sorted(p for p in repo_files if p.startswith("secrets/")))
    data = repo_files[path]
    with Sops(seed[".sops.yaml"]) as sops:
        key = pki.load_key(sops.decrypt_value(data, path, ["stringData", "tls.key"]))
    cert = pki.load_pem_chain(state.secret_values(state.load(data))["tls.crt"])[0]
    if pki.public_bytes(key.public_key()) != pki.public_bytes(cert.public_key()):
        raise SystemExit(f"{path}: tls.key does not match tls.crt")


def bench_plans(env: Env, seed: Path, args: argparse.Namespace) -> list[Result]:
    seed_files, spread = tree_files(env, seed), args.namespaces
    results = []
    for count in args.sizes:
        start = time.perf_counter()
        issued = issued_files(seed_files, count, spread)
        check_decrypts(issued, seed_files)
        log(f"signed and rendered {count} certificates in {time.perf_counter() - start:.1f} s")
        for per_file in args.layouts:
            files = {**issued, **manifest_files(count, per_file, spread)}
            repo = commit_on_seed(env, seed, f"plan-{count}-{per_file}", files)
            label = f"plan N={count}, {per_file}/file" + (
                f", {spread} ns" if spread != NAMESPACES else ""
            )
            results.append(bench_plan(env, repo, label, count, args.repeat))
    return results


def bench_apply(env: Env, seed: Path, count: int, namespaces: int) -> Result:
    repo = env.root / "apply"
    git(env, env.root, "clone", "-q", str(seed), str(repo))
    for path, data in manifest_files(count, 1, namespaces).items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_bytes(data)
    git(env, repo, "add", "-A")
    git(env, repo, "commit", "-q", "-m", f"{count} new certificates")
    argv = [*gitcert_command(), "apply", "--repo", str(repo), "--now", ISSUED_AT]
    run = measure(argv, env)
    expect(run, [0], "gitcert apply")
    expect(measure(plan_argv(repo, "--detailed-exitcode"), env), [0], "plan after apply")
    grep = ["git", "grep", "-q", "PRIVATE KEY-----", "HEAD"]
    leaked = subprocess.run(grep, cwd=repo, env=env.vars, check=False)
    if leaked.returncode != 1:
        raise SystemExit("a readable private key was committed (or git grep failed)")
    log(f"apply {count}: {run.wall:.1f} s, {run.max_rss_mib:.0f} MiB")
    return Result(f"apply {count} new CA-signed", [run], count)


# --- profiling ------------------------------------------------------------------------------


def short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path[path.rfind("/gitcert/") + 1 :] if "/gitcert/" in path else path


# Frames that only wrap the work (interpreter, click, import machinery) are left out of the
# cumulative list; the import total stays, as _find_and_load.
WRAPPERS = ("click/", "<frozen runpy>", "<string>", "__main__.py", "builtins.exec", "cli.py")


def wrapper(path: str, func: str) -> bool:
    where = f"{path}({func})"
    if "importlib" in path:
        return func != "_find_and_load"
    return any(w in where for w in WRAPPERS)


def hotspots(stats: pstats.Stats, key: int, top: int) -> list[str]:
    """The ``top`` functions by ``key`` (2: own time, 3: cumulative time) as table lines."""
    table_ = stats.stats  # type: ignore[attr-defined]  # pstats keeps its rows here
    rows = sorted(table_.items(), key=lambda item: item[1][key], reverse=True)
    if key == 3:
        rows = [row for row in rows if not wrapper(row[0][0], row[0][2])]
    lines = [f"{'cumulative':>10} {'own':>8} {'calls':>9}  function"]
    for (path, line, func), (_, calls, own, cumulative, _) in rows[:top]:
        lines.append(f"{cumulative:10.3f} {own:8.3f} {calls:9d}  {short(path)}:{line}({func})")
    return lines


def profile_plan(env: Env, repo: Path, top: int) -> tuple[Run, str]:
    """cProfile one plan (imports included); its wall time carries the profiler's overhead."""
    out = env.root / "plan.prof"
    argv = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "gitcert"]
    run = measure([*argv, *plan_argv(repo)[1:]], env)
    expect(run, [0], "profiled plan")
    stats = pstats.Stats(str(out))
    text = ["By cumulative time:", *hotspots(stats, 3, top), ""]
    text += ["By own time:", *hotspots(stats, 2, top)]
    return run, "\n".join(text)


# The phases of make_plan, timed in a fresh interpreter without a profiler's overhead.
PHASES = """
import json, sys, time
start = time.perf_counter()
from gitcert import gitops, policies, reconcile, state
from gitcert.clock import parse_instant
times = {"import gitcert": time.perf_counter() - start}
def timed(name, call):
    start = time.perf_counter()
    value = call()
    times[name] = time.perf_counter() - start
    return value
tree = gitops.resolve(gitops.open_repo(sys.argv[1]), None)
desired, _ = timed("validate: load manifests, levels", lambda: reconcile.validate(tree))
snapshot = timed("gather: read status and Secrets", lambda: state.gather(tree, desired))
now = parse_instant(sys.argv[2])
timed("decide: policies for each", lambda: [
    policies.decide(policies.Input(c, snapshot[c.key], now)) for c in desired.certificates])
print(json.dumps(times))
"""


def plan_phases(env: Env, repo: Path) -> str:
    argv = [sys.executable, "-c", PHASES, str(repo), PLAN_AT]
    output = subprocess.run(argv, env=env.vars, capture_output=True, check=True).stdout
    times = json.loads(output)
    return "\n".join(f"{seconds:8.2f} s  {name}" for name, seconds in times.items())


# --- report ---------------------------------------------------------------------------------


def table(results: Sequence[Result]) -> str:
    header = f"{'benchmark':<30} {'runs':>4} {'wall median':>11} {'wall min-max':>13}"
    header += f" {'CPU':>7} {'peak RSS':>9} {'per cert':>9}"
    lines = [header, "-" * len(header)]
    for r in results:
        walls = [run.wall for run in r.runs]
        per_cert = f"{1000 * r.median('wall') / r.count:.2f} ms" if r.count else ""
        lines.append(
            f"{r.label:<30} {len(r.runs):>4} {r.median('wall'):>9.2f} s"
            f" {f'{min(walls):.2f}-{max(walls):.2f} s':>13}"
            f" {r.median('cpu'):>5.2f} s {r.median('max_rss_mib'):>5.0f} MiB {per_cert:>9}"
        )
    return "\n".join(lines)


def as_json(results: Sequence[Result]) -> str:
    return json.dumps(
        [
            {
                "benchmark": r.label,
                "certificates": r.count,
                "wall_s": [round(x.wall, 4) for x in r.runs],
                "cpu_s": [round(x.cpu, 4) for x in r.runs],
                "max_rss_mib": [round(x.max_rss_mib, 1) for x in r.runs],
            }
            for r in results
        ],
        indent=2,
    )


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--sizes", type=ints, help="plan sizes [1000,10000; quick: 100,300]")
    parser.add_argument("--layouts", type=ints, help="Certificates per manifest file [1,10]")
    parser.add_argument("--namespaces", type=int, default=NAMESPACES, help="spread [10]")
    parser.add_argument("--repeat", type=int, help="timed runs per plan [5; quick: 2]")
    parser.add_argument("--apply-count", type=int, help="certificates apply issues [1000; 20]")
    parser.add_argument("--no-apply", action="store_true", help="skip the apply benchmark")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--top", type=int, default=25, help="hotspots to list [25]")
    parser.add_argument("--json", type=Path, help="also write the raw runs to this file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([100, 300] if quick else [1000, 10000])
    args.layouts = args.layouts or [1, 10]
    args.repeat = args.repeat or (2 if quick else 5)
    args.apply_count = args.apply_count or (20 if quick else 1000)
    return args


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def run_all(env: Env, args: argparse.Namespace) -> tuple[list[Result], str]:
    results = [bench_startup(env, args.repeat)]
    seed = make_seed(env)
    results += bench_plans(env, seed, args)
    if not args.no_apply:
        results.append(bench_apply(env, seed, args.apply_count, args.namespaces))
    profile = ""
    if not args.no_profile:
        biggest = env.root / f"plan-{max(args.sizes)}-{args.layouts[0]}"
        run, profile = profile_plan(env, biggest, args.top)
        title = f"cProfile of plan N={max(args.sizes)}, {run.wall:.2f} s under the profiler"
        phases = f"Phases of plan N={max(args.sizes)}, no profiler:\n{plan_phases(env, biggest)}"
        profile = f"{phases}\n\n{title}\n\n{profile}"
    return results, profile


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="gitcert-bench-"))
    os.chmod(root, 0o700)
    log(f"scratch directory {root}; load average {os.getloadavg()[0]:.2f}")
    try:
        results, profile = run_all(Env(root), args)
    finally:
        if args.keep:
            log(f"kept {root} (it holds the age identity; delete it when done)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if profile:
        print(profile, end="\n\n")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"gitcert benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, ", end="")
    print(f"load average at the end {load} (other work on the machine skews the times)")
    print(f"gitcert {gitcert.__version__} from {Path(gitcert.__file__).parent}\n")
    print(table(results))
    if args.json:
        args.json.write_text(as_json(results) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
