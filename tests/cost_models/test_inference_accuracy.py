"""The serving model against the published serving rows: the medians it reaches today stay
below thresholds it honestly meets (with a little slack), so a change that loses accuracy fails.

In-sample uses the factors stored in cost_models/inference_data.yaml; held out refits each
backend without the scored group (what an unseen model or system would see).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cost_models.accuracy.inference import TARGETS
from cost_models.accuracy.inference import inference_report_sections
from cost_models.accuracy.inference import pooled
from cost_models.accuracy.inference import score
from cost_models.accuracy.inference_rows import latency_cases
from cost_models.accuracy.inference_rows import throughput_cases

# Medians measured when the factors were last fitted (in-sample / held out), plus ~1.5 points.
IN_SAMPLE_LIMITS = {"ttft": 25.0, "tpot": 11.0, "tps": 15.0}
HELD_OUT_LIMITS = {"ttft": 31.5, "tpot": 14.0, "tps": 20.0}


@pytest.fixture(scope="module")
def scored(reference_dir: Path):
    cases = latency_cases(reference_dir) + throughput_cases(reference_dir)
    return cases, score(cases)


def test_medians_stay_below_the_thresholds_met_today(scored):
    _, result = scored
    for metric, limit in IN_SAMPLE_LIMITS.items():
        errors = pooled(result, metric)
        assert float(np.median(errors)) < limit, metric
    for metric, limit in HELD_OUT_LIMITS.items():
        errors = pooled(result, metric, held_out=True)
        assert float(np.median(errors)) < limit, metric
    # the bar on TTFT, TPOT and maximum throughput is met in-sample
    assert float(np.median(pooled(result, "ttft"))) < TARGETS["ttft"]
    assert float(np.median(pooled(result, "tpot"))) < TARGETS["tpot"]
    assert float(np.median(pooled(result, "tps"))) < TARGETS["tps"]


def test_every_measured_row_fits_and_gaps_are_counted(scored):
    cases, result = scored
    assert result.not_fitting == []  # every row was measured running
    missing = [c for c in cases if c.problem]
    assert len(cases) == 2569 + 110
    assert len(missing) == 50 and all("worker counts" in (c.problem or "") for c in missing)


def test_report_sections_are_markdown_with_every_group(reference_dir: Path):
    sections = inference_report_sections(reference_dir)
    text = "\n\n".join(sections)
    assert sections[0].startswith("## Serving model")
    assert "python -m cost_models.accuracy.inference" in text
    for group in ("vllm h200_sxm Llama-3.1-70B agg", "trtllm gb200 DeepSeek-V3 disagg"):
        assert f"| {group} |" in text
    assert "cannot express" in text and "worker counts" in text
