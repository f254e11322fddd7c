"""Evaluation reports: ``eval.json`` (everything), ``eval.md`` (tables), ``eval.html`` (tables and previews, no server needed)."""

from __future__ import annotations

import html
import os
from pathlib import Path

from motionlab.inference.evaluate import metric_columns
from motionlab.utils.io import atomic_write_text, write_json

NOTE = (
    "fd_* / fvd_* / aed_* use the named feature backbone; with effnetlite0 they are FID-style numbers "
    "on offline EfficientNet-Lite0 features, not comparable with published Inception-FID / FVD / AED."
)


def _format(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_report(result: dict) -> str:
    lines = [f"# motionlab evaluation: {result['source']}", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {name} | {_format(value)} |" for name, value in sorted(result["metrics"].items())]
    columns = metric_columns(result["clips"])
    lines += ["", "## Per clip", "", "| clip | frames | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    lines += [f"| {row['clip']} | {row['frames']} | " + " | ".join(_format(row[c]) for c in columns) + " |" for row in result["clips"]]
    lines += ["", f"_{NOTE}_", ""]
    return "\n".join(lines)


def html_report(result: dict, out_dir: Path) -> str:
    columns = metric_columns(result["clips"])
    summary = "".join(f"<tr><td>{html.escape(name)}</td><td>{_format(value)}</td></tr>" for name, value in sorted(result["metrics"].items()))
    rows = []
    for row in result["clips"]:
        preview = ""
        if "preview" in row:
            src = html.escape(os.path.relpath(row["preview"], out_dir))
            preview = f'<img src="{src}" alt="preview of {html.escape(row["clip"])}">'
        cells = "".join(f"<td>{_format(row[c])}</td>" for c in columns)
        rows.append(f"<tr><td>{html.escape(row['clip'])}</td><td>{preview}</td><td>{row['frames']}</td>{cells}</tr>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>motionlab evaluation</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }} td:first-child, th:first-child {{ text-align: left; }}
img {{ image-rendering: pixelated; height: 96px; }} .note {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>motionlab evaluation</h1><p>{html.escape(str(result['source']))}</p>
<h2>Summary</h2><table><tr><th>metric</th><th>value</th></tr>{summary}</table>
<h2>Per clip (portrait | driver | generated)</h2>
<table><tr><th>clip</th><th>preview</th><th>frames</th>{head}</tr>{''.join(rows)}</table>
<p class="note">{html.escape(NOTE)}</p>
</body></html>
"""


def write_reports(result: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "eval.json", "md": out_dir / "eval.md", "html": out_dir / "eval.html"}
    write_json(paths["json"], result)
    atomic_write_text(paths["md"], markdown_report(result))
    atomic_write_text(paths["html"], html_report(result, out_dir))
    return paths
