"""Config: defaults, overrides, and one clear line for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shardify.config import Config, load_config
from shardify.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_minimal_config_gets_every_default() -> None:
    config = load_config({"input": "ds", "output": "out"})
    assert config.executor.kind == "ray" and config.executor.address is None
    assert config.shard.max_samples == 1000 and config.shard.target_bytes is None
    assert config.validation.decode == "full" and config.validation.on_error == "skip"
    assert config.image.reencode is False and config.video.sampling == "aria"
    assert config.splits is None and config.storage_options == {}


def test_full_yaml_documents_exactly_the_defaults() -> None:
    documented = yaml.safe_load((REPO / "configs/full.yaml").read_text())
    assert Config.model_validate(documented) == load_config({"input": documented["input"],
                                                             "output": documented["output"]})
    defaults = Config(input="x", output="y").model_dump()

    def keys(d: dict[str, object], prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict) and k != "storage_options":
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(documented) == keys(defaults)


def test_set_overrides_reach_nested_keys() -> None:
    config = load_config({"input": "ds", "output": "out"},
                         ["shard.max_samples=7", "executor.kind=local", "video.max_side=512",
                          "splits=[train]", "image.reencode=jpeg"])
    assert config.shard.max_samples == 7 and config.executor.kind == "local"
    assert config.video.max_side == 512 and config.splits == ["train"]
    assert config.image.reencode == "jpg"


@pytest.mark.parametrize(
    ("data", "overrides", "words"),
    [
        ({"input": "ds", "output": "o", "shards": {}}, [], "unknown key 'shards'"),
        ({"input": "ds", "output": "o", "shard": {"max_sample": 3}}, [], "unknown key 'shard.max_sample'"),
        ({"input": "ds", "output": "o"}, ["shard.max_samples=0"], "'shard.max_samples'"),
        ({"input": "ds", "output": "o"}, ["executor.kind=spark"], "'executor.kind'"),
        ({"input": "ds", "output": "o"}, ["validation.decode=deep"], "'validation.decode'"),
        ({"input": "ds", "output": "o"}, ["splits=[a.b]"], "plain word"),
        ({"input": "ds", "output": "o"}, ["nokey"], "expected KEY=VALUE"),
        ({"input": "ds", "output": "o"}, ["input.x=3"], "'input' is not a section"),
    ],
)
def test_mistakes_give_one_line_naming_the_key(data: dict[str, object], overrides: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(data, overrides)
    message = str(info.value)
    assert words in message and "\n" not in message


def test_yaml_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("input: ds\noutput: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_config(path)


def test_fingerprint_ignores_how_and_where_but_not_what() -> None:
    base = load_config({"input": "ds", "output": "o"})
    same = load_config({"input": "ds", "output": "elsewhere", "executor": {"kind": "local"},
                        "storage_options": {"key": "secret"}})
    other = load_config({"input": "ds", "output": "o", "video": {"jpeg_quality": 80}})
    assert base.fingerprint() == same.fingerprint() != other.fingerprint()


def test_redacted_hides_storage_option_values() -> None:
    config = load_config({"input": "ds", "output": "o", "storage_options": {"secret": "s3cr3t"}})
    assert "s3cr3t" not in str(config.redacted())


def test_set_errors_name_the_set_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("input: ds\noutput: o\n")
    with pytest.raises(ConfigError, match=r"^--set shard\.maxsamples=3: unknown key 'shard\.maxsamples'"):
        load_config(path, ["shard.maxsamples=3"])
    with pytest.raises(ConfigError, match=r"^--set video\.jpeg_quality=0: bad value"):
        load_config(path, ["video.jpeg_quality=0"])


def test_output_settings_normalise_input_and_ignore_on_error() -> None:
    a = load_config({"input": "ds/", "output": "o"})
    b = load_config({"input": str(Path("ds").resolve()), "output": "o2",
                     "validation": {"on_error": "fail"}})
    assert a.output_settings() == b.output_settings() and a.fingerprint() == b.fingerprint()
    assert "on_error" not in a.output_settings()["validation"]


@pytest.mark.parametrize(("value", "expected"), [("10MB", 10_000_000), ("2GiB", 2 << 30), ("1.5 kb", 1500),
                                                 (4096, 4096), ("4096", 4096)])
def test_sizes_take_units(value: object, expected: int) -> None:
    config = load_config({"input": "ds", "output": "o", "shard": {"target_bytes": value},
                          "validation": {"max_image_bytes": value}})  # fmt: skip
    assert config.shard.target_bytes == expected == config.validation.max_image_bytes


def test_size_and_section_mistakes_name_no_python_class() -> None:
    with pytest.raises(ConfigError, match=r"'10 parsecs' is not a size: give bytes, or a number with a unit"):
        load_config({"input": "ds", "output": "o", "shard": {"target_bytes": "10 parsecs"}})
    with pytest.raises(ConfigError) as info:
        load_config({"input": "ds", "output": "o", "shard": 5})
    assert "shard is a section" in str(info.value) and "Config" not in str(info.value)
