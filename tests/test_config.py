"""Typed configs: `key=value` overrides become typed values, mistakes become one-line fixes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest

from deepscape.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    closest,
    describe,
    format_value,
    option,
    parse_value,
)
from deepscape.labs.vision.l101_digits import Config
from deepscape.sweep import Choices, inherited, overrides_for, parse_spec


def test_overrides_convert_to_each_fields_type():
    config = apply_overrides(
        Config(),
        [
            "epochs=3",
            "lr=0.05",
            "augment=false",
            "model=mlp",
            "data_dir=/some/folder",
            "seed=1e3",
            "warmup=0",
        ],
    )
    assert config.epochs == 3 and type(config.epochs) is int
    assert config.lr == 0.05 and type(config.lr) is float
    assert config.augment is False
    assert config.model == "mlp"
    assert config.data_dir == "/some/folder"
    assert config.seed == 1000 and type(config.seed) is int
    assert config.warmup == 0.0 and type(config.warmup) is float


def test_overrides_return_a_copy_and_keep_other_fields():
    default = Config()
    changed = apply_overrides(default, ["lr=0.5"])
    assert default.lr == 3e-3  # the original is untouched
    assert changed.lr == 0.5
    unchanged = {f.name for f in dataclasses.fields(Config)} - {"lr"}
    assert all(getattr(changed, k) == getattr(default, k) for k in unchanged)


def test_spaces_around_key_and_value_are_ignored():
    assert apply_overrides(Config(), [" epochs = 7 "]).epochs == 7


@pytest.mark.parametrize("text", ["true", "True", "1", "yes", "on"])
def test_bool_true_spellings(text):
    assert parse_value("augment", text, bool) is True


@pytest.mark.parametrize("text", ["false", "FALSE", "0", "no", "off"])
def test_bool_false_spellings(text):
    assert parse_value("augment", text, bool) is False


def test_bad_bool_says_how_to_write_one():
    with pytest.raises(ConfigError, match=r"augment='maybe' is not a bool \(use true or false\)"):
        apply_overrides(Config(), ["augment=maybe"])


@pytest.mark.parametrize("text", ["none", "None", "null", ""])
def test_optional_str_accepts_none(text):
    assert apply_overrides(Config(data_dir="x"), [f"data_dir={text}"]).data_dir is None


def test_unknown_key_suggests_the_closest_and_lists_keys():
    with pytest.raises(ConfigError) as error:
        apply_overrides(Config(), ["lrr=1"])
    message = str(error.value)
    assert "unknown config key 'lrr'" in message
    assert "did you mean 'lr'" in message
    assert "batch_size" in message  # the list of valid keys
    assert "\n" not in message


def test_unknown_key_far_from_any_gives_no_suggestion():
    with pytest.raises(ConfigError) as error:
        apply_overrides(Config(), ["zzzzzz=1"])
    assert "did you mean" not in str(error.value)


def test_bad_float_names_key_and_type():
    with pytest.raises(ConfigError, match=r"lr='abc' is not a float"):
        apply_overrides(Config(), ["lr=abc"])


def test_fractional_int_is_refused():
    with pytest.raises(ConfigError, match=r"epochs='2\.5' is not an int"):
        apply_overrides(Config(), ["epochs=2.5"])


def test_bad_literal_lists_choices_and_suggests_the_closest():
    with pytest.raises(ConfigError) as error:
        apply_overrides(Config(), ["optimizer=adam"])
    message = str(error.value)
    assert "optimizer='adam' is not one of sgd, adamw" in message
    assert "did you mean 'adamw'" in message


def test_literal_value_is_case_sensitive_but_the_hint_is_not():
    with pytest.raises(ConfigError, match="model='CNN' is not one of linear, mlp, cnn") as error:
        apply_overrides(Config(), ["model=CNN"])
    assert "did you mean 'cnn'" in str(error.value)


def test_big_ints_are_exact_and_float_spellings_of_ints_are_accepted():
    assert apply_overrides(Config(), ["seed=9007199254740993"]).seed == 9007199254740993
    assert apply_overrides(Config(), ["epochs=1e2"]).epochs == 100


@pytest.mark.parametrize("item", ["lr", "lr0.1", "=0.1"])
def test_missing_key_or_equals_sign_is_explained(item):
    with pytest.raises(ConfigError, match=r"is not key=value \(for example lr=0\.01\)"):
        apply_overrides(Config(), [item])


def test_the_first_bad_override_wins_and_nothing_is_half_applied():
    config = Config()
    with pytest.raises(ConfigError, match="epochs"):
        apply_overrides(config, ["lr=0.5", "epochs=x"])
    assert config.lr == 3e-3


def test_a_type_the_command_line_cannot_write_is_refused():
    with pytest.raises(ConfigError, match="cannot set a list from the command line"):
        parse_value("layers", "1,2", list)


def test_closest():
    assert closest("digit", ["digits", "mnist"]) == " — did you mean 'digits'?"
    assert closest("qqq", ["digits", "mnist"]) == ""


def test_describe_lists_every_field_with_type_default_and_help():
    options = {o["name"]: o for o in describe(Config)}
    assert list(options) == [f.name for f in dataclasses.fields(Config)]
    for name, o in options.items():
        assert o["help"].strip(), f"{name} has no help text"
    assert options["epochs"] == {
        "name": "epochs",
        "type": "int",
        "default": 40,  # the lab's own default, not TrainConfig's
        "help": "passes over the training split",
    }
    assert options["lr"]["type"] == "float"
    assert options["augment"]["type"] == "bool"
    assert options["model"]["type"] == "linear|mlp|cnn"
    assert options["model"]["default"] == "cnn"
    assert options["data_dir"]["type"] == "str | none"
    assert options["data_dir"]["default"] is None
    # the shared knobs of every training lab are there too
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= set(options)


def test_option_help_reaches_describe():
    @dataclass
    class Tiny:
        size: int = option(3, "how big")
        name: str = "plain"

    assert describe(Tiny) == [
        {"name": "size", "type": "int", "default": 3, "help": "how big"},
        {"name": "name", "type": "str", "default": "plain", "help": ""},
    ]


# -- tuples and lists ------------------------------------------------------------------------------
@dataclass
class Listed:
    widths: tuple[int, ...] = option((3, 4, 5), "filter widths")
    betas: tuple[float, float] = option((0.9, 0.999), "two decay rates")
    words: tuple[str, ...] = option((), "words to look at")
    modes: tuple[Literal["a", "b"], ...] = option(("a",), "modes")
    sizes: tuple[int, ...] | None = option(None, "sizes, if any")


@pytest.mark.parametrize(
    ("key", "text", "value"),
    [
        ("widths", "3,4,5", (3, 4, 5)),
        ("widths", "2-3-4", (2, 3, 4)),  # as sentence-cnn and sweeps write widths
        ("widths", "[2, 3]", (2, 3)),
        ("widths", "7", (7,)),
        ("widths", "", ()),
        ("betas", "0.9,0.95", (0.9, 0.95)),
        ("betas", "1e-3,2", (0.001, 2.0)),  # a dash in a number is no separator
        ("words", "glove-tuned,the cat", ("glove-tuned", "the cat")),
        ("modes", "b,a", ("b", "a")),
        ("sizes", "none", None),
        ("sizes", "10,20", (10, 20)),
    ],
)
def test_tuple_and_list_options_from_key_value(key, text, value):
    config = apply_overrides(Listed(), [f"{key}={text}"])
    assert getattr(config, key) == value
    assert type(getattr(config, key)) is type(value)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("widths=3,x", "widths='x' is not an int"),
        ("widths=3-x", "widths='3-x' is not an int"),
        ("betas=0.9", "betas='0.9': give 2 values separated by commas"),
        ("betas=0.9,0.99,0.999", "give 2 values"),
        ("modes=a,c", "modes='c' is not one of a, b"),
    ],
)
def test_a_bad_item_is_a_one_line_error(item, message):
    with pytest.raises(ConfigError, match=message) as caught:
        apply_overrides(Listed(), [item])
    assert "\n" not in str(caught.value)


def test_describe_names_item_types():
    options = {o["name"]: o for o in describe(Listed)}
    assert options["widths"]["type"] == "int,…"
    assert options["betas"]["type"] == "float,float"
    assert options["words"]["type"] == "str,…"
    assert options["modes"]["type"] == "a|b,…"
    assert options["widths"]["default"] == (3, 4, 5)


@pytest.mark.parametrize("value", [(3, 4, 5), (0.9, 0.999), ["a b", "c"], (), True, 1e-4, "x"])
def test_format_value_is_read_back_by_parse_value(value):
    annotation = {
        (3, 4, 5): tuple[int, ...],
        (0.9, 0.999): tuple[float, float],
        ("a b", "c"): list[str],
        (): tuple[int, ...],
        True: bool,
        1e-4: float,
        "x": str,
    }[tuple(value) if isinstance(value, list) else value]
    assert parse_value("key", format_value(value), annotation) == value


def test_a_sweep_lists_tuples_with_dashes_or_brackets():
    spec = parse_spec("lab", Listed, ["widths=3-4-5,2-3-4", "betas=[0.9,0.95],[0.8,0.9]"])
    assert spec.params["widths"] == Choices(((3, 4, 5), (2, 3, 4)))
    assert spec.params["betas"] == Choices(((0.9, 0.95), (0.8, 0.9)))
    point = spec.plan()[0]
    mine = {f.name for f in dataclasses.fields(Listed)}  # not the sweep's seed and threads
    overrides = [o for o in overrides_for(spec, point, threads=1) if o.split("=")[0] in mine]
    config = apply_overrides(Listed(), overrides)
    assert (config.widths, config.betas) == (point["widths"], point["betas"])


def test_a_staged_run_inherits_tuples_and_lists_whole():
    config = Listed(widths=(2, 3), betas=(0.8, 0.9), words=("a b", "c"))
    spec = parse_spec("lab", Listed, inherited(config, own=set()))
    assert apply_overrides(Listed(), spec.fixed) == config
