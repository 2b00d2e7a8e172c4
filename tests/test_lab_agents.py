"""language/301/agents: the sandbox holds, the calculator refuses, the ReAct loop parses and
classifies, the tasks' answers check out — and one small run with the real model (slow)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from deepscape.labs.language import l301_agents as lab
from deepscape.labs.language.l301_agents_sandbox import Sandbox
from deepscape.labs.language.l301_agents_tasks import (
    BABI_PLACES,
    KINDS,
    babi_story,
    correct,
    generate_tasks,
    last_number,
    word_problem,
)
from deepscape.labs.language.l301_agents_tools import (
    Search,
    Tools,
    calculate,
    calculator,
    lookup,
    python_code,
)


@pytest.fixture(scope="module")
def search() -> Search:
    return Search()


# -- the sandbox ----------------------------------------------------------------------------------
def test_sandbox_runs_code_in_its_own_folder():
    result = Sandbox().run("open('a.txt', 'w').write('hi')\nprint(open('a.txt').read(), 6 * 7)")
    assert result.ok and result.output.strip() == "hi 42"


def test_sandbox_writing_outside_its_folder_fails_and_changes_nothing(tmp_path: Path):
    outside = tmp_path / "outside.txt"
    outside.write_text("before")
    result = Sandbox().run(f"open({str(outside)!r}, 'w').write('after')")
    assert not result.ok
    assert "sandbox: writing outside the working folder is not allowed" in result.error
    assert outside.read_text() == "before"
    removed = Sandbox().run(f"import os\nos.remove({str(outside)!r})")
    assert "os.remove outside the working folder" in removed.error and outside.exists()


def test_sandbox_refuses_sockets():
    result = Sandbox().run("import socket\nsocket.socket().connect(('127.0.0.1', 80))")
    assert not result.ok and "sandbox:" in result.error and "not allowed" in result.error
    assert "socket" in result.error


def test_sandbox_stops_an_endless_loop_within_its_limit():
    started = time.perf_counter()
    result = Sandbox(seconds=1.0).run("while True:\n    pass")
    assert time.perf_counter() - started < 3
    assert result.error == "stopped after 1 s (the time limit)"


def test_sandbox_refuses_a_fork_bomb_and_subprocesses():
    bomb = Sandbox().run("import os\nwhile True:\n    os.fork()")
    assert "starting or signalling processes is not allowed (os.fork)" in bomb.error
    shell = Sandbox().run("import os\nos.system('touch /tmp/deepscape-escaped')")
    assert "not allowed (os.system)" in shell.error
    assert not Path("/tmp/deepscape-escaped").exists()


def test_sandbox_sees_no_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DEEPSCAPE_SECRET", "hunter2")
    result = Sandbox().run("import os\nprint(dict(os.environ))")
    assert result.ok and result.output.strip() == "{}"
    proc = Sandbox().run("print(open('/proc/self/environ').read())")
    assert "reading outside the working folder" in proc.error
    passwd = Sandbox().run("print(open('/etc/passwd').read())")
    assert "reading outside the working folder" in passwd.error and "root" not in passwd.output


def test_sandbox_memory_and_output_limits():
    assert "the memory limit" in Sandbox(memory_mb=128).run("x = bytearray(10**9)").error
    flood = Sandbox(seconds=3).run("while True:\n    print('x' * 1000)")
    assert "the file size limit" in flood.error


# -- the calculator and the other tools -----------------------------------------------------------
def test_calculator_computes():
    assert calculate("37 * 24 - 129") == 759
    assert calculate("10,194,277 + 47,000,000") == 57194277
    assert calculator("(3 + 4) ** 2 / 7") == "7"
    assert calculator("round(7 / 3, 2)") == "2.33"


@pytest.mark.parametrize(
    ("expression", "why"),
    [("__import__('os')", "calling __import__ is not allowed"),
     ("__import__('os').system('ls')", "is not allowed"),
     ("(1).real", "attribute access (.real) is not allowed"),
     ("x + 1", "the name 'x' is not allowed"),
     ("2 ** 10 ** 10", "too large"), ("9 ** 99", "too large"),
     ("10 ** 20 * 10 ** 20", "larger than 10**30"), ("1 / 0", "division by zero"),
     ("[1, 2]", "List is not allowed"), ("1 +", "cannot parse")],
)  # fmt: skip
def test_calculator_refuses(expression: str, why: str):
    assert calculator(expression).startswith("Error:") and why in calculator(expression)


def test_lookup_and_python_tool():
    assert lookup("portugal").startswith("Portugal: capital Lisbon; population ")
    assert "borders Spain" in lookup("Portugal")
    assert "did you mean France" in lookup("Frnace")
    assert python_code("sum(range(4))") == "print(sum(range(4)))"
    tools = Tools(search=lambda q: "a passage", sandbox=Sandbox())
    assert tools.call("python", "sum(range(4))") == "6"
    assert tools.call("nothing", "x").startswith("Error: no tool named 'nothing'")


# -- the ReAct loop -------------------------------------------------------------------------------
def test_parse_reads_thought_and_action():
    step = lab.parse("Thought: count it\nAction: python[print([k for k in range(3)])]")
    assert (step.thought, step.tool, step.argument, step.error) == (
        "count it", "python", "print([k for k in range(3)])", "")  # fmt: skip
    assert lab.parse("The answer is 5.").error == "format error"
    assert lab.parse("Thought: x\nAction: google[cats]").error == "format error"


def scripted(replies):
    """A fake model: the reply for the number of observations in the prompt so far."""

    def policy(prompts: list[str]) -> list[str]:
        return [replies(p.count("Observation:"), p) for p in prompts]

    return policy


def arithmetic_task():
    return word_problem(random.Random(3))


def tools_call():
    return Tools(search=lambda q: "a passage", sandbox=Sandbox()).call


def test_scripted_model_reaches_the_answer_through_a_tool():
    task = arithmetic_task()
    expression = task.trace[0].argument

    def replies(observations: int, prompt: str) -> str:
        if observations == 0:
            return f"Thought: I compute it.\nAction: calculator[{expression}]"
        return f"Thought: done.\nAction: finish[{prompt.rsplit('Observation: ', 1)[1]}]"

    [episode] = lab.run_episodes(scripted(replies), [task], tools_call(), max_steps=4)
    assert episode.solved and episode.failure == "" and episode.answer == task.answer
    assert [s.tool for s in episode.steps] == ["calculator", "finish"]
    assert episode.steps[0].observation == task.answer


@pytest.mark.parametrize(
    ("reply", "failure", "steps"),
    [(lambda n: "The answer is 5.", "format error", 3),
     (lambda n: "Thought: again\nAction: calculator[1 + 1]", "loop", 3),  # repeated: stopped
     (lambda n: f"Thought: more\nAction: calculator[{n} + 1]", "loop", 3),  # the step limit
     (lambda n: "Thought: look\nAction: lookup[France]", "wrong tool", 3),
     (lambda n: "Thought: guess\nAction: finish[3]", "wrong tool", 1),  # no calculator
     (lambda n: ["Thought: c\nAction: calculator[2 + 2]", "Thought: f\nAction: finish[4]"][n],
      "wrong argument", 2)],
)  # fmt: skip
def test_failures_are_classified(reply, failure: str, steps: int):
    policy = scripted(lambda n, prompt: reply(n))
    [episode] = lab.run_episodes(policy, [arithmetic_task()], tools_call(), max_steps=3)
    assert not episode.solved and episode.failure == failure and len(episode.steps) == steps


def test_scores_and_figure(tmp_path: Path):
    from deepscape.runs import RunStore

    run = RunStore(tmp_path).create("language/301/agents", {})
    task = arithmetic_task()
    good = lab.Episode(task.kind, task.question, task.answer, [lab.Step("x")], task.answer, True)
    bad = lab.Episode(task.kind, task.question, task.answer, [lab.Step("x")] * 2, "1", False,
                      "wrong argument")  # fmt: skip
    alone = lab.Episode(task.kind, task.question, task.answer, [], "1", False, "wrong answer")
    metrics, table = lab.scores({"alone": [alone, alone], "lora": [good, bad]})
    assert metrics["lora_success"] == 0.5 and metrics["alone_success"] == 0.0
    assert metrics["lora_steps"] == 1.5 and metrics["lora_wrong_arguments"] == 0.5
    assert metrics["lora_over_alone"] == 1.0  # ÷ at least one task
    assert lab.figure(run, table).is_file()


# -- the tasks ------------------------------------------------------------------------------------
def test_tasks_have_checkable_answers(search: Search):
    train, held_out = generate_tasks(KINDS, 60, 25, search, seed=0)
    assert {t.kind for t in held_out} == set(KINDS) and len(held_out) == 25
    assert not {t.question for t in train} & {t.question for t in held_out}
    call = Tools(search=search, sandbox=Sandbox()).call
    for task in held_out:
        steps = lab.reference_steps(task, call)
        assert steps[-1].tool == "finish" and correct(steps[-1].argument, task), task
        observed = " ".join(s.observation for s in steps)
        if task.numeric:  # the last tool's observation is the answer
            assert last_number(steps[-2].observation) == float(task.answer), task
        else:  # the answer was read from an observation
            assert any(correct(s.observation, task) for s in steps[:-1]), (task, observed)
    names = lambda tasks: {t.question.rsplit(" ", 1)[-1] for t in tasks if t.kind == "neighbour"}  # noqa: E731
    assert not names(train) & names(held_out)  # other countries


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BABI_STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Mary travelled to the office.
5 Daniel went back to the garden.
6 Where is Mary? \toffice\t4
1 Sandra journeyed to the kitchen.
2 John moved to the bedroom.
3 Where is Sandra? \tkitchen\t1
"""


