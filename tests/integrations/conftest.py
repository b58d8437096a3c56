"""Django is configured before these modules import Channels (see tests/support/django.py)."""

from tests.support.django import setup

setup()
