"""The OmniFlashCredentials block: Prefect's standard block checks, the key kept secret on the
server, the client it builds, its URL validation and the collection entry point."""

from __future__ import annotations

import uuid
from importlib.metadata import entry_points
from pathlib import Path

import httpx
import pytest
from prefect import flow
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.plugins import load_prefect_collections
from prefect.settings import PREFECT_API_URL
from prefect.testing.standard_test_suites.blocks import BlockStandardTestSuite
from prefect.utilities.dispatch import get_registry_for_type
from pydantic import ValidationError

import omniflash_prefect
from omniflash_prefect import OmniFlashCredentials, generate_video, upload_image
from omniflash_prefect.emulator import EmulatorServer
from omniflash_prefect.errors import (
    AuthenticationError,
    CredentialsBlockNotFoundError,
    OmniFlashError,
)
from omniflash_prefect.spend_limits import OmniFlashSpendLimit


class TestOmniFlashCredentialsIsAStandardBlock(BlockStandardTestSuite):
    """Prefect's checks for a published block: description, documentation URL, a description
    ending in a period on every field, a code example with an import and a ``.load``.

    The suite's logo test downloads ``_logo_url``, which no test here may do (loopback only);
    it is replaced by one that holds the block to having no logo URL, so the UI shows Prefect's
    default icon rather than a link that was never checked."""

    @pytest.fixture
    def block(self) -> type[Block]:
        """The block class the suite checks."""
        return OmniFlashCredentials

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        assert block._logo_url is None


class TestOmniFlashSpendLimitIsAStandardBlock(TestOmniFlashCredentialsIsAStandardBlock):
    """The same checks for the spend limit block, which people may also create in the UI."""

    @pytest.fixture
    def block(self) -> type[Block]:
        return OmniFlashSpendLimit


async def test_block_saves_and_loads_with_the_key_kept_secret() -> None:
    """The key survives a save and load yet is absent from the masked API document and repr."""
    key = f"sk-block-{uuid.uuid4().hex}"
    name = f"secret-{uuid.uuid4().hex[:12]}"
    block = OmniFlashCredentials(
        api_key=key,
        base_url="https://api.example.test/",
        request_timeout_seconds=12,
        connect_timeout_seconds=3,
    )
    assert key not in repr(block)
    assert key not in str(block)

    block_id = await block.asave(name)
    loaded: object = await OmniFlashCredentials.aload(name)
    assert isinstance(loaded, OmniFlashCredentials)
    assert loaded.api_key.get_secret_value() == key
    assert loaded.base_url == "https://api.example.test"
    assert (loaded.request_timeout_seconds, loaded.connect_timeout_seconds) == (12, 3)
    assert key not in repr(loaded)

    async with httpx.AsyncClient(base_url=str(PREFECT_API_URL.value()), trust_env=False) as http:
        masked = await http.get(f"/block_documents/{block_id}")
        revealed = await http.get(
            f"/block_documents/{block_id}", params={"include_secrets": "true"}
        )
    masked.raise_for_status()
    revealed.raise_for_status()
    assert key not in masked.text
    assert masked.json()["data"]["api_key"] != key
    assert masked.json()["data"]["base_url"] == "https://api.example.test"
    assert revealed.json()["data"]["api_key"] == key  # the document does hold it, hidden

    async with get_client() as client:
        block_type = await client.read_block_type_by_slug("omniflash-credentials")
    assert block_type.name == "Omni-Flash-Ext Credentials"


