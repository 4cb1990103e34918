"""The GPU check of the CUDA kernels (external_ops/gpu_check/), as far as it can be checked without a GPU: the
tolerance rule (against correct and deliberately wrong float32 LayerNorms on the CPU), the case list, the
bandwidth byte counts, the report, the command line's exit status without a CUDA device and, where nvcc is
installed, the shared library (built, exported symbols, loaded through ctypes)."""
import importlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "external_ops" / "gpu_check"
SYMBOLS = ("pme_ln_forward", "pme_ln_backward", "pme_ln_backward_workspace_floats", "pme_ln_set_device",
           "pme_ln_error_string", "pme_ln_runtime_version", "pme_ln_driver_version")


def _harness(module: str):
    """A module of the harness, imported as `gpu_check.<module>` without putting external_ops/ on sys.path (that
    would shadow the installed paddlemix_eva_ops with its source tree)."""
    if "gpu_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gpu_check", HARNESS / "__init__.py",
                                                      submodule_search_locations=[str(HARNESS)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"gpu_check.{module}")


def _run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HARNESS), *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **env), cwd=ROOT)


# ----------------------------------------------------------------------------------------------- tolerance rule


def test_machine_epsilons_and_subnormals_are_the_dtypes_own():
    torch = pytest.importorskip("torch")
    tol = _harness("tolerance")
    for name in ("float16", "bfloat16", "float32", "float64"):
        info = torch.finfo(getattr(torch, name))
        assert tol.machine_eps(name) == info.eps
        assert tol.SMALLEST_SUBNORMAL[name] == info.smallest_normal * info.eps
    with pytest.raises(ValueError):
        tol.machine_eps("int8")


def test_summation_bound_is_the_smaller_of_the_deterministic_and_probabilistic_ones():
    tol = _harness("tolerance")
    assert tol.summation_factor(0) == 0
    assert tol.summation_factor(1) == 1
    assert tol.summation_factor(100) == 100  # m = lambda^2: both agree
    assert tol.summation_factor(8192) == pytest.approx(10 * math.sqrt(8192))
    assert tol.summation_factor(1_000_000) == pytest.approx(1e4)
    assert tol.summation_error(8192, 2.0 ** -23) == pytest.approx(10 * math.sqrt(8192) * 2.0 ** -23)


def test_accumulation_and_storage_dtypes_follow_the_kernels():
    tol = _harness("tolerance")
    assert tol.accumulation_dtype("float64") == "float64"
    assert {tol.accumulation_dtype(d) for d in ("float32", "float16", "bfloat16")} == {"float32"}
    assert tol.storage_dtype("y", "bfloat16", "float32") == "bfloat16"
    assert tol.storage_dtype("dx", "float16", "float32") == "float16"
    assert tol.storage_dtype("dscale", "bfloat16", "float32") == "float32"
    assert tol.storage_dtype("dbias", "bfloat16", "bfloat16") == "bfloat16"
    assert tol.storage_dtype("mean", "float64", "float64") == "float32"
    assert tol.storage_dtype("rstd", "float16", "float16") == "float32"
    with pytest.raises(ValueError):
        tol.storage_dtype("z", "float32", "float32")


def _reference_and_tolerances(x, w, b, dy, eps, x_dtype, w_dtype):
    reference = _harness("reference")
    tol = _harness("tolerance")
    inputs = _harness("inputs").Inputs(x=x, w=w, b=b, dy=dy)
    ref = reference.reference(inputs, eps)
    extra = tol.bounds(ref.x, ref.w, ref.b, ref.dy, ref.mean, ref.rstd, ref.dx, x_dtype, w_dtype)
    refs = {"y": ref.y, "mean": ref.mean.reshape(-1), "rstd": ref.rstd.reshape(-1), "dx": ref.dx,
            "dscale": ref.dscale, "dbias": ref.dbias}
    return refs, {k: tol.tolerance(k, refs[k], extra[k], x_dtype, w_dtype) for k in refs}


