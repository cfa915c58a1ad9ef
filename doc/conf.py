"""Sphinx configuration for skml's documentation."""

import os
import warnings
from datetime import date

import matplotlib

matplotlib.use("Agg")

import skml

project = "skml"
author = "The skml developers"
copyright = f"{date.today().year}, {author}"
release = skml.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**/sg_execution_times.rst"]
default_role = "literal"

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# CI and developer machines are offline: intersphinx stays off unless asked
# for, because an unreachable inventory is an (unsilenceable) warning under -W.
if os.environ.get("SKML_DOCS_ONLINE") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "sklearn": ("https://scikit-learn.org/stable/", None),
        "torch": ("https://pytorch.org/docs/stable/", None),
        "ot": ("https://pythonot.github.io/", None),
        "skorch": ("https://skorch.readthedocs.io/en/stable/", None),
    }
else:
    intersphinx_mapping = {}

html_theme = "pydata_sphinx_theme"
html_title = f"skml {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = []

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "doc_module": ("skml",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skml": None},
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    # The examples are independent scripts: run them on two cores (joblib).
    "parallel": 2,
}

# torch prints a UserWarning about NumPy on import in some builds; keep the
# example output clean without hiding our own warnings.
warnings.filterwarnings("ignore", message=".*Failed to initialize NumPy.*")


def _skip_metadata_request_methods(app, what, name, obj, skip, options):
    # sklearn generates set_*_request methods whose docstrings point into
    # sklearn's own glossary; they are documented there, not here.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_request_methods)
