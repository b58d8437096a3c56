"""The public surface is explicit: __all__ lists exactly what the package re-exports."""

from __future__ import annotations

import importlib
import inspect

import pytest

import asgi_ws
from asgi_ws import exceptions

SUBMODULES = [
    "asgi_ws.auth",
    "asgi_ws.client",
    "asgi_ws.close_codes",
    "asgi_ws.connection",
    "asgi_ws.deny",
    "asgi_ws.drain",
    "asgi_ws.exceptions",
    "asgi_ws.log",
    "asgi_ws.middleware",
    "asgi_ws.middleware.connlimit",
    "asgi_ws.resume",
    "asgi_ws.server",
    "asgi_ws.static",
    "asgi_ws.timers",
    "asgi_ws.types",
]


def test_all_names_exist_and_are_unique() -> None:
    assert len(asgi_ws.__all__) == len(set(asgi_ws.__all__))
    for name in asgi_ws.__all__:
        assert hasattr(asgi_ws, name), name


def test_top_level_reexports_every_exception_and_middleware() -> None:
    assert set(exceptions.__all__) <= set(asgi_ws.__all__)
    for name in ("OriginMiddleware", "AuthMiddleware", "SubprotocolMiddleware", "ConnectionLimitMiddleware"):
        assert name in asgi_ws.__all__


@pytest.mark.parametrize("module_name", SUBMODULES)
def test_submodule_all_is_complete(module_name: str) -> None:
    module = importlib.import_module(module_name)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith(module_name)
    }
    assert public <= set(module.__all__), public - set(module.__all__)


def test_exception_tree() -> None:
    assert issubclass(asgi_ws.ConfigurationError, ValueError)
    assert issubclass(asgi_ws.ConnectionClosed, OSError)
    assert issubclass(asgi_ws.MissingDependencyError, ImportError)
    assert issubclass(asgi_ws.CredentialsExpired, asgi_ws.AuthenticationFailed)
    for cls, status in [
        (asgi_ws.OriginRejected, 403),
        (asgi_ws.SubprotocolRejected, 400),
        (asgi_ws.AuthenticationFailed, 401),
        (asgi_ws.PermissionDenied, 403),
    ]:
        assert issubclass(cls, asgi_ws.HandshakeRejected)
        assert cls("x").status == status
    assert asgi_ws.HandshakeRejected("x", status=418).status == 418
    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), asgi_ws.AsgiWsError)


def test_core_imports_no_optional_dependency() -> None:
    import subprocess
    import sys

    code = (
        "import sys, asgi_ws, asgi_ws.auth, asgi_ws.middleware; "
        "bad = [m for m in ('starlette', 'fastapi', 'django', 'channels', 'uvicorn', 'redis') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_close_codes() -> None:
    from asgi_ws.close_codes import CloseCode, is_library_code, truncate_reason

    assert CloseCode.CREDENTIALS_EXPIRED == 4401
    assert is_library_code(4401) and not is_library_code(1008) and not is_library_code(4999)
    assert truncate_reason("é" * 100).encode() == ("é" * 61).encode()