def test_babi_tasks_need_no_tool_and_finish_with_the_last_move():
    rng = random.Random(0)
    for task in (babi_story(rng) for _ in range(200)):
        person = task.question.split()[-1].rstrip("?")
        moves = [s for s in task.question.split(". ") if s.startswith(person)]
        assert task.answer in BABI_PLACES and moves[-1].rstrip(".").endswith(task.answer), task
        assert task.tools == set() and [c.tool for c in task.trace] == ["finish"]
        assert correct(task.trace[-1].argument, task)
    steps = [lab.Step("x", tool="lookup", argument="Mary"), lab.Step("y", tool="finish")]
    wandered = lab.Episode("babi", "?", "office", steps, "kitchen")
    assert lab.failure(wandered, babi_story(rng)) == "wrong tool"  # it needed no tool


def test_babi_files_are_read_into_tasks(tmp_path: Path):
    (tmp_path / "qa1_single-supporting-fact_test.txt").write_text(BABI_STORY)
    training = BABI_STORY.replace("John", "Ann")
    (tmp_path / "qa1_single-supporting-fact_train.txt").write_text(training)
    train, held_out = generate_tasks(("babi",), 3, 3, lambda query: "", babi_dir=tmp_path)
    assert len(train) == 3 and all("Ann" in t.question and "John" not in t.question for t in train)
    assert len(held_out) == 3 and {t.answer for t in held_out} == {"bathroom", "office", "kitchen"}
    second = next(t for t in held_out if t.answer == "office")
    assert second.question == ("Mary moved to the bathroom. John went to the hallway. Mary "
                               "travelled to the office. Daniel went back to the garden. "
                               "Where is Mary?")  # fmt: skip
    assert "Mary travelled to the office." in second.trace[0].thought


