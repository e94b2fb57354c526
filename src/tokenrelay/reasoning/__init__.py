"""Reasoning state that must survive a turn: signed thinking, encrypted reasoning, signatures."""
