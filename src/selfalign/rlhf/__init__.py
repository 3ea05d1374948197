"""RLHF after Bai et al. 2022: policy training against a preference model (DPO, RL with a KL
penalty) and its analysis (Best-of-N vs RL at equal KL)."""
