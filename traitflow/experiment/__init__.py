"""What an experiment is made of: its config, traits and their vectors, prompt sets and layouts.

May import only traitflow.core. Reads files the user brings; runs no model, imports no torch at
import time.
"""
