"""The Example sections of the optimizer library's docstrings run as written."""

import doctest

import pytest

import phs_optax


@pytest.mark.parametrize("name", ["phs", "goal_phs"])
def test_docstring_example_runs_and_prints_what_it_shows(name):
    obj = getattr(phs_optax, name)
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs={})
    assert tests and tests[0].examples, f"{name} has no Example"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{name}'s Example fails (the output above)"
