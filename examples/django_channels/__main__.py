"""``python -m examples.django_channels [--server uvicorn|daphne] [--host H] [--port P]``

Migrates the SQLite database (the first time, this creates the demo users ``alice`` and
``bob``, password ``demo-password``), then serves the project, by default with uvicorn at
http://127.0.0.1:8000/. ``python -m examples.django_channels manage <command>`` runs a Django
management command (``createsuperuser``, ``shell``...) on the same settings.
"""

from __future__ import annotations

import argparse
import os
import sys

SETTINGS = "examples.django_channels.settings"
APPLICATION = "examples.django_channels.asgi:application"


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    if argv[:1] == ["manage"]:
        from django.core.management import execute_from_command_line

        execute_from_command_line(["manage", *argv[1:]])
        return
    parser = argparse.ArgumentParser(prog="python -m examples.django_channels", description=__doc__)
    parser.add_argument("--server", choices=["uvicorn", "daphne"], default="uvicorn")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ws", default="wsproto", help="uvicorn's WebSocket implementation")
    args = parser.parse_args(argv)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    print(f"asgi_ws Django Channels example on http://{args.host}:{args.port}/ ({args.server})", flush=True)
    if args.server == "uvicorn":
        import uvicorn

        from asgi_ws.log import uvicorn_log_config

        # The log filter masks ws_resume (resume tokens) in uvicorn's WebSocket log lines.
        uvicorn.run(APPLICATION, host=args.host, port=args.port, ws=args.ws, lifespan="off",
                    log_config=uvicorn_log_config())  # fmt: skip
    else:
        from daphne.cli import CommandLineInterface

        # daphne logs WebSocket paths without their query string (no resume token in its log).
        CommandLineInterface().run(["--bind", args.host, "--port", str(args.port), APPLICATION])


if __name__ == "__main__":
    main(sys.argv[1:])