def test_constant_rows_pin_one_over_std_to_one_over_sqrt_eps():
    """var = 0 exactly: the rule leaves 1/std only the roundings of eps + 0, sqrt, divide and the float32 store
    (4 eps32, relative), and y of a zero row only the rounding of the bias."""
    torch = pytest.importorskip("torch")
    cases = _harness("cases")
    eps = cases.EPS_EVA
    x = torch.zeros(3, 64)
    x[1] = 2.5
    w, b = torch.full((64,), 1.5), torch.linspace(-1, 1, 64)
    refs, tols = _reference_and_tolerances(x, w, b, torch.ones(3, 64), eps, "float32", "float32")
    r = 1 / math.sqrt(eps)
    assert torch.allclose(refs["rstd"], torch.full((3,), r, dtype=torch.float64), rtol=1e-15, atol=0)
    assert torch.allclose(tols["rstd"], torch.full((3,), 4 * 2.0 ** -23 * r, dtype=torch.float64), rtol=1e-12)
    assert torch.allclose(tols["y"][0], (2.0 ** -23 + 4 * 2.0 ** -23) * b.double().abs() + 2.0 ** -149)


class _Float32LayerNorm:
    """A correct LayerNorm with the kernels' contract computed by torch on the CPU (float32 accumulation,
    float64 for float64 inputs), standing in for the library; `bug` plants a known mistake."""

    def __init__(self, bug=None):
        self.bug = bug

    def workspace_floats(self, rows, hidden):
        return 1

    def forward(self, x, w, b, y, mean, rstd, eps):
        import torch

        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        xf, n = x.to(acc), x.shape[1]
        mu = xf.mean(-1, keepdim=True)
        var = (xf - mu).square().mean(-1, keepdim=True)
        if self.bug == "unbiased variance":
            var = var * n / (n - 1)
        r = (var + eps).rsqrt()
        out = (xf - mu) * r * w.to(acc) + b.to(acc)
        if self.bug == "last column":
            out[:, -1] += 0.01 * out[:, -1].abs().max()
        y.copy_(out)
        mean.copy_(mu.reshape(-1))
        rstd.copy_(r.reshape(-1))

    def backward(self, x, w, mean, rstd, dy, dx, dscale, dbias, workspace):
        import torch

        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        g = dy.to(acc) * w.to(acc)
        xh = (x.to(acc) - mean.to(acc)[:, None]) * rstd.to(acc)[:, None]
        dx.copy_(rstd.to(acc)[:, None] * (g - g.mean(-1, keepdim=True) - xh * (g * xh).mean(-1, keepdim=True)))
        dscale.copy_((dy.float() * xh.float()).sum(0))
        rows_summed = dy[:-1] if self.bug == "last row" else dy
        dbias.copy_(rows_summed.float().sum(0))


#: small cases of every dtype pair, constant rows included (CPU-sized)
def _cpu_cases():
    cases = _harness("cases")
    picked = []
    for x_dtype, w_dtype in cases.DTYPE_PAIRS:
        picked += [cases.Case(x_dtype, w_dtype, 5, 17), cases.Case(x_dtype, w_dtype, 9, 255),
                   cases.Case(x_dtype, w_dtype, 8, 130, "mixed", cases.EPS_EVA)]
    return [cases.Case(c.x_dtype, c.w_dtype, c.rows, c.hidden, c.constant, c.eps, seed=i)
            for i, c in enumerate(picked)]


def test_a_correct_float32_layer_norm_passes_with_room_and_pytorch_float32_kernels_too():
    torch = pytest.importorskip("torch")
    correctness = _harness("correctness")
    results = [correctness.run_case(_Float32LayerNorm(), case, torch.device("cpu"),
                                    with_torch=case.x_dtype in ("float32", "float64"))
               for case in _cpu_cases()]
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    for r in results:
        assert r.passed, (r.case.label, r.ours)
        # the storage rounding (<= half an ulp) is half of eps_o * |ref|: a correct kernel stays below 0.6
        assert max(c.worst_ratio for c in r.ours.values()) < 0.6, (r.case.label, r.ours)
        if r.torch:
            assert all(c.passed for c in r.torch.values()), (r.case.label, r.torch)


@pytest.mark.parametrize("bug, output", [("unbiased variance", "rstd"), ("last column", "y"),
                                         ("last row", "dbias")])
def test_the_rule_catches_planted_mistakes(bug, output):
    torch = pytest.importorskip("torch")
    correctness = _harness("correctness")
    cases = [c for c in _cpu_cases() if c.x_dtype in ("float32", "bfloat16") and c.constant == "none"]
    results = [correctness.run_case(_Float32LayerNorm(bug), case, torch.device("cpu"), with_torch=False)
               for case in cases]
    assert all(not r.ours[output].passed for r in results), [(r.case.label, r.ours[output]) for r in results]


