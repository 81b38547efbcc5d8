"""`mse serve`: the HTTP API (Starlette on uvicorn) over one engine and the store."""

from .app import ROUTE_MODULES, create_app
from .config import ServerConfig, load_config
from .state import OperatorHub, ServerState

__all__ = ["ROUTE_MODULES", "OperatorHub", "ServerConfig", "ServerState", "create_app", "load_config"]
