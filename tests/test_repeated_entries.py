"""Property: a list option or suite list that names one entry twice (a method, seed, learning rate, split, size
or precision) is refused in one line before any work; before, sweep planned and ran the same job twice,
profile built the same model twice and a suite's `seeds = [0, 0]` ran seed 0 as if it were two seeds."""

from __future__ import annotations

import random

from benchmarks.cli import main

SEED = 13


def with_repeat(rng: random.Random, pool: list[str]) -> str:
    """A comma-separated list of 2-4 entries from `pool`, one of them repeated, in random order."""
    chosen = rng.sample(pool, rng.randint(1, min(3, len(pool))))
    chosen.append(rng.choice(chosen))
    rng.shuffle(chosen)
    return ",".join(chosen)


def repeated_cases(rng: random.Random) -> list[list[str]]:
    run = ["--out", "{tmp}/results", "--checkpoint-dir", "{tmp}/ckpt", "--models-dir", "{tmp}/models",
           "--threads", "1", "--no-progress"]
    methods = ["frozen", "lora", "bridger", "adapter", "bridger+adapter"]
    cases = []
    for _ in range(6):
        flags = [a for name in with_repeat(rng, methods).split(",") for a in ("--method", name)]
        cases.append(["sweep", "--suite", "smoke", "--dry-run", *flags, *run])
        cases.append(["profile", "--suite", "smoke", "--flops-only", *flags])
        seeds = with_repeat(rng, ["0", "1", "2", "7"])
        cases.append(["sweep", "--suite", "smoke", "--dry-run", "--seeds", seeds, *run])
        cases.append(["profile", "--suite", "smoke", "--method", "frozen", "--flops-only",
                      "--sweep-image-size", with_repeat(rng, ["64", "128", "256"])])
        cases.append(["profile", "--suite", "smoke", "--method", "frozen", "--flops-only",
                      "--sweep-batch-size", with_repeat(rng, ["1", "2", "4", "8"])])
        cases.append(["profile", "--suite", "smoke", "--method", "frozen", "--flops-only",
                      "--sweep-precision", with_repeat(rng, ["bf16", "fp16", "fp32"])])
        for key, pool in (("seeds", ["0", "1", "5"]), ("lr_grid", ["1e-3", "3e-3", "1e-4"]),
                          ("eval_splits", ["val", "testA", "testB"])):
            command = rng.choice(["bench", "sweep"])
            cases.append([command, "--suite", "smoke", *(["--method", "frozen"] if command == "bench" else []),
                          "--budget", f"{key}={with_repeat(rng, pool)}", "--allow-budget-override", *run])
    return cases


def test_a_repeated_entry_is_refused_before_any_work(tmp_path, capsys, no_model_built):
    cases = repeated_cases(random.Random(SEED))
    assert len(cases) >= 50
    for argv in cases:
        argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, f"{argv}: exit {code}\n{err}"
        assert err.startswith("error: ") and err.count("\n") == 1 and "twice" in err, f"{argv}: {err}"
    assert list(tmp_path.iterdir()) == []
