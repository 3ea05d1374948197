"""Self-critique (Saunders et al. 2022; McAleese et al. 2024): critique -> refine, Best-of-N,
bugs inserted into code with tests, critic evaluation against a random-highlight baseline, and
Force Sampling Beam Search. One module per stage, each with one config and one ``run()``."""
