"""What the layer parses: channel and group names, frames and messages from the broker. Hostile
or broken input is rejected, counted and logged, never delivered, never raised."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import msgpack
import pytest
from channels.layers import BaseChannelLayer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_ws.brokers import broker_from_url
from asgi_ws.contrib.channels import BrokerChannelLayer
from asgi_ws.contrib.channels import layer_wire as wire
from asgi_ws.contrib.channels.layer_core import Core
from asgi_ws.exceptions import ConfigurationError, MissingDependencyError
from tests.channels_layer.conftest import BROKERS, MakeLayer
from tests.channels_layer.helpers import buffered, eventually, received

NAME_ALPHABET = st.characters(codec="ascii", categories=("L", "N")) | st.sampled_from("-_.")
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# msgpack-able values, as Channels messages hold them
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
MESSAGES = st.dictionaries(st.text(max_size=10), VALUES, max_size=5)


@given(st.text(NAME_ALPHABET, min_size=1, max_size=40))
def test_new_channel_names_are_valid_and_name_their_process(prefix: str) -> None:
    layer = BrokerChannelLayer()
    name = asyncio.run(layer.new_channel(prefix))
    assert BaseChannelLayer().require_valid_channel_name(name)
    assert wire.owner_of(name) == layer.node
    assert wire.owner_of(layer.non_local_name(name) + "x") == layer.node


@given(st.text(max_size=120))
def test_names_are_checked_by_channels_own_rules(name: str) -> None:
    layer, reference = BrokerChannelLayer(), BaseChannelLayer()
    for check in ("require_valid_channel_name", "require_valid_group_name"):
        try:
            getattr(reference, check)(name)
        except TypeError as expected:
            with pytest.raises(TypeError, match="name must be a valid unicode string"):
                getattr(layer, check)(name)
            assert "name must be" in str(expected)
        else:
            assert getattr(layer, check)(name)
    wire.owner_of(name)  # never raises


@given(st.binary(max_size=300))
def test_unframe_returns_parts_or_raises_wire_error(data: bytes) -> None:
    try:
        kind, node, target, body = wire.unframe(data)
    except wire.WireError:
        return
    assert kind in wire.KINDS and isinstance(node, str) and isinstance(target, str) and isinstance(body, bytes)


@given(st.sampled_from(sorted(wire.KINDS)), st.text(max_size=40), st.text(max_size=200), st.binary(max_size=50))
def test_frames_round_trip(kind: str, node: str, target: str, body: bytes) -> None:
    try:
        data = wire.frame(kind, node, target, body)
    except UnicodeEncodeError:  # a lone surrogate: no name of the layer holds one
        return
    assert wire.unframe(data) == (kind, node, target, body)


@given(st.binary(max_size=200))
def test_decode_returns_a_dict_or_raises_wire_error(data: bytes) -> None:
    codec = wire.MessageCodec()
    try:
        message = codec.decode(data)
    except wire.WireError:
        return
    assert type(message) is dict and all(type(key) is str for key in message)


@given(MESSAGES)
def test_messages_round_trip(message: dict[str, Any]) -> None:
    codec = wire.MessageCodec()
    assert codec.decode(codec.encode(message)) == _listed(message)


def _listed(value: Any) -> Any:
    return {k: _listed(v) for k, v in value.items()} if isinstance(value, dict) else value


async def _core_with_a_member(layer: BrokerChannelLayer) -> tuple[Core, str]:
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    return layer._cores[asyncio.get_running_loop()], channel


async def test_any_broker_input_is_delivered_only_when_it_is_a_message_of_the_layer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = BrokerChannelLayer(prefix="fuzz")
    layer.log_interval = 3600
    core, member = await _core_with_a_member(layer)
    delivered: list[dict[str, Any]] = []

    def drain() -> None:
        while buffered(layer, member):
            delivered.append(core.unpack(core.inboxes[member].items.popleft()[1]))

    @SETTINGS
    @given(st.sampled_from([core.group_channel("g"), core.node_channel, core.all_channel, "other"]), st.binary())
    def junk(channel: str, data: bytes) -> None:
        core.on_message(channel, data)  # never raises
        drain()

    @SETTINGS
    @given(
        st.sampled_from([core.group_channel("g"), core.group_channel("h"), "elsewhere"]),
        st.sampled_from(["g", "h", "bad name!"]),
        MESSAGES | st.lists(st.integers(-100, 100), max_size=3) | st.integers(-100, 100) | st.binary(max_size=30),
    )
    def group_frames(channel: str, group: str, body: Any) -> None:
        payload = body if isinstance(body, bytes) else msgpack.packb(body, use_bin_type=True)
        before = len(delivered)
        core.on_message(channel, wire.frame(wire.GROUP, "someone-else", group, payload))
        drain()
        addressed = channel == core.group_channel("g") and group == "g"
        try:
            valid = addressed and type(msgpack.unpackb(payload, raw=False)) is dict
        except Exception:
            valid = False
        assert len(delivered) == before + valid

    with caplog.at_level(logging.WARNING, logger="asgi_ws.channels"):
        junk()
        group_frames()
        await asyncio.sleep(0)
    assert layer.stats.malformed > 0
    lines = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(lines) == 1  # hundreds of bad messages, one aggregated line (then at most one per interval)
    assert all(type(m) is dict for m in delivered)
    await layer.close()


@pytest.fixture(params=[b for b in BROKERS if b != "memory"])
def broker_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


async def test_malformed_messages_from_a_real_broker(make_layer: MakeLayer, broker_url: str) -> None:
    layer = make_layer()
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    core = layer._cores[asyncio.get_running_loop()]
    raw = broker_from_url(broker_url)
    await raw.connect(lambda *args: None)
    try:
        for target in (core.group_channel("g"), core.node_channel, core.all_channel):
            for junk in (b"", b"\x00\x01", b"\x01g\x10\x00\x05short", wire.frame(wire.GROUP, "x", "g", b"\xc1")):
                await raw.publish(target, junk)
        await raw.publish(core.node_channel, wire.frame(wire.CHANNEL, "x", channel, msgpack.packb([1, 2])))
        await raw.publish(core.group_channel("g"), wire.frame(wire.GROUP, "x", "g", msgpack.packb({"type": "ok"})))
    finally:
        await raw.close()
    assert (await received(layer, channel, "the valid message after the junk")) == {"type": "ok"}
    await eventually(lambda: layer.stats.malformed == 13, f"13 malformed counted (got {layer.stats.malformed})")
    assert buffered(layer, channel) == 0


def test_missing_msgpack_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "msgpack", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'asgi-ws\[django\]'"):
        BrokerChannelLayer()


@pytest.mark.parametrize(
    "config",
    [
        {"url": "carrier-pigeon://"},
        {"prefix": "no spaces"},
        {"prefix": ""},
        {"expiry": 0},
        {"expiry": "60"},
        {"group_expiry": -1},
        {"capacity": 0},
        {"capacity": 2.5},
        {"channel_capacity": {"http.*": 0}},
    ],
)
def test_bad_options_are_refused_at_construction(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        BrokerChannelLayer(**config)
