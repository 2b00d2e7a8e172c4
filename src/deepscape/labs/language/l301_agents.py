"""language/301/agents — an LLM calls tools: a ReAct loop, a sandbox, fine-tuning on traces.

A language model answers from its weights; an agent may also act. ReAct (Yao et al. 2022) makes
that a loop of text: the model writes a Thought and an Action (`tool[argument]`), the program
runs the tool and writes its Observation back, and the model goes on, until it writes
`finish[answer]` or runs out of steps. Each step here is one chat turn: the user's message holds
the tools, the question and the trace so far; the model replies with its next Thought and Action.

The tools (`l301_agents_tools`): a calculator (parsed by `ast`, only arithmetic nodes allowed:
never `eval`), BM25 search over language/201/augmented-search's Factbook passages, a Factbook
lookup (capital, population, area, borders), and Python run in a sandbox
(`l301_agents_sandbox`: a child process with time, memory and file limits, no environment, a
temporary folder, and an audit hook that refuses sockets, processes and files outside it).

The tasks (`l301_agents_tasks`) have checkable answers, five kinds that need different tools:
arithmetic word problems (calculator), counts over ranges (python), "the capital of the most
populous country that borders X" (lookup, two or three times), "how many people live in X and Y
together" (lookup twice, calculator) and internet country codes (search). A sixth, bAbI's
single-supporting-fact stories (`kinds=babi`, from `data_dir` or written in its format), needs
no tool: the answer is in the question, and a good agent finishes at once.

Three ways compared on the same held-out tasks, with SmolLM2-135M-Instruct:

1. alone: the question, the answer; no tools.
2. prompted: the ReAct format shown by `shots` solved episodes (few-shot, as chat turns).
3. lora: fine-tuned with LoRA (language/201/fine-tuning's `deepscape.tuning`) on traces the
   lab writes itself, Toolformer-style: the tasks' reference calls, run through the real
   tools, each step one example (the observations are the prompt's, never learned). The
   training tasks are others than the held-out ones (other countries, other numbers).

Measured for each: the share solved, the steps taken, and why the others failed — the first
thing that went wrong in the episode: a format error (no `Action: tool[argument]` that parses),
a wrong tool (one the task does not need, or finishing without the one it does), a loop (the
same action a third time, or the step limit), a wrong argument (the right tools, a wrong answer).
Every episode's trace is written to traces.jsonl in the run, the adapter to
adapter.safetensors, and `deepscape serve RUN` answers a typed question with its trace.

What it found (30 held-out tasks, 6 of each kind; one thread, 20 min in all): the model alone
solved none — it restates the question or guesses. Prompted with 5 solved episodes it solved 6,
all of them internet codes: elsewhere it calls the wrong tool (12: a lookup of a number), loops
(7) or skips the Action line (2). Fine-tuned for 10 minutes (144 steps of 4 of the 935 steps of
its own traces, the loss from 0.72 to 0.07), it solved 19 (63 %) with no format error left:
5/6 word problems, 4/6 counts, 6/6 codes, 3/6 sums of populations, but 1/6 neighbours — it
looks the neighbours up, then names the wrong one's capital, or a country for its capital. Its
failures moved from the format to the arguments (8 of 11): a number dropped from the
expression, range(1, n) for 1 to n.

    deepscape run language/301/agents                           # ~20 min on one thread
    deepscape run language/301/agents tasks=10 train_seconds=60 # a quick look
    deepscape run language/301/agents methods=prompted shots=2
    deepscape run language/301/agents kinds=babi data_dir=../shared/data
"""

from __future__ import annotations

import copy
import functools
import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from deepscape import distributed
from deepscape.config import ConfigError, option

Method = Literal["alone", "prompted", "lora"]
Kind = Literal["arithmetic", "counting", "neighbour", "together", "internet", "babi"]
FAILURES = ("format error", "wrong tool", "wrong argument", "loop")


GLOBAL_BATCH = True  # its LoRA trains through deepscape.tuning.train: see its docstring


