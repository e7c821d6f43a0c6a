"""Settings from one dataclass: flags, help, defaults and config files (feste/settings.py, SPEC §command-line).

Oracles: a toy dataclass written here (names, types, comments chosen by the
test), TOML and JSON files written here, and argparse's own parsing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from dataclasses import dataclass

import pytest

from feste.settings import add_setting_arguments, field_comments, given_values, read_config, setting_fields
from feste.trainer import TrainSettings


@dataclass
class Toy:
    """A settings class shaped like TrainSettings."""

    preset: str = "tiny"  # which model
    steps: int = 10  # how many updates
    lr: float = 1e-3  # peak learning rate
    top_k: int | None = 40  # sample from the k best
    corpus: str | None = None  # a text file
    fancy: bool = False  # turn on the fancy thing


def toy_parser():
    parser = argparse.ArgumentParser(prog="toy", exit_on_error=False)
    fields = add_setting_arguments(parser, Toy, aliases={"steps": ("--n",)}, metavars={"corpus": "FILE"},
                                   choices={"preset": ("tiny", "small")})
    return parser, fields


def test_comments_are_read_from_the_source():
    assert field_comments(Toy) == {"preset": "which model", "steps": "how many updates", "lr": "peak learning rate",
                                   "top_k": "sample from the k best", "corpus": "a text file",
                                   "fancy": "turn on the fancy thing"}
    kinds = {f.name: (f.kind, f.optional, f.default) for f in setting_fields(Toy)}
    assert kinds == {"preset": (str, False, "tiny"), "steps": (int, False, 10), "lr": (float, False, 1e-3),
                     "top_k": (int, True, 40), "corpus": (str, True, None), "fancy": (bool, False, False)}


def test_every_train_setting_has_help():
    """TrainSettings is the one description of `feste train`'s flags: each field needs a comment."""
    fields = setting_fields(TrainSettings)
    assert [f.name for f in fields] == list(TrainSettings.__dataclass_fields__)
    assert all(f.help for f in fields)


def test_a_field_without_comment_is_refused():
    @dataclass
    class Bad:
        a: int = 1  # documented
        b: int = 2

    with pytest.raises(TypeError, match="Bad.b has no comment"):
        setting_fields(Bad)


def test_flags_types_aliases_and_none():
    parser, fields = toy_parser()
    args = parser.parse_args(["--n", "5", "--lr", "2e-3", "--top-k", "none", "--fancy", "--corpus", "x.txt"])
    assert given_values(args, fields) == {"steps": 5, "lr": 2e-3, "top_k": None, "corpus": "x.txt", "fancy": True}
    assert given_values(parser.parse_args(["--steps", "7", "--no-fancy"]), fields) == {"steps": 7, "fancy": False}
    assert given_values(parser.parse_args([]), fields) == {}  # nothing given: nothing overrides
    for bad in (["--steps", "1.5"], ["--lr", "nan"], ["--preset", "huge"]):
        with pytest.raises(argparse.ArgumentError):
            parser.parse_args(bad)


def test_help_shows_comment_default_and_metavar():
    parser, _ = toy_parser()
    text = parser.format_help()
    for piece in ("--n N, --steps N", "how many updates (default: 10)", "peak learning rate (default: 0.001)",
                  "--corpus FILE", "(default: none)", "(default: 40; accepts none)", "--preset {tiny,small}", "--fancy, --no-fancy",
                  "(default: off)", "(default: 'tiny')"):
        assert piece in " ".join(text.split()), piece


def test_toml_config(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('preset = "small"\nsteps = 3\nlr = 1  # an int for a float\ntop_k = "none"\nfancy = true\n')
    assert read_config(path, Toy) == {"preset": "small", "steps": 3, "lr": 1.0, "top_k": None, "fancy": True}
    assert isinstance(read_config(path, Toy)["lr"], float)


def test_run_json_is_a_config(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"settings": {"steps": 4, "top_k": None, "corpus": None}, "other": 1}))
    assert read_config(path, Toy) == {"steps": 4, "top_k": None, "corpus": None}