async def test_get_client_talks_to_the_block_endpoint_with_the_block_key(
    emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``get_client()`` uses the block's base URL and key, not ``OMNIFLASH_*`` settings."""
    monkeypatch.setenv("OMNIFLASH_BASE_URL", "https://elsewhere.invalid")
    monkeypatch.setenv("OMNIFLASH_API_KEY", f"sk-env-{uuid.uuid4().hex}")
    block = OmniFlashCredentials(api_key=emulator.api_key, base_url=f"{emulator.base_url}/")

    async with block.get_client() as client:
        assert client.base_url == emulator.base_url
        balance = await client.get_balance()  # the emulator answers only its own key
    assert balance is not None

    wrong = OmniFlashCredentials(api_key=f"sk-wrong-{uuid.uuid4().hex}", base_url=emulator.base_url)
    async with wrong.get_client() as client:
        with pytest.raises(AuthenticationError):
            await client.get_balance()


@pytest.mark.parametrize(
    "base_url",
    ["ftp://api.example.com", "api.example.com", "file:///etc/passwd", "ws://127.0.0.1:8765", ""],
)
def test_base_url_must_be_http_or_https(base_url: str) -> None:
    """A base URL that is not http(s) is refused when the block is built."""
    with pytest.raises(ValidationError, match="base_url must be an http"):
        OmniFlashCredentials(api_key="sk-test", base_url=base_url)


def test_base_url_accepts_http_and_https_without_trailing_slash() -> None:
    """http and https base URLs are kept, minus a trailing slash."""
    assert OmniFlashCredentials(api_key="k", base_url="https://api.apimart.ai/").base_url == (
        "https://api.apimart.ai"
    )
    assert OmniFlashCredentials(api_key="k", base_url="http://127.0.0.1:8765").base_url == (
        "http://127.0.0.1:8765"
    )


def test_package_declares_its_prefect_collections_entry_point() -> None:
    """The prefect.collections entry point names the package, and loading it registers the block."""
    declared = [
        ep for ep in entry_points(group="prefect.collections") if ep.name == "omniflash_prefect"
    ]
    assert [ep.value for ep in declared] == ["omniflash_prefect"]
    assert declared[0].load() is omniflash_prefect
    assert load_prefect_collections().get("omniflash_prefect") is omniflash_prefect
    registry = get_registry_for_type(Block)
    assert registry is not None
    assert registry.get(OmniFlashCredentials.get_block_type_slug()) is OmniFlashCredentials
    assert OmniFlashCredentials.get_block_type_slug() == "omniflash-credentials"
    assert registry.get("omniflash-spend-limit") is OmniFlashSpendLimit


async def test_a_missing_credentials_block_names_itself_and_the_blocks_there_are(
    emulator: EmulatorServer, credentials_block: str
) -> None:
    """From Python, a block name with no block raises CredentialsBlockNotFoundError naming it and
    listing the omniflash-credentials blocks that exist (never their keys), nothing sent; still
    a ValueError, as Prefect's own error was."""
    missing = f"no-such-{uuid.uuid4().hex[:8]}"
    with pytest.raises(CredentialsBlockNotFoundError) as refused:
        await generate_video(prompt="a kite over a beach", credentials_block=missing)
    error = refused.value
    assert isinstance(error, OmniFlashError)
    assert isinstance(error, ValueError)
    assert error.block_name == missing
    assert credentials_block in error.existing
    assert repr(missing) in str(error)
    assert repr(credentials_block) in str(error)
    assert emulator.api_key not in str(error)
    assert "404" not in str(error)
    assert emulator.state.submission_attempts == 0


def test_a_sync_task_with_a_missing_block_raises_the_same_error(
    emulator: EmulatorServer, block: str, tmp_path: Path
) -> None:
    """The tasks read blocks in the same one place: upload_image says the same."""
    image = tmp_path / "frame.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16)

    @flow
    def upload() -> str:
        url: str = upload_image(image, credentials_block="no-such-block")
        return url

    with pytest.raises(CredentialsBlockNotFoundError, match="no-such-block") as refused:
        upload()
    assert block in refused.value.existing
    assert emulator.state.snapshot()["uploads"] == []


def test_the_message_says_how_to_save_a_block_when_there_is_none() -> None:
    message = str(CredentialsBlockNotFoundError("prod", ()))
    assert "'prod'" in message
    assert "there are none" in message
    assert ".save(" in message
    many = CredentialsBlockNotFoundError("prod", tuple(f"b{i:02}" for i in range(25)))
    assert "'b19'" in str(many)
    assert "'b20'" not in str(many)
    assert "and 5 more" in str(many)
