"""Medians, ratios and the tables: text for the terminal, Markdown for docs, JSON for tools.

Every row compares the workload's subject (taskhub) with one peer on one metric:
ratio = taskhub's median / the peer's median, so below 1 means taskhub costs less (less
time, less memory, fewer processes).
"""
import json
import statistics

from .systems import VARIANTS


def median(cell):
    return statistics.median(cell.samples) if cell and cell.samples else None


def ratio(subject, peer):
    a, b = median(subject), median(peer)
    return a / b if a is not None and b else None


def show(value, unit):
    if value is None:
        return "—"
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.0f} µs"
        return f"{value * 1e3:.3g} ms" if value < 1 else f"{value:.3g} s"
    if unit == "MB":
        return f"{value:.3g} MB" if value < 10 else f"{value:,.0f} MB"
    return f"{value:g}"


def show_cell(cell):
    if cell is None:
        return "—"
    if cell.error:
        return "n/a" if cell.error == "n/a" else "FAILED"
    return f"{show(median(cell), cell.unit)} ×{len(cell.samples)}"


def show_ratio(value):
    return "—" if value is None else f"{value:.3g}"


def label(system):
    variant = VARIANTS.get(system)
    return variant.label or system if variant else system


def comparisons(results):
    """(title, metric, subject cell, peer system, peer cell, ratio) rows, in run order."""
    rows = []
    for (title, metric), cells in results.rows.items():
        subject = results.subjects[title]
        peers = [s for s in cells if s != subject] or [None]
        for peer in peers:
            rows.append((title, metric, cells.get(subject), peer, cells.get(peer),
                         ratio(cells.get(subject), cells.get(peer)) if peer else None))
    return rows


def text_table(results):
    lines, last_title, last_metric = [], None, None
    widths = (52, 14, 31, 14)
    for title, metric, subject, peer, cell, r in comparisons(results):
        if title != last_title:
            head = f"{title}  [{label(results.subjects[title])} vs peer]"
            lines += ["", head, "-" * len(head)]
            lines.append(_cols(("metric", "taskhub", "peer", "peer value"), widths)
                         + "  taskhub/peer")
            last_title, last_metric = title, None
        first = metric != last_metric
        cols = (metric if first else "", show_cell(subject) if first else "",
                label(peer) if peer else "", show_cell(cell) if peer else "")
        lines.append(_cols(cols, widths) + "  " + show_ratio(r))
        last_metric = metric
    lines += _failures(results)
    return "\n".join(lines) + "\n"


def _cols(values, widths):
    return "".join(str(v)[:w - 1].ljust(w) for v, w in zip(values, widths))


def _failures(results):
    """One line per (workload, system, error): the parts of a call fail together."""
    failed = {}
    for (title, metric), cells in results.rows.items():
        for system, cell in cells.items():
            if cell.error and cell.error != "n/a":
                failed.setdefault((title, system, cell.error), metric)
    lines = ["", "Failures:"] if failed else []
    lines += [f"  {title} / {metric} / {system}: {_gist(error)}"
              for (title, system, error), metric in failed.items()]
    if results.leaks:
        lines += ["", "Processes left running after a system was stopped (killed by the runner):"]
        lines += [f"  {system}: {pids}" for system, pids in results.leaks.items()]
    return lines


def _gist(error, width=300):
    """An error's first line and, for a traceback, its last: enough to know what broke."""
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    gist = lines[0] if len(lines) < 2 else f"{lines[0]} … {lines[-1]}"
    return gist if len(gist) <= width else gist[:width - 1] + "…"


def markdown_table(results):
    lines, last_title, last_metric = [], None, None
    for title, metric, subject, peer, cell, r in comparisons(results):
        if title != last_title:
            lines += ["", f"### {title}", "",
                      f"| metric | {label(results.subjects[title])} | peer | peer value | "
                      "ratio taskhub/peer |", "|---|---:|---|---:|---:|"]
            last_title, last_metric = title, None
        first = metric != last_metric
        lines.append(f"| {metric if first else ''} | {show_cell(subject) if first else ''} | "
                     f"{label(peer) if peer else '—'} | {show_cell(cell) if peer else '—'} | "
                     f"{show_ratio(r)} |")
        last_metric = metric
    lines += _failures(results)
    return "\n".join(lines) + "\n"


def to_json(results, meta):
    rows = []
    for (title, metric), cells in results.rows.items():
        subject = cells.get(results.subjects[title])
        for system, cell in cells.items():
            rows.append({"workload": title, "metric": metric, "unit": cell.unit,
                         "subject": results.subjects[title], "system": system,
                         "label": label(system), "samples": cell.samples,
                         "median": median(cell), "error": cell.error,
                         "ratio_subject_to_this": ratio(subject, cell)})
    return json.dumps({"meta": meta, "versions": results.versions, "rows": rows,
                       "leaks": results.leaks}, indent=1)


def from_json(text):
    """The Results (and meta) a `to_json` text was made from, to render its tables again."""
    from .runner import Results
    data, results = json.loads(text), Results()
    for row in data["rows"]:
        results.subjects.setdefault(row["workload"], row.get("subject", "taskhub"))
        cell = results.cell(row["workload"], row["metric"], row["system"], row["unit"])
        cell.samples, cell.error = list(row["samples"]), row["error"]
    results.versions, results.leaks = data.get("versions", {}), data.get("leaks", {})
    return results, data.get("meta", {})
