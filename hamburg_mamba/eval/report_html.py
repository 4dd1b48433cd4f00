"""One self-contained report.html from the report's Markdown: every figure embedded as a base64 PNG, no
script, no stylesheet or font from elsewhere, so the file opens offline and can be mailed as it is.

The converter covers the Markdown that report.py writes (headings, paragraphs, pipe tables, "- " lists, fenced
code, images on their own line, `code` and **bold**); anything else passes through as an escaped paragraph.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)]+)\)$")
STYLE = """body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f2f2f2}pre{background:#f6f6f6;padding:1em;overflow-x:auto}
code{background:#f6f6f6}img{max-width:100%;height:auto;border:1px solid #eee}figure{margin:1em 0}"""


def write_html(markdown: str, image_dir: Path, path: Path, title: str) -> Path:
    """Render `markdown` to `path`, reading each image it names from `image_dir`."""
    body = to_html(markdown, image_dir)
    path.write_text(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )
    return path


def to_html(markdown: str, image_dir: Path) -> str:
    lines, out, i = markdown.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end = _next(lines, i + 1, lambda s: s.startswith("```"))
            out.append("<pre><code>" + html.escape("\n".join(lines[i + 1 : end])) + "</code></pre>")
            i = end + 1
        elif line.startswith("|"):
            end = _next(lines, i, lambda s: not s.startswith("|"))
            out.append(_table(lines[i:end]))
            i = end
        elif line.startswith("- "):
            end = _next(lines, i, lambda s: not s.startswith("- "))
            out.append("<ul>" + "".join(f"<li>{_inline(s[2:])}</li>" for s in lines[i:end]) + "</ul>")
            i = end
        elif m := re.match(r"^(#{1,6}) (.*)$", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
            i += 1
        elif m := IMAGE.match(line.strip()):
            out.append(_figure(m.group("alt"), image_dir / m.group("src")))
            i += 1
        elif line.strip():
            end = _next(lines, i, lambda s: not s.strip() or s.startswith(("#", "|", "- ", "```", "![")))
            out.append("<p>" + _inline(" ".join(lines[i:end])) + "</p>")
            i = end
        else:
            i += 1
    return "\n".join(out)


def _next(lines: list[str], start: int, stop) -> int:
    """Index of the first line at or after `start` where stop(line) holds; len(lines) if none."""
    return next((j for j in range(start, len(lines)) if stop(lines[j])), len(lines))


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _table(rows: list[str]) -> str:
    head, body = _cells(rows[0]), [r for r in rows[1:] if not re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", r.strip())]
    out = ["<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in body]
    return "".join(out) + "</tbody></table>"


def _figure(alt: str, path: Path) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"report image {path} named in the Markdown does not exist")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(alt)}</figcaption></figure>"
    )
