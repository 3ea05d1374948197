"""Recipes: a base model and an ordered list of registered stages (:mod:`selfalign.stage`), each
taking the previous stage's model and writing its own under the run folder, with one evaluation
suite after every stage and one report.

* :mod:`selfalign.recipe.spec`: the YAML, validated strictly (errors name the file, the stage index
  and the field);
* :mod:`selfalign.recipe.stages`: the registered stages that wrap the bodies of work
  (``honesty``, ``synth-sft``, ``trust-data``);
* :mod:`selfalign.recipe.suite`: the evaluation suite and the stage x measure matrix of paired
  differences;
* :mod:`selfalign.recipe.runner`: ``plan`` (validate, say what is cached, load nothing) and ``run``
  (resumable as one unit);
* :mod:`selfalign.recipe.cli`: ``selfalign recipe plan|run FILE``.
"""
