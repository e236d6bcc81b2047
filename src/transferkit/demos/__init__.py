"""Offline demos on real data that ships inside dependencies."""
