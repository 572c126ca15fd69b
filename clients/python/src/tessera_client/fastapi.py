"""FastAPI integration: the ``TesseraSession`` dependency.

>>> from fastapi import FastAPI
>>> from tessera_client import ClientConfig
>>> from tessera_client.asgi import TesseraMiddleware
>>> from tessera_client.fastapi import TesseraSession
>>> app = FastAPI()
>>> config = ClientConfig(url="http://127.0.0.1:8080", api_key="tsk_example")
>>> app.add_middleware(TesseraMiddleware, config=config)
>>> @app.get("/whoami")
... async def whoami(session: TesseraSession) -> dict[str, str | None]:
...     return {"user": session.user}
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from .responses import session_from
from .session import AsyncSession


def get_session(request: Request) -> AsyncSession:
    """The tessera session of the request (a FastAPI dependency)."""
    session: AsyncSession = session_from(request)
    return session


#: ``session: TesseraSession`` in a path operation's parameters.
TesseraSession = Annotated[AsyncSession, Depends(get_session)]
