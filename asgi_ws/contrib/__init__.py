"""Integrations with frameworks; nothing here is imported by ``asgi_ws`` itself.

- :mod:`asgi_ws.contrib.channels`: Django Channels (``pip install 'asgi-ws[django]'``).
"""