@dataclass
class Config:
    seed: int = option(0, "random seed: the tasks, the country split and the training order")
    threads: int = option(1, "CPU threads for PyTorch (0: all cores)")
    llm: str = option("SmolLM2-135M-Instruct", "the instruct LLM (offline: SmolLM2's GGUF)")
    methods: tuple[Method, ...] = option(("alone", "prompted", "lora"), "the ways compared")
    kinds: tuple[Kind, ...] = option(
        ("arithmetic", "counting", "neighbour", "together", "internet"), "the kinds of task"
    )
    tasks: int = option(30, "held-out tasks each method is measured on (the kinds in turn)")
    data_dir: str | None = option(
        None, "bAbI's qa1 files (or the folder of babi-qa1/) for kinds=babi; else stories made here"
    )
    train_tasks: int = option(400, "training tasks whose traces the LoRA learns")
    max_steps: int = option(6, "actions an episode may take before it counts as a loop")
    shots: int = option(5, "solved episodes shown to the prompted agent (one per kind in turn)")
    max_new_tokens: int = option(64, "tokens of one step (a Thought and an Action)")
    rank: int = option(8, "LoRA rank")
    alpha: float = option(16.0, "LoRA scale numerator: the update is (alpha / rank)·B·A")
    lr: float = option(2e-3, "LoRA's peak learning rate")
    batch_size: int = option(4, "training examples (steps of traces) per optimisation step")
    train_steps: int = option(200, "optimisation steps of the LoRA training")
    train_seconds: float = option(600.0, "the training also ends after this many seconds (0: no)")
    search_words: int = option(30, "words of a searched passage")
    sandbox_seconds: float = option(2.0, "time limit of one python action")
    figures: bool = option(True, "draw the figure")


def check(config: Config) -> None:
    if not config.methods:
        raise ConfigError("methods=: give at least one of alone, prompted, lora")
    if not config.kinds:
        raise ConfigError("kinds=: give at least one kind of task")
    for name in ("tasks", "max_steps", "max_new_tokens"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name}={getattr(config, name)}: give 1 or more")
    if "lora" in config.methods and config.train_tasks < 1:
        raise ConfigError(f"train_tasks={config.train_tasks}: the lora method needs ≥ 1")
    if "prompted" in config.methods and config.shots < 0:
        raise ConfigError(f"shots={config.shots}: give 0 or more")
    if config.data_dir is not None and "babi" in config.kinds:
        from deepscape.data import DataUnavailable
        from deepscape.labs.language.l301_agents_tasks import babi_tasks

        try:
            babi_tasks(config.data_dir)
        except DataUnavailable as missing:
            raise ConfigError(str(missing)) from None


# -- the ReAct format -----------------------------------------------------------------------------
INSTRUCTION = (
    "Solve the question with the tools. Reply with one line 'Thought: …' and one line "
    "'Action: tool[argument]'.\n"
    "Tools: calculator[arithmetic] · lookup[country]: its Factbook fields · search[words]: a "
    "Factbook passage · python[code]: what it prints · finish[answer]: the final answer."
)
ACTION = re.compile(r"^\s*Action\s*:\s*([A-Za-z_]\w*)\s*\[(.*)\]\s*$", re.MULTILINE)
ACTION_LINE = re.compile(r"^\s*Action\s*:", re.MULTILINE)  # a reply ends after this line
THOUGHT = re.compile(r"Thought\s*:\s*(.*?)\s*(?=^\s*Action\s*:|\Z)", re.DOTALL | re.MULTILINE)


@dataclass
class Step:
    """One turn of an episode: what the model wrote, what was parsed from it, what came back."""

    raw: str
    thought: str = ""
    tool: str = ""
    argument: str = ""
    observation: str = ""
    error: str = ""  # "format error" when no action parses


@dataclass
class Episode:
    kind: str
    question: str
    reference: str
    steps: list[Step] = field(default_factory=list)
    answer: str | None = None  # finish's argument (alone: the reply)
    solved: bool = False
    failure: str = ""  # one of FAILURES ("wrong answer" for the model alone), "" when solved


