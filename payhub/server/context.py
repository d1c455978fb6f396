"""The application context: settings, database, keys, credentials, and the services of this process.

Services reach each other only through `client(name)`: the in-process client of a component served
here, or a gRPC client to the configured address when it is served elsewhere.
"""

from __future__ import annotations

import importlib
import threading
from collections import namedtuple
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from payhub.identity.store import CredentialStore
from payhub.kernel.config import Settings
from payhub.kernel.crypto import KeyRing
from payhub.kernel.db import Database
from payhub.server.jobs import Job

if TYPE_CHECKING:
    from starlette.routing import BaseRoute


class Component(Protocol):
    """One service as the server runtime sees it."""

    full_name: str  # e.g. "payhub.merchant.v1.MerchantService"

    def add_to_server(self, server: grpc.Server) -> None: ...

    def jobs(self) -> list[Job]: ...

    def client(self) -> Any: ...

    def http_routes(self) -> list[BaseRoute]:
        """Routes this service serves on the process's HTTP listener (payhub.web); thin, calling the
        same service clients as the gRPC servicer."""
        ...


# Where each service's component and remote client live. A module that does not exist yet (a service
# delivered by a later issue) is served by payhub.server.unimplemented.
COMPONENT_FACTORIES: dict[str, str] = {name: f"payhub.{name}.component:build" for name in (
    "merchant", "trade", "cashier", "risk", "settlement", "analytics", "channel")}
REMOTE_CLIENT_FACTORIES: dict[str, str] = {name: f"payhub.{name}.client:remote_client" for name in (
    "merchant", "trade", "channel", "risk", "settlement")}
# HTTP routes a process serves for a service that runs elsewhere, through that service's remote client
# (e.g. channel callbacks received by any HTTP edge and passed on to the channel router).
REMOTE_HTTP_ROUTES: dict[str, str] = {"channel": "payhub.channel.http:remote_routes"}


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass
class AppContext:
    settings: Settings
    db: Database
    keyring: KeyRing
    credentials: CredentialStore
    served: tuple[str, ...]
    _components: dict[str, Component] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @classmethod
    def create(cls, settings: Settings) -> AppContext:
        db = Database(settings.effective_database_url, pool_size=settings.db_pool_size)
        keyring = (KeyRing.parse(settings.encryption_keys) if settings.encryption_keys
                   else KeyRing.development(settings.data_dir))
        credentials = CredentialStore(db, admin_token=settings.admin_token,
                                      internal_token=settings.internal_token)
        return cls(settings, db, keyring, credentials, settings.served_services())

    def component(self, name: str) -> Component:
        with self._lock:
            if name not in self._components:
                from payhub.server.unimplemented import unimplemented_component
                try:
                    factory = _load(COMPONENT_FACTORIES[name])
                except ModuleNotFoundError as exc:
                    if not (exc.name or "").startswith(f"payhub.{name}"):
                        raise
                    self._components[name] = unimplemented_component(name)
                else:
                    self._components[name] = factory(self)
            return self._components[name]

    def client(self, name: str) -> Any:
        """The client of service `name`: in-process when served here, gRPC otherwise."""
        with self._lock:
            if name not in self._clients:
                if name in self.served:
                    self._clients[name] = self.component(name).client()
                else:
                    self._clients[name] = _load(REMOTE_CLIENT_FACTORIES[name])(self.remote_channel(name))
            return self._clients[name]

    def remote_channel(self, name: str) -> grpc.Channel:
        address = self.settings.address_of(name)
        if not address:
            raise RuntimeError(f"service {name!r} is not served here and PAYHUB_{name.upper()}_ADDRESS "
                               "is not set")
        channel = grpc.insecure_channel(address)
        if self.settings.internal_token:
            token = self.settings.internal_token
            channel = grpc.intercept_channel(channel, _MetadataInterceptor(token))
        return channel

    def components(self) -> list[Component]:
        return [self.component(name) for name in self.served]

    def http_routes(self) -> list[BaseRoute]:
        """The routes of the services served here, plus the edge routes of services served elsewhere
        whose address is configured (REMOTE_HTTP_ROUTES)."""
        routes = [route for component in self.components() for route in component.http_routes()]
        for name, factory in REMOTE_HTTP_ROUTES.items():
            if name not in self.served and self.settings.address_of(name):
                routes.extend(_load(factory)(self))
        return routes


class _MetadataInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds the internal bearer token to every call on an inter-service channel."""

    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    def _with_auth(self, details: Any) -> Any:
        return _CallDetails(details.method, details.timeout, tuple(details.metadata or ()) + self._metadata,
                            details.credentials, getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_auth(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._with_auth(details), request)


class _CallDetails(namedtuple("_CallDetails", ["method", "timeout", "metadata", "credentials",
                                               "wait_for_ready", "compression"]),
                   grpc.ClientCallDetails):  # type: ignore[misc]
    pass
