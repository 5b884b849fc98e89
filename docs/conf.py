"""Sphinx configuration of the phs-optax API reference.

The build imports the installed packages (``pip install -e ".[docs]"``) and
fetches nothing: no intersphinx, no remote themes or assets at build time.
"""

from __future__ import annotations

import dataclasses

project = "phs-optax"
author = "phs-optax authors"
copyright = "phs-optax authors"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

exclude_patterns = ["_build"]
html_theme = "alabaster"

# Google style docstrings, as optax.
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Every cross-reference must resolve, so that a misspelt :func: or :class: in a
# docstring fails the build. Types of other packages are not documented here
# (no intersphinx: the build is offline), nor are the dtypes that field
# comments name ("int32: ..."), nor the modules and helpers of the training
# system that its docstrings mention without being part of this reference.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(jax|jaxlib|numpy|optax|flax|chex|collections|os|pathlib)\..*"),
    (r"py:class", r"(int32|float32)( scalar)?"),
    (r"py:mod", r"(phs_optax_training\.)?(checkpoints|workdirs|xla_flags)"),
    (r"py:func", r"epoch_permutations"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
# Signatures show optax's alias, not the union it stands for.
autodoc_type_aliases = {"optax.ScalarOrSchedule": "optax.ScalarOrSchedule"}


def _drop_type_docstrings(app, what, name, obj, options, lines):
    """A constant (a tuple, an int) has no docstring of its own: autodoc would
    show its type's, e.g. tuple's "Built-in immutable sequence."."""
    type_doc = type(obj).__doc__
    if what in ("data", "attribute") and isinstance(type_doc, str):
        if "\n".join(lines).strip() == type_doc.strip():
            lines.clear()


def _dataclass_field_helps(app, what, name, obj, options, lines):
    """Lists a configuration dataclass's fields with the one-line help that
    each keeps in its metadata (``TrainConfig``)."""
    if what != "class" or not dataclasses.is_dataclass(obj):
        return
    fields = [f for f in dataclasses.fields(obj) if "help" in f.metadata]
    if not fields:
        return
    lines += ["", ".. rubric:: Fields", ""]
    for field in fields:
        term = f"``{field.name}``"
        if field.default is not dataclasses.MISSING:
            term += f" (default ``{field.default!r}``)"
        lines += [term, f"   {_escaped(field.metadata['help'])}", ""]


def _escaped(text: str) -> str:
    for char in "\\*`|_":
        text = text.replace(char, "\\" + char)
    return text


def setup(app):
    app.connect("autodoc-process-docstring", _drop_type_docstrings)
    app.connect("autodoc-process-docstring", _dataclass_field_helps)
