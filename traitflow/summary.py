"""End-of-run summary: per trait, targets built, up to date, and failed (with the reason)."""

import glob
import os

_ERROR_MARK = "traitflow ["


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
    """{log path: last one-line error} for logs written during this run."""
    reasons = {}
    for log in glob.glob(os.path.join(log_dir, "**", "*.log"), recursive=True):
        if os.path.getmtime(log) < run_start:
            continue
        with open(log, encoding="utf-8", errors="replace") as fh:
            lines = [line.strip() for line in fh if line.startswith(_ERROR_MARK)]
        if lines:
            reasons[log] = lines[-1]
    return reasons


def _reason_for(trait, reasons):
    """A trait's own job logs are named after it; shared jobs (generation) concern every trait."""
    own = [r for log, r in reasons.items() if os.path.basename(log).startswith((f"{trait}.", f"{trait}_shard"))]
    shared = [r for log, r in reasons.items() if "/generate/" in log or "build_demo_model" in log]
    return (own + shared + ["not built (see the Snakemake log)"])[0]


def summary_rows(plan, targets_by_trait, run_start, log_dir):
    reasons = failure_reasons(log_dir, run_start)
    rows = []
    for name, trait in plan.traits.items():
        if trait.error:
            rows.append((name, 0, 0, len(plan.prompts), trait.error))
            continue
        built, fresh, missing = classify(targets_by_trait[name], run_start)
        rows.append((name, len(built), len(fresh), len(missing), _reason_for(name, reasons) if missing else ""))
    return rows


def format_summary(rows):
    width = max(len("trait"), *(len(r[0]) for r in rows))
    lines = [f"{'trait':<{width}}  built  up-to-date  failed  reason", "-" * (width + 36)]
    for name, built, fresh, failed, reason in rows:
        lines.append(f"{name:<{width}}  {built:>5}  {fresh:>10}  {failed:>6}  {reason}")
    return "\n".join(lines)


def print_run_summary(plan, targets_by_trait, run_start, log_dir):
    text = format_summary(summary_rows(plan, targets_by_trait, run_start, log_dir))
    print(f"\ntraitflow summary for {plan.exp_dir} (files per trait):\n{text}\n", flush=True)
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "summary.txt"), "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
