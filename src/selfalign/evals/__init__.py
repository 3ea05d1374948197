"""Generic evaluation: tasks, a runner, paired comparisons, and the statistics they report."""