def parse(text: str) -> Step:
    """A reply as a Step: its thought, and its first `Action: tool[argument]` (the argument up
    to the line's last bracket); a format error when there is none or the tool is unknown."""
    from deepscape.labs.language.l301_agents_tools import FINISH, TOOLS

    step = Step(raw=text)
    thought = THOUGHT.search(text)
    step.thought = thought.group(1).strip() if thought else ""
    action = ACTION.search(text)
    if action is None:
        step.error = "format error"
        step.observation = "Error: write 'Action: tool[argument]' on its own line."
        return step
    step.tool, step.argument = action.group(1).lower(), action.group(2).strip()
    if step.tool not in (*TOOLS, FINISH):
        step.error = "format error"
        step.observation = f"Error: no tool {step.tool!r}: use {', '.join(TOOLS)} or finish."
    return step


def step_text(step: Step) -> str:
    """A step as the model writes it (a reference trace's steps are written so)."""
    return f"Thought: {step.thought}\nAction: {step.tool}[{step.argument}]"


def prompt(question: str, steps: Sequence[Step]) -> str:
    """The user's message of the next turn: the tools, the question and the trace so far."""
    lines = [INSTRUCTION, "", f"Question: {question}"]
    for step in steps:
        lines += [step.raw.strip() if step.error else step_text(step),
                  f"Observation: {step.observation}"]  # fmt: skip
    return "\n".join(lines)


Policy = Callable[[list[str]], list[str]]  # prompts → replies, one each


def run_episodes(policy: Policy, tasks: Sequence[Any], call: Callable[[str, str], str],
                 max_steps: int, *, name: str = "episodes", show: bool = False,
                 ) -> list[Episode]:  # fmt: skip
    """Every task's episode, all in step: each turn, one call of `policy` on the prompts of the
    episodes still going; `call(tool, argument)` runs an action. `show`: a bar over the turns."""
    from rich.console import Console
    from rich.progress import Progress

    episodes = [Episode(t.kind, t.question, t.answer) for t in tasks]
    going = list(range(len(tasks)))
    with Progress(console=Console(stderr=True), disable=not show) as bar:
        turns = bar.add_task(name, total=max_steps)
        for _ in range(max_steps):
            if not going:
                break
            bar.update(turns, description=f"{name}: {len(going)} of {len(tasks)} episodes going")
            going = take_turn(policy, tasks, episodes, going, call)
            bar.advance(turns)
    for episode, task in zip(episodes, tasks, strict=True):
        episode.failure = "" if episode.solved else failure(episode, task)
    return episodes


def take_turn(policy: Policy, tasks: Sequence[Any], episodes: list[Episode], going: list[int],
              call: Callable[[str, str], str]) -> list[int]:  # fmt: skip
    """One turn of the episodes still `going`; returns those that go on."""
    from deepscape.labs.language.l301_agents_tasks import correct

    replies = policy([prompt(episodes[i].question, episodes[i].steps) for i in going])
    still = []
    for i, reply in zip(going, replies, strict=True):
        episode, step = episodes[i], parse(reply)
        episode.steps.append(step)
        if step.error:
            still.append(i)
        elif step.tool == "finish":
            episode.answer = step.argument
            episode.solved = correct(step.argument, tasks[i])
        elif sum((s.tool, s.argument) == (step.tool, step.argument)
                 for s in episode.steps) >= 3:  # fmt: skip
            step.observation = "(the same action a third time: stopped)"
        else:
            step.observation = call(step.tool, step.argument)
            still.append(i)
    return still


def failure(episode: Episode, task: Any) -> str:
    """Why an episode failed: the first thing that went wrong, in the order of its steps."""
    for step in episode.steps:
        if step.error:
            return "format error"
        if step.tool == "finish" and not task.tools <= {s.tool for s in episode.steps}:
            return "wrong tool"  # it answered without a tool it needed
        if step.tool not in ("finish", *task.tools):
            return "wrong tool"
    return "loop" if episode.answer is None else "wrong argument"


