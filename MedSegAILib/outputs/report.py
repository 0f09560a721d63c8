"""``report.html``: one self-contained page per case that a clinician or reviewer can read.

The page holds the intended-use statement first, the overview picture (embedded as a base64
PNG, so the file can be mailed or archived alone), a summary per class, the instance table
with volumes and mean uncertainty, the instances flagged as uncertain, and the provenance
record. It is written as XHTML-compatible HTML5 (every element closed, attributes quoted), so
it parses with both an HTML and an XML parser; it needs no scripts, styles are inline.

Uncertainty flag: an instance is flagged when its mean per-voxel uncertainty (normalised
entropy of the class posteriors, 0 = certain, 1 = uniform) exceeds
``uncertainty_threshold`` (default :data:`UNCERTAINTY_FLAG_THRESHOLD` = 0.5). For two classes
an entropy of 0.5 is a posterior of about 0.89 against 0.11, so a flagged instance is one whose
voxels are on average less certain than that: typically a small speck (all boundary) or a
region the method could barely separate from its neighbour. Flagged instances deserve a look
before any measurement is used.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..core.result import SegmentationResult

UNCERTAINTY_FLAG_THRESHOLD = 0.5

#: Measurement columns shown in the instance table when present (from add_instance_radiomics).
REPORT_MEASUREMENTS = (
    ("shape_MeshVolume", "Mesh volume (mm³)", "{:.1f}"),
    ("shape_Maximum3DDiameter", "Max. 3D diameter (mm)", "{:.1f}"),
    ("shape_Sphericity", "Sphericity", "{:.3f}"),
    ("firstorder_Mean", "Mean intensity", "{:.1f}"),
)

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
.use { background: #fff4d6; border: 1px solid #e0b400; padding: 0.6em 1em; font-weight: 600; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; }
td.l, th.l { text-align: left; }
tr.flag td { background: #ffe3e3; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #555; vertical-align: middle; }
img.overview { max-width: 100%; border: 1px solid #ccc; }
.muted { color: #666; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _with_interval(measurements: dict, key: str, fmt: str) -> str:
    """A measurement, and when the run computed feature intervals (--radiomics-intervals), its
    SD and range over the masks drawn from the method's probabilities: "1604.0 ± 73.0 (1503.0-1708.0)"."""
    text = _fmt(measurements.get(key), fmt)
    sd, lo, hi = (measurements.get(f"{key}_{s}") for s in ("sd", "min", "max"))
    if sd is None or lo is None or hi is None:
        return text
    return f"{text} &#177; {_fmt(sd, fmt)} ({_fmt(lo, fmt)}&#8211;{_fmt(hi, fmt)})"