@pytest.mark.parametrize("text, message", [
    ("stepz = 3\n", "unknown setting 'stepz'"),
    ("top-k = 3\n", "did you mean top_k?"),
    ("steps = 1.5\n", "steps must be int, got 1.5"),
    ("steps = true\n", "steps must be int, got True"),
    ('lr = "fast"\n', "lr must be float"),
    ('steps = "none"\n', "steps must be int, got 'none'"),
    ("steps = \n", "not valid TOML"),
])
def test_bad_config_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        read_config(path, Toy)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_or_malformed_json_config(tmp_path):
    with pytest.raises(ValueError, match="nope.toml does not exist"):
        read_config(tmp_path / "nope.toml", Toy)
    (tmp_path / "a.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a table"):
        read_config(tmp_path / "a.json", Toy)
    (tmp_path / "b.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_config(tmp_path / "b.json", Toy)


@pytest.mark.parametrize("name", ["corpus", "run_dir", "resume", "init_from"])
def test_train_paths_must_not_be_empty(name):
    """SPEC §trainer: a path setting is None or a non-empty path; "" (which
    Path would read as the current directory) and a non-path are a ValueError
    naming the setting."""
    for bad in ("", 5):
        with pytest.raises(ValueError, match=name):
            TrainSettings(**{name: bad}).validate()
    TrainSettings(**{name: "x"}).validate()


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5])
def test_val_fraction_outside_the_open_unit_interval_is_refused(value):
    """SPEC §trainer: a run holds out a validation split and trains on the rest,
    so `val_fraction` must lie in (0, 1): 0 and 1 are refused, naming it."""
    with pytest.raises(ValueError, match=f"val_fraction must be in \\(0, 1\\), got {value!r}"):
        TrainSettings(val_fraction=value).validate()
    TrainSettings(val_fraction=0.999).validate()


def test_read_init_names_the_type_it_was_given():
    """feste.trainer.read_init refuses weights that are not a Checkpoint with a
    ValueError naming the type it got."""
    from feste.trainer import read_init

    with pytest.raises(ValueError, match="^init must be a Checkpoint, got dict$"):
        read_init("weights.ckpt", init={})


def test_load_tokens_encodes_the_corpus_file(tmp_path):
    """SPEC §trainer: the tokens are the corpus encoded with the run's tokenizer
    (trained on the corpus when none is given), as int64."""
    from feste.trainer import load_tokens

    text = "to be or not to be, that is the question\n" * 3
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    tokens, tokenizer = load_tokens(TrainSettings(corpus=str(path), vocab_size=260), progress=False)
    assert tokens.dtype.name == "int64" and tokenizer.vocab_size == 260
    assert tokens.tolist() == list(tokenizer.encode(text.encode("utf-8")))
    assert tokenizer.decode(tokens) == text


def test_a_cosine_floor_above_the_peak_is_refused():
    """SPEC §trainer: with the cosine schedule, min_lr above lr is refused by
    validate() (naming min_lr), before a run starts; the constant schedule ignores it."""
    with pytest.raises(ValueError, match="min_lr"):
        TrainSettings(schedule="cosine", lr=1e-3, min_lr=2e-3).validate()
    TrainSettings(schedule="cosine", lr=1e-3, min_lr=1e-3).validate()
    TrainSettings(schedule="constant", lr=1e-3, min_lr=2e-3).validate()


def test_init_settings_takes_the_models_sizes_and_refuses_others():
    """SPEC §trainer: init_settings sets n_embd, n_heads, n_layers and block_size
    to the model's, refuses a size set to another value (naming it and both
    values), and accepts a seq_len up to the model's block_size, not beyond."""
    from feste.trainer import init_settings
    from reference import Config

    config = Config(vocab_size=300, n_embd=16, n_heads=2, n_layers=1, block_size=12)
    base = TrainSettings(vocab_size=300, seq_len=12, init_from="m.ckpt")
    got = init_settings(base, config)
    assert (got.n_embd, got.n_heads, got.n_layers, got.block_size) == (16, 2, 1, 12)
    assert init_settings(TrainSettings(vocab_size=300, seq_len=12, n_embd=16, init_from="m.ckpt"), config) == got
    with pytest.raises(ValueError, match="^n_embd 32 contradicts init_from m.ckpt, whose model has n_embd 16"):
        init_settings(TrainSettings(vocab_size=300, seq_len=12, n_embd=32, init_from="m.ckpt"), config)
    with pytest.raises(ValueError, match="^seq_len 13 exceeds block_size 12 of init_from m.ckpt"):
        init_settings(TrainSettings(vocab_size=300, seq_len=13, init_from="m.ckpt"), config)