# -- the model ------------------------------------------------------------------------------------
def model_policy(model: Any, tokenizer: Any, *, shots: Sequence[Any] = (),
                 max_new_tokens: int) -> Policy:  # fmt: skip
    """A policy from an LLM: its greedy reply to each prompt, ended at the end of its Action line
    — as ReAct stops the model before it writes an Observation of its own (a small model goes
    on and invents one). The start every prompt shares (the shots and the instruction) is read
    once and its keys and values reused (`deepscape.generate`'s KV cache)."""
    from deepscape.generate import as_lm, common_prefix, last_position, prefix_cache
    from deepscape.tuning import chat_prompt_ids, end_of_turn, merged

    ends, stop = set(line_ends(tokenizer)), end_of_turn(tokenizer)
    start = chat_prompt_ids(tokenizer, prompt("A?", []), shots=shots)
    shared = common_prefix([start, chat_prompt_ids(tokenizer, prompt("B?", []), shots=shots)])
    kept: dict[str, Any] = {}

    @torch.inference_mode()
    def reply(lm: Any, row: list[int]) -> str:
        begin = shared if row[:shared] == start[:shared] else 0
        if begin:
            cache = kept["prefix"].select(torch.zeros(1, dtype=torch.long))
        else:
            cache = lm.new_cache(len(row) + max_new_tokens)
        ids = torch.tensor([row[begin:]])
        logits = lm(ids, cache, last_position(ids))[:, -1]
        new: list[int] = []
        for _ in range(max_new_tokens):
            token = int(logits.argmax(-1))
            if token == stop:
                break
            new.append(token)
            if token in ends and ACTION_LINE.search(tokenizer.decode(new)):
                break
            logits = lm(torch.tensor([[token]]), cache)[:, -1]
        return tokenizer.decode(new, skip_special_tokens=True).strip()

    def policy(prompts: list[str]) -> list[str]:
        rows = [chat_prompt_ids(tokenizer, p, shots=shots) for p in prompts]
        with merged(model) as measured:  # a LoRA merged in: as fast as the model alone
            if "prefix" not in kept:  # the same merged weights every turn: made once
                kept["prefix"] = prefix_cache(measured, start[:shared], max_length=0)
            return [reply(as_lm(measured), row) for row in rows]

    return policy


@functools.cache
def _line_ends(tokenizer: Any) -> tuple[int, ...]:
    return tuple(i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i]))


def line_ends(tokenizer: Any) -> tuple[int, ...]:
    """The ids of every token that holds a new line (its end of a line)."""
    return _line_ends(tokenizer)


def reference_steps(task: Any, call: Callable[[str, str], str]) -> list[Step]:
    """A task's reference trace, its actions run through the real tools."""
    steps = []
    for c in task.trace:
        step = Step(raw="", thought=c.thought, tool=c.tool, argument=c.argument)
        step.raw = step_text(step)
        if c.tool != "finish":
            step.observation = call(c.tool, c.argument)
        steps.append(step)
    return steps


def trace_examples(tasks: Sequence[Any], call: Callable[[str, str], str]) -> list[Any]:
    """One training example per step of each task's reference trace: the prompt of that turn,
    the step as the answer (Toolformer-style data the lab writes itself)."""
    from deepscape.tuning import Example

    examples = []
    for task in tasks:
        steps = reference_steps(task, call)
        examples += [Example(prompt(task.question, steps[:n]), step_text(steps[n]))
                     for n in range(len(steps))]  # fmt: skip
    return examples


