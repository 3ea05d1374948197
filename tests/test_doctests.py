"""Every worked example in a docstring is run: a doctest that no longer holds fails here."""

import doctest
import importlib
import pkgutil

import pytest

import selfalign

MODULES = sorted(m.name for m in pkgutil.walk_packages(selfalign.__path__, "selfalign.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as e:  # an optional extra that is not installed (e.g. vllm)
        pytest.skip(f"{name}: {e}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_statistics_module_has_examples():
    from selfalign.evals import stats

    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for t in finder.find(stats))
    assert examples >= 15
