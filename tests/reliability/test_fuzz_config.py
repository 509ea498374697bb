"""Property: YAML config files, ``--set KEY=VALUE`` overrides and insertion-plan strings are accepted
or refused with a ConfigError naming the file, key or value (never another exception)."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.reliability._props import own_error_or_success
from videoattn.backbones.insertion import InsertionPlan
from videoattn.config import Config, config_from_dict, load_config

SECTIONS = {"model": ["name", "num_classes", "num_frames", "dropout", "options", "sync_bn", "pretrained"],
            "data": ["format", "root", "num_workers", "size", "scale_size", "flip", "options", "labels"],
            "train": ["epochs", "batch_size", "lr", "momentum", "milestones", "warmup_epochs", "precision",
                      "schedule", "accumulation_steps", "max_steps", "skip_nonfinite_steps", "clip_grad_norm"],
            "eval": ["views", "batch_size", "average"]}
scalars = (st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats() | st.text(max_size=10)
           | st.sampled_from(["cosine", "fp16", "bf16", "10x3", "1x1", "auto", "all", "r2d18", ".nan", "1e999"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
dotted = st.sampled_from([f"{s}.{k}" for s, keys in SECTIONS.items() for k in keys]) | st.text(max_size=15)


@st.composite
def config_dicts(draw):
    raw = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, "bogus"]), max_size=4, unique=True)):
        keys = SECTIONS.get(section, ["x"])
        raw[section] = draw(st.dictionaries(st.sampled_from(keys) | st.text(max_size=5), values, max_size=4)
                            | values)
    return raw


@given(raw=config_dicts(), overrides=st.lists(st.builds(lambda k, v: f"{k}={v}", dotted,
                                                          st.text(max_size=12) | scalars.map(str)), max_size=3))
def test_config_files_and_overrides(raw, overrides, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    names = (str(path), *(repr(o) for o in overrides), "config key")
    config = own_error_or_success("config", lambda: load_config(path, overrides), names)
    if config is not None:  # an accepted config round-trips through its own YAML
        assert isinstance(config, Config)
        assert config_from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config


@given(content=st.binary(max_size=120) | st.text(max_size=120).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_config_file_bytes(content, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    path.write_bytes(content)
    own_error_or_success("config bytes", lambda: load_config(path), (str(path),))


plan_text = st.text(alphabet=st.sampled_from(list("res2345-:;, all0123456789x\t_")), max_size=30) | st.text(max_size=20)
plan_mapping = st.dictionaries(st.sampled_from(["res2", "res3", "res4", "res5", "res2-res5", "res5-res2", "x"])
                               | st.text(max_size=5), scalars | st.lists(scalars, max_size=3), max_size=3)


@given(spec=plan_text | plan_mapping | scalars)
def test_insertion_plans(spec):
    def parse_and_resolve():
        plan = InsertionPlan.parse(spec)
        return plan.resolve(("res2", "res3", "res4", "res5"), {"five_block": {"res3": (1, 3), "res4": (1, 3, 5)}})

    resolved = own_error_or_success("insertion plan", parse_and_resolve,
                                    ("insertion plan", "insertion position"))
    if resolved is not None:
        assert all(v == "all" or all(isinstance(i, int) and i >= 0 for i in v) for v in resolved.values())
