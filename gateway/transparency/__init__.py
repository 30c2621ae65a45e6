"""The public transparency report: how often, by whom and under what law the log was queried."""
