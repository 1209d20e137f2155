"""Chain intelligence: gap maps, KPIs, supplier scorecards and their pictures."""