def test_read_init_reads_a_hugging_face_directory(tmp_path):
    """SPEC §trainer: init_from may be a Hugging Face GPT-2 directory, which
    read_init reads through feste.hf.import_hf: the weights exported there."""
    pytest.importorskip("safetensors", reason="a Hugging Face directory needs the interop extra (safetensors)")
    from feste import hf
    from feste.trainer import read_init
    from reference import Config, Tokenizer, init_params
    from reference.checkpoint import Checkpoint

    config = Config(vocab_size=260, n_embd=8, n_heads=2, n_layers=1, block_size=8)
    ckpt = Checkpoint(config, init_params(config, seed=1), tokenizer=Tokenizer.train(b"abcabcabd" * 20, 260))
    hf.export_hf(ckpt, tmp_path / "hf")
    notes = []
    got = read_init(tmp_path / "hf", notes=notes)
    assert got.config == config and got.params.data.tobytes() == ckpt.params.data.tobytes()
    assert got.tokenizer.to_json() == ckpt.tokenizer.to_json()


@pytest.mark.parametrize("have, shown", [(3 * 2**30, "3.0 GiB"), (3 * 2**29, "1.5 GiB"), (512 * 2**20, "512.0 MiB")])
def test_a_model_too_large_for_the_machine_is_refused_giving_both_sizes(monkeypatch, have, shown):
    """SPEC §trainer: training_memory_bytes above the machine's memory is a
    ValueError giving the parameter count and both sizes, in GiB with one
    decimal, below 1 GiB in MiB (the figures of `--n-embd 100000 --n-heads 1`)."""
    from feste import trainer
    from reference import preset

    config = dataclasses.replace(preset("tiny"), n_embd=100000, n_heads=1)
    defaults = TrainSettings()
    monkeypatch.setattr(trainer, "machine_memory_bytes", lambda: have)
    with pytest.raises(ValueError) as info:
        trainer.check_fits_in_memory(config, defaults.batch_size, defaults.seq_len)
    message = str(info.value)
    assert "360,132,100,000 parameters" in message and "needs at least 5,385.5 GiB" in message, message
    assert message.endswith(f"more than this machine's {shown}"), message


@pytest.mark.parametrize("name, value, least", [
    ("batch_size", 0, 1), ("max_steps", 0, 1), ("eval_batches", 0, 1), ("sample_top_k", 0, 1),
    ("warmup_steps", -1, 0), ("checkpoint_interval", -1, 0), ("seed", -1, 0),
])
def test_an_integer_setting_below_its_least_value_is_refused_giving_that_value(name, value, least):
    """SPEC §trainer: an integer setting below its least value is a ValueError
    "NAME must be >= 1, got V" (>= 0 for warmup_steps, checkpoint_interval and
    seed, which may be 0), so the message names the bound that was broken."""
    with pytest.raises(ValueError, match=f"^{name} must be >= {least}, got {value}$"):
        TrainSettings(**{name: value}).validate()
    TrainSettings(**{name: least}).validate()


