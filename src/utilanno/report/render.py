"""One report, two renderings: a list of blocks (headings, paragraphs, lists, tables, figures) written as
Markdown (`index.md`, figures linked from `figures/`) and as a self-contained HTML page (`index.html`, figures
inlined: the page shows them alone, as `snakemake --report` embeds it, or sent by mail)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[tuple[str, list[str]]]  # (row label, cells)
    notes: list[str] = field(default_factory=list)
    corner: str = ""


@dataclass
class Figure:
    stem: str  # figures/<stem>.png and .svg
    caption: str


Block = tuple  # ("h", level, text) | ("p", text) | ("ul", [items]) | Table | Figure


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(blocks: list) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            out += [f"**{block.caption}**", ""]
            out.append(f"| {_md_cell(block.corner)} | " + " | ".join(map(_md_cell, block.columns)) + " |")
            out.append("|---|" + "---:|" * len(block.columns))
            out += [
                f"| {_md_cell(label)} | " + " | ".join(map(_md_cell, cells)) + " |"
                for label, cells in block.rows
            ]
            if block.notes:
                out += ["", *(f"- {n}" for n in block.notes)]
        elif isinstance(block, Figure):
            out.append(f"![{block.caption}](figures/{block.stem}.svg)")
            out += ["", f"*{block.caption}*"]
        elif block[0] == "h":
            out.append("#" * block[1] + " " + block[2])
        elif block[0] == "p":
            out.append(block[1])
        elif block[0] == "ul":
            out += [f"- {item}" for item in block[1]]
        else:
            raise ValueError(f"unknown block {block!r}")
        out.append("")
    return "\n".join(out)


_STYLE = """body{font-family:sans-serif;max-width:80em;margin:2em auto;padding:0 1em;line-height:1.4}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}th,td{border:1px solid #ccc;padding:.2em .5em}
td{text-align:right}td:first-child,th:first-child{text-align:left}caption{font-weight:bold;text-align:left}
figure img{max-width:100%}figcaption{font-style:italic}"""


def html_page(blocks: list, title: str, figures: Path) -> str:
    """The page; each figure is `figures/<stem>.svg` inlined as a data URI."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Table):
            out.append(f"<table><caption>{e(block.caption)}</caption>")
            out.append(
                f"<tr><th>{e(block.corner)}</th>"
                + "".join(f"<th>{e(c)}</th>" for c in block.columns)
                + "</tr>"
            )
            for label, cells in block.rows:
                out.append(f"<tr><th>{e(label)}</th>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
            out.append("</table>")
            if block.notes:
                out.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in block.notes) + "</ul>")
        elif isinstance(block, Figure):
            svg = base64.b64encode((figures / f"{block.stem}.svg").read_bytes()).decode("ascii")
            out.append(
                f'<figure id="{e(block.stem)}"><img src="data:image/svg+xml;base64,{svg}" '
                f'alt="{e(block.caption)}"><figcaption>{e(block.caption)}</figcaption></figure>'
            )
        elif block[0] == "h":
            out.append(f"<h{block[1]}>{e(block[2])}</h{block[1]}>")
        elif block[0] == "p":
            out.append(f"<p>{e(block[1])}</p>")
        elif block[0] == "ul":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block[1]) + "</ul>")
        else:
            raise ValueError(f"unknown block {block!r}")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
