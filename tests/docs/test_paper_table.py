"""docs/paper.md's table of paper settings matches what the recipes compose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from encodec_train import CONFIG_DIR
from encodec_train.training import resolvers  # noqa: F401 - ${per_rank_batch:...} in data

PAPER = Path(__file__).resolve().parents[2] / "docs" / "paper.md"
ROW = re.compile(
    r"^\| (?P<setting>[^|]+) \| [^|]+ \| `(?P<key>[^`]+)` \| (?P<a>[^|]+) \| (?P<b>[^|]+) \|$"
)


def table_rows() -> list[tuple[str, str, object, object]]:
    rows = []
    for line in PAPER.read_text().splitlines():
        match = ROW.match(line)
        if match:
            values = (yaml.safe_load(match["a"].strip()), yaml.safe_load(match["b"].strip()))
            rows.append((match["setting"].strip(), match["key"], *values))
    return rows


def composed(recipe: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=[f"+recipe={recipe}"])


def test_every_paper_setting_in_the_table_is_what_the_recipes_compose():
    rows = table_rows()
    assert len(rows) >= 40, "the table lost rows"
    configs = {"24khz": composed("24khz"), "48khz": composed("48khz")}
    for setting, key, value_24, value_48 in rows:
        for recipe, expected in (("24khz", value_24), ("48khz", value_48)):
            node = OmegaConf.select(configs[recipe], key, throw_on_missing=True)
            actual = OmegaConf.to_container(node) if OmegaConf.is_config(node) else node
            if isinstance(expected, float) and isinstance(actual, (int, float)):
                assert actual == pytest.approx(expected, abs=1e-4), (setting, recipe, key)
            else:
                assert actual == expected, (setting, recipe, key, actual)
