"""Finding the config in a checkout, and refusing what a hostile checkout can hold."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.discovery import MAX_FILE_BYTES, find_config, read_checkout_file


def write(root: Path, relative: str, text: str = "{}") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_folder_config_comes_first(tmp_path: Path) -> None:
    write(tmp_path, ".devcontainer/devcontainer.json")
    write(tmp_path, ".devcontainer.json")
    write(tmp_path, ".devcontainer/other/devcontainer.json")
    assert find_config(tmp_path) == ".devcontainer/devcontainer.json"


def test_root_config_comes_before_sub_folders(tmp_path: Path) -> None:
    write(tmp_path, ".devcontainer.json")
    write(tmp_path, ".devcontainer/other/devcontainer.json")
    assert find_config(tmp_path) == ".devcontainer.json"


def test_a_single_sub_folder_config_is_found(tmp_path: Path) -> None:
    write(tmp_path, ".devcontainer/python/devcontainer.json")
    assert find_config(tmp_path) == ".devcontainer/python/devcontainer.json"


def test_no_config_is_none(tmp_path: Path) -> None:
    (tmp_path / ".devcontainer").mkdir()
    assert find_config(tmp_path) is None


def test_several_sub_folder_configs_without_a_choice_are_an_error_listing_them(
    tmp_path: Path,
) -> None:
    write(tmp_path, ".devcontainer/b/devcontainer.json")
    write(tmp_path, ".devcontainer/a/devcontainer.json")
    with pytest.raises(DevjobsError) as caught:
        find_config(tmp_path, place="spec.sources[0]")
    assert caught.value.place == "spec.sources[0]"
    assert ".devcontainer/a/devcontainer.json, .devcontainer/b/devcontainer.json" in str(
        caught.value
    )


def test_a_chosen_config_wins(tmp_path: Path) -> None:
    write(tmp_path, ".devcontainer/b/devcontainer.json")
    write(tmp_path, ".devcontainer/a/devcontainer.json")
    chosen = find_config(tmp_path, chosen="./.devcontainer/b/devcontainer.json")
    assert chosen == ".devcontainer/b/devcontainer.json"


def test_a_missing_or_absolute_chosen_config_is_an_error_at_its_place(tmp_path: Path) -> None:
    with pytest.raises(DevjobsError, match="^--config app: no devcontainer config at x.json$"):
        find_config(tmp_path, chosen="x.json", place="--config app")
    with pytest.raises(DevjobsError, match="must be relative"):
        find_config(tmp_path, chosen="/etc/passwd", place="--config app")


def test_a_config_symlinked_out_of_the_checkout_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    checkout = tmp_path / "checkout"
    (checkout / ".devcontainer").mkdir(parents=True)
    (checkout / ".devcontainer" / "devcontainer.json").symlink_to(outside)
    assert find_config(checkout) == ".devcontainer/devcontainer.json"
    with pytest.raises(DevjobsError, match="resolves outside the checkout"):
        read_checkout_file(checkout, ".devcontainer/devcontainer.json")


def test_a_symlinked_devcontainer_folder_leaving_the_checkout_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "elsewhere/devcontainer.json")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".devcontainer").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DevjobsError, match="^.devcontainer/devcontainer.json: resolves outside"):
        read_checkout_file(checkout, ".devcontainer/devcontainer.json")


def test_a_symlink_inside_the_checkout_is_followed(tmp_path: Path) -> None:
    write(tmp_path, "configs/dc.json", '{"a": 1}')
    (tmp_path / ".devcontainer.json").symlink_to("configs/dc.json")
    assert read_checkout_file(tmp_path, ".devcontainer.json") == b'{"a": 1}'


def test_a_file_over_one_mebibyte_is_refused_before_reading(tmp_path: Path) -> None:
    write(tmp_path, ".devcontainer.json", " " * MAX_FILE_BYTES + "{}")
    with pytest.raises(DevjobsError, match=r"larger than 1 MiB \(1048578 bytes\)"):
        read_checkout_file(tmp_path, ".devcontainer.json")


def test_a_file_of_exactly_one_mebibyte_is_read(tmp_path: Path) -> None:
    write(tmp_path, ".devcontainer.json", "{}" + " " * (MAX_FILE_BYTES - 2))
    assert len(read_checkout_file(tmp_path, ".devcontainer.json")) == MAX_FILE_BYTES


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".devcontainer.json")
    with pytest.raises(DevjobsError, match="not a regular file"):
        read_checkout_file(tmp_path, ".devcontainer.json")


def test_a_symlink_loop_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with pytest.raises(DevjobsError, match="^a: cannot resolve"):
        read_checkout_file(tmp_path, "a")