@pytest.mark.parametrize("name, value, bounds", [
    ("lr", -0.001, "[0.0, inf)"), ("min_lr", -1.0, "[0.0, inf)"), ("weight_decay", -0.1, "[0.0, inf)"),
    ("sample_temperature", -0.5, "[0.0, inf)"), ("beta1", 1.0, "[0.0, 1.0)"), ("beta2", 1.5, "[0.0, 1.0)"),
    ("beta1", -0.1, "[0.0, 1.0)"), ("eps", float("inf"), "[0.0, inf)"),
])
def test_a_float_setting_outside_its_range_is_refused(name, value, bounds):
    """SPEC §trainer: lr, min_lr, weight_decay, sample_temperature, grad_clip and
    eps are finite numbers >= 0, beta1 and beta2 finite numbers in [0, 1); any
    other value is a ValueError "NAME must be a finite number in [LOW, HIGH), got V"."""
    with pytest.raises(ValueError, match=f"^{name} must be a finite number in {re.escape(bounds)}, got {value!r}$"):
        TrainSettings(**{name: value}).validate()


@pytest.mark.parametrize("name", ["grad_clip", "eps"])
def test_a_zero_grad_clip_or_eps_is_refused_naming_it(name):
    """SPEC §trainer: grad_clip and eps must be > 0 (a zero clip would zero every
    gradient, a zero eps divide by zero): 0 is a ValueError naming both and their values."""
    with pytest.raises(ValueError) as info:
        TrainSettings(**{name: 0.0}).validate()
    message = str(info.value)
    assert message.startswith("grad_clip and eps must be > 0, got "), message
    assert message.endswith("0.0, 1e-08" if name == "grad_clip" else "1.0, 0.0"), message


def test_init_from_with_resume_is_refused_naming_both():
    """SPEC §trainer: init_from starts a run and resume continues one, so giving
    both is a ValueError naming both settings."""
    with pytest.raises(ValueError) as info:
        TrainSettings(init_from="w.ckpt", resume="runs/a/latest.ckpt").validate()
    message = str(info.value)
    assert message.startswith("init_from") and "resume" in message, message


def test_overwrite_with_resume_is_refused_naming_the_checkpoint_and_both_directories():
    """SPEC §trainer: overwrite cannot be combined with resume: a ValueError naming
    the checkpoint, the run directory given (if any) and the checkpoint's own directory."""
    for run_dir in (None, "runs/b"):
        with pytest.raises(ValueError) as info:
            TrainSettings(overwrite=True, resume=os.path.join("runs", "a", "latest.ckpt"), run_dir=run_dir).validate()
        message = str(info.value)
        assert message.startswith("overwrite cannot be combined with resume"), message
        assert os.path.join("runs", "a", "latest.ckpt") in message, message
        assert f"the checkpoint's own directory {os.path.join('runs', 'a')};" in message, message
        assert run_dir is None or f"run directory {run_dir} " in message, message


def test_read_init_refuses_weights_without_a_tokenizer_naming_the_path():
    """SPEC §trainer: a checkpoint without a tokenizer cannot start a run
    (init_from): a ValueError naming the path and the missing tokenizer."""
    from feste.trainer import read_init
    from reference import Config, init_params
    from reference.checkpoint import Checkpoint

    config = Config(vocab_size=260, n_embd=8, n_heads=2, n_layers=1, block_size=8)
    with pytest.raises(ValueError, match="^init_from w.ckpt has no tokenizer"):
        read_init("w.ckpt", init=Checkpoint(config, init_params(config)))