def test_a_folder_without_babi_is_a_one_line_error(tmp_path: Path):
    with pytest.raises(lab.ConfigError, match=r"no bAbI task 1 train file .* pass data_dir="):
        lab.check(lab.Config(kinds=("babi",), data_dir=str(tmp_path)))
    lab.check(lab.Config(kinds=("babi",)))  # no folder: stories written in its format


@pytest.mark.skipif(not (SHARED / "babi-qa1").is_dir(), reason="needs ../shared/data/babi-qa1")
def test_babi_reference_traces_agree_with_the_real_labels():
    train, held_out = generate_tasks(("babi",), 500, 1000, lambda query: "", babi_dir=SHARED)
    assert len(held_out) >= 990 and len(train) == 500  # less the stories training also has
    for task in held_out:  # the last sentence naming the person holds bAbI's own answer
        assert task.trace[0].thought.rstrip(".").endswith(task.answer), task


def test_correct_reads_numbers_and_names():
    task = arithmetic_task()
    assert correct(f"The answer is {task.answer}.", task) and not correct("no idea", task)
    assert last_number("10,194,277 people") == 10194277


# -- the real model -------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_small_run_with_smollm2(tmp_path: Path):
    pytest.importorskip("peft")
    from deepscape.models.language import PretrainedUnavailable, load_llm
    from deepscape.runs import RunStore

    try:
        load_llm()
    except PretrainedUnavailable as error:
        pytest.skip(str(error))
    run = RunStore(tmp_path).create("language/301/agents", {})
    config = lab.Config(kinds=("internet", "arithmetic"), tasks=2, train_tasks=4, shots=1,
                        max_steps=2, train_steps=1, batch_size=2, max_new_tokens=24,
                        threads=1)  # fmt: skip
    metrics = lab.run(config, run)
    assert {"alone_success", "prompted_success", "lora_success", "lora_over_alone"} <= set(metrics)
    lines = (run.dir / "traces.jsonl").read_text().splitlines()
    assert len(lines) == 6 and {json.loads(line)["method"] for line in lines} == {
        "alone", "prompted", "lora"}  # fmt: skip
    assert (run.dir / "adapter.safetensors").is_file() and run.figure_path("agents").is_file()


@pytest.mark.slow
def test_the_page_builds_without_loading_the_model(tmp_path: Path):
    pytest.importorskip("gradio")
    from deepscape.runs import RunStore

    run = RunStore(tmp_path).create("language/301/agents", {})
    assert lab.page_for(run) is not None  # the model and the tools load on the first question
