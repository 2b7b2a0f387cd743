"""Property: a method option or suite size so large that the model's weights cannot be allocated is refused as bad
input, one line and exit 2, with no record written (before, the run failed with an allocator traceback and a
`failed` record). The rule is the allocator's, not a bound per method: every integer option of every method is
tried at an impossible size, and each is either refused by the method's own checks or by this one."""

from __future__ import annotations

import pytest

from benchmarks.build import build_base_model, build_model
from benchmarks.cli import main
from benchmarks.suites import load_suite
from methods import get_method, list_methods
from riscore.coerce import field_types
from riscore.errors import UserError

HUGE = 10**12  # a trillion: more than any machine's memory whatever the option scales


def integer_options() -> list[tuple[str, str]]:
    return [(name, key) for name in list_methods() if "+" not in name
            for key, kind in field_types(get_method(name).config_cls).items() if kind in (int, int | None)]


@pytest.mark.parametrize("method,key", integer_options())
def test_an_impossible_size_is_a_user_error_never_an_allocator_crash(method, key):
    suite = load_suite("smoke")
    try:
        build_model(suite, method, get_method(method).make_config({key: str(HUGE)}))
    except UserError:
        pass  # refused: by the method's own checks (a divisor, a count of blocks) or as too big to allocate


def test_the_allocator_refusal_names_the_method_and_the_fix():
    with pytest.raises(UserError, match=r"method lora on suite 'smoke' does not fit in this machine's memory "
                                        r"\(one tensor of [\d.]+ GiB\); choose smaller method options"):
        build_model(load_suite("smoke"), "lora", get_method("lora").make_config({"rank": str(HUGE)}))


def test_an_impossible_image_size_is_refused_the_same_way():
    suite = load_suite("smoke").replace({"image_size": str(8 * 10**6)})  # 10**12 positions
    with pytest.raises(UserError, match="suite 'smoke' does not fit .* a smaller image_size than 8000000"):
        build_base_model(suite)


@pytest.mark.parametrize("argv", [
    ["bench", "--method", "lora", "--set", f"rank={HUGE}"],
    ["bench", "--method", "prompt", "--set", f"vision_tokens={HUGE}"],
    ["bench", "--method", "bridger+adapter", "--set", f"adapter.bottleneck={HUGE}"],
])
def test_bench_refuses_it_in_one_line_without_a_record(argv, tmp_path, capsys):
    out = ["--suite", "smoke", "--threads", "1", "--no-progress", "--out", str(tmp_path / "results"),
           "--checkpoint-dir", str(tmp_path / "ckpt"), "--models-dir", str(tmp_path / "models")]
    assert main([*argv, *out]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert "does not fit in this machine's memory" in captured.err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
