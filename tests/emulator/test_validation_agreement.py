"""Over real HTTP: the client's local decision on a request is the emulator's answer to it.

The generated requests, the field table's named cases and the known disagreements are those of
``tests/unit/test_request_properties.py``; here each request is POSTed raw to a live emulator on
loopback instead of calling its validator directly, so JSON encoding, routing and error bodies are
part of what must agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import httpx
import pytest
from hypothesis import given, settings

from omniflash_prefect.core.requests import MODEL_NAME, VideoRequest
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from omniflash_prefect.emulator.validation import price_of

from ..unit.test_request_properties import (
    NULLABLE_LOOKING_FIELDS,
    describe,
    local_verdict,
    raw_requests,
    with_contract_cases,
)
from .helpers import FakeClock, error_code

SUBMIT: Final = "/v1/videos/generations"

#: Each example is one or two loopback round trips; 40 random requests (plus the field table's named
#: cases as explicit examples) keep this under a few seconds.
OVER_HTTP = settings(max_examples=40, deadline=None, database=None)


@pytest.fixture(scope="module")
def agreement_emulator() -> Iterator[EmulatorServer]:
    """One emulator for the whole module, never answering 402, 429 or 502."""
    config = EmulatorConfig(job_seconds=10.0, unlimited_balance=True)
    with EmulatorServer(config, clock=FakeClock()) as emu:
        yield emu


def _client(emulator: EmulatorServer) -> httpx.Client:
    return httpx.Client(
        base_url=emulator.base_url,
        headers={"Authorization": f"Bearer {emulator.api_key}"},
        timeout=10.0,
    )


@pytest.fixture(scope="module")
def http(agreement_emulator: EmulatorServer) -> Iterator[httpx.Client]:
    """A keep-alive client for ``agreement_emulator``, shared by every example of the module."""
    with _client(agreement_emulator) as client:
        yield client


@OVER_HTTP
@given(raw=raw_requests())
@with_contract_cases
def test_client_decision_matches_the_emulator_http_answer(
    agreement_emulator: EmulatorServer, http: httpx.Client, raw: dict[str, Any]
) -> None:
    """The emulator answers 200 exactly when the client accepts, else 400 with a local code."""
    body = {"model": MODEL_NAME, **raw}
    local = local_verdict(raw)
    response = http.post(SUBMIT, json=body)
    assert response.status_code in (200, 400), f"{response.status_code} {response.text[:300]}"
    answer = f"emulator answered {response.status_code} {response.text[:300]}"
    if isinstance(local, VideoRequest):
        assert response.status_code == 200, f"client {describe(local)} but {answer} to {body!r}"
        record = agreement_emulator.state.task(response.json()["data"][0]["task_id"])
        assert record.request == body
        assert record.price == price_of(local.duration, local.resolution)
        # The body the client really sends (defaults explicit, size folded) is accepted too.
        sent = http.post(SUBMIT, json=local.to_api_body())
        assert sent.status_code == 200, sent.text
    else:
        assert response.status_code == 400, f"client {describe(local)} but {answer} to {body!r}"
        assert error_code(response) in {problem.code for problem in local.problems}, answer


# Cases the properties once found (see tests/unit/test_request_properties.py). Each uses its own
# client, so a crash of the emulator could not spoil another test's connection.


@pytest.mark.parametrize("field", NULLABLE_LOOKING_FIELDS)
def test_explicit_null_optional_field_gets_the_client_decision_over_http(
    agreement_emulator: EmulatorServer, field: str
) -> None:
    """An explicit null for an optional field gets the same verdict from client and emulator."""
    raw = {"prompt": "a fox", field: None}
    with _client(agreement_emulator) as client:
        response = client.post(SUBMIT, json={"model": MODEL_NAME, **raw})
    assert (response.status_code == 200) == isinstance(local_verdict(raw), VideoRequest)


def test_non_ascii_data_uri_payload_is_a_400_over_http(agreement_emulator: EmulatorServer) -> None:
    """A data:image URI with a non-ASCII payload is answered 400 invalid_request_error."""
    raw = {"prompt": "a fox", "image_urls": ["data:image/png;base64,\xe9"]}
    assert not isinstance(local_verdict(raw), VideoRequest)
    with _client(agreement_emulator) as client:
        response = client.post(SUBMIT, json={"model": MODEL_NAME, **raw})
    assert response.status_code == 400, f"{response.status_code} {response.text[:200]}"
    assert error_code(response) == "invalid_request_error"
