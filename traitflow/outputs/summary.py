"""End-of-run summary: per trait, targets built, up to date, and missing (with the reasons).

Imported by the Snakefile, so no torch here. Reasons come from the one-line
`traitflow [stage] error: ...` each failing job writes to its log.
"""

import glob
import os
import re

from ..core.formats import atomic_write

_ERROR_MARK = "traitflow ["
_ERROR_LINE = re.compile(r"^traitflow \[(?P<stage>[^\]]+)\] error: (?P<message>.*)$")


def classify(targets, run_start):
    """Split target paths into (built this run, up to date, missing).

    One listing and one stat per folder: outputs are written atomically (renamed into
    place), which dates their folder, so only a folder dated this run needs a stat per
    file. A no-op at 30 traits x 1,000 prompts then makes ~100 calls, not ~90k.
    """
    built, fresh, missing = [], [], []
    folders = {}
    for path in targets:
        folder, name = os.path.split(path)
        if folder not in folders:
            try:
                folders[folder] = (set(os.listdir(folder or ".")), os.stat(folder or ".").st_mtime >= run_start)
            except OSError:
                folders[folder] = (set(), False)
        names, touched = folders[folder]
        if name not in names:
            missing.append(path)
        elif not touched:
            fresh.append(path)
        else:
            try:
                (built if os.stat(path).st_mtime >= run_start else fresh).append(path)
            except OSError:
                missing.append(path)
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


def stage_of(rule, shard_names=()):
    """capture_shard3 (shard_names: shard3, ...) -> capture: one line per stage, not per job."""
    for name in sorted(shard_names, key=len, reverse=True):
        if rule.endswith("_" + name):
            return rule[:-len(name) - 1]
    return rule


def job_reason(reason, job=None, persistence=None):
    """Why Snakemake ran a job, in words a user acts on (changed params are named when they can be)."""
    words = []
    if reason.forced:
        words.append("forced")
    if reason._missing_output or reason._incomplete_output:
        words.append("output missing or incomplete")
    if reason._updated_input:
        words.append("input changed")
    if reason._updated_input_run:
        words.append("upstream job reran")
    if reason.params_changed:
        words.append("params changed" + _changed_params(reason.params_changed, job, persistence))
    if reason.code_changed:
        words.append("rule code changed")
    if reason.input_changed:
        words.append("set of inputs changed")
    return ", ".join(words) or "requested"


def _changed_params(change, job, persistence):
    """' (traits, dtype)': the names of the job's params whose value is new, where Snakemake lets us tell."""
    try:
        names = [name for name, value in job.params.items()
                 if persistence._serialize_param(value) in change.only_new]
    except Exception:  # private Snakemake API: without it the reason simply names no params
        return ""
    return f" ({', '.join(names)})" if names else ""


def rerun_reasons(workflow, shard_names=()):
    """{stage: {reason: jobs}} for the jobs this run executed (empty when nothing ran)."""
    dag = getattr(workflow, "dag", None)
    if dag is None:
        return {}
    reasons = {}
    for job in dag.needrun_jobs(exclude_finished=False):
        if job.rule.name == "all":
            continue
        why = job_reason(dag.reason(job), job, workflow.persistence)
        by_reason = reasons.setdefault(stage_of(job.rule.name, shard_names), {})
        by_reason[why] = by_reason.get(why, 0) + 1
    return reasons


def format_reasons(reasons):
    if not reasons:
        return "nothing ran: every output is up to date"
    lines = []
    for stage, by_reason in sorted(reasons.items()):
        n = sum(by_reason.values())
        lines.append(f"{stage} ({n} job{'s' * (n != 1)}): " + "; ".join(
            f"{why}" + (f" x{k}" if len(by_reason) > 1 else "") for why, k in sorted(by_reason.items())))
    return "\n".join(lines)


def print_run_summary(plan, targets_by_trait, run_start, log_dir, reasons=None, orphans=""):
    """orphans: one line naming the outputs of prompts no longer in the experiment (traitflow.plan.orphans)."""
    text = format_summary(summary_rows(plan, targets_by_trait, run_start, log_dir))
    if reasons is not None:
        text += "\n\nwhy jobs ran, per stage:\n" + format_reasons(reasons)
    if orphans:
        text += "\n\nstale files: " + orphans
    print(f"\ntraitflow summary for {plan.exp_dir} (files per trait):\n{text}\n", flush=True)
    path = os.path.join(log_dir, "summary.txt")

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    atomic_write(path, write)
