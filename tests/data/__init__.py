"""Tests of stemforge.data."""