def demonstrations(tasks: Sequence[Any], count: int, call: Callable[[str, str], str]) -> list:
    """`count` solved episodes as chat turns (one per kind in turn), for the prompted agent."""
    by_kind: dict[str, list[Any]] = {}
    for task in tasks:
        by_kind.setdefault(task.kind, []).append(task)
    kinds, chosen = list(by_kind), []
    for n in range(count):
        pool = by_kind[kinds[n % len(kinds)]]
        if n // len(kinds) < len(pool):
            chosen.append(pool[n // len(kinds)])
    return trace_examples(chosen, call)


def alone(model: Any, tokenizer: Any, tasks: Sequence[Any]) -> list[Episode]:
    """The model without tools: the question, a short answer."""
    from deepscape.labs.language.l301_agents_tasks import correct
    from deepscape.tuning import answers

    prompts = [f"Answer with the answer only, no explanation.\nQuestion: {t.question}"
               for t in tasks]  # fmt: skip
    said = answers(model, tokenizer, prompts, max_new_tokens=32, progress=False)
    episodes = []
    for task, reply in zip(tasks, said, strict=True):
        ok = correct(reply, task)
        episodes.append(Episode(task.kind, task.question, task.answer, [], reply, ok,
                                "" if ok else "wrong answer"))  # fmt: skip
    return episodes


# -- the lab --------------------------------------------------------------------------------------
def run(config: Config, run: Any) -> dict[str, Any]:
    from deepscape.labs.language.l301_agents_sandbox import Sandbox
    from deepscape.labs.language.l301_agents_tasks import generate_tasks
    from deepscape.labs.language.l301_agents_tools import Search, Tools
    from deepscape.models.language import load_llm
    from deepscape.tuning import add_lora, save_adapter, train

    check(config)
    torch.set_num_threads(distributed.cpu_threads(config.threads))
    torch.manual_seed(config.seed)
    tools = Tools(Search(config.search_words), Sandbox(seconds=config.sandbox_seconds))
    train_tasks, tasks = generate_tasks(config.kinds, config.train_tasks, config.tasks,
                                        tools.search, config.seed,
                                        babi_dir=config.data_dir)  # fmt: skip
    run.update_summary(tasks={"held_out": dict(Counter(t.kind for t in tasks)),
                              "training": dict(Counter(t.kind for t in train_tasks))})  # fmt: skip
    llm = load_llm(config.llm)
    results: dict[str, list[Episode]] = {}
    seconds: dict[str, float] = {}
    for method in config.methods:
        started = time.perf_counter()
        if method == "alone":
            results[method] = alone(llm.model, llm.tokenizer, tasks)
        elif method == "prompted":
            shots = demonstrations(train_tasks, config.shots, tools.call)
            policy = model_policy(llm.model, llm.tokenizer, shots=shots,
                                  max_new_tokens=config.max_new_tokens)  # fmt: skip
            results[method] = run_episodes(policy, tasks, tools.call, config.max_steps,
                                           name=method, show=run.show_progress)  # fmt: skip
        else:
            examples = trace_examples(train_tasks, tools.call)
            model = add_lora(copy.deepcopy(llm.model), rank=config.rank, alpha=config.alpha)
            trained = train(model, llm.tokenizer, examples, steps=config.train_steps,
                            batch_size=config.batch_size, lr=config.lr,
                            seconds=config.train_seconds, seed=config.seed,
                            description="LoRA on tool-use traces")  # fmt: skip
            save_adapter(model, run.dir / "adapter.safetensors")
            losses = trained.losses
            run.update_summary(training={"examples": len(examples), "steps": trained.steps,
                                         "seconds": trained.seconds, "first_loss": losses[0],
                                         "last_loss": statistics.mean(losses[-10:])})  # fmt: skip
            started = time.perf_counter()  # the episodes' time, as for the others
            policy = model_policy(model, llm.tokenizer, max_new_tokens=config.max_new_tokens)
            results[method] = run_episodes(policy, tasks, tools.call, config.max_steps,
                                           name=method, show=run.show_progress)  # fmt: skip
        seconds[method] = time.perf_counter() - started
    with (run.dir / "traces.jsonl").open("w", encoding="utf-8") as out:
        for method, episodes in results.items():
            out.writelines(json.dumps({"method": method, **asdict(e)}) + "\n" for e in episodes)
    metrics, table = scores(results)
    run.update_summary(methods=table, episode_seconds=seconds)
    if config.figures:
        figure(run, table)
    return metrics


def scores(results: dict[str, list[Episode]]) -> tuple[dict[str, float], dict[str, Any]]:
    """The metrics (success, steps, failure shares per method) and a table for the summary."""
    metrics: dict[str, float] = {}
    table: dict[str, Any] = {}
    for method, episodes in results.items():
        n = len(episodes)
        solved = sum(e.solved for e in episodes)
        kinds = sorted({e.kind for e in episodes})
        table[method] = {
            "solved": solved, "episodes": n,
            "failures": {f: sum(e.failure == f for e in episodes) for f in
                         (*FAILURES, "wrong answer") if any(e.failure == f for e in episodes)},
            "by_kind": {k: statistics.mean(e.solved for e in episodes if e.kind == k)
                        for k in kinds},
        }  # fmt: skip
        metrics[f"{method}_success"] = solved / n
        if method != "alone":
            metrics[f"{method}_steps"] = statistics.mean(len(e.steps) for e in episodes)
            for f in FAILURES:
                metrics[f"{method}_{f.replace(' ', '_')}s"] = (
                    sum(e.failure == f for e in episodes) / n
                )
    if "alone" in results and "lora" in results:
        # solved by the fine-tuned agent ÷ by the model alone (at least one: never ÷ 0)
        metrics["lora_over_alone"] = table["lora"]["solved"] / max(1, table["alone"]["solved"])
    return metrics, table


def figure(run: Any, table: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    from deepscape.figures import save

    methods = list(table)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    shares = [table[m]["solved"] / table[m]["episodes"] for m in methods]
    bars = left.bar(methods, shares, color="tab:green")
    left.bar_label(bars, [f"{s:.0%}" for s in shares])
    left.set_ylim(0, 1.05)
    left.set_ylabel("held-out tasks solved")
    left.set_title(f"Success on {table[methods[0]]['episodes']} held-out tasks")
    bottom = [0.0] * len(methods)
    colours = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:gray")
    for f, colour in zip((*FAILURES, "wrong answer"), colours, strict=True):
        heights = [table[m]["failures"].get(f, 0) / table[m]["episodes"] for m in methods]
        if any(heights):
            right.bar(methods, heights, bottom=bottom, label=f, color=colour)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    right.set_ylim(0, 1.05)
    right.set_ylabel("share of held-out tasks")
    right.set_title("Why the others failed (the first thing that went wrong)")
    right.legend(loc="upper right", fontsize=8)
    return save(fig, run.figure_path("agents"))


# -- the page -------------------------------------------------------------------------------------
def page_for(run: Any) -> Any:
    """Type a question: the run's fine-tuned agent (its adapter) answers it with the tools, and
    every Thought, Action and Observation of its episode is shown."""
    import gradio as gr

    from deepscape.labs.language.l301_agents_sandbox import Sandbox
    from deepscape.labs.language.l301_agents_tasks import Task
    from deepscape.labs.language.l301_agents_tools import Search, Tools
    from deepscape.models.language import load_llm
    from deepscape.tuning import load_adapter

    config = run.config_as(Config)
    kept: dict[str, Any] = {}

    def agent() -> tuple[Policy, Tools]:
        if not kept:
            llm = load_llm(config.llm)
            adapter = run.dir / "adapter.safetensors"
            model = (
                load_adapter(copy.deepcopy(llm.model), adapter) if adapter.is_file() else llm.model
            )
            tools = Tools(Search(config.search_words), Sandbox(seconds=config.sandbox_seconds))
            kept["agent"] = (
                model_policy(model, llm.tokenizer, max_new_tokens=config.max_new_tokens),
                tools,
            )
        return kept["agent"]

    def answer(question: str) -> tuple[str, str]:
        question = (question or "").strip()
        if not question:
            raise gr.Error("type a question first")
        policy, tools = agent()
        typed = Task("typed", question, "", (), ())
        [episode] = run_episodes(policy, [typed], tools.call, config.max_steps)
        lines = []
        for step in episode.steps:
            lines += [step.raw, f"Observation: {step.observation}" if step.observation else ""]
        found = (
            episode.answer if episode.answer is not None else f"(none in {config.max_steps} steps)"
        )
        return found, "\n".join(line for line in lines if line)

    with gr.Blocks(title=f"deepscape · {run.id}") as app:
        who = "fine-tuned (LoRA)" if (run.dir / "adapter.safetensors").is_file() else "prompted"
        gr.Markdown(f"## Ask the agent\nSmolLM2, {who}, with a calculator, a Factbook lookup, "
                    "search and a Python sandbox; its trace below the answer.")  # fmt: skip
        example = "How many people live in Peru and Chile together?"
        question = gr.Textbox(label="Question", placeholder=example)
        ask = gr.Button("Ask")
        said = gr.Textbox(label="Answer")
        trace = gr.Textbox(label="Trace", lines=12)
        ask.click(answer, question, [said, trace])
        question.submit(answer, question, [said, trace])
    return app