def _fmt(value, fmt: str = "{:.4g}") -> str:
    if value is None:
        return "&#8211;"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "&#8211;"
        return _e(fmt.format(value))
    return _e(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: Sequence[int] = (0,), row_classes: Optional[Sequence[str]] = None, table_id: str = "") -> str:
    """HTML table; cells are already-escaped strings."""
    out = [f'<table id="{_e(table_id)}">' if table_id else "<table>", "<thead><tr>"]
    out += [f'<th class="l">{_e(h)}</th>' if i in left else f"<th>{_e(h)}</th>" for i, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for r, row in enumerate(rows):
        cls = row_classes[r] if row_classes and row_classes[r] else ""
        out.append(f'<tr class="{cls}">' if cls else "<tr>")
        out += [f'<td class="l">{c}</td>' if i in left else f"<td>{c}</td>" for i, c in enumerate(row)]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _overview(result: SegmentationResult, image: sitk.Image, overview_png: Optional[Path]) -> Optional[str]:
    """Data URI of the overview picture: the given PNG, else one drawn now (None without Pillow)."""
    if overview_png is not None and Path(overview_png).exists():
        return _png_data_uri(Path(overview_png))
    try:
        from .overview import write_overview_png
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return _png_data_uri(write_overview_png(image, result, Path(tmp) / "overview.png"))


def uncertainty_summary(result: SegmentationResult, *, threshold: float = UNCERTAINTY_FLAG_THRESHOLD) -> Dict:
    """Uncertainty over the labelled voxels and the instances whose mean exceeds ``threshold``.

    Returns a dict with ``mean_foreground`` (mean uncertainty of labelled voxels),
    ``fraction_above`` (share of labelled voxels above ``threshold``), ``threshold`` and
    ``flagged`` (instance ids whose mean uncertainty exceeds it).
    """
    lab = sitk.GetArrayViewFromImage(result.labels)
    unc = sitk.GetArrayViewFromImage(result.uncertainty)
    vals = unc[lab > 0]  # float32; the sums below accumulate in float64 without a float64 copy
    flagged = [r.instance_id for r in result.instance_table if r.mean_uncertainty is not None and r.mean_uncertainty > threshold]
    return {
        "mean_foreground": float(vals.mean(dtype=np.float64)) if vals.size else None,
        "fraction_above": float(np.count_nonzero(vals > np.float64(threshold)) / vals.size) if vals.size else None,
        "threshold": threshold,
        "flagged": flagged,
    }


def write_report(
    result: SegmentationResult,
    image: sitk.Image,
    folder: Path,
    *,
    overview_png: Optional[Path] = None,
    explanation_png: Optional[Path] = None,
    title: Optional[str] = None,
    uncertainty_threshold: float = UNCERTAINTY_FLAG_THRESHOLD,
) -> Path:
    """Write ``folder/report.html`` for one case; returns its path.

    Parameters
    ----------
    result : SegmentationResult
    image : sitk.Image
        The input volume (channel 0) the result was computed from; used to draw the overview
        when ``overview_png`` is not given.
    folder : Path
        Case folder (created if missing).
    overview_png : Path or None
        An existing overview picture (``overview.png``) to embed; drawn with
        :func:`MedSegAILib.outputs.overview.write_overview_png` when None (omitted, with a note,
        when Pillow is not installed).
    title : str or None
        Page title; default "MedSegAI report: <case>".
    uncertainty_threshold : float
        Instances whose mean uncertainty exceeds this are flagged (module Notes).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prov = result.provenance
    case = Path(prov.input_files[0]).name if prov.input_files else "case"
    title = title or f"MedSegAI report: {case}"
    summary = uncertainty_summary(result, threshold=uncertainty_threshold)
    flagged = set(summary["flagged"])
    spacing = image.GetSpacing() if image is not None else result.labels.GetSpacing()
    size = result.labels.GetSize()

    parts: List[str] = [
        "<!DOCTYPE html>",
        '<html lang="en" xmlns="http://www.w3.org/1999/xhtml">',
        "<head>",
        '<meta charset="utf-8" />',
        '<meta name="viewport" content="width=device-width, initial-scale=1" />',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="use" id="intended-use">{_e(prov.intended_use)} The segmentation and every number '
        "below were computed automatically and have not been reviewed by a clinician.</p>",
        f'<p class="muted">Method <b>{_e(prov.method)}</b> ({_e(prov.family)}), MedSegAI {_e(prov.software_version)}, '
        f"created {_e(prov.created_utc or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds'))}. "
        f"Image {size[0]}&#215;{size[1]}&#215;{size[2]} voxels of "
        f"{spacing[0]:.3g}&#215;{spacing[1]:.3g}&#215;{spacing[2]:.3g} mm.</p>",
    ]

    # The model's domain verdict and any warnings of the run, before everything else
    domain = (prov.extra or {}).get("domain")
    if domain is not None:
        verdict = {True: "in domain", False: "OUT OF DOMAIN", None: "not checked"}[domain.get("in_domain")]
        reasons = (domain.get("before", {}).get("reasons") or []) + (domain.get("after", {}).get("reasons") or [])
        detail = "; ".join(reasons) if reasons else (domain.get("before", {}).get("checked") or "")
        parts.append(f'<p id="domain"><strong>Domain check: {_e(verdict)}</strong>. {_e(detail)}</p>')
    for warning in (prov.extra or {}).get("warnings", []):
        parts.append(f'<p class="warning">{_e(warning)}</p>')

    # Overview picture
    parts.append("<h2>Overview</h2>")
    uri = _overview(result, image, overview_png)
    if uri:
        parts.append(
            f'<img class="overview" id="overview" src="{uri}" alt="Three orthogonal slices with the label overlay and the uncertainty map" />'
        )
    else:
        parts.append('<p class="muted">No overview picture (install Pillow: pip install "medsegai[viz]").</p>')

    # Explanation map (deep runs with --explain)
    explanation = (prov.extra or {}).get("explanation")
    if explanation and explanation_png is not None and Path(explanation_png).is_file():
        import base64

        near = explanation.get("share_within_5mm_of_structure", {})
        vol = explanation.get("volume_share_within_5mm", {})
        said = "; ".join(f"{_e(k)}: {100 * v:.0f} % of it within 5 mm, where {100 * vol.get(k, 0):.0f} % of the volume is" for k, v in near.items())
        data = base64.b64encode(Path(explanation_png).read_bytes()).decode()
        parts.append("<h2>What the model looked at</h2>")
        parts.append(f'<p>Occlusion sensitivity ({_e(explanation.get("method", ""))}): how much the model\'s probability of each structure drops '
                     f"when the region is hidden (explanation.nii.gz). {said}.</p>")
        parts.append(f'<img class="overview" id="explanation" src="data:image/png;base64,{data}" alt="Occlusion sensitivity of each structure on an axial slice" />')

    # Classes
    parts.append("<h2>Classes</h2>")
    rows = []
    for c in result.classes:
        inst = [r for r in result.instance_table if r.class_label == c.label]
        vol = sum(r.volume_mm3 for r in inst)
        rgb = ",".join(str(int(round(255 * v))) for v in c.color)
        code = c.terminology.type[2] if c.terminology else ""
        rows.append(
            [
                f'<span class="swatch" style="background: rgb({rgb})"></span> {_e(c.name)}',
                _e(c.label),
                _e(code),
                _e(len(inst)),
                _fmt(vol, "{:.1f}"),
                _fmt(vol / 1000.0, "{:.2f}"),
            ]
        )
    parts.append(_table(["Class", "Label", "Terminology", "Instances", "Volume (mm³)", "Volume (mL)"], rows, left=(0, 2), table_id="classes"))

    # Instances
    parts.append("<h2>Instances</h2>")
    present = [m for m in REPORT_MEASUREMENTS if any(m[0] in r.measurements for r in result.instance_table)]
    headers = ["Segment", "Id", "Class", "Voxels", "Volume (mm³)", "Centroid L, P, S (mm)", "Mean uncertainty", "Flag"]
    headers += [m[1] for m in present]
    rows, classes = [], []
    for r in result.instance_table:
        flag = r.instance_id in flagged
        row = [
            _e(r.segment_name),
            _e(r.instance_id),
            _e(r.class_name),
            _e(r.voxel_count),
            _fmt(r.volume_mm3, "{:.1f}"),
            _e(", ".join(f"{v:.1f}" for v in r.centroid_lps_mm)),
            _fmt(r.mean_uncertainty, "{:.3f}"),
            "uncertain" if flag else "",
        ]
        row += [_with_interval(r.measurements, k, f) for k, _, f in present]
        rows.append(row)
        classes.append("flag" if flag else "")
    if rows:
        parts.append(_table(headers, rows, left=(0, 2, 7), row_classes=classes, table_id="instances"))
    else:
        parts.append('<p id="instances">No object was segmented.</p>')

    # Uncertainty
    parts.append("<h2>Uncertainty</h2>")
    thr = summary["threshold"]
    if summary["mean_foreground"] is None:
        parts.append("<p>No labelled voxels.</p>")
    else:
        parts.append(
            f'<p id="uncertainty">Mean uncertainty of the labelled voxels {summary["mean_foreground"]:.3f} '
            f"(0 = certain, 1 = no preference between classes); {100 * summary['fraction_above']:.1f}% of them are above "
            f"{thr:g}. An instance is flagged when its mean uncertainty exceeds {thr:g} "
            "(for two classes, a posterior weaker than about 0.89 against 0.11 on average).</p>"
        )
        if flagged:
            names = ", ".join(_e(r.segment_name) for r in result.instance_table if r.instance_id in flagged)
            parts.append(f'<p id="flagged"><b>{len(flagged)} flagged instance{"s" if len(flagged) != 1 else ""}</b>: {names}. Review before use.</p>')
        else:
            parts.append('<p id="flagged">No instance is flagged.</p>')

    # Provenance
    parts.append("<h2>Provenance</h2>")
    prov_rows = [
        ["Method", _e(f"{prov.method} ({prov.family})")],
        ["Parameters", f"<pre>{_e(json.dumps(prov.parameters, indent=1, default=str))}</pre>"],
        ["Post-processing", f"<pre>{_e(json.dumps(prov.postprocessing, indent=1, default=str))}</pre>"],
        ["Software", _e(f"MedSegAI {prov.software_version}; " + ", ".join(f"{k} {v}" for k, v in prov.library_versions.items()))],
        ["Input files", "<br />".join(_e(f) for f in prov.input_files) or "&#8211;"],
        ["Input SHA-256", "<br />".join(_e(h) for h in prov.input_sha256) or "&#8211;"],
        ["Model hash", _e(prov.model_hash) if prov.model_hash else "&#8211;"],
        ["Wall time", _e(f"{prov.wall_time_s:.2f} s")],
        ["Created (UTC)", _e(prov.created_utc or "")],
    ]
    parts.append(_table(["Item", "Value"], prov_rows, left=(0, 1), table_id="provenance"))
    parts.append(f'<p class="muted">{_e(prov.intended_use)}</p>')
    parts.append("</body>")
    parts.append("</html>")

    path = folder / "report.html"
    tmp = folder / ".report.html.tmp"
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path
