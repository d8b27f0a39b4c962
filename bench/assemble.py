"""Rewrites BENCHMARKS.md from bench/results/*.md, with machine facts and the date."""
import datetime
import os
import platform
import subprocess

ORDER = ["summary", "http", "http-instructions", "http-profile", "framing", "mcp", "mcp-conformance", "token", "vault", "policy", "audit", "monitor", "scan"]
root = os.path.join(os.path.dirname(__file__), "..")
results = os.path.join(root, "bench", "results")


def machine() -> str:
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    try:
        load = open("/proc/loadavg").read().split()[0]
    except OSError:
        load = "?"
    return f"{os.cpu_count()} cores, {model}, load average {load} when assembled"


def rustc() -> str:
    try:
        return subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "rustc unknown"


parts = [
    "# Benchmarks",
    "",
    f"Assembled {datetime.date.today()} by `bench/run` on: {machine()}; {rustc()}.",
    "These machines are shared and noisy: every table reports ratios measured side by side in one",
    "run; absolute times are context only. Each section names the command that produced it.",
    "",
]
files = sorted(f for f in os.listdir(results) if f.endswith(".md"))
files.sort(key=lambda f: (ORDER.index(f[:-3]) if f[:-3] in ORDER else len(ORDER), f))
for f in files:
    text = open(os.path.join(results, f)).read().strip()
    # Each file's headings move one level down, so the files become sections.
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        lines.append("#" + line if line.startswith("#") and not fenced else line)
    parts.append("\n".join(lines))
    parts.append("")
open(os.path.join(root, "BENCHMARKS.md"), "w").write("\n".join(parts))
