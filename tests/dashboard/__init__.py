"""Tests of the dashboard and its metrics."""
