"""End-of-run summary: per trait, targets built, up to date, and missing (with the reasons).

Imported by the Snakefile, so no torch here. Reasons come from the one-line
`traitflow [stage] error: ...` each failing job writes to its log.
"""

import glob
import os
import re

from .formats import atomic_write

_ERROR_MARK = "traitflow ["
_ERROR_LINE = re.compile(r"^traitflow \[(?P<stage>[^\]]+)\] error: (?P<message>.*)$")


def classify(targets, run_start):
    """Split target paths into (built this run, up to date, missing)."""
    built, fresh, missing = [], [], []
    for path in targets:
        if not os.path.exists(path):
            missing.append(path)
        elif os.path.getmtime(path) >= run_start:
            built.append(path)
        else:
            fresh.append(path)
    return built, fresh, missing


def failure_reasons(log_dir, run_start):
    """{log path: last one-line error} for logs written during this run.

    The experiment's logs live under log_dir; experiment-independent ones (the
    demo model's) sit one level up.
    """
    logs = glob.glob(os.path.join(log_dir, "**", "*.log"), recursive=True)
    logs += glob.glob(os.path.join(os.path.dirname(log_dir.rstrip("/")) or ".", "*.log"))
    reasons = {}
    for log in logs:
        if os.path.getmtime(log) < run_start:
            continue
        with open(log, encoding="utf-8", errors="replace") as fh:
            lines = [line.strip() for line in fh if line.startswith(_ERROR_MARK)]
        if lines:
            reasons[log] = lines[-1]
    return reasons


def _owner(log, traits):
    """The trait a job log belongs to ({trait}.log, {trait}_shardN.log, {step}_{trait}.log), or None."""
    name = os.path.basename(log)
    for trait in sorted(traits, key=len, reverse=True):
        if re.fullmatch(rf"(?:[a-z]+_)?{re.escape(trait)}(?:_shard\d+)?\.log", name):
            return trait
    return None


def merge(lines):
    """Distinct messages, each with its stage and how many jobs reported it."""
    by_message = {}
    for line in lines:
        m = _ERROR_LINE.match(line)
        stage, message = (m["stage"], m["message"]) if m else ("?", line)
        by_message.setdefault(message, []).append(stage)
    return [f"[{stages[0]}{f' +{len(stages) - 1} jobs' if len(stages) > 1 else ''}] {message}"
            for message, stages in by_message.items()]


def summary_rows(plan, targets_by_trait, run_start, log_dir):
    """(trait, built, up to date, missing, reason) per trait, then ("(shared)", ...) rows for other failures."""
    reasons = failure_reasons(log_dir, run_start)
    owned = {log: _owner(log, plan.traits) for log in reasons}
    shared = merge(r for log, r in sorted(reasons.items()) if owned[log] is None)
    rows = []
    for name, trait in plan.traits.items():
        targets = targets_by_trait.get(name, [])
        if trait.error:
            rows.append((name, 0, 0, len(targets), f"[plan] {trait.error}"))
            continue
        built, fresh, missing = classify(targets, run_start)
        own = merge(r for log, r in sorted(reasons.items()) if owned[log] == name)
        reason = " | ".join(own or shared or ["not built this run (not requested, or see the Snakemake log)"]) \
            if missing else ""
        rows.append((name, len(built), len(fresh), len(missing), reason))
    rows += [("(shared)", 0, 0, 0, r) for r in shared]
    return rows


def format_summary(rows):
    width = max(len("trait"), *(len(r[0]) for r in rows))
    lines = [f"{'trait':<{width}}  built  up-to-date  missing  reason", "-" * (width + 37)]
    for name, built, fresh, missing, reason in rows:
        counts = f"{built:>5}  {fresh:>10}  {missing:>7}" if name != "(shared)" else " " * 26
        lines.append(f"{name:<{width}}  {counts}  {reason}".rstrip())
    return "\n".join(lines)


def print_run_summary(plan, targets_by_trait, run_start, log_dir):
    text = format_summary(summary_rows(plan, targets_by_trait, run_start, log_dir))
    print(f"\ntraitflow summary for {plan.exp_dir} (files per trait):\n{text}\n", flush=True)
    path = os.path.join(log_dir, "summary.txt")

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    atomic_write(path, write)