def test_nan_and_exact_zero_tolerances_fail_visibly():
    torch = pytest.importorskip("torch")
    check_output = _harness("compare").check_output
    ref = torch.zeros(4, dtype=torch.float64)
    got = torch.tensor([0.0, float("nan"), 0.0, 0.0])
    c = check_output(got, ref, torch.full((4,), 0.1, dtype=torch.float64))
    assert c.failed == 1 and math.isnan(c.worst_ratio) and not c.passed
    c = check_output(torch.tensor([0.0, 1e-30, 0.0, 0.0]), ref, torch.zeros(4, dtype=torch.float64))
    assert c.failed == 1 and math.isinf(c.worst_ratio)
    c = check_output(torch.zeros(4), ref, torch.zeros(4, dtype=torch.float64))
    assert c.passed and c.worst_ratio == 0
    assert check_output(torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.float64),
                        torch.zeros(0, 3, dtype=torch.float64)).passed


# ---------------------------------------------------------------------------------------------------- case list


def test_dtype_pairs_are_exactly_what_the_op_accepts():
    cases = _harness("cases")
    dtypes = ("float32", "float64", "float16", "bfloat16")
    expected = {(x, x) for x in dtypes} | {(x, "float32") for x in dtypes}
    assert set(cases.DTYPE_PAIRS) == expected and len(cases.DTYPE_PAIRS) == len(expected)


@pytest.mark.parametrize("sweep", ["full_cases", "quick_cases"])
def test_each_sweep_covers_dtypes_shapes_and_constant_rows(sweep):
    cases = _harness("cases")
    case_list = getattr(cases, sweep)()
    assert len({c.seed for c in case_list}) == len(case_list)
    assert max(c.elements for c in case_list) <= 70_000_000  # the float64 reference fits a GPU comfortably
    for pair in cases.DTYPE_PAIRS:
        mine = [c for c in case_list if (c.x_dtype, c.w_dtype) == pair]
        hidden = {c.hidden for c in mine}
        rows = {c.rows for c in mine if c.rows > 0}
        assert min(hidden) == 17 and max(hidden) == 8192, (pair, hidden)
        assert any(h % 8 and h > 256 for h in hidden) and any(h % 4 and h < 256 for h in hidden)
        assert any(h % 8 == 0 for h in hidden)
        assert min(rows) == 1 and max(rows) >= 1_000_000, (pair, rows)
        assert {c.constant for c in mine} >= {"all", "mixed"}
        assert any(c.rows == 0 for c in mine)
        assert {c.eps for c in mine} <= {cases.EPS_DEFAULT, cases.EPS_EVA}
    for c in case_list:
        assert cases.float32_value(c.eps) == c.eps  # the kernels see the same epsilon as the reference


def test_full_sweep_is_dense_and_quick_is_small():
    cases = _harness("cases")
    full, quick = cases.full_cases(), cases.quick_cases()
    assert len(quick) <= 120 < len(full)
    for pair in cases.DTYPE_PAIRS:
        mine = {(c.rows, c.hidden) for c in full if (c.x_dtype, c.w_dtype) == pair and c.constant == "none"}
        assert {(r, h) for r in cases.SMALL_ROWS for h in cases.HIDDEN_SIZES} <= mine
        assert set(cases.LARGE_SHAPES) <= mine


def test_constant_row_layouts():
    cases = _harness("cases")
    assert cases.constant_row_mask(6, "none") == [False] * 6
    assert cases.constant_row_mask(3, "all") == [True] * 3
    assert cases.constant_row_mask(9, "mixed") == [i % 4 == 0 for i in range(9)]
    with pytest.raises(ValueError):
        cases.constant_row_mask(3, "some")


def test_inputs_have_constant_rows_where_asked():
    torch = pytest.importorskip("torch")
    cases = _harness("cases")
    inputs = _harness("inputs").make_inputs(cases.Case("bfloat16", "float32", 9, 33, "mixed"), torch.device("cpu"))
    assert inputs.x.dtype == torch.bfloat16 and inputs.w.dtype == torch.float32 and inputs.dy.dtype == torch.bfloat16
    spread = inputs.x.float().amax(-1) - inputs.x.float().amin(-1)
    assert [bool(s == 0) for s in spread] == cases.constant_row_mask(9, "mixed")
    again = _harness("inputs").make_inputs(cases.Case("bfloat16", "float32", 9, 33, "mixed"), torch.device("cpu"))
    assert torch.equal(inputs.x, again.x)


# ------------------------------------------------------------------------------------------------------ bandwidth


