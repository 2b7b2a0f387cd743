import json
import multiprocessing

import pytest

from benchmarks.store import SCHEMA_VERSION, ResultStore, RunSpec, atomic_write_text, read_record
from benchmarks.suites import load_suite
from methods import get_method


def make_spec(seed=0, **method_options):
    spec = get_method("full")
    return RunSpec(load_suite("smoke"), "full", spec.make_config(method_options), lr=1e-3, seed=seed)


def minimal_record(status="ok"):
    return {"schema_version": SCHEMA_VERSION,
            "run_info": {"suite": "smoke", "method": "full", "seed": 0, "lr": 1e-3, "status": status,
                         "config_hash": "0" * 64},
            "train_info": {}, "results": {}, "cost": {}, "meta_info": {}}


def test_config_hash_is_stable_and_covers_the_method_config_but_not_the_seed():
    assert make_spec().config_hash == make_spec().config_hash
    assert make_spec(seed=0).config_hash == make_spec(seed=1).config_hash
    assert make_spec(train_batchnorm_stats=False).config_hash != make_spec().config_hash


@pytest.mark.parametrize("status,final", [("ok", True), ("diverged", True), ("oom", True), ("failed", False),
                                          ("interrupted", False)])
def test_a_run_is_finished_when_its_outcome_is_final_so_sweeps_never_reroll_it(tmp_path, status, final):
    store, spec = ResultStore(tmp_path), make_spec()
    assert not store.is_finished(spec)
    record = minimal_record(status)
    record["run_info"]["config_hash"] = spec.config_hash
    store.write(spec, record)
    assert store.is_finished(spec) == final
    assert store.path_for(spec).parent == tmp_path / "smoke" / "full"


def test_corrupt_records_are_skipped_with_a_warning_naming_the_file(tmp_path):
    store = ResultStore(tmp_path)
    good = tmp_path / "s" / "m" / "good.json"
    atomic_write_text(good, json.dumps(minimal_record()))
    bad = tmp_path / "s" / "m" / "bad.json"
    bad.write_text('{"schema_version": 1, "run_info": ')
    with pytest.warns(UserWarning, match="bad.json"):
        paths = [p for p, _ in store.records()]
    assert paths == [good]
    with pytest.raises(ValueError, match="lacks its 'cost'"):
        bad.write_text(json.dumps({**minimal_record(), "cost": None}))
        read_record(bad)


def _write_many(root, worker):
    for i in range(25):
        atomic_write_text(root / f"w{worker}-{i}.json", json.dumps(minimal_record()) + " " * 5000)


def test_atomic_writes_leave_no_partial_or_temporary_files(tmp_path):
    procs = [multiprocessing.Process(target=_write_many, args=(tmp_path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    files = sorted(tmp_path.iterdir())
    assert len(files) == 100 and all(f.suffix == ".json" for f in files)
    assert all(read_record(f)["run_info"]["status"] == "ok" for f in files)


def test_committed_records_are_still_the_runs_the_current_suite_would_make():
    """Adding a suite key must not orphan the committed records: a run of the committed shapes suite with a
    record's method options, rate and suite-level ablation has that record's identity (so sweeps skip it and bench
    compares with it)."""
    from benchmarks.report.runs import ABLATION_KEYS  # suite-level ablations (ETRIS Table 6's decoder rows)
    from benchmarks.store import DEFAULT_RESULTS, RunSpec
    from benchmarks.suites import load_suite
    from methods import get_method

    suite = load_suite("shapes")
    paths = sorted((DEFAULT_RESULTS / "shapes").rglob("*.json"))
    assert paths, "the committed shapes records are missing"
    current = 0
    for path in paths:
        info = json.loads(path.read_text())["run_info"]
        if info["off_budget"] or info["config"]["suite"]["steps"] != suite.steps:
            continue
        config = get_method(info["method"]).make_config(info["method_config"])
        ablation = {k: info["config"]["suite"][k] for k in ABLATION_KEYS if info["config"]["suite"].get(k)}
        spec = RunSpec(suite.replace(ablation) if ablation else suite, info["method"], config, lr=info["lr"],
                       seed=info["seed"])
        assert spec.config_hash == info["config_hash"], path
        current += 1
    assert current >= 36  # 12 methods x 3 seeds at least
