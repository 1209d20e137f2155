"""API blueprints: JSON under /api/v1, plus the probes and the OpenAPI document at the root."""

from __future__ import annotations

from flask_smorest import Api

API_PREFIX = "/api/v1"


def register_blueprints(api: Api) -> None:
    from market.api import health, reference

    api.register_blueprint(health.blp)
    api.register_blueprint(reference.blp, url_prefix=API_PREFIX)
    from market.api import auth, authorities, organizations, teams  # accounts and people

    api.register_blueprint(auth.blp, url_prefix=API_PREFIX)
    api.register_blueprint(organizations.blp, url_prefix=API_PREFIX)
    api.register_blueprint(teams.blp, url_prefix=API_PREFIX)
    api.register_blueprint(authorities.blp, url_prefix=API_PREFIX)
    from market.api import plants, suppliers  # supplier profiles, OEM plants

    api.register_blueprint(suppliers.blp, url_prefix=API_PREFIX)
    api.register_blueprint(plants.blp, url_prefix=API_PREFIX)
    from market.api import demands, purchases, quotes  # demands, quotes, awards, purchases

    api.register_blueprint(demands.blp, url_prefix=API_PREFIX)
    api.register_blueprint(quotes.blp, url_prefix=API_PREFIX)
    api.register_blueprint(purchases.blp, url_prefix=API_PREFIX)
    from market.api import search  # matching and the supplier search box

    api.register_blueprint(search.blp, url_prefix=API_PREFIX)
    from market.api import feed  # the supplier's demand feed

    api.register_blueprint(feed.blp, url_prefix=API_PREFIX)
    from market.api import ledger  # the near-shore ledger, policies, baselines, outbox

    api.register_blueprint(ledger.blp, url_prefix=API_PREFIX)
    from market.api import checkpoints  # signed checkpoints of the ledger, proofs

    api.register_blueprint(checkpoints.blp, url_prefix=API_PREFIX)
    from market.api import webhooks  # webhook endpoints per organisation, delivery log

    api.register_blueprint(webhooks.blp, url_prefix=API_PREFIX)

    from market.api import claims  # subsidy claims and their evidence

    api.register_blueprint(claims.blp, url_prefix=API_PREFIX)

    from market.api import notifications  # each user's inbox and preferences

    api.register_blueprint(notifications.blp, url_prefix=API_PREFIX)

    from market.api import kpis  # chain KPIs, charts, deliveries, scorecards

    api.register_blueprint(kpis.blp, url_prefix=API_PREFIX)

    from market.api import gaps  # chain intelligence: gap maps

    api.register_blueprint(gaps.blp, url_prefix=API_PREFIX)
