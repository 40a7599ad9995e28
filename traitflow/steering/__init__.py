"""Steering: the causal test of a trait vector (add or subtract it during generation, against a random
direction of the same norm), its metrics (behaviour, read-back, fluency), the chosen coefficient, the
steering plan checked at parse time, and the dose-response table and figure."""
