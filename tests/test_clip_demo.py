"""`make demo-clip` (examples/evaclip/run_demo.py): its data, and a shortened run end to end."""
import json
import os
import subprocess
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples", "evaclip")
sys.path.insert(0, EXAMPLES)

import digits_clip_demo as demo  # noqa: E402


def test_data_layout_and_unique_test_captions(tmp_path):
    counts = demo.write_digits_captions(str(tmp_path), train_limit=20)
    # 2 digits per class x 2 renders; one caption in stage 1, one of each kind in stage 2
    assert counts["train_images"] == counts["stage1_pairs"] == 40 and counts["stage2_pairs"] == 120
    assert sorted(os.listdir(tmp_path / "zeroshot")) == sorted(demo.DIGITS)
    assert counts["zeroshot_images"] == sum(len(os.listdir(tmp_path / "zeroshot" / d)) for d in demo.DIGITS)
    test = json.loads((tmp_path / "test.json").read_text())
    captions = [c for record in test for c in record["caption"]]
    assert len(test) == counts["test_images"] == len(demo.DIGITS) * len(demo.COLOURS)
    assert len(set(captions)) == len(captions), "a repeated test caption would make R@1 unreachable"
    assert all(os.path.isfile(tmp_path / record["image"]) for record in test)
    stage2 = json.loads((tmp_path / "train.json").read_text())
    assert set(Counter(r["image"] for r in stage2).values()) == {3}
    assert all(os.path.isfile(tmp_path / r["image"]) for r in stage2)
    stage1 = json.loads((tmp_path / "train_digits.json").read_text())
    assert not any(colour in r["caption"] for r in stage1 for colour in demo.COLOURS)
    assert (tmp_path / "templates.txt").read_text().splitlines() == list(demo.ZERO_SHOT_TEMPLATES)


def test_shortened_demo_runs_end_to_end(tmp_path):
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, "run_demo.py"), "--workdir", str(workdir), "--digit_epochs", "1",
         "--caption_epochs", "2", "--train_limit", "32"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    zeroshot = json.loads((workdir / "clip" / "zeroshot_metrics.json").read_text())
    assert all(0 <= zeroshot[k] <= 100 for k in ("eval_zeroshot_top1", "eval_zeroshot_top5"))
    report = json.loads((workdir / "retrieval" / "retrieval_report.json").read_text())
    assert report["num_images"] == report["num_texts"] == len(demo.DIGITS) * len(demo.COLOURS)
    for direction in ("image_to_text", "text_to_image"):
        assert all(0 <= report[direction][k] <= 100 for k in ("R@1", "R@5", "R@10"))
    # the flags acted: 4 digits per class x 2 renders, one epoch of stage 1, two of stage 2
    assert len(json.loads((workdir / "digits_captions" / "train_digits.json").read_text())) == 80
    for stage, epochs in (("clip_stage1", 1), ("clip", 2)):
        state = json.loads((workdir / stage / "trainer_state.json").read_text())
        assert abs(state["epoch"] - epochs) < 1e-6, (stage, state["epoch"])
    for path in ("clip", "clip_stage1", os.path.join("clip", "zeroshot_metrics.json"),
                 os.path.join("retrieval", "retrieval_report.json"), "digits_captions"):
        assert str(workdir / path) in out, (path, out)
    assert f"top-1 {zeroshot['eval_zeroshot_top1']:.2f}%" in out
    assert f"image->text R@1 {report['image_to_text']['R@1']:.2f}%" in out
    assert "visualdl --logdir" in out and list((workdir / "clip" / "runs").rglob("vdlrecords*"))