def test_bandwidth_byte_counts():
    bw = _harness("bandwidth")
    # forward: x read + y written (2 x 2 x 3 x 2 bytes), w + b read (2 x 3 x 4), mean + rstd written (2 x 2 x 4)
    assert bw.forward_bytes(2, 3, "bfloat16", "float32") == 24 + 24 + 16
    # backward: x, dy read + dx written (3 x 6 x 2), w read + dscale, dbias written (3 x 3 x 2), stats read
    assert bw.backward_bytes(2, 3, "float16", "float16") == 36 + 18 + 16
    big = bw.pass_bytes("forward", 8192, 8192, "float32", "float32")
    assert big == 2 * 8192 * 8192 * 4 + 2 * 8192 * 4 + 2 * 8192 * 4
    assert bw.copy_bytes(2, 3, "float32") == 48
    assert bw.gbps(10 ** 9, 1.0) == pytest.approx(1000.0)
    assert math.isnan(bw.gbps(10 ** 9, 0.0))
    with pytest.raises(ValueError):
        bw.pass_bytes("sideways", 1, 1, "float32", "float32")
    row = bw.BandwidthRow("backward", "bfloat16", 1024, 1024, ours_ms=0.5, torch_ms=0.25, copy_ms=0.1)
    assert row.nbytes == bw.backward_bytes(1024, 1024, "bfloat16", "bfloat16")
    assert row.torch_gbps == pytest.approx(2 * row.ours_gbps)
    assert row.copy_gbps == pytest.approx(2 * 1024 * 1024 * 2 / 0.1e-3 / 1e9)
    for rows, hidden in bw.SHAPES_FULL + bw.SHAPES_QUICK:
        assert rows * hidden >= 1 << 26  # large enough that launch overhead and caches do not dominate


# --------------------------------------------------------------------------------------------------------- report


def _sample_results():
    cases, results = _harness("cases"), _harness("results")
    ok = results.OutputCheck(1e-7, 0.25, 0, 100)
    bad = results.OutputCheck(0.5, 12.0, 3, 100)
    nan = results.OutputCheck(float("nan"), float("nan"), 1, 100)
    outputs = ("y", "mean", "rstd", "dx", "dscale", "dbias")
    passing = results.CaseResult(cases.Case("float32", "float32", 7, 17), ours={o: ok for o in outputs},
                                 torch={o: ok for o in outputs})
    failing = results.CaseResult(cases.Case("bfloat16", "float32", 1, 8192, "mixed", cases.EPS_EVA),
                                 ours=dict({o: ok for o in outputs}, dx=bad, dbias=nan))
    crashed = results.CaseResult(cases.Case("float16", "float16", 3, 33), error="KernelError: CUDA error 9")
    return [passing, failing, crashed]


def test_case_results_pass_only_when_every_output_does():
    passing, failing, crashed = _sample_results()
    assert passing.passed and not failing.passed and not crashed.passed


def test_text_report_lists_environment_summary_failures_and_bandwidth():
    report, bw = _harness("report"), _harness("bandwidth")
    rows = [bw.BandwidthRow("forward", "bfloat16", 65536, 1024, 0.1, 0.2, 0.08)]
    text = report.text_report({"gpu": "NVIDIA H200 (sm_90)", "torch": "2.x"}, _sample_results(), rows)
    assert "- gpu: NVIDIA H200 (sm_90)" in text
    assert "1 of 3 cases pass" in text
    assert "float32/float32" in text and "0.25 (0.25)" in text  # ours and, in brackets, PyTorch's
    assert "bfloat16/float32 rows=1 hidden=8192 const=mixed eps=1e-06" in text
    assert "FAIL (KernelError: CUDA error 9)" in text and "nan" in text and "12" in text
    assert "Every case" not in text  # the terminal gets failures only
    line = next(ln for ln in text.splitlines() if ln.startswith("forward")).split()
    # 269 MB moved: 2690 GB/s in 0.1 ms (ours), 1345 in 0.2 ms (PyTorch); the copy of 268 MB in 0.08 ms: 3355
    assert line[3:] == ["269", "0.100", "2690", "0.200", "1345", "3355", "80%", "40%"]


