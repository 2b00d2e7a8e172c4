"""The map: the shipped curriculum is consistent, lookups forgive, progress comes from runs."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
from typing import Any

import pytest

from deepscape import landscape
from deepscape.landscape import (
    BELOW,
    LEVELS,
    NOT_RUN,
    REACHED,
    LabNotAvailable,
    Target,
    UnknownLab,
    missing_prerequisites,
    parse,
    progress,
    suggest_next,
)

DIGITS = "vision/101/digits"


@pytest.fixture(scope="module")
def the_map() -> landscape.Landscape:
    return landscape.load()


# -- the shipped map -------------------------------------------------------------------------------
def test_shipped_map_loads_and_is_consistent(the_map):
    assert the_map.problems() == []
    assert set(the_map.tracks) == {"vision", "language"}
    assert len(the_map.labs) == 35
    assert len({lab.id for lab in the_map.labs}) == len(the_map.labs)


def test_every_prerequisite_is_a_known_lab_listed_earlier(the_map):
    # earlier in the file implies no cycles: the map can be read top to bottom
    seen: set[str] = set()
    for lab in the_map.labs:
        for prerequisite in lab.prerequisites:
            assert prerequisite in seen, f"{lab.id} needs {prerequisite}, not listed before it"
        seen.add(lab.id)


def test_no_prerequisite_cycles(the_map):
    needs = {lab.id: set(lab.prerequisites) for lab in the_map.labs}
    for start in needs:
        stack, reachable = list(needs[start]), set()
        while stack:
            lab_id = stack.pop()
            if lab_id not in reachable:
                reachable.add(lab_id)
                stack.extend(needs[lab_id])
        assert start not in reachable, f"{start} is its own prerequisite"


def test_no_prerequisite_of_a_higher_level(the_map):
    for lab in the_map.labs:
        for prerequisite in lab.prerequisites:
            assert the_map.lab(prerequisite).level <= lab.level, (lab.id, prerequisite)


def test_every_track_level_pair_is_declared_once(the_map):
    declared = [(lv.track, lv.level) for lv in the_map.levels]
    assert sorted(declared) == sorted((t, lv) for t in the_map.tracks for lv in LEVELS)
    for lab in the_map.labs:
        assert (lab.track, lab.level) in declared, lab.id
    for level in the_map.levels:
        assert level.title.strip() and level.summary.strip()


def test_vision_301_is_open(the_map):
    assert the_map.labs_of("vision", 301) == []
    assert all(
        the_map.labs_of(t, lv)
        for t in the_map.tracks
        for lv in LEVELS
        if (t, lv) != ("vision", 301)
    )


def test_every_lab_has_its_card_filled_in(the_map):
    for lab in the_map.labs:
        assert lab.title and lab.goal and lab.topics and lab.concepts, lab.id
        assert lab.scope_in and lab.scope_out, lab.id
        assert lab.status in ("available", "planned"), lab.id
        assert lab.target.op in (">=", "<=") and lab.target.metric and lab.target.dataset, lab.id


def test_available_labs_have_a_module_with_config_and_run(the_map):
    available = [lab for lab in the_map.labs if lab.available]
    assert {DIGITS, "vision/101/experiments"} <= {lab.id for lab in available}
    for lab in available:
        module = lab.module()
        assert module.__name__ == lab.module_name
        assert dataclasses.is_dataclass(module.Config)
        assert callable(module.run)
        module.Config()  # every option has a default


def test_planned_labs_have_no_module_yet(the_map):
    for lab in the_map.labs:
        if not lab.available:
            assert importlib.util.find_spec(lab.module_name) is None, lab.module_name
            with pytest.raises(LabNotAvailable, match="planned, not yet available"):
                lab.module()


def test_module_name_replaces_dashes(the_map):
    assert the_map.lab("vision/101/look-inside").module_name == (
        "deepscape.labs.vision.l101_look_inside"
    )
    assert the_map.lab(DIGITS).module_name == "deepscape.labs.vision.l101_digits"


@pytest.mark.parametrize(
    "lab_id",
    [
        "vision/101/digits",
        "vision/101/objects10",
        "vision/101/objects1000",
        "vision/201/diffusion",
        "vision/201/segmentation",
        "language/101/word-meaning",
        "language/101/sentence-cnn",
        "language/201/transformers",
        "language/201/augmented-search",
        "language/301/agents",
        "language/301/reinforcement-learning",
    ],
)
def test_the_map_lists_the_curriculum_topics(the_map, lab_id):
    lab = the_map.lab(lab_id)
    assert lab.id == lab_id
    assert (lab.track, lab.level, lab.slug) == (
        lab_id.split("/")[0],
        int(lab_id.split("/")[1]),
        lab_id.split("/")[2],
    )


def test_digits_target(the_map):
    target = the_map.lab(DIGITS).target
    assert (target.metric, target.op, target.value, target.dataset) == (
        "test_accuracy",
        ">=",
        0.99,
        "digits",
    )
    assert str(target) == "test_accuracy >= 0.99 on digits; 0.993 on mnist"


def test_target_reached():
    at_least = Target("acc", ">=", 0.9, "d", "")
    at_most = Target("loss", "<=", 0.5, "d", "")
    assert at_least.reached({"acc": 0.9}) is True
    assert at_least.reached({"acc": 0.89}) is False
    assert at_most.reached({"loss": 0.4}) is True
    assert at_most.reached({"loss": 0.6}) is False
    assert at_least.reached({"loss": 0.1}) is None


def test_a_target_sets_bars_per_dataset_and_judges_no_other():
    target = Target("acc", ">=", 0.88, "cifar10", "", also={"fashion-mnist": 0.93})
    assert target.reached({"acc": 0.90}) is True  # a lab with no dataset choice
    assert target.reached({"acc": 0.90}, "cifar10") is True
    assert target.reached({"acc": 0.90}, "fashion-mnist") is False
    assert target.reached({"acc": 0.94}, "fashion-mnist") is True
    assert target.reached({"acc": 0.99}, "mnist") is None  # no bar on mnist: not judged


# -- parse() refuses broken maps -------------------------------------------------------------------
def _lab(lab_id: str, *prerequisites: str, status: str = "planned") -> dict[str, Any]:
    return {
        "id": lab_id,
        "title": lab_id,
        "goal": "g",
        "topics": ["t"],
        "prerequisites": list(prerequisites),
        "concepts": ["c"],
        "scope_in": ["i"],
        "scope_out": ["o"],
        "status": status,
        "target": {"metric": "m", "op": ">=", "value": 1.0, "dataset": "d", "description": "x"},
    }


def _map(*labs: dict[str, Any]) -> dict[str, Any]:
    return {
        "tracks": {"t": {"title": "T", "summary": "s"}},
        "levels": [
            {"track": "t", "level": level, "title": "L", "summary": "s"} for level in LEVELS
        ],
        "labs": list(labs),
    }


def test_parse_accepts_a_small_consistent_map():
    small = parse(_map(_lab("t/101/a"), _lab("t/101/b", "t/101/a"), _lab("t/201/c", "t/101/b")))
    assert [lab.id for lab in small.labs] == ["t/101/a", "t/101/b", "t/201/c"]
    assert small.lab("c").prerequisites == ("t/101/b",)  # lists become tuples


def test_parse_rejects_an_unknown_prerequisite():
    with pytest.raises(ValueError, match="t/101/a: unknown prerequisite t/101/nowhere"):
        parse(_map(_lab("t/101/a", "t/101/nowhere")))


def test_parse_rejects_a_cycle():
    with pytest.raises(ValueError, match="prerequisite cycle through t/101/"):
        parse(
            _map(_lab("t/101/a", "t/101/c"), _lab("t/101/b", "t/101/a"), _lab("t/101/c", "t/101/b"))
        )


def test_parse_rejects_a_lab_that_needs_itself():
    with pytest.raises(ValueError, match="prerequisite cycle through t/101/a"):
        parse(_map(_lab("t/101/a", "t/101/a")))


def test_parse_rejects_a_prerequisite_of_a_higher_level():
    with pytest.raises(ValueError, match="t/101/a: prerequisite t/201/b is of a higher level"):
        parse(_map(_lab("t/101/a", "t/201/b"), _lab("t/201/b")))


def test_parse_rejects_undeclared_levels_unknown_tracks_and_bad_fields():
    data = _map(_lab("t/101/a"))
    data["levels"] = data["levels"][:1]
    with pytest.raises(ValueError, match="level 201 of t is not declared"):
        parse({**data, "labs": [_lab("t/201/b")]})
    with pytest.raises(ValueError, match="id must be track/level/slug with a known track"):
        parse(_map(_lab("nowhere/101/a")))
    bad = _lab("t/101/a", status="someday")
    bad["target"]["op"] = "=="
    with pytest.raises(ValueError) as error:
        parse(_map(bad))
    assert "status must be available or planned" in str(error.value)
    assert "target op must be one of >=, <=" in str(error.value)
    with pytest.raises(ValueError, match="duplicate lab ids"):
        parse(_map(_lab("t/101/a"), copy.deepcopy(_lab("t/101/a"))))


# -- finding a lab by name -------------------------------------------------------------------------
def test_lab_by_id_and_by_unique_slug(the_map):
    assert the_map.lab(DIGITS).id == DIGITS
    assert the_map.lab("digits").id == DIGITS
    assert the_map.lab("diffusion").id == "vision/201/diffusion"


def test_lab_suggests_a_close_name(the_map):
    with pytest.raises(UnknownLab, match="unknown lab 'digts' — did you mean 'digits'"):
        the_map.lab("digts")
    with pytest.raises(UnknownLab, match="did you mean 'vision/101/digits'"):
        the_map.lab("vision/101/digit")


def test_lab_far_from_any_name_points_at_the_map(the_map):
    with pytest.raises(UnknownLab, match=r"unknown lab 'qqqqqqqq' \(see `deepscape map`\)"):
        the_map.lab("qqqqqqqq")


def test_a_shared_slug_means_the_one_lab_you_can_run_else_names_every_candidate(the_map):
    both = [lab for lab in the_map.labs if lab.slug == "unsolvable"]
    assert len(both) == 2
    planned = [dataclasses.replace(lab, status="planned") for lab in both]
    one_available = [planned[0], dataclasses.replace(planned[1], status="available")]
    chosen = dataclasses.replace(the_map, labs=tuple(one_available)).lab("unsolvable")
    assert chosen is one_available[1]
    with pytest.raises(UnknownLab) as error:
        dataclasses.replace(the_map, labs=tuple(planned)).lab("unsolvable")
    assert str(error.value) == f"'unsolvable' is ambiguous: say {both[0].id} or {both[1].id}"


# -- progress, computed from the run store ---------------------------------------------------------
def _finished(store, lab_id: str, **metrics: float):
    run = store.create(lab_id, {}, target="t")
    run.update_summary(status="finished", metrics=metrics)
    return run


def test_no_runs_means_not_run_and_digits_next(the_map, store):
    done = progress(the_map, store)
    assert set(done) == {lab.id for lab in the_map.labs}
    assert all(p == landscape.LabProgress(NOT_RUN, 0, None) for p in done.values())
    assert suggest_next(the_map, done).id == DIGITS


def test_a_run_above_target_reaches_it(the_map, store):
    _finished(store, DIGITS, test_accuracy=0.995)
    done = progress(the_map, store)
    assert done[DIGITS] == landscape.LabProgress(REACHED, 1, 0.995)
    suggestion = suggest_next(the_map, done)
    assert suggestion is None or suggestion.id != DIGITS


def test_a_run_below_target_is_below_and_digits_stays_next(the_map, store):
    _finished(store, DIGITS, test_accuracy=0.5)
    done = progress(the_map, store)
    assert done[DIGITS] == landscape.LabProgress(BELOW, 1, 0.5)
    assert suggest_next(the_map, done).id == DIGITS


def test_progress_keeps_the_best_finished_run(the_map, store):
    _finished(store, DIGITS, test_accuracy=0.5)
    _finished(store, DIGITS, test_accuracy=0.991)
    _finished(store, DIGITS, test_accuracy=0.7)
    failed = store.create(DIGITS, {})
    failed.update_summary(status="failed", metrics={"test_accuracy": 1.0})  # does not count
    done = progress(the_map, store)
    assert done[DIGITS] == landscape.LabProgress(REACHED, 4, 0.991)


def test_progress_judges_each_run_by_the_bar_on_its_dataset(the_map, store):
    # 0.95 on mnist-5k (no bar there) does not count; 0.993 on mnist reaches mnist's bar
    run = _finished(store, DIGITS, test_accuracy=0.95)
    (run.dir / "config.json").write_text('{"dataset": "mnist-5k"}')
    assert progress(the_map, store)[DIGITS] == landscape.LabProgress(BELOW, 1, None)
    run = _finished(store, DIGITS, test_accuracy=0.993)
    (run.dir / "config.json").write_text('{"dataset": "mnist"}')
    assert progress(the_map, store)[DIGITS] == landscape.LabProgress(REACHED, 2, 0.993)


def test_an_unfinished_run_counts_as_tried_not_reached(the_map, store):
    store.create(DIGITS, {})  # still "running": no metrics yet
    assert progress(the_map, store)[DIGITS] == landscape.LabProgress(BELOW, 1, None)


def test_missing_prerequisites_of_a_planned_lab(the_map, store):
    experiments = the_map.lab("vision/101/experiments")
    assert missing_prerequisites(experiments, progress(the_map, store)) == [DIGITS]
    _finished(store, DIGITS, test_accuracy=0.999)
    assert missing_prerequisites(experiments, progress(the_map, store)) == []
    architectures = the_map.lab("vision/201/architectures")
    assert missing_prerequisites(architectures, progress(the_map, store)) == [
        "vision/101/objects10",
        "vision/201/model-as-maths",
    ]


def test_load_is_cached(the_map):
    assert landscape.load() is the_map


def test_an_ambiguous_slug_resolves_to_the_one_available_lab():
    real = landscape.load()
    labs = tuple(
        dataclasses.replace(lab, status="planned") if lab.id == "language/101/experiments" else lab
        for lab in real.labs
    )
    the_map = dataclasses.replace(real, labs=labs)
    assert the_map.lab("experiments").id == "vision/101/experiments"


def test_a_slug_two_available_labs_share_names_both(the_map):
    with pytest.raises(UnknownLab, match="say vision/101/transfer or language/101/transfer"):
        the_map.lab("transfer")


def test_a_lab_imports_only_labs_it_declares_as_prerequisites(the_map):
    """Promise 1, checked on the code: every `deepscape.labs…` import of an available lab names a
    lab among its prerequisites (and so of its own level or below)."""
    import ast
    import inspect

    modules = {lab.module_name: lab.id for lab in the_map.labs}
    for lab in the_map.labs:
        if not lab.available:
            continue
        tree = ast.parse(inspect.getsource(lab.module()))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
                imported |= {modules[n] for n in names if n in modules}
            elif isinstance(node, ast.Import):
                imported |= {modules[a.name] for a in node.names if a.name in modules}
        assert imported <= set(lab.prerequisites), (lab.id, imported - set(lab.prerequisites))
