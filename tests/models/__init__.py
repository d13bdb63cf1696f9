"""Tests of the models package (load forecasters)."""