def test_markdown_and_json_files():
    report, bw = _harness("report"), _harness("bandwidth")
    rows = [bw.BandwidthRow("backward", "float32", 8192, 8192, 0.5, 0.6, 0.3)]
    env = {"gpu": "test"}
    md = report.render("results.md", env, _sample_results(), rows)
    assert "## Correctness" in md and "## Every case" in md and "|---" in md
    assert md.count("float32/float32 rows=7 hidden=17") == 1  # in the every-case table only
    doc = json.loads(report.render("results.json", env, _sample_results(), rows),
                     parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert doc["passed"] is False and len(doc["cases"]) == 3 and doc["environment"] == env
    assert doc["cases"][1]["ours"]["dbias"]["worst_ratio"] == "nan"
    assert doc["bandwidth"][0]["bytes"] == bw.backward_bytes(8192, 8192, "float32", "float32")
    with pytest.raises(ValueError):
        report.render("results.txt", env, [], [])


def test_format_table_pads_columns():
    report = _harness("report")
    text = report.format_table(["a", "long header"], [["xyz", "1"], ["q", "22"]])
    lines = text.splitlines()
    assert lines[0] == "a    long header" and lines[2] == "xyz  1" and lines[1] == "---  -----------"
    md = report.format_table(["a", "n"], [["x", "1.5"]], markdown=True).splitlines()
    assert md == ["| a | n |", "|---|---:|", "| x | 1.5 |"]


# --------------------------------------------------------------------------------------------------- command line


def test_help_works_without_a_gpu():
    done = _run_cli("--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "--quick" in text and "--out" in text and "3 no CUDA device" in text


def test_no_cuda_device_exits_with_its_own_status():
    pytest.importorskip("torch")
    cli = _harness("cli")
    done = _run_cli("--quick", CUDA_VISIBLE_DEVICES="")
    assert done.returncode == cli.EXIT_NO_GPU == 3, (done.stdout, done.stderr)
    assert "no CUDA device" in done.stderr
    assert done.stdout == ""


def test_bad_out_suffix_is_a_usage_error():
    assert _run_cli("--out", "results.txt").returncode == 2


def test_missing_library_is_a_setup_error(monkeypatch, caplog):
    pytest.importorskip("torch")
    cli, env = _harness("cli"), _harness("env")
    monkeypatch.setattr(env, "cuda_device_problem", lambda torch, device: None)
    monkeypatch.delenv(cli.LIB_ENV, raising=False)
    assert cli.main(["--quick", "--lib", "/nonexistent/lib.so"]) == cli.EXIT_SETUP
    assert "build.sh" in caplog.text


# ------------------------------------------------------------------------------------ the library (needs nvcc)

NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.access("/usr/local/cuda/bin/nvcc", os.X_OK)
                                else None)


@pytest.fixture(scope="module")
def built_library(tmp_path_factory):
    if NVCC is None:
        pytest.skip("nvcc not installed: the GPU check's library is not built here")
    out = tmp_path_factory.mktemp("gpu_check") / "libln_gpu_check.so"
    done = subprocess.run(["bash", str(HARNESS / "build.sh"), str(out), "75"], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, NVCC=NVCC))
    assert done.returncode == 0, done.stderr
    return out


def test_library_exports_exactly_the_c_api(built_library):
    if shutil.which("nm") is None:
        pytest.skip("nm not installed")
    listing = subprocess.run(["nm", "-D", "--defined-only", str(built_library)], capture_output=True, text=True,
                             check=True).stdout
    exported = {line.split()[-1] for line in listing.splitlines() if " T " in line}
    assert exported == set(SYMBOLS) == set(_harness("lib")._SIGNATURES)


def test_library_loads_and_answers_without_a_gpu(built_library):
    pytest.importorskip("torch")
    lib = _harness("lib")
    library = lib.LayerNormLibrary(str(built_library))
    assert library.runtime_version() >= 11000
    assert library.driver_version() >= 0
    assert library.error_string(lib.CUDA_ERROR_INVALID_VALUE) == "invalid argument"
    # workspace: 2 * hidden floats per chunk of 256 rows (more rows per chunk past 65535 chunks)
    assert library.workspace_floats(1000, 64) == 4 * 128
    assert library.workspace_floats(1_000_003, 64) == 3907 * 128
    assert library.workspace_floats(0, 17) == 34
    assert library.workspace_floats(70_000_000, 1) // 2 <= 65535
    dll = library._dll
    # dtype codes the op refuses come back as cudaErrorInvalidValue before any CUDA call
    for x_code, w_code in ((0, 2), (2, 3), (7, 0), (-1, -1)):
        assert dll.pme_ln_forward(x_code, w_code, *([None] * 6), 4, 4, 1e-5, None) == 1
        assert dll.pme_ln_backward(x_code, w_code, *([None] * 9), 4, 4, None) == 1
    # a valid pair with no rows returns before touching the device
    assert dll.pme_ln_forward(lib.DTYPE_CODES["bfloat16"], lib.DTYPE_CODES["float32"], *([None] * 6), 0, 4, 1e-5,
                              None) == 0
