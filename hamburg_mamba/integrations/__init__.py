"""Integrations that run other libraries' models on hamburg_mamba's compiled ops (import each submodule)."""