def _fake_memory_sources(monkeypatch) -> tuple[dict, dict[str, str]]:
    """os.sysconf and the cgroup files faked from two dicts the caller fills in
    (sysconf names -> values; /sys/fs/cgroup paths -> text), each absent name or
    file failing as the real one does: the answer never depends on the machine."""
    from pathlib import Path

    physical: dict = {}
    cgroup: dict[str, str] = {}

    def sysconf(name):
        if name not in physical:
            raise ValueError("unrecognized configuration name")  # what os.sysconf raises
        return physical[name]

    real_read_text = Path.read_text

    def read_text(self, *args, **kwargs):
        if str(self).startswith("/sys/fs/cgroup/"):
            if str(self) in cgroup:
                return cgroup[str(self)]
            raise FileNotFoundError(str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(os, "sysconf", sysconf)
    monkeypatch.setattr(Path, "read_text", read_text)
    return physical, cgroup


def test_the_machines_memory_is_the_physical_memory_or_a_lower_cgroup_limit(monkeypatch):
    """SPEC §trainer: a run is sized against the machine's memory: the physical
    memory (page size x physical pages), or the cgroup (container) limit if
    lower; a cgroup without a limit ("max", or cgroup v1's huge number) leaves
    the physical memory. Both sources are faked here: the test's answer does
    not depend on the machine it runs on."""
    from feste import trainer

    physical, cgroup = _fake_memory_sources(monkeypatch)
    physical.update(SC_PAGE_SIZE=4096, SC_PHYS_PAGES=1 << 20)  # 4 GiB
    assert trainer.machine_memory_bytes() == 4 << 30
    cgroup["/sys/fs/cgroup/memory.max"] = "max\n"
    assert trainer.machine_memory_bytes() == 4 << 30
    cgroup["/sys/fs/cgroup/memory.max"] = f"{1 << 30}\n"
    assert trainer.machine_memory_bytes() == 1 << 30
    del cgroup["/sys/fs/cgroup/memory.max"]
    cgroup["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "9223372036854771712\n"
    assert trainer.machine_memory_bytes() == 4 << 30


def test_read_init_passes_on_what_importing_a_tied_model_did(tmp_path):
    """SPEC §trainer: read_init reads a Hugging Face directory as `feste import` does
    and appends import's notes to `notes` (the command line prints them): a tied model,
    which stores wte alone, gets its output layer as a copy of wte, and one note says so."""
    pytest.importorskip("safetensors", reason="a Hugging Face directory needs the interop extra (safetensors)")
    from safetensors.numpy import load_file, save_file

    from feste import hf
    from feste.trainer import read_init
    from reference import Config, Tokenizer, init_params
    from reference.checkpoint import Checkpoint

    config = Config(vocab_size=260, n_embd=8, n_heads=2, n_layers=1, block_size=8)
    params = init_params(config, seed=1)
    params["output_weight"][...] = params["token_embedding"].T  # tied: one matrix
    hf.export_hf(Checkpoint(config, params, tokenizer=Tokenizer.train(b"abcabcabd" * 20, 260)), tmp_path / "hf")
    doc = json.loads((tmp_path / "hf" / hf.CONFIG_FILE).read_text())
    doc["tie_word_embeddings"] = True
    (tmp_path / "hf" / hf.CONFIG_FILE).write_text(json.dumps(doc))
    tensors = load_file(tmp_path / "hf" / hf.MODEL_FILE)
    del tensors["lm_head.weight"]
    save_file(tensors, tmp_path / "hf" / hf.MODEL_FILE, metadata={"format": "pt"})
    notes = []
    got = read_init(tmp_path / "hf", notes=notes)
    assert got.params.data.tobytes() == params.data.tobytes()
    assert len(notes) == 1 and notes[0].startswith("tied embeddings"), notes


def test_exactly_one_gib_is_shown_in_gib(monkeypatch):
    """SPEC §trainer: the sizes of a model too large for the machine are given in GiB
    with one decimal, and only below 1 GiB in MiB: a machine of exactly 1 GiB has 1.0 GiB."""
    from feste import trainer
    from reference import preset

    config = dataclasses.replace(preset("tiny"), n_embd=100000, n_heads=1)
    monkeypatch.setattr(trainer, "machine_memory_bytes", lambda: 2**30)
    with pytest.raises(ValueError) as info:
        trainer.check_fits_in_memory(config, 16, 64)
    assert str(info.value).endswith("more than this machine's 1.0 GiB"), str(info.value)


def test_load_tokens_of_a_one_byte_corpus_is_its_one_token(tmp_path):
    """SPEC §trainer, §corpus: any non-empty file is a corpus, and load_tokens gives
    exactly the tokenizer's encoding of its bytes: one byte is one token (an empty
    file is refused by load_corpus, naming it)."""
    from feste.trainer import load_tokens
    from reference.corpus import CorpusError

    path = tmp_path / "one.txt"
    path.write_bytes(b"x")
    tokens, tokenizer = load_tokens(TrainSettings(corpus=str(path), vocab_size=256), progress=False)
    assert tokens.tolist() == [ord("x")] and tokens.dtype.name == "int64"
    path.write_bytes(b"")
    with pytest.raises(CorpusError, match=re.escape(str(path))):
        load_tokens(TrainSettings(corpus=str(path), vocab_size=256), progress=False)


def test_training_memory_bytes_is_specs_formula():
    """SPEC §trainer: training_memory_bytes(config, B, T) is 4 bytes x (4 n_params +
    B T (L (16C + 2 + NH T) + 2C + 1 + 2V)), n_params counted here from the parameter
    table of SPEC §model (sizes chosen so that every term shows)."""
    from feste.trainer import training_memory_bytes
    from reference import Config

    V, C, NH, L, block, B, T = 300, 16, 2, 3, 32, 5, 7
    config = Config(vocab_size=V, n_embd=C, n_heads=NH, n_layers=L, block_size=block)
    per_block = 2 * C + 4 * (C * C + C) + 2 * C + (C * 4 * C + 4 * C) + (4 * C * C + C)
    n = V * C + block * C + L * per_block + 2 * C + C * V
    assert training_memory_bytes(config, B, T) == 4 * (4 * n + B * T * (L * (16 * C + 2 + NH * T) + 2 * C + 1 + 2 * V))


def test_a_model_needing_exactly_the_machines_memory_is_not_refused(monkeypatch):
    """SPEC §trainer: a run is refused when training_memory_bytes exceeds the machine's
    memory; needing exactly as much is not exceeding it, one byte more is."""
    from feste import trainer
    from reference import preset

    config, B, T = preset("tiny"), 16, 64
    need = trainer.training_memory_bytes(config, B, T)
    monkeypatch.setattr(trainer, "machine_memory_bytes", lambda: need)
    trainer.check_fits_in_memory(config, B, T)
    monkeypatch.setattr(trainer, "machine_memory_bytes", lambda: need - 1)
    with pytest.raises(ValueError, match="more than this machine's"):
        trainer.check_fits_in_memory(config, B, T)


def test_the_machines_memory_from_either_source_alone_or_unknown(monkeypatch):
    """SPEC §trainer: the machine's memory is the physical memory or the cgroup limit if
    lower (cgroup v2's memory.max or v1's memory.limit_in_bytes); without the physical
    size (sysconf failing) the cgroup limit alone; and unknown (None: no check) when
    neither is known or the size is not positive; sysconf's -1 for indeterminate is no
    physical size, leaving the cgroup limit alone.
    Both sources are faked: the answer does not depend on the machine."""
    from feste import trainer

    physical, cgroup = _fake_memory_sources(monkeypatch)
    assert trainer.machine_memory_bytes() is None  # neither source
    cgroup["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = f"{3 << 30}\n"
    assert trainer.machine_memory_bytes() == 3 << 30  # the cgroup (v1) limit alone
    physical.update(SC_PAGE_SIZE=4096, SC_PHYS_PAGES=1 << 21)  # 8 GiB
    assert trainer.machine_memory_bytes() == 3 << 30  # v1's limit, lower than the physical memory
    del cgroup["/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    assert trainer.machine_memory_bytes() == 8 << 30
    physical["SC_PHYS_PAGES"] = -1  # indeterminate
    assert trainer.machine_memory_bytes() is None
    cgroup["/sys/fs/cgroup/memory.max"] = f"{2 << 30}\n"
    assert trainer.machine_memory_bytes() == 2 << 30  # an indeterminate size is none: the (v2) limit alone
    physical["SC_PHYS_PAGES"] = 0
    assert trainer.machine_memory_bytes() == 2 << 30  # nor is a size of 0
    cgroup["/sys/fs/cgroup/memory.max"] = "0\n"
    assert trainer.machine_memory_bytes() is None  # a limit of 0 is not positive either: unknown
    del cgroup["/sys/fs/cgroup/memory.max"]
    physical.update(SC_PAGE_SIZE=1, SC_PHYS_PAGES=1)  # the product, however small: one byte is known
    assert trainer.machine_memory_bytes() == 1


@pytest.mark.parametrize("name, value", [
    ("batch_size", 4.0), ("max_steps", True), ("seed", "0"), ("patience", 2.5), ("vocab_size", 512.0),
])
def test_an_integer_setting_given_a_non_integer_is_refused_naming_it(name, value):
    """SPEC §trainer: an integer setting is an int (never a bool; a float such as 4.0
    is refused too): anything else is a ValueError "NAME must be an integer, got V"."""
    with pytest.raises(ValueError, match=f"^{name} must be an integer, got {re.escape(repr(value))}$"):
        TrainSettings(**{name: value}).validate()


@pytest.mark.parametrize("name, value", [("lr", True), ("beta1", False), ("weight_decay", "0.1")])
def test_a_float_setting_given_a_bool_or_a_string_is_refused_naming_it(name, value):
    """SPEC §trainer: the float settings are finite numbers in their range, never a
    bool (False is not 0.0 there) nor a string: "NAME must be a finite number in [LOW, HIGH), got V"."""
    with pytest.raises(ValueError, match=f"^{name} must be a finite number in .*, got {re.escape(repr(value))}$"):
        TrainSettings(**{name: value}).validate()


def test_a_vocabulary_smaller_than_the_byte_tokens_is_refused():
    """SPEC §trainer: vocab_size's least value is 256 (the byte tokens, SPEC §tokenizer):
    255 is a ValueError "vocab_size must be >= 256 ...", giving that value; 256 is fine."""
    with pytest.raises(ValueError, match="^vocab_size must be >= 256 .*got 255$"):
        TrainSettings(vocab_size=255).validate()
    TrainSettings(vocab_size=256).validate()


def test_a_grad_accum_that_does_not_divide_the_batch_is_refused_naming_both():
    """SPEC §micro-batches: a step's B rows are cut into micro-batches of equal size, so
    grad_accum must divide batch_size: validate() refuses 4 for 10, naming both values."""
    with pytest.raises(ValueError) as info:
        TrainSettings(batch_size=10, grad_accum=4).validate()
    message = str(info.value)
    assert "grad_accum 4" in message and "batch_size 10" in message, message
    TrainSettings(batch_size=12, grad_accum=4).validate()


def test_stop_at_may_be_max_steps_but_not_beyond():
    """SPEC §trainer: stop_at stops a run early, so it must not exceed max_steps (a
    ValueError naming both); equal to max_steps it is simply the end."""
    TrainSettings(max_steps=10, stop_at=10).validate()
    with pytest.raises(ValueError, match=r"^stop_at \(11\) must not exceed max_steps \(10\)$"):
        TrainSettings(max_steps=10, stop_at=11).validate()


def test_the_seed_is_below_2_to_the_64_only_with_dropout():
    """SPEC §trainer, §dropout: with dropout the seed is the Philox key, so it must be
    below 2^64 (a ValueError naming seed); without dropout any seed >= 0 is fine."""
    TrainSettings(seed=2**64).validate()
    TrainSettings(seed=2**64 - 1, dropout=0.1).validate()
    with pytest.raises(ValueError, match="^seed must be < 2\\^64 with dropout"):
        TrainSettings(seed=2**64, dropout=0.1).validate()


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_overwrite_must_be_true_or_false(value):
    """SPEC §trainer: overwrite is True or False; anything else (a string, 1, None) is a
    ValueError naming it and the value."""
    with pytest.raises(ValueError, match=f"^overwrite must be True or False, got {re.escape(repr(value))}$"):
        TrainSettings(overwrite=value).validate()


def test_overwrite_with_resume_and_no_run_dir_names_no_directory_that_was_not_given():
    """SPEC §trainer: overwrite with resume is refused naming the checkpoint, its own
    directory and the run directory given; with none given, the message names no
    other directory (no "None")."""
    with pytest.raises(ValueError) as info:
        TrainSettings(overwrite=True, resume=os.path.join("runs", "a", "latest.ckpt")).validate()
    message = str(info.value)
    assert "None" not in message and os.path.join("runs", "a", "latest.ckpt") in message, message
