"""report.html: well-formed, self-contained, with the overview picture, the instance table,
the uncertainty summary, the provenance and the intended-use statement."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
import SimpleITK as sitk

from MedSegAILib.measure.radiomics import add_instance_radiomics
from MedSegAILib.outputs.report import UNCERTAINTY_FLAG_THRESHOLD, write_report
from MedSegAILib.pipeline import segment_files

XHTML = "{http://www.w3.org/1999/xhtml}"
VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Balance(HTMLParser):
    """Checks that every non-void element is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:  # "<img ... />" reports a start and an end
            return
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


@pytest.fixture(scope="module")
def case(hippocampus_case):
    image_path = hippocampus_case[0]
    result = segment_files([image_path], "otsu", {"n_classes": 3})  # two tissue classes: two rows
    image = sitk.ReadImage(str(image_path))
    add_instance_radiomics(result, sitk.Cast(image, sitk.sitkFloat32))
    return result, image


def _overview_png(result, image, path: Path) -> Path:
    from MedSegAILib.outputs.overview import write_overview_png

    return write_overview_png(image, result, path)


def test_report_is_well_formed_and_complete(case, tmp_path):
    result, image = case
    png = _overview_png(result, image, tmp_path / "overview.png")
    path = write_report(result, image, tmp_path / "out", overview_png=png)
    text = path.read_text(encoding="utf-8")

    checker = _Balance()
    checker.feed(text)
    checker.close()
    assert not checker.errors and not checker.stack
    root = ET.fromstring(text.split("\n", 1)[1])  # strict XML parse after the doctype

    img = root.find(f".//{XHTML}img[@id='overview']")
    src = img.get("src")
    assert src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.split(",", 1)[1]) == png.read_bytes()

    table = root.find(f".//{XHTML}table[@id='instances']")
    rows = table.findall(f"./{XHTML}tbody/{XHTML}tr")
    assert len(rows) == len(result.instance_table) > 1
    headers = [th.text for th in table.findall(f"./{XHTML}thead/{XHTML}tr/{XHTML}th")]
    assert "Volume (mm³)" in headers and "Mean uncertainty" in headers and "Max. 3D diameter (mm)" in headers
    first = [td.text for td in rows[0].findall(f"{XHTML}td")]
    assert first[0] == result.instance_table[0].segment_name
    assert float(first[4]) == pytest.approx(result.instance_table[0].volume_mm3, abs=0.05)

    flagged = [r for r in result.instance_table if r.mean_uncertainty > UNCERTAINTY_FLAG_THRESHOLD]
    assert sum(1 for r in rows if r.get("class") == "flag") == len(flagged)
    assert root.find(f".//{XHTML}p[@id='uncertainty']") is not None
    assert root.find(f".//{XHTML}table[@id='provenance']") is not None
    assert "Not a medical device" in text and "Research use only" in text
    assert result.provenance.input_sha256[0] in text


def test_report_draws_its_own_overview(case, tmp_path):
    pytest.importorskip("PIL")
    result, image = case
    text = write_report(result, image, tmp_path).read_text(encoding="utf-8")
    assert 'id="overview" src="data:image/png;base64,' in text


def test_report_without_instances(case, tmp_path):
    from dataclasses import replace

    result, image = case
    empty_labels = sitk.Image(result.labels.GetSize(), sitk.sitkUInt16)
    empty_labels.CopyInformation(result.labels)
    empty = replace(result, labels=empty_labels, instance_table=[])
    png = _overview_png(result, image, tmp_path / "overview.png")
    text = write_report(empty, image, tmp_path / "empty", overview_png=png).read_text(encoding="utf-8")
    ET.fromstring(text.split("\n", 1)[1])
    assert "No object was segmented" in text and "No labelled voxels" in text
