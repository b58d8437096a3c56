"""Handshake authentication: identities, credential-carrying backends, signed tickets."""

from .backends import AuthBackend as AuthBackend
from .backends import BearerToken as BearerToken
from .backends import CallableBackend as CallableBackend
from .backends import CookieToken as CookieToken
from .backends import QueryToken as QueryToken
from .backends import SubprotocolToken as SubprotocolToken
from .identity import AnonymousUser as AnonymousUser
from .identity import Identity as Identity
from .identity import User as User
from .tickets import SignedTicket as SignedTicket

__all__ = [
    "AnonymousUser",
    "AuthBackend",
    "BearerToken",
    "CallableBackend",
    "CookieToken",
    "Identity",
    "QueryToken",
    "SignedTicket",
    "SubprotocolToken",
    "User",
]
